"""analyses/layer_probing.ipynb executes top to bottom (small item limit) and shows its figures."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "analyses" / "layer_probing.ipynb"


def test_committed_notebook_has_outputs_from_a_real_run():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") for cell in code), "commit the executed notebook"
    mimes = {key for cell in code for out in cell.outputs for key in out.get("data", {})}
    assert "application/vnd.plotly.v1+json" in mimes  # the interactive PCA / cosine figures
    assert not [out for cell in code for out in cell.outputs if out.output_type == "error"]


@pytest.mark.slow
def test_notebook_executes_with_a_small_limit(monkeypatch, tmp_path):
    from nbclient import NotebookClient

    monkeypatch.setenv("LENS_STEER_NB_LIMIT", "3")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    texts = "".join(
        out.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    assert "layers, d_model 640" in texts
    assert "null band ±" in texts
    assert "surgical:" in texts
