"""The study's data: every source loaded, merged and checked before the model loads.

Sources add up: the built-in probe set and the shipped BLEnD-derived items (unless
``builtin=False``), then each ``--data`` source: a JSONL file in the probe schema (its items
join the built-in ones; its meta record may declare new languages and countries) or a BLEnD
folder (the questions of each target's country; they replace the shipped ones of that
country). Everything is validated here, with the full path of the file at fault, so a run that
cannot work fails before the model loads and before anything is written.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lens_steer.data.blend import COUNTRIES as BLEND_COUNTRIES
from lens_steer.data.blend import load_blend
from lens_steer.data.blend_derived import load_blend_derived, shipped_countries
from lens_steer.data.blend_probe import is_blend_root
from lens_steer.data.jsonl import load_jsonl
from lens_steer.data.languages import ENGLISH, Target
from lens_steer.data.limit import limit_probe_set
from lens_steer.data.probe import load_probe_set
from lens_steer.data.records import ProbeSet
from lens_steer.data.targets import TargetItems, target_items
from lens_steer.evaluate.metrics import metric
from lens_steer.study.settings import MIN_ITEMS, WARN_ITEMS, StudySettings, validate_settings

SCORED_SPLITS = ("dev", "eval")


@dataclass(frozen=True)
class StudyData:
    """The merged items, the targets, each target's items, and where the items came from."""

    probe: ProbeSet
    targets: tuple[Target, ...]
    items: dict[str, TargetItems]
    sources: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    not_measured: dict[str, dict[str, str]] = field(default_factory=dict)
    axes: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """Sources, version, and per target: items per kind and split, metrics not measured."""
        return {
            "sources": list(self.sources),
            "version": self.probe.version,
            "targets": {
                key: {
                    "counts": items.counts(),
                    "not_measured": self.not_measured.get(key, {}),
                    "axes": list(self.axes.get(key, (None, None))),
                }
                for key, items in self.items.items()
            },
            "warnings": list(self.warnings),
        }


def _concat(a: ProbeSet, b: ProbeSet, version: str) -> ProbeSet:
    return ProbeSet(
        transfer=[*a.transfer, *b.transfer],
        localization=[*a.localization, *b.localization],
        parallel=[*a.parallel, *b.parallel],
        version=version,
        facts=[*a.facts, *b.facts],
        blend=[*a.blend, *b.blend],
    )


def _builtin(targets: Sequence[Target]) -> ProbeSet:
    probe = load_probe_set()
    wanted = {t.country for t in targets} & set(shipped_countries())
    blend = load_blend_derived(sorted(wanted)) if wanted else []
    return replace(probe, blend=blend)


def _blend_folder(root: Path, targets: Sequence[Target]) -> tuple[ProbeSet, set[str]]:
    """The BLEnD questions of every target country this folder has a file for."""
    items: list[Any] = []
    covered: set[str] = set()
    for target in targets:
        if target.country not in BLEND_COUNTRIES:
            continue
        path = root / "annotations" / f"{target.country}_data.json"
        if not path.is_file():
            continue
        items.extend(load_blend(root, target.country))
        covered.add(target.country)
    return ProbeSet([], [], [], blend=items), covered


def _check_unique_ids(probe: ProbeSet) -> None:
    for kind in ("transfer", "facts", "localization", "parallel"):
        seen: set[str] = set()
        for item in getattr(probe, kind):
            if item.id in seen:
                raise ValueError(
                    f"{kind} item id {item.id!r} appears twice (in the built-in set and a --data "
                    "file, or in two --data files); rename it, or pass --no-builtin"
                )
            seen.add(item.id)


def _measurable(
    items: TargetItems, metrics: Sequence[str], axes: Sequence[str]
) -> tuple[dict[str, str], list[str]]:
    """Metrics the target cannot measure (why), and warnings for small splits.

    A split with fewer than ``MIN_ITEMS`` items is an error for an axis metric (the plane and
    the findings rest on it) and leaves any other metric unmeasured, with the reason.
    """
    unmeasured, notes = {}, []
    for name in metrics:
        for kind in metric(name).needs:
            counts = [len(items.of(kind, split)) for split in SCORED_SPLITS]  # type: ignore[arg-type]
            if not any(counts):
                unmeasured[name] = (
                    f"no {kind} items in {items.target.lang!r} for {items.target.country} "
                    "(add them with --data to measure it)"
                )
                break
            small = [(s, c) for s, c in zip(SCORED_SPLITS, counts, strict=True) if c < MIN_ITEMS]
            if small:
                listing = ", ".join(f"{c} in {s}" for s, c in small)
                reason = (
                    f"only {listing} {kind} item(s); at least {MIN_ITEMS} per scored split are "
                    "needed for an interval that means anything"
                )
                if name in axes:
                    raise ValueError(
                        f"target {items.target.key}: axis metric {name!r}: {reason} (add items, "
                        "or choose other --axes)"
                    )
                unmeasured[name] = reason
                notes.append(f"target {items.target.key}: {name!r} not measured: {reason}")
                break
            for split, count in zip(SCORED_SPLITS, counts, strict=True):
                if count < WARN_ITEMS:
                    notes.append(
                        f"target {items.target.key}: metric {name!r} has only {count} {kind} "
                        f"items in {split}; its intervals will be wide"
                    )
    return unmeasured, notes


def _check_vector_sources(items: TargetItems, settings: StudySettings) -> None:
    lang = items.target.lang
    if "en" in settings.vector_methods:
        has_parallel = any(p.lang == lang and p.split == "fit" for p in items.parallel)
        has_blend = any(b.split == "fit" for b in items.blend)
        if not (has_parallel and any(p.lang == ENGLISH for p in items.parallel)) and not has_blend:
            raise ValueError(
                f"target {items.target.key}: no source for the EN vector (no fit-split parallel "
                f"sentences in {lang!r} and no BLEnD questions of {items.target.country}); add "
                "parallel sentences with --data or a BLEnD folder"
            )
    if "loc" in settings.vector_methods:
        if not items.of("blend", "fit") and not items.of("localization", "fit"):
            raise ValueError(
                f"target {items.target.key}: no fit-split culture items for the LOC vector "
                f"(neither BLEnD questions of {items.target.country} nor built-in items); add "
                "them with --data"
            )


def resolve_axes(
    axes: Sequence[str], metrics: Sequence[str], unmeasured: dict[str, str]
) -> tuple[str | None, str | None]:
    """Each plane axis's metric for one target: the chosen one when measurable, else the first
    measurable metric of the same axis kind, else None (that axis is not measured)."""
    out: list[str | None] = []
    for axis in axes:
        if axis not in unmeasured:
            out.append(axis)
            continue
        kind = metric(axis).axis
        out.append(
            next((m for m in metrics if m not in unmeasured and metric(m).axis == kind), None)
        )
    return out[0], out[1]


def load_study_data(settings: StudySettings, *, model_given: bool = False) -> StudyData:
    """Load and check every data source of a study (no model needed).

    Raises:
        ValueError / FileNotFoundError naming the file, field, target or split at fault.
    """
    targets = validate_settings(settings, model_given=model_given)
    probe = _builtin(targets) if settings.builtin else ProbeSet([], [], [])
    sources = ["built-in probe set + shipped BLEnD-derived items"] if settings.builtin else []
    version = probe.version
    missing_files: dict[str, list[Path]] = {}
    for source in settings.data:
        path = Path(source)
        if path.is_dir() and is_blend_root(path):
            loaded, covered = _blend_folder(path, targets)
            for target in targets:
                if target.country in BLEND_COUNTRIES and target.country not in covered:
                    missing_files.setdefault(target.key, []).append(
                        (path / "annotations" / f"{target.country}_data.json").resolve()
                    )
            if not covered:
                expected = [
                    str((path / "annotations" / f"{t.country}_data.json").resolve())
                    for t in targets
                ]
                raise FileNotFoundError(
                    f"--data {path.resolve()}: this BLEnD folder has no file for any target "
                    f"country (expected {', '.join(expected)})"
                )
            probe = replace(probe, blend=[b for b in probe.blend if b.country not in covered])
            sources.append(
                f"BLEnD folder {path.resolve()} ({', '.join(sorted(covered)) or 'no target country'})"
            )
        else:
            loaded = load_jsonl(path)
            sources.append(f"JSONL {path.resolve()}")
        version = "+".join(v for v in (version, loaded.version or path.name) if v)
        probe = _concat(probe, loaded, version)
    _check_unique_ids(probe)
    langs = {ENGLISH, *(t.lang for t in targets)}
    probe = ProbeSet(
        transfer=[i for i in probe.transfer if i.lang in langs],
        localization=[i for i in probe.localization if i.lang in langs],
        parallel=[i for i in probe.parallel if i.lang in langs],
        version=probe.version,
        facts=[i for i in probe.facts if i.lang in langs],
        blend=[i for i in probe.blend if i.lang in langs],
    )
    probe = limit_probe_set(probe, settings.limit, splits=SCORED_SPLITS, seed=settings.seed)
    probe = limit_probe_set(probe, settings.fit_limit, splits=("fit",), seed=settings.seed)
    items: dict[str, TargetItems] = {}
    not_measured: dict[str, dict[str, str]] = {}
    axes: dict[str, tuple[str | None, str | None]] = {}
    notes: list[str] = []
    for target in targets:
        target_data = target_items(probe, target)
        if not target_data.blend and not target_data.localization and target.key in missing_files:
            raise FileNotFoundError(
                f"target {target.key}: no culture items: "
                + ", ".join(str(p) for p in missing_files[target.key])
                + " not found (the BLEnD folder given with --data has no file for "
                f"{target.country}, and no other source has items for it)"
            )
        _check_vector_sources(target_data, settings)
        unmeasured, target_notes = _measurable(target_data, settings.metrics, settings.axes)
        resolved = resolve_axes(settings.axes, settings.metrics, unmeasured)
        if resolved == (None, None):
            raise ValueError(
                f"target {target.key}: neither axis of the plane can be measured: "
                + "; ".join(f"{axis}: {unmeasured[axis]}" for axis in settings.axes)
            )
        for chosen, axis in zip(resolved, settings.axes, strict=True):
            if chosen != axis:
                target_notes.append(
                    f"target {target.key}: axis {axis!r} cannot be measured ({unmeasured[axis]}); "
                    + (f"using {chosen!r} instead" if chosen else "that axis is left out")
                )
        items[target.key] = target_data
        not_measured[target.key] = unmeasured
        axes[target.key] = resolved
        notes += target_notes
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return StudyData(probe, targets, items, tuple(sources), tuple(notes), not_measured, axes)
