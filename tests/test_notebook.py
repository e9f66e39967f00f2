"""The example notebook runs top to bottom, with tiny settings, and is stored without outputs."""

from __future__ import annotations

import json

import nbformat
from conftest import REPO, SHARED_DATA
from nbclient import NotebookClient

NOTEBOOK = REPO / "examples" / "quickstart.ipynb"


def test_notebook_is_stored_without_outputs():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert code and all(not cell["outputs"] and cell["execution_count"] is None for cell in code)


def test_notebook_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("BERT4REC_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("BERT4REC_DATA_HOME", str(SHARED_DATA))  # ml-latest-small from disk, not the network
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                   ).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the training curves, drawn inline
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "best validation NDCG@10" in text and "NDCG@10" in text
    assert (tmp_path / "models" / "notebook" / "model.safetensors").is_file()
