"""Shared fixtures: a tiny random HookedTransformer (fast) and the real Gemma 3 270M (slow)."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[2] / "shared"
BLEND_ROOT = Path(os.environ.get("LENS_STEER_BLEND_ROOT", SHARED / "data" / "blend"))

_TINY_CORPUS = [
    "The capital of our country is Seoul. 우리나라의 수도는 서울입니다.",
    "我们国家的首都是北京。 La moneda de nuestro país es el euro.",
    "Ibu kota negara kami adalah Jakarta. Η πρωτεύουσα της χώρας μας είναι η Αθήνα.",
    "پایتخت کشور ما تهران است. Water boils at one hundred degrees.",
]


def make_tiny_tokenizer():
    """A byte-level BPE tokenizer (any script encodes) with BOS/EOS/PAD, trained in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_TINY_CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        padding_side="left",
        add_bos_token=True,
        name_or_path="tiny-random",
    )


def make_tiny_model(seed: int = 0, n_layers: int = 4):
    """A randomly initialised 4-layer Gemma-like HookedTransformer (RMSNorm, rotary, gated MLP)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tokenizer = make_tiny_tokenizer()
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=32,
        n_heads=4,
        d_head=8,
        d_mlp=64,
        d_vocab=len(tokenizer),
        n_ctx=512,
        act_fn="gelu",
        gated_mlp=True,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=8,
        seed=seed,
        device="cpu",
        default_prepend_bos=True,
        model_name="tiny-random",
    )
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    # Random init leaves small weights; scale so that layers visibly change the residual.
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim > 1:
                param.mul_(4.0)
    model.eval()
    return model


@pytest.fixture(scope="session")
def tiny_model():
    return make_tiny_model()


@pytest.fixture(scope="session")
def gemma():
    """The real embedded Gemma 3 270M (loaded once per session)."""
    from lens_steer import load_model

    return load_model("gemma-3-270m", device="cpu")


@pytest.fixture(scope="session")
def blend_root() -> Path:
    if not (BLEND_ROOT / "annotations").is_dir():
        pytest.skip(f"BLEnD copy not found at {BLEND_ROOT} (set LENS_STEER_BLEND_ROOT)")
    return BLEND_ROOT


# --------------------------------------------------------------------------------------------
# The fixture language "zz" (Testish, declared in the file's meta record) and its tiny study.
# --------------------------------------------------------------------------------------------

TINY_LANGUAGE = Path(__file__).resolve().parent / "fixtures" / "tiny_language.jsonl"


@pytest.fixture(scope="session")
def tiny_language() -> Path:
    """The JSONL of the fixture language ``zz`` (facts, localization and parallel items)."""
    return TINY_LANGUAGE


@pytest.fixture
def one_thread(request):
    """One torch thread for the tiny model (about 8x faster on a busy 2-core machine).

    Tests of the real Gemma model keep every thread: its matmuls are large enough to use them.
    """
    if "gemma" in request.fixturenames or "bridge" in request.fixturenames:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _html_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    import lens_steer.study.run as run_module

    monkeypatch.setattr(
        run_module, "save_figure", functools.partial(run_module.save_figure, formats=())
    )


@pytest.fixture
def html_figures(monkeypatch):
    """Study figures as HTML only (static export starts a headless browser: seconds each)."""
    _html_only(monkeypatch)


@pytest.fixture(scope="session")
def tiny_study_settings(tiny_language):
    """Build the fixture-language study's settings (keyword arguments change them)."""
    from lens_steer.study import StudySettings

    defaults = dict(
        model="tiny", targets=("zz",), data=(str(tiny_language),), builtin=False,
        metrics=("transfer", "localization"), axes=("transfer", "localization"),
        layers=(0, 1, 2, 3), alphas=(1.0,), n_controls=2, transfer_layers=(1,),
        local_layers=(2, 3), transfer_alphas=(1.0,), local_alphas=(1.0,),
        calibrations=("sum", "per_token"), n_bootstrap=200, vector_bootstrap=50, kl_prompts=4,
    )  # fmt: skip

    def build(**changes):
        return StudySettings(**{**defaults, **changes})

    return build


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_model, tiny_study_settings) -> Path:
    """A finished run folder of the fixture-language study on the tiny model (copy, then change)."""
    from lens_steer.study import run_study

    out = tmp_path_factory.mktemp("tiny_study") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            _html_only(patch)
            run_study(
                tiny_study_settings(), out, model=tiny_model, show_progress=False,
                log=lambda message: None,
            )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of :func:`tiny_run` that a test may change."""
    import shutil

    return Path(shutil.copytree(tiny_run, tmp_path / "run", symlinks=True))


@pytest.fixture
def choice_metric():
    """Register a multiple-choice metric from explicit ``(prompt, options, right)`` per split.

    Returns ``register(name, {split: [(prompt, options, right), ...]}, axis=...)``; options are
    continuation strings. The metric ignores the target's items: it is a test instrument.
    """
    from lens_steer.evaluate.metrics import (
        ItemScore,
        MetricTask,
        NoItems,
        calibrated,
        option_margin,
        register_metric,
    )
    from lens_steer.evaluate.scoring import ScoringRequest

    def register(name, by_split, *, axis="transfer", aggregate="share"):
        def build(items, split):
            chosen = by_split.get(split, [])
            if not chosen:
                raise NoItems(f"{name}: no items in {split}")
            requests = tuple(
                ScoringRequest(prompt, tuple(options), f"{name}-{split}-{index}")
                for index, (prompt, options, _) in enumerate(chosen)
            )

            def rows(scored, calibration):
                out = []
                for request, scores, (_, _, right) in zip(
                    requests, scored.requests, chosen, strict=True
                ):
                    margin, margin_max, outcome = option_margin(
                        calibrated(scores, calibration), right
                    )
                    out.append(ItemScore(request.id, margin, margin_max, outcome))
                return out

            return MetricTask(requests, rows, calibrations=("sum", "per_token"))

        register_metric(name, build, axis=axis, aggregate=aggregate, replace=True)
        return name

    return register


class _Planted:
    """Two-option items whose answers are single letters (one byte token each, all distinct), and
    the direction that raises every right letter's logit and lowers every wrong one's."""

    LETTERS = string.ascii_lowercase + string.ascii_uppercase
    RIGHT, WRONG = LETTERS[0:48:2], LETTERS[1:48:2]
    PROMPTS = (
        "Water is wet", "The sun is up", "I like bread", "The dog runs", "Birds can fly",
        "The sea is big", "We read books", "It is cold", "She has a cat", "The tree is tall",
        "He drinks tea", "Fish swim", "The road is long", "We sing songs", "The moon is out",
        "Rain falls", "Snow is white", "Grass is green", "A cat says", "A dog says",
        "Coal is black", "Two plus two", "Blood is red", "The sky is blue",
    )  # fmt: skip

    def items(self, *, flip: bool = False, start: int = 0, count: int = 24) -> list:
        """``(prompt, (right, wrong), 0)``; ``flip`` makes the wrong letter the right one."""
        out = []
        for index in range(start, start + count):
            right, wrong = self.RIGHT[index % 24], self.WRONG[index % 24]
            if flip:
                right, wrong = wrong, right
            out.append((self.PROMPTS[index % 24], (right, wrong), 0))
        return out

    def direction(self, model) -> torch.Tensor:
        """Unit vector with logit change +1 on the right letters, -1 on the wrong (least squares)."""
        ids = []
        for letter in self.RIGHT + self.WRONG:
            (single,) = model.tokenizer(letter, add_special_tokens=False)["input_ids"]
            ids.append(single)
        columns = model.W_U.detach().double()[:, ids]
        target = torch.tensor([1.0] * 24 + [-1.0] * 24, dtype=torch.double)
        solution = torch.linalg.lstsq(columns.T, target[:, None]).solution[:, 0]
        return (solution / solution.norm()).float()


@pytest.fixture(scope="session")
def planted() -> _Planted:
    """Items and a steering direction with a known, planted effect on the tiny model."""
    return _Planted()


@pytest.fixture
def tiny_language_variant(tiny_language, tmp_path):
    """Write a changed copy of the fixture language's JSONL: ``make(keep=..., extra=..., name=...)``.

    ``keep(record) -> bool`` filters the item records (the meta record always stays); ``extra``
    records are appended. Returns the new file's path.
    """
    import json

    lines = [json.loads(line) for line in tiny_language.read_text().splitlines() if line.strip()]

    def make(keep=lambda record: True, extra=(), name="variant.jsonl") -> Path:
        records = [r for r in lines if r["kind"] == "meta" or keep(r)] + list(extra)
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return path

    return make
