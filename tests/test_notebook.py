"""The example notebook runs from top to bottom (executed with nbclient in a fresh kernel), so it cannot rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "certify_and_attack.ipynb"


@pytest.mark.slow
def test_certify_and_attack_notebook_runs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel inherits this process's environment (and so the art_stn it imports); it runs in a temporary folder.
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert "certified accuracy at radius 0:" in text and "PGD-L2 eps 1.0: robust accuracy" in text
    assert sum("image/png" in out.get("data", {}) for out in outputs) == 2  # the two figures
