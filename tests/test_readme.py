"""The README says what works: its two commands, its Python example and its extension examples."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(section: str) -> list[str]:
    body = README.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"^bash scripts/setup\.sh && .+$", README, flags=re.M)
    assert len(commands) == 2, "the README has exactly two set-up-and-go commands"
    test_command = next(c for c in commands if "test.sh" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_readme_has_no_placeholder_left():
    assert "<<" not in README and ">>" not in README


@pytest.mark.slow
def test_readme_python_and_extension_examples_run(capsys):
    import importlib

    import lens_steer as ls

    metric_registry = importlib.import_module("lens_steer.evaluate.metrics")
    method_registry = importlib.import_module("lens_steer.geometry.methods")

    namespace: dict = {}
    exec(compile(_blocks("Use it from Python")[0], "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "ResidualSet(16 prompts [en,ko] x layers 0..17 x d_model 640" in printed
    assert "('1-en:ko:South_Korea'" in printed
    try:
        for code in _blocks("Extending lens_steer"):
            exec(compile(code, "README.md", "exec"), namespace)
        assert ls.language("ja").our_country == "我が国"
        assert "我が国 ja:Japan 4" in capsys.readouterr().out
        settings = ls.StudySettings(
            targets=("ko",), limit=8, fit_limit=8, layers=(6,), alphas=(1.0,), n_controls=0,
            transfer_layers=(6,), local_layers=(12,), transfer_alphas=(1.0,),
            local_alphas=(1.0,), metrics=("transfer", "gold_logprob", "first_distractor"),
            calibrations=("sum",), vector_methods=("en", "loc", "random"),
        )  # fmt: skip
        results = ls.run_study(
            settings, model=namespace["model"], show_progress=False, log=lambda m: None
        )
        points = results.sweeps["ko:South_Korea"]["eval"].points
        assert "random@6:1" in points.points
        assert "first_distractor" in points["random@6:1"].scores
    finally:
        method_registry._METHODS.pop("random", None)
        metric_registry._METRICS.pop("first_distractor", None)
