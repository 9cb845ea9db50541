"""analyses/layer_probing.ipynb executes top to bottom (small item limit) and renders anywhere."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "analyses" / "layer_probing.ipynb"
MACHINE_PATH = re.compile(r"(/work/|/root/|/home/|/tmp/|/Users/|C:\\\\)")


def _outputs(notebook: nbformat.NotebookNode) -> list:
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]


def test_committed_notebook_has_static_figures_and_no_machine_path():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") for cell in code), "commit the executed notebook"
    outputs = _outputs(notebook)
    mimes = {key for out in outputs for key in out.get("data", {})}
    assert {"application/vnd.plotly.v1+json", "image/png"} <= mimes
    assert not [out for out in outputs if out.output_type == "error"]
    texts = "".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", "")) for out in outputs
    )
    assert not MACHINE_PATH.search(texts), MACHINE_PATH.search(texts)


@pytest.mark.slow
def test_notebook_executes_with_a_small_limit(monkeypatch, tmp_path):
    from nbclient import NotebookClient

    monkeypatch.setenv("LENS_STEER_NB_LIMIT", "8")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(
        notebook, timeout=1200, kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )  # fmt: skip
    client.execute()
    texts = "".join(str(out.get("text", "")) for out in _outputs(notebook))
    assert "layers, d_model 640" in texts
    assert "net " in texts and "Wilcoxon p=" in texts
    assert "surgical:" in texts
