"""report.md: the findings table first, and no number without its interval or its n."""

from __future__ import annotations

import copy
import json
import re

import pytest

from lens_steer.report import render_report

pytestmark = pytest.mark.filterwarnings("ignore:target zz:UserWarning")  # small fixture splits

NUMBER = re.compile(r"(?<![\w.])[-+]?\d+\.\d+")
INTERVAL = re.compile(r"\[(-?\d+\.\d+|n/a), (-?\d+\.\d+|n/a)\]")
SCORE_CELL = re.compile(
    r"^(n/a|-?\d+\.\d{3} \[(-?\d+\.\d{3}|n/a), (-?\d+\.\d{3}|n/a)\] \(n=\d+\))$"
)

SETTINGS_LINES = ("Model `", "Equivalence margin", "Step timings")
"""Lines that state settings (margins, versions, seconds), not estimates."""


@pytest.fixture(scope="module")
def results(tiny_run) -> dict:
    return json.loads((tiny_run / "results.json").read_text())


def tables(text: str) -> list[list[str]]:
    """The markdown tables of a report, each as its lines (header first)."""
    found, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    return found + ([current] if current else [])


def cells(line: str) -> list[str]:
    """A table row's cells, as markdown splits them (an escaped ``\\|`` stays in its cell)."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def test_the_findings_table_comes_first(results, tiny_run):
    text = render_report(results, tiny_run)
    first = tables(text)[0]
    assert cells(first[0]) == [
        "finding",
        "prediction",
        "statistic",
        "estimate [interval]",
        "n",
        "verdict",
        "detectable",
    ]
    assert len(first) == 2 + len(results["findings"])
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[0].startswith("## Findings")
    for row, finding in zip(first[2:], results["findings"], strict=True):
        assert row.startswith(f"| {finding['id']}: ") and f"**{finding['verdict']}**" in row


def test_every_table_row_has_the_columns_of_its_header(results, tiny_run):
    """A literal ``|`` in a claim (``|cosine| < margin``) must not split a cell."""
    for table in tables(render_report(results, tiny_run)):
        width = len(cells(table[0]))
        assert all(len(cells(row)) == width for row in table), table[0]


def check_numbers(text: str) -> None:
    """Every line that prints an estimate prints its interval or its n beside it."""
    for table in tables(text):
        header = cells(table[0])
        for row in table[2:]:
            if not NUMBER.search(row):
                continue
            has_n = "n" in header and cells(row)[header.index("n")].isdigit()
            assert has_n or "(n=" in row, row
            if "x" in header:  # the plane: every score with its interval and n
                for cell in cells(row)[header.index("x") :]:
                    assert SCORE_CELL.match(cell), cell
    for line in text.splitlines():
        if line.startswith("|") or line.startswith(SETTINGS_LINES) or not NUMBER.search(line):
            continue
        assert INTERVAL.search(line) or "n=" in line, line


def test_no_number_without_its_interval_or_n(results, tiny_run):
    check_numbers(render_report(results, tiny_run))


def test_the_report_names_what_was_chosen_where_and_the_items(results, tiny_run):
    text = render_report(results, tiny_run)
    assert "chosen on dev" in text and "on eval" in text
    assert "Items (fit/dev/eval): facts 0/11/11; localization 10/8/8; parallel 10/3/3." in text
    assert "![plane_zz-Testland](figures/plane_zz-Testland.png)" in text
    assert f"Surgical best (chosen on dev): `{results['surgical']['zz:Testland']['best']}`" in text


def test_undefined_numbers_read_n_a_and_unmeasured_metrics_say_why(results, tiny_run):
    changed = copy.deepcopy(results)
    finding = changed["findings"][0]
    finding.update(estimate=None, ci_low=None, ci_high=None, detectable_effect=None)
    target = changed["data"]["targets"]["zz:Testland"]
    target["not_measured"] = {"gap_closure": "no BLEnD items in 'zz' for Testland"}
    changed["plane"]["zz:Testland"]["points"][0]["x"] = None
    text = render_report(changed, tiny_run)
    row = tables(text)[0][2]
    assert "n/a [n/a, n/a]" in row and row.endswith("| n/a |")
    assert "- not measured: `gap_closure`: no BLEnD items in 'zz' for Testland" in text
    check_numbers(text)


def test_a_report_needs_only_the_results_file(results, tmp_path):
    assert render_report(results, tmp_path) == render_report(json.loads(json.dumps(results)), "x")
