"""Runs on DVC's queue: the params of a run, the shares of several machines, and the workaround for
a dying worker (DVC issues #10562, #8702)."""

import os
import subprocess

import pytest

from classifier.errors import UserError
from experiments.queue import (
    RUN_PIDS,
    WORKER_PIDS,
    any_alive,
    my_share,
    parse_shard,
    with_changes,
)


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
