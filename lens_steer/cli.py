"""The ``lens-steer`` command line: a thin shell over :func:`lens_steer.study.run_study`.

lens-steer run --quick --langs ko id --out runs/quick         # the whole study, resumable
lens-steer run --targets es:Spain es:Mexico --data BLEnD/ --out runs/es
lens-steer report --out runs/quick                            # re-render report and figures
lens-steer export --csv --out runs/quick                      # per-item rows as CSV
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lens_steer.models import DEFAULT_MODEL
from lens_steer.study.settings import QUICK, StudySettings

_OPTIONS: dict[str, tuple[dict[str, Any], str]] = {
    # name: (kwargs, help)
    "model": ({}, "model name or path (default: %(default)s, embedded, offline)"),
    "metrics": ({"nargs": "+"}, "metrics scored at every point (default: %(default)s)"),
    "axes": ({"nargs": 2}, "the plane's x and y metrics (default: %(default)s)"),
    "calibrations": ({"nargs": "+"}, "margin calibrations, 'sum' first (default: %(default)s)"),
    "vector_methods": ({"nargs": "+"}, "vector methods to fit and sweep (default: %(default)s)"),
    "layers": ({"nargs": "+", "type": int}, "sweep layers (default: every layer)"),
    "alphas": (
        {"nargs": "+", "type": float},
        "sweep doses in units of the fitted vector (default: %(default)s)",
    ),
    "alpha_mode": (
        {"choices": ["raw", "relative"]},
        "raw (vector units) or relative to the mean residual norm",
    ),
    "n_controls": (
        {"type": int},
        "random-direction controls per controlled point (default: %(default)s)",
    ),
    "control_alphas": (
        {"nargs": "+", "type": float},
        "alphas at which controls run (default: %(default)s)",
    ),
    "transfer_layers": (
        {"nargs": "+", "type": int},
        "EN layers of the surgical grid (default: middle third)",
    ),
    "transfer_alphas": ({"nargs": "+", "type": float}, "EN alphas of the surgical grid"),
    "local_layers": (
        {"nargs": "+", "type": int},
        "LOC layers of the surgical grid (default: last third)",
    ),
    "local_alphas": ({"nargs": "+", "type": float}, "LOC alphas of the surgical grid"),
    "criterion": ({}, "how the best surgical point is chosen on dev (sum_gain, harmonic_mean)"),
    "position": ({}, "read position: last, mean or an integer index (default: %(default)s)"),
    "limit": (
        {"type": int},
        "seeded, topic-stratified sample of N items per kind, language and scored split",
    ),
    "fit_limit": ({"type": int}, "the same for the fit split the vectors come from"),
    "seed": ({"type": int}, "seed of samples, bootstraps and controls (default: %(default)s)"),
    "n_bootstrap": ({"type": int}, "bootstrap resamples for intervals (default: %(default)s)"),
    "equivalence_margin": ({"type": float}, "|cos| margin of the perpendicularity test"),
    "noninferiority_margin": (
        {"type": float},
        "nats the surgical point may lose on its other axis",
    ),
    "device": ({}, "cpu, cuda, cuda:N or mps (default: cuda when available)"),
    "batch_size": (
        {"type": int},
        "prompts per forward pass (default: %(default)s; resumable across values)",
    ),
}


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    defaults = StudySettings()
    parser.add_argument("--out", required=True, help="run folder (created; reused to resume)")
    parser.add_argument(
        "--targets", nargs="+", default=None,
        help="study targets as lang:Country (es:Mexico ko:North_Korea) or lang (its default country)",
    )  # fmt: skip
    parser.add_argument(
        "--langs", nargs="+", default=None, help="LOC languages, each with its default country"
    )
    parser.add_argument(
        "--data", action="append", default=[], metavar="PATH",
        help="a BLEnD folder or a JSONL file; repeat to add several (they join the built-in data)",
    )  # fmt: skip
    parser.add_argument("--no-builtin", action="store_true", help="use only the --data sources")
    for name, (kwargs, help_text) in _OPTIONS.items():
        default = getattr(defaults, name)
        if isinstance(default, tuple):
            default = list(default)
        parser.add_argument(
            f"--{name.replace('_', '-')}", default=default, help=help_text, **kwargs
        )
    quick = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items())
    parser.add_argument(
        "--quick", action="store_true", help=f"quick sizes for options not given: {quick}"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the results of a run folder made with other settings",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def settings_from_args(args: argparse.Namespace, argv: Sequence[str]) -> StudySettings:
    """The study settings of a parsed ``run`` command line (``--quick`` fills what is not given)."""
    if args.targets and args.langs:
        raise ValueError("give --targets or --langs, not both")
    targets = tuple(args.targets or args.langs or StudySettings().targets)
    values: dict[str, Any] = {
        name: tuple(value) if isinstance(value, list) else value
        for name in _OPTIONS
        for value in [getattr(args, name)]
    }
    given = {arg.split("=")[0][2:].replace("-", "_") for arg in argv if arg.startswith("--")}
    if args.quick:
        values.update({k: v for k, v in QUICK.items() if k not in given})
    # Absolute paths: `lens-steer report` may run from another folder than the run did.
    data = tuple(str(Path(path).resolve()) for path in args.data)
    return StudySettings(targets=targets, data=data, builtin=not args.no_builtin, **values)


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from lens_steer.study.run import run_study

    settings = settings_from_args(args, argv)
    results = run_study(settings, args.out, force=args.force, show_progress=not args.quiet,
                        log=lambda message: print(message, file=sys.stderr))  # fmt: skip
    for finding in results.findings:
        print(f"finding {finding.id}: {finding.verdict} ({finding.claim})")
    print(f"Report: {Path(args.out) / 'report.md'}")
    print(f"Results: {Path(args.out) / 'results.json'}")
    return 0


def _settings_of(out: Path) -> StudySettings:
    from lens_steer.study.store import RunFolder

    recorded = RunFolder(out).read_settings()
    if recorded is None:
        raise FileNotFoundError(f"{out.resolve()} is not a lens_steer run folder (no config.json)")
    return StudySettings.from_json(recorded)


def _report(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from lens_steer._io import read_json, write_text_atomic
    from lens_steer.report import render_report
    from lens_steer.study.run import redraw_figures

    out = Path(args.out)
    files = redraw_figures(out, _settings_of(out))
    results = out / "results.json"
    if results.is_file():
        write_text_atomic(out / "report.md", render_report(read_json(results), out))
    print(f"{len(files)} figure files written under {out / 'figures'}; report: {out / 'report.md'}")
    return 0


def _export(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from lens_steer.evaluate.tables import read_items, write_csv

    out = Path(args.out)
    source = out / "items.parquet"
    if not source.is_file():
        raise FileNotFoundError(f"{source.resolve()} not found: finish the run first")
    target = write_csv(read_items(source), out / "items.csv")
    print(f"CSV (one row per point, item and metric): {target}")
    return 0


def _demo(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from lens_steer.demo import run_demo
    from lens_steer.models import load_model

    model = load_model(args.model, device=args.device)
    print(
        f"model: {model.cfg.model_name}  layers: {model.cfg.n_layers}  d_model: {model.cfg.d_model}"
    )
    print(f"{'lang':4} {'prompt':36} {'local':>12} {'US':>12}  logp(local)-logp(US)")
    for row in run_demo(model):
        diff = float(row["logp_local"]) - float(row["logp_us"])  # type: ignore[arg-type]
        print(
            f"{row['lang']:4} {row['prompt']:36} {row['local']:>12} {row['us']:>12}  {diff:+20.2f}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lens-steer",
        description="Cultural erasure and Surgical Steering on TransformerLens models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run", help="run the whole study into --out (resumable)",
        description="collect -> vectors -> geometry -> sweep -> surgical -> plane -> findings -> report",
    )  # fmt: skip
    _add_run_options(run)
    run.set_defaults(func=_run)
    report = sub.add_parser("report", help="re-render report.md and every figure of a run folder")
    report.add_argument("--out", required=True, help="the run folder")
    report.set_defaults(func=_report)
    export = sub.add_parser("export", help="export the per-item rows of a run folder")
    export.add_argument("--out", required=True, help="the run folder")
    export.add_argument("--csv", action="store_true", required=True, help="write items.csv")
    export.set_defaults(func=_export)
    demo = sub.add_parser("demo", help="next-token view of implicit 'our country' questions")
    demo.add_argument(
        "--model", default=DEFAULT_MODEL, help="model name or path (default: %(default)s)"
    )
    demo.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    demo.set_defaults(func=_demo)
    return parser


def _show_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    """Warnings as one line on stderr (not the source line that raised them)."""
    print(f"lens-steer: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    from lens_steer.study.store import RunLockedError

    warnings.showwarning = _show_warning
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, argv))
    except (ValueError, FileNotFoundError, NotADirectoryError, OSError, RunLockedError) as err:
        print(f"lens-steer: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lens-steer: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
