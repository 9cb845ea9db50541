"""The ``lens-steer`` command line: each subcommand runs one study step into a run folder.

lens-steer run --out runs/quick --langs ko id --limit 8     # every step, resumable
lens-steer sweep --out runs/quick --langs ko id --limit 8   # one step (earlier ones first)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lens_steer.models import DEFAULT_MODEL
from lens_steer.pipeline import STEPS, StudySettings

_STEP_HELP = {
    "collect": "collect residuals at every layer (parallel sentences, localization prompts)",
    "vectors": "fit EN (English - L) and LOC (explicit - implicit) vectors on the fit split",
    "pca": "per-layer PCA and language-mixing scores of the parallel sentences (+ figures)",
    "perpendicularity": "cos(EN, LOC) per language and layer against the null band (+ figure)",
    "sweep": "EN- and LOC-steering at every layer and alpha, scored on eval (+ figures)",
    "surgical": "grid over (l_T, a_T, l_L, a_L) on dev; Pareto frontier re-scored on eval",
    "plane": "the transfer-localization plane with reference points (+ figures)",
    "report": "write results.json and report.md",
}


def _add_common(parser: argparse.ArgumentParser) -> None:
    defaults = StudySettings()
    add = parser.add_argument
    add("--out", required=True, help="run folder (created; reused to resume)")
    add("--model", default=defaults.model, help="model name or path (default: %(default)s)")
    add(
        "--langs",
        nargs="+",
        default=list(defaults.langs),
        help="LOC languages among ko zh es id el fa (default: %(default)s)",
    )
    add(
        "--data",
        default=defaults.data,
        help="'builtin' (the shipped probe set), a BLEnD folder (its questions replace the "
        "localization set) or a user JSONL file (default: %(default)s)",
    )
    add(
        "--layers",
        nargs="+",
        type=int,
        default=[],
        help="layers of the single-layer sweeps (default: every layer)",
    )
    add(
        "--alphas",
        nargs="+",
        type=float,
        default=list(defaults.alphas),
        help="sweep alphas, relative to the mean residual norm at the layer (default: %(default)s)",
    )
    add(
        "--alpha-mode",
        choices=["relative", "raw"],
        default=defaults.alpha_mode,
        help="alpha relative to the residual norm, or raw (default: %(default)s)",
    )
    add(
        "--transfer-layers",
        nargs="+",
        type=int,
        default=[],
        help="EN layers of the surgical grid (default: middle third, every other layer)",
    )
    add(
        "--transfer-alphas",
        nargs="+",
        type=float,
        default=list(defaults.transfer_alphas),
        help="EN alphas of the surgical grid (default: %(default)s)",
    )
    add(
        "--local-layers",
        nargs="+",
        type=int,
        default=[],
        help="LOC layers of the surgical grid (default: last third, every other layer)",
    )
    add(
        "--local-alphas",
        nargs="+",
        type=float,
        default=list(defaults.local_alphas),
        help="LOC alphas of the surgical grid (default: %(default)s)",
    )
    add(
        "--position",
        default=defaults.position,
        help="read position: last or mean (default: %(default)s)",
    )
    add(
        "--limit",
        type=int,
        default=None,
        help="keep the first N items per set and split (quick runs)",
    )
    add("--seed", type=int, default=defaults.seed, help="bootstrap seed (default: %(default)s)")
    add(
        "--n-bootstrap",
        type=int,
        default=defaults.n_bootstrap,
        help="bootstrap resamples for score intervals (default: %(default)s)",
    )
    add("--device", default=None, help="cpu or cuda (default: cuda when available)")
    add(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="sequences per forward pass (default: %(default)s)",
    )
    add(
        "--quick",
        action="store_true",
        help=f"quick-run sizes for settings not given: {QUICK_HELP}",
    )
    add("--force", action="store_true", help="overwrite a run folder made with other settings")
    add("--quiet", action="store_true", help="no progress bars")


# The README's main command: every step on two languages in under 10 minutes on 2 CPU cores
# (a 16-point surgical grid: 3 transfer layers x 3 local layers, one alpha each, plus singles).
QUICK = {
    "limit": 12,
    "layers": list(range(0, 18, 2)),
    "alphas": [0.5, 1.0],
    "transfer_alphas": [0.25],
    "local_alphas": [0.5],
}
QUICK_HELP = (
    "--limit 12, --layers 0 2 4 ... 16, --alphas 0.5 1.0, --transfer-alphas 0.25, "
    "--local-alphas 0.5"
)


def _apply_quick(args: argparse.Namespace, argv: Sequence[str]) -> None:
    if not getattr(args, "quick", False):
        return
    given = {arg.split("=")[0] for arg in argv if arg.startswith("--")}
    for name, value in QUICK.items():
        if f"--{name.replace('_', '-')}" not in given:
            setattr(args, name, value)


def settings_from_args(args: argparse.Namespace) -> StudySettings:
    return StudySettings(
        model=args.model,
        langs=tuple(args.langs),
        data=args.data,
        layers=tuple(args.layers),
        alphas=tuple(args.alphas),
        alpha_mode=args.alpha_mode,
        transfer_layers=tuple(args.transfer_layers),
        transfer_alphas=tuple(args.transfer_alphas),
        local_layers=tuple(args.local_layers),
        local_alphas=tuple(args.local_alphas),
        position=args.position if args.position in ("last", "mean") else int(args.position),  # type: ignore[arg-type]
        limit=args.limit,
        seed=args.seed,
        n_bootstrap=args.n_bootstrap,
        device=args.device,
        batch_size=args.batch_size,
    )


def _run_steps(args: argparse.Namespace, steps: Sequence[str]) -> int:
    from lens_steer.pipeline import open_study, run_step

    study = open_study(
        args.out, settings_from_args(args), force=args.force, show_progress=not args.quiet
    )
    for step in steps:
        if run_step(study, step):
            print(f"[lens-steer] {step}: done in {study.timings[step]:.1f}s", file=sys.stderr)
        else:
            print(f"[lens-steer] {step}: already done, skipped", file=sys.stderr)
    if "report" in steps:
        print(f"Report: {study.run.root / 'report.md'}")
        print(f"Results: {study.run.root / 'results.json'}")
    return 0


def _demo(args: argparse.Namespace) -> int:
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
        "run",
        help="run every step in order (skips finished steps, resumes a killed sweep)",
        description="Run every study step into --out: " + " -> ".join(STEPS),
    )
    _add_common(run)
    run.set_defaults(func=lambda args: _run_steps(args, STEPS))
    for step in STEPS:
        step_parser = sub.add_parser(step, help=_STEP_HELP[step], description=_STEP_HELP[step])
        _add_common(step_parser)
        step_parser.set_defaults(func=lambda args, step=step: _run_steps(args, [step]))
    demo = sub.add_parser("demo", help="next-token view of implicit 'our country' questions")
    demo.add_argument(
        "--model", default=DEFAULT_MODEL, help="model name or path (default: %(default)s)"
    )
    demo.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    _apply_quick(args, argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError, NotADirectoryError, OSError) as err:
        print(f"lens-steer: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
