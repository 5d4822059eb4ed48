"""The AI Studio / Jupyter notebook, executed headless with tiny settings."""
import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from helpers import REPO  # noqa: E402

NOTEBOOK = REPO / "notebooks" / "ba_vs_alexnet.ipynb"


def _outputs_text(cell):
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        for key in ("text/markdown", "text/plain"):
            if key in out.get("data", {}):
                parts.append(out["data"][key])
    return "".join(parts)


def test_notebook_runs_and_shows_the_table(tmp_path, cifar_subset):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    params[0].source = "\n".join([
        'EXPERIMENT = "nbtest"',
        f"OUTPUT_DIR = {str(tmp_path / 'out')!r}",
        f"DATA_FILE = {str(cifar_subset)!r}",
        'MODELS = ["alexnet", "ba_alexnet_notebook"]',
        "SEEDS = [0]",
        "EPOCHS = 1",
        "MAX_STEPS_PER_EPOCH = 2",
        "BATCH_SIZE = 8",
        "THROUGHPUT = dict(batch_size=4, warmup=0, repeats=1, max_batches=1)",
    ])
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(REPO / "notebooks")}})
    client.execute()  # raises CellExecutionError if any cell errors
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors

    text = {i: _outputs_text(c) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    everything = "\n".join(text.values())
    assert "max |notebook BA-AlexNet - AlexNet| = 0.0" in everything
    corrected = float(everything.split("max |corrected BA-AlexNet - AlexNet| =")[1].split()[0])
    assert corrected > 0
    assert "7,524,042" in everything and "7,529,258" in everything
    tables = [o["data"]["text/markdown"] for c in nb.cells for o in c.get("outputs", [])
              if "text/markdown" in o.get("data", {})]
    assert len(tables) == 1
    rows = [line.split("|")[1].strip() for line in tables[0].splitlines() if line.startswith("| ")]
    assert "alexnet" in rows and "ba_alexnet_notebook" in rows
    summary = json.loads((tmp_path / "out" / "nbtest" / "comparison.json").read_text())
    assert {r["model"] for r in summary["rows"]} == {"alexnet", "ba_alexnet_notebook"}
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3
