"""examples/compare_pooling.ipynb runs top to bottom and shows the table and figures inline."""

import os
from pathlib import Path

import pytest

pytest.importorskip("skimage")
pytest.importorskip("matplotlib")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "compare_pooling.ipynb"


def test_notebook_runs_and_shows_table_and_figures(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "the notebook is stored without outputs"
    )
    import cnnpool

    home = str(Path(cnnpool.__file__).resolve().parents[1])  # the kernel imports this cnnpool
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([home, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    html = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(html) == 1 and "<table>" in html[0] and "<td>max</td>" in html[0]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 3
    streams = "".join(o.text for o in outputs if o.output_type == "stream")
    assert "max − mean:" in streams
    # progress: a widget bar with ipywidgets, else clean text; never cursor moves or warnings
    stderr = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stderr")
    assert "\x1b[" not in stderr and "IProgress" not in stderr and "[A" not in stderr
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        assert "runs 6/6" in stderr
    else:
        widget = "application/vnd.jupyter.widget-view+json"
        assert any(widget in o.get("data", {}) for o in outputs)
    assert (tmp_path / "notebook_results" / "report.html").is_file()
