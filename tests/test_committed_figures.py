"""The committed figures/ are the full study of analyses/study.py, and the README reports them.

A rerun of ``analyses/study.py`` must give these files; here we check the cheap half of that
promise: the recorded settings are the script's, every figure the report links exists, and each
verdict the README's results table states is the verdict in ``figures/results.json``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from lens_steer import StudySettings

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"


def _full_settings() -> StudySettings:
    spec = importlib.util.spec_from_file_location("study_script", ROOT / "analyses" / "study.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FULL


def test_committed_results_were_made_with_the_study_scripts_settings():
    recorded = StudySettings.from_json(
        json.loads((FIGURES / "config.json").read_text())["settings"]
    )
    assert recorded.identity() == _full_settings().identity()


def test_every_figure_the_committed_report_links_exists_in_every_format():
    report = (FIGURES / "report.md").read_text(encoding="utf-8")
    names = re.findall(r"!\[[^\]]*\]\(([^)]+)\.png\)", report)
    assert len(names) >= 7, names
    for name in names:
        for suffix in ("html", "png", "svg", "pdf"):
            assert (FIGURES / f"{name}.{suffix}").stat().st_size > 1000, (name, suffix)


def test_the_readme_states_the_committed_verdicts():
    results = json.loads((FIGURES / "results.json").read_text())
    verdicts = {finding["id"]: finding["verdict"] for finding in results["findings"]}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = readme[readme.index("## Results on Gemma 3 270M") :].split("\n\n")
    table = next(block for block in blocks if block.startswith("| finding"))
    rows = {line.split("|")[1].strip().split(":")[0]: line for line in table.splitlines()[2:]}
    for finding_id, verdict in verdicts.items():
        number = finding_id.split(":")[0]
        cells = [cell for cell in rows[number].split("|")[2:-1] if cell.strip()]
        column = 0 if "ko:" in finding_id else 1 if "id:" in finding_id else 0
        assert f"**{verdict}**" in cells[column], (finding_id, verdict, cells)
