"""The suite's own spread over the cores: pytest-xdist keeps the tests of one xdist_group on one
worker (the pipeline module's fixtures are built once), as `make test` runs it; make test-fast's
workers compute on a core each."""

import os
import subprocess
import sys

from tests.conftest import pin_to_one_core

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


def test_workers_no_more_than_cores_compute_on_a_core_each(monkeypatch):
    pinned = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 3})
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cores: pinned.append(cores))
    for worker, count, cores in (("gw1", "2", {3}), ("gw0", "2", {2}), ("gw2", "3", None)):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", count)
        pinned.clear()
        pin_to_one_core()
        assert pinned == ([cores] if cores else []), (worker, count)
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT")
    pin_to_one_core()  # no xdist: the cores stay as they are
    assert pinned == []
