"""lens_steer: cultural erasure and Surgical Steering in multilingual LLMs, on TransformerLens."""

from lens_steer.models import DEFAULT_MODEL, load_model
from lens_steer.tokens import str_tokens, tokenize_batch

__version__ = "0.1.0"

__all__ = ["DEFAULT_MODEL", "load_model", "str_tokens", "tokenize_batch", "__version__"]
