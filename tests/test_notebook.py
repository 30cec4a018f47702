"""notebooks/tour.ipynb: committed without outputs, and run top to bottom on the pipeline's real
outputs (the tiny data's), so that it cannot rot when the code it calls changes."""

import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from dvc.repo import Repo
from nbclient import NotebookClient

from experiments.report import STUDY_JSON, comparison_table, results_table
from stages import plot
from tests.conftest import REPO, copy_code

NOTEBOOK = REPO / "notebooks/tour.ipynb"


def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{NOTEBOOK.name} has no code cells"
    left = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.execution_count is not None or cell.outputs)
    ]
    assert not left, (
        f"cells {left} of {NOTEBOOK.name} hold outputs or execution counts: clear them before "
        "committing (Jupyter: Edit > Clear Outputs of All Cells)"
    )


@pytest.fixture(scope="module")
def pipeline_outputs(trained_once, tmp_path_factory) -> Path:
    """A DVC project holding every stage's outputs for the tiny data (the session's trained
    workspace, then the plot stage), the code, and the repository's committed reports/."""
    root = tmp_path_factory.mktemp("tour")
    shutil.copytree(trained_once, root, dirs_exist_ok=True)
    copy_code(root)
    shutil.copytree(REPO / "reports", root / "reports")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        plot.main()
    finally:
        os.chdir(cwd)
    # what dvc.api reads in the notebook: dvc.yaml's params and metrics, no Git needed
    Repo.init(root, no_scm=True).close()
    return root


def outputs(cells: list, kind: str) -> str:
    """Every output of one kind that the cells produced, joined: stdout's text, or one MIME type's
    data."""
    found = []
    for cell in cells:
        for output in cell.get("outputs", []):
            if kind == "stdout" and output.get("name") == "stdout":
                found.append(output.text)
            elif kind in output.get("data", {}):
                found.append(output.data[kind])
    return "\n".join(found)


def test_the_notebook_runs_top_to_bottom_on_the_pipeline_outputs(pipeline_outputs):
    """Run from notebooks/, as Jupyter opens it: its first cell finds the repository root."""
    (pipeline_outputs / "notebooks").mkdir()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook,
        kernel_name="python3",  # the kernel of the interpreter running the tests
        timeout=300,
        resources={"metadata": {"path": str(pipeline_outputs / "notebooks")}},
    ).execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]

    drawing = [cell for cell in code if "plt.show()" in cell.source]
    blank = [cell.source for cell in drawing if not outputs([cell], "image/png")]
    assert len(drawing) >= 5 and not blank, f"cells that drew no figure: {blank}"

    study = json.loads((pipeline_outputs / STUDY_JSON).read_text())
    tables = outputs(code, "text/markdown")
    assert results_table(study["rows"], study["method"]["target_val_acc"]) in tables
    assert comparison_table(study["comparisons"]) in tables

    printed = outputs(code, "stdout")
    assert "train images (" in printed
    scaled = re.search(r"scaled: in \[([\d.]+), ([\d.]+)\]", printed)
    assert scaled and 0 <= float(scaled[1]) < float(scaled[2]) <= 1, "pixels not in [0, 1]"
    test_metrics = json.loads((pipeline_outputs / "metrics/evaluate.json").read_text())
    from_dvc = outputs([cell for cell in code if "dvc.api.metrics_show()" in cell.source], "stdout")
    assert "test_acc" in from_dvc and str(test_metrics["test_acc"]) in from_dvc
