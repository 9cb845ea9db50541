"""Points of the transfer–localization plane for one language, on the eval split.

Reference points (no steering):

* ``unsteered``: the question asked in the LOC language, implicitly ("our country");
* ``english_query``: transfer asked in English (the English versions of the same items) and
  localization asked in English (implicit English prompt, English local and US answers);
* ``explicit``: localization asked with the country named; transfer is the unsteered score
  (transfer questions name no country, so the prompts are the same).

Steered points: the best single-layer EN and LOC points and the Surgical frontier, all chosen
on dev by :func:`lens_steer.evaluate.surgical.surgical_search` and scored on eval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from transformer_lens import HookedTransformer

from lens_steer.data.records import LocalizationItem, Split, TransferItem
from lens_steer.evaluate.items import PlaneItems
from lens_steer.evaluate.scores import Score, Variant, localization_share
from lens_steer.evaluate.scoring import score_options
from lens_steer.evaluate.surgical import SurgicalPoint, SurgicalSearch
from lens_steer.models import model_id

PointGroup = Literal["reference", "single", "surgical"]


@dataclass(frozen=True)
class PlanePoint:
    """A labelled point with both scores and the steering that produced it (None: none)."""

    label: str
    group: PointGroup
    transfer: Score
    localization: Score
    steering: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The flat form of the results file, with the full scores kept beside it."""
        return {
            "label": self.label,
            "group": self.group,
            "transfer": self.transfer.value,
            "transfer_ci": [self.transfer.ci_low, self.transfer.ci_high],
            "localization": self.localization.value,
            "localization_ci": [self.localization.ci_low, self.localization.ci_high],
            "steering": self.steering,
            "scores": {
                "transfer": self.transfer.to_json(),
                "localization": self.localization.to_json(),
            },
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> PlanePoint:
        return cls(
            label=obj["label"],
            group=obj["group"],
            transfer=Score.from_json(obj["scores"]["transfer"]),
            localization=Score.from_json(obj["scores"]["localization"]),
            steering=obj["steering"],
        )


@dataclass(frozen=True)
class Plane:
    """All points of one language's plane."""

    lang: str
    points: tuple[PlanePoint, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def point(self, label: str) -> PlanePoint:
        for point in self.points:
            if point.label == label:
                return point
        raise KeyError(f"No plane point {label!r}; have {[p.label for p in self.points]}")

    def group(self, group: PointGroup) -> list[PlanePoint]:
        return [point for point in self.points if point.group == group]

    def to_json(self) -> dict[str, Any]:
        return {
            "lang": self.lang,
            "settings": self.settings,
            "points": [point.to_json() for point in self.points],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Plane:
        return cls(
            lang=obj["lang"],
            points=tuple(PlanePoint.from_json(p) for p in obj["points"]),
            settings=obj.get("settings", {}),
        )


def reference_points(
    model: HookedTransformer,
    transfer_items: Sequence[TransferItem],
    localization_items: Sequence[LocalizationItem],
    english_items: Sequence[TransferItem],
    *,
    split: Split = "eval",
    normalize: bool = False,
    batch_size: int = 16,
    n_bootstrap: int = 1000,
    seed: int = 0,
    show_progress: bool = True,
) -> list[PlanePoint]:
    """The unsteered, English-query and explicit-prompt points (no steering).

    Example:
        >>> points = reference_points(model, ko_transfer, ko_localization, probe.transfer)  # doctest: +SKIP
        >>> [p.label for p in points]  # doctest: +SKIP
        ['unsteered', 'english_query', 'explicit']
    """
    base = {"model_id": model_id(model), "steering": None}
    variants: tuple[Variant, ...] = ("implicit", "english_query", "explicit")
    built = {
        variant: PlaneItems.build(
            transfer_items,
            localization_items,
            split=split,
            variant=variant,
            english_items=english_items,
        )  # fmt: skip
        for variant in variants
    }
    # Explicit prompts differ from implicit ones for localization only: score just those.
    requests = {variant: items.requests for variant, items in built.items()}
    requests["explicit"] = list(built["explicit"].localization)
    scores: dict[str, tuple[Score, Score]] = {}
    for variant, items in built.items():
        scored = score_options(
            model, requests[variant], batch_size=batch_size, show_progress=show_progress
        )
        if variant == "explicit":
            scores[variant] = (
                scores["implicit"][0],
                localization_share(
                    scored, normalize=normalize, n_bootstrap=n_bootstrap, seed=seed,
                    settings={**items.describe(), **base},
                ),
            )  # fmt: skip
        else:
            scores[variant] = items.scores(
                scored, settings=base, normalize=normalize, n_bootstrap=n_bootstrap, seed=seed
            )
    return [
        PlanePoint("unsteered", "reference", *scores["implicit"]),
        PlanePoint("english_query", "reference", *scores["english_query"]),
        PlanePoint("explicit", "reference", *scores["explicit"]),
    ]


def _steered(point: SurgicalPoint, label: str, group: PointGroup) -> PlanePoint:
    return PlanePoint(label, group, point.transfer, point.localization, point.steering)


def plane_points(
    model: HookedTransformer,
    transfer_items: Sequence[TransferItem],
    localization_items: Sequence[LocalizationItem],
    english_items: Sequence[TransferItem],
    search: SurgicalSearch | None = None,
    *,
    split: Split = "eval",
    normalize: bool = False,
    batch_size: int = 16,
    n_bootstrap: int = 1000,
    seed: int = 0,
    show_progress: bool = True,
) -> Plane:
    """The plane of one language: reference points, best single-layer points, surgical frontier.

    Args:
        model: the model.
        transfer_items, localization_items: items of one LOC language.
        english_items: English transfer items (matched by ``group``) for the English query.
        search: a :func:`surgical_search` result of the same language and eval split; its
            single-layer bests become ``best_en`` / ``best_loc`` and its frontier
            ``surgical_1..k`` (by eval transfer), its best point ``surgical_best``.
        split: the split of the reference points (the search's eval split).
        Others: as in :func:`lens_steer.evaluate.scores.transfer_score`.

    Example:
        >>> plane = plane_points(model, ko_t, ko_l, probe.transfer, search)  # doctest: +SKIP
        >>> plane.point("english_query").transfer.value  # doctest: +SKIP
        0.81
    """
    points = reference_points(
        model, transfer_items, localization_items, english_items, split=split,
        normalize=normalize, batch_size=batch_size, n_bootstrap=n_bootstrap, seed=seed,
        show_progress=show_progress,
    )  # fmt: skip
    lang = PlaneItems.build(transfer_items, localization_items, split=split).lang
    settings: dict[str, Any] = {"model_id": model_id(model), "split": split, "lang": lang}
    if search is not None:
        if search.lang != lang:
            raise ValueError(f"The surgical search is for {search.lang!r}, the items for {lang!r}")
        eval_split = search.settings.get("eval", {}).get("split", split)
        if eval_split != split:
            raise ValueError(
                f"The search was re-scored on {eval_split!r}, the plane is on {split!r}"
            )
        for kind, point in search.best_single.items():
            points.append(_steered(point, f"best_{kind}", "single"))
        frontier = sorted(search.frontier, key=lambda p: (p.transfer.value, p.localization.value))
        for index, point in enumerate(frontier, start=1):
            label = f"surgical_{index}" + (" (best)" if point.key == search.best.key else "")
            points.append(_steered(point, label, "surgical"))
        if search.best.key not in {p.key for p in frontier}:
            points.append(_steered(search.best, "surgical_best", "surgical"))
        settings["surgical"] = {
            key: search.settings.get(key)
            for key in ("criterion", "transfer_layers", "transfer_alphas", "local_layers",
                        "local_alphas", "n_grid_points", "dev")
        }  # fmt: skip
    return Plane(lang, tuple(points), settings)
