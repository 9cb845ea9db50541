"""The README says what works: its commands and its Python example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"^bash scripts/setup\.sh && .+$", README, flags=re.M)
    assert len(commands) == 2, "the README has exactly two set-up-and-go commands"
    test_command = next(c for c in commands if "test.sh" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_readme_python_example_runs(capsys):
    section = README.split("## Use it from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "torch.Size([16, 18, 640])" in printed  # 8 parallel groups x 2 languages
    assert "'surgical'" in printed and "우리나라의 화폐 단위는" in printed
