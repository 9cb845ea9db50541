"""How mixed the languages are at each layer, with intervals over sentence groups.

Three scores, each computed per *sentence group* (a sentence and its translations) so that
groups are the unit of resampling:

* ``retrieval``: is a sentence's nearest neighbour (cosine of centred residuals) among another
  language's sentences its own translation? Mean over ordered language pairs; higher = mixed.
* ``silhouette``: scikit-learn's silhouette of the language labels (cosine, centred
  residuals); near 1 languages form separate clusters; lower = mixed.
* ``probe``: accuracy of a cross-validated logistic-regression language-ID probe (folds split by
  group, so a translation never sits in the training fold of its test sentence); lower = mixed.

Intervals resample groups with replacement, the same draws at every layer, so differences
between layers (middle vs early) are paired.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_samples
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from lens_steer.geometry.pca import _ONE_BLAS_THREAD, layer_matrix
from lens_steer.residuals import ResidualSet

Center = Literal["global", "language", "none"]
MIXING_SCORES: tuple[str, ...] = ("retrieval", "silhouette", "probe")
HIGHER_IS_MIXED: dict[str, bool] = {"retrieval": True, "silhouette": False, "probe": False}


def _centred(x: np.ndarray, langs: Sequence[str], center: Center) -> np.ndarray:
    if center == "global":
        return x - x.mean(axis=0)
    if center == "language":
        out = x.copy()
        labels = np.asarray(langs)
        for lang in set(langs):
            out[labels == lang] -= x[labels == lang].mean(axis=0)
        return out
    if center == "none":
        return x
    raise ValueError(f"center must be 'global', 'language' or 'none', got {center!r}")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _retrieval_hits(x: np.ndarray, langs: np.ndarray, groups: np.ndarray) -> dict[tuple, Any]:
    """Per ordered language pair: (source rows, hit per row)."""
    hits = {}
    for source, target in itertools.permutations(dict.fromkeys(langs.tolist()), 2):
        src, tgt = np.flatnonzero(langs == source), np.flatnonzero(langs == target)
        src = src[np.isin(groups[src], groups[tgt])]
        if src.size == 0:
            continue
        nearest = tgt[np.argmax(x[src] @ x[tgt].T, axis=1)]
        hits[(source, target)] = (src, groups[nearest] == groups[src])
    if not hits:
        raise ValueError("translation retrieval: no two languages share a group")
    return hits


def translation_retrieval(
    residuals: ResidualSet,
    layer: int,
    *,
    center: Center = "global",
    standardize: bool = False,
) -> dict[tuple[str, str], float]:
    """Translation-retrieval accuracy for every ordered pair of languages at one layer.

    Returns:
        ``{(A, B): accuracy}`` for A != B sharing at least one group.
    """
    if not residuals.groups:
        raise ValueError(
            "translation retrieval needs residuals with groups (translations share a group)"
        )
    x = _unit_rows(
        _centred(layer_matrix(residuals, layer, standardize=standardize), residuals.langs, center)
    )
    with threadpool_limits(**_ONE_BLAS_THREAD):
        hits = _retrieval_hits(x, np.asarray(residuals.langs), np.asarray(residuals.groups))
    return {pair: float(np.mean(hit)) for pair, (_, hit) in hits.items()}


def language_silhouette(
    residuals: ResidualSet,
    layer: int,
    *,
    metric: str = "cosine",
    standardize: bool = False,
) -> float:
    """Silhouette score of the language labels at one layer, on centred residuals."""
    return float(np.mean(_silhouette_rows(residuals, layer, metric, standardize)))


def _silhouette_rows(
    residuals: ResidualSet, layer: int, metric: str, standardize: bool
) -> np.ndarray:
    n_langs = len(set(residuals.langs))
    if not 2 <= n_langs < residuals.n_prompts:
        raise ValueError(
            f"silhouette needs 2..n_prompts-1 languages, got {n_langs} for {residuals.n_prompts} prompts"
        )
    x = _centred(layer_matrix(residuals, layer, standardize=standardize), residuals.langs, "global")
    with threadpool_limits(**_ONE_BLAS_THREAD):
        return silhouette_samples(x, np.asarray(residuals.langs), metric=metric)


def _probe_rows(residuals: ResidualSet, layer: int, folds: int, seed: int) -> np.ndarray:
    """1.0 where the cross-validated language-ID probe names a sentence's language.

    Features are always standardized: logistic regression on raw residuals, a few dimensions
    of which are 1000x the others, would measure the optimizer rather than the geometry.
    """
    x = layer_matrix(residuals, layer, standardize=True)
    langs, groups = np.asarray(residuals.langs), np.asarray(residuals.groups)
    n_groups = len(set(groups.tolist()))
    correct = np.zeros(len(langs))
    splitter = GroupKFold(n_splits=min(folds, n_groups))
    with threadpool_limits(**_ONE_BLAS_THREAD):
        for train, test in splitter.split(x, langs, groups):
            probe = LogisticRegression(max_iter=500, random_state=seed)
            probe.fit(x[train], langs[train])
            correct[test] = probe.predict(x[test]) == langs[test]
    return correct


def _per_group(values: np.ndarray, rows: np.ndarray, groups: np.ndarray, order: list) -> np.ndarray:
    """Mean of ``values`` (one per row in ``rows``) within each group of ``order``."""
    out = np.full(len(order), np.nan)
    index = {group: slot for slot, group in enumerate(order)}
    sums = np.zeros(len(order))
    counts = np.zeros(len(order))
    for row, value in zip(rows, values, strict=True):
        slot = index[groups[row]]
        sums[slot] += value
        counts[slot] += 1
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


@dataclass(frozen=True)
class LayerMixing:
    """Per-group mixing scores at every layer, and the settings behind them.

    Attributes:
        layers: the layers measured.
        groups: the sentence groups (the unit of resampling).
        scores: ``{name: [group, layer]}`` the score's mean over each group's sentences.
        standardized: whether residual dimensions were scaled to unit std first.
        settings: center, probe folds, seed, model id, hook, position, sizes.
    """

    layers: tuple[int, ...]
    groups: tuple[str, ...]
    scores: dict[str, np.ndarray]
    standardized: bool
    settings: dict[str, Any] = field(default_factory=dict)

    def value(self, name: str) -> np.ndarray:
        """The score per layer (mean over groups)."""
        return np.nanmean(self.scores[name], axis=0)

    def samples(self, name: str, *, n_bootstrap: int = 1000, seed: int = 0) -> np.ndarray:
        """``[draw, layer]`` means over groups resampled with replacement (same draws per layer)."""
        per_group = self.scores[name]
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, per_group.shape[0], size=(n_bootstrap, per_group.shape[0]))
        return np.nanmean(per_group[draws], axis=1)

    def rows(
        self, *, n_bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95
    ) -> list[dict[str, Any]]:
        """One JSON-ready row per layer: each score with its percentile interval over groups."""
        tail = (1 - confidence) / 2 * 100
        out = []
        intervals = {
            name: np.percentile(
                self.samples(name, n_bootstrap=n_bootstrap, seed=seed), [tail, 100 - tail], axis=0
            )
            for name in self.scores
        }
        for slot, layer in enumerate(self.layers):
            row: dict[str, Any] = {"layer": layer, "standardized": self.standardized}
            for name in self.scores:
                row[name] = round(float(self.value(name)[slot]), 6)
                row[f"{name}_ci"] = [round(float(v), 6) for v in intervals[name][:, slot]]
            row.update(
                {
                    **self.settings,
                    "n_groups": len(self.groups),
                    "n_bootstrap": n_bootstrap,
                    "seed": seed,
                    "confidence": confidence,
                }
            )
            out.append(row)
        return out


def measure_mixing(
    residuals: ResidualSet,
    *,
    layers: Sequence[int] | None = None,
    center: Center = "global",
    standardize: bool = False,
    probe_folds: int = 5,
    seed: int = 0,
    show_progress: bool = True,
) -> LayerMixing:
    """Retrieval, silhouette and language-ID-probe scores per sentence group and layer.

    Args:
        residuals: parallel sentences of several languages, with groups (translations).
        layers: layers to measure (default: all collected).
        center: centring before retrieval (see :func:`translation_retrieval`).
        standardize: scale each dimension to unit std first (tames massive activations).
        probe_folds: cross-validation folds of the language-ID probe (split by group).
        seed: the probe's seed.
        show_progress: tqdm bar over layers.

    Example:
        >>> mixing = measure_mixing(parallel_residuals)  # doctest: +SKIP
        >>> mixing.value("retrieval").argmax()  # doctest: +SKIP
        10
    """
    if not residuals.groups:
        raise ValueError("mixing needs residuals with groups (translations share a group)")
    n_langs = len(set(residuals.langs))
    if n_langs < 2:
        raise ValueError(f"mixing needs at least 2 languages, got {sorted(set(residuals.langs))}")
    chosen = residuals.layers if layers is None else tuple(layers)
    groups = np.asarray(residuals.groups)
    order = list(dict.fromkeys(residuals.groups))
    if len(order) < 2:
        raise ValueError(f"mixing needs at least 2 sentence groups, got {len(order)}")
    langs = np.asarray(residuals.langs)
    columns: dict[str, list[np.ndarray]] = {name: [] for name in MIXING_SCORES}
    for layer in tqdm(chosen, desc="mixing per layer", disable=not show_progress):
        x = _unit_rows(
            _centred(
                layer_matrix(residuals, layer, standardize=standardize), residuals.langs, center
            )
        )
        with threadpool_limits(**_ONE_BLAS_THREAD):
            hits = _retrieval_hits(x, langs, groups)
        pair_scores = [
            _per_group(hit.astype(float), src, groups, order) for src, hit in hits.values()
        ]
        columns["retrieval"].append(np.nanmean(np.stack(pair_scores), axis=0))
        silhouette = _silhouette_rows(residuals, layer, "cosine", standardize)
        columns["silhouette"].append(_per_group(silhouette, np.arange(len(langs)), groups, order))
        probe = _probe_rows(residuals, layer, probe_folds, seed)
        columns["probe"].append(_per_group(probe, np.arange(len(langs)), groups, order))
    settings = {
        "center": center,
        "probe_folds": probe_folds,
        "n_langs": n_langs,
        "n_prompts": residuals.n_prompts,
        "model_id": residuals.model_id,
        "hook_name": residuals.hook_name,
        "position": residuals.position,
    }
    return LayerMixing(
        layers=chosen,
        groups=tuple(order),
        scores={name: np.stack(values, axis=1) for name, values in columns.items()},
        standardized=standardize,
        settings=settings,
    )


def mixing_by_layer(
    residuals: ResidualSet,
    *,
    layers: Sequence[int] | None = None,
    center: Center = "global",
    standardize: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """:func:`measure_mixing` as JSON-ready rows, one per layer, with intervals over groups."""
    mixing = measure_mixing(
        residuals, layers=layers, center=center, standardize=standardize, seed=seed,
        show_progress=show_progress,
    )  # fmt: skip
    return mixing.rows(n_bootstrap=n_bootstrap, seed=seed)
