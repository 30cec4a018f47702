"""The suite's own spread over the cores: pytest-xdist keeps the tests of one xdist_group on one
worker (the pipeline module's fixtures are built once), as `make test` runs it."""

import subprocess
import sys

GROUPED = """
import os

import pytest

@pytest.mark.xdist_group("one")
@pytest.mark.parametrize("case", range(6))
def test_case(case):
    with open(f"{case}.worker", "w") as out:
        out.write(os.environ["PYTEST_XDIST_WORKER"])
"""


def test_one_group_runs_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2"]
        + ["--dist", "loadgroup", "test_grouped.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    workers = {path.read_text() for path in tmp_path.glob("*.worker")}
    assert len(workers) == 1, (
        f"the grouped tests ran on workers {sorted(workers)}: this pytest-xdist ignores "
        "xdist_group with this pytest; install the versions that requirements.txt pins"
    )
