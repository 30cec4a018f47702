"""Runs on DVC's queue: the params of a run, the shares of several machines, and the workaround for
a dying worker (DVC issues #10562, #8702), the last on a real queue."""

import os
import signal
import subprocess
import sys
import time

import pytest

from classifier.errors import UserError
from experiments import queue
from experiments.queue import (
    RUN_PIDS,
    WORKER_PIDS,
    any_alive,
    my_share,
    parse_shard,
    with_changes,
)
from tests.conftest import ENV, dvc, make_dvc_repo, repro_and_commit, tiny_params

# what the study and the ablation do with each batch of runs, for one run of three epochs
RUN_ONE = """
from classifier.errors import run_main
from experiments.queue import run_queue

run_main(lambda: print(run_queue({"one-run": {"train.epochs": 3}})["one-run"]["status"]))
"""


def test_with_changes_sets_dotted_keys_on_a_copy(params):
    changed = with_changes(params, {"train.epochs": 7, "model.fast_cnn.widths": [4, 8, 8]})
    assert changed["train"]["epochs"] == 7 and changed["model"]["fast_cnn"]["widths"] == [4, 8, 8]
    assert params["train"]["epochs"] == 2
    with pytest.raises(UserError, match="'train.epoch' is missing"):
        with_changes(params, {"train.epoch": 3})


def test_a_queued_run_counts_as_alive_while_its_process_is(tmp_path, monkeypatch):
    """A worker whose queue has emptied drops out of `dvc queue status` while it runs its last
    experiment: its run's process counts."""
    monkeypatch.chdir(tmp_path)
    pid_file = tmp_path / ".dvc/tmp/exps/run/271a99f0ab7d/271a99f0ab7d.pid"
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(str(os.getpid()))
    assert any_alive(RUN_PIDS) and not any_alive(WORKER_PIDS)
    ended = subprocess.Popen(["true"])
    ended.wait()
    pid_file.write_text(str(ended.pid))
    assert not any_alive(RUN_PIDS)


def test_a_task_missing_from_the_queue_status_is_still_waited_for(monkeypatch):
    """`dvc queue status` reads the running tasks, then the queued ones: a task that the worker
    takes in between shows in neither (seen as a run reported failed that then succeeded)."""
    reference = ["139ec23", "ablate-reference", "04:24", "AM", "Success"]
    statuses = iter(
        [
            ([reference], True),
            ([reference, ["2a4ab91", "ablate-random-flip", "04:24", "AM", "Success"]], True),
        ]
    )
    calls = []
    monkeypatch.setattr(queue, "POLL_SECONDS", 0)
    monkeypatch.setattr(queue, "any_alive", lambda pid_files: False)
    monkeypatch.setattr(queue, "queue_status", lambda: calls.append(1) or next(statuses))
    queue.wait_for(["ablate-reference", "ablate-random-flip"])
    assert len(calls) == 2


def test_shards_split_the_runs_so_that_each_runs_on_exactly_one_machine():
    assert parse_shard(None) is None and parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "2", "a/b", "1/0"):
        with pytest.raises(UserError, match=f"SHARD={bad}: give K/N"):
            parse_shard(bad)
    names = ["nesterov", "adam", "adamw", "rmsprop", "muon"]
    shares = [my_share(names, (k, 3)) for k in (1, 2, 3)]
    assert (
        shares == [["nesterov", "rmsprop"], ["adam", "muon"], ["adamw"]]
        and my_share(names, None) == names
    )
    assert my_share(["adam"], (2, 2)) == []  # more machines than optimizers: this one runs nothing


@pytest.mark.e2e
def test_a_queue_worker_that_dies_is_restarted_once_then_named(tmp_path):
    """kill -9 of DVC's queue worker while a run is running: the worker is started again, the run it
    left stuck as 'Running' is named with the worker's log (exit status 2), and after `dvc queue
    kill` the same runs go through."""
    params = tiny_params()
    params["train"]["batch_size"] = 8
    repo = repro_and_commit(make_dvc_repo(tmp_path / "repo", params))
    command = [sys.executable, "-c", RUN_ONE]
    queued = subprocess.Popen(
        command, cwd=repo, env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    worker_pid = repo / ".dvc/tmp/exps/celery/dvc-exp-worker-1.pid"
    # the run's own pid file, not `dvc queue status`, which takes seconds of a core each time
    while not (worker_pid.exists() and any(repo.glob(RUN_PIDS))):
        assert queued.poll() is None, queued.communicate()
        time.sleep(0.2)
    os.kill(int(worker_pid.read_text()), signal.SIGKILL)
    stdout, stderr = queued.communicate(timeout=600)

    assert queued.returncode == 2, stderr
    assert "the DVC queue's worker stopped with 1 experiments waiting; starting it again" in stdout
    assert stderr.strip().splitlines()[-1] == (
        "error: the DVC queue's worker stopped while experiment 'one-run' was running (worker "
        "log: .dvc/tmp/exps/celery/dvc-exp-worker-1.out); see `dvc queue status`, stop it with "
        "`dvc queue kill one-run`, then run this again: finished runs are kept"
    )
    dvc("queue", "kill", "one-run", cwd=repo)
    again = subprocess.run(command, cwd=repo, env=ENV, text=True, capture_output=True)
    assert again.returncode == 0 and again.stdout.strip().endswith("ok"), again.stderr
