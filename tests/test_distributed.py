"""train.processes: 2 on the CPU: DistributedDataParallel over gloo, started by PyTorch's elastic
launcher."""

import json
import os
import signal
import subprocess
import time

import pytest
import torch

from classifier.files import read_history
from stages import prepare
from stages import train as stage_train
from tests.conftest import start_stage, write_params

OUTPUTS = [
    "models/model.pt",
    "plots/train/history.csv",
    "metrics/train/metrics.json",
    "metrics/timing.json",
]


# each test trains in two processes: in make test, not in make test-fast
pytestmark = pytest.mark.processes


def train(workdir, params, seed=0, in_process=False, **train_params) -> list[dict]:
    """The train stage as dvc repro runs it (or in this process: a process imports torch again,
    seconds each), with this seed and these train params; the history it wrote."""
    params["seed"] = seed
    params["train"].update(train_params)
    write_params(workdir, params)
    if in_process:
        stage_train.main()
    else:
        process = start_stage(workdir, "train", stderr=subprocess.PIPE, text=True)
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
    return read_history(workdir / "plots/train/history.csv")


def test_two_processes_write_what_one_writes_and_learn_as_well(workdir, params):
    prepare.main()
    one = [
        train(workdir, params, seed, in_process=True, epochs=3)[-1]["val_acc"] for seed in (0, 1, 2)
    ]
    for path in OUTPUTS:
        (workdir / path).unlink()
    two = train(workdir, params, epochs=3, seed=0, processes=2)
    assert all((workdir / path).exists() for path in OUTPUTS) and [row["epoch"] for row in two] == [
        1,
        2,
        3,
    ]
    assert json.loads((workdir / "metrics/timing.json").read_text())["images_per_second"] > 0
    quantum = 1 / 24  # one of the 24 validation images
    spread = max(max(one) - min(one), quantum)
    assert min(one) - spread <= two[-1]["val_acc"] <= max(one) + spread, (one, two[-1]["val_acc"])


def test_two_processes_survive_kill_and_resume(workdir, params):
    prepare.main()
    train(workdir, params, epochs=20, processes=2)
    uninterrupted = [(workdir / path).read_bytes() for path in OUTPUTS[:3]]
    for path in OUTPUTS:
        (workdir / path).unlink()
    process = start_stage(workdir, "train", start_new_session=True)
    checkpoint = workdir / "checkpoints/train.pt"
    while not (checkpoint.exists() and torch.load(checkpoint, weights_only=True)["epoch"] >= 2):
        assert process.poll() is None, "training ended before it could be killed"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and both processes: nothing cleans up
    process.wait()
    train(workdir, params, resume=True)
    assert [(workdir / path).read_bytes() for path in OUTPUTS[:3]] == uninterrupted
