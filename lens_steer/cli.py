"""The ``lens-steer`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lens_steer.models import DEFAULT_MODEL


def _demo(args: argparse.Namespace) -> int:
    from lens_steer.demo import run_demo
    from lens_steer.models import load_model

    model = load_model(args.model, device=args.device)
    print(
        f"model: {model.cfg.model_name}  layers: {model.cfg.n_layers}  d_model: {model.cfg.d_model}"
    )
    print(
        f"{'lang':4} {'prompt':36} {'local':>12} {'US':>12}  logp(local)-logp(US)  top-5 next tokens"
    )
    for row in run_demo(model):
        diff = float(row["logp_local"]) - float(row["logp_us"])  # type: ignore[arg-type]
        print(
            f"{row['lang']:4} {row['prompt']:36} {row['local']:>12} {row['us']:>12}  {diff:+20.2f}  {row['top5']}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lens-steer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="Implicit 'our country' questions in several languages")
    demo.add_argument(
        "--model", default=DEFAULT_MODEL, help="model name or path (default: %(default)s)"
    )
    demo.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
