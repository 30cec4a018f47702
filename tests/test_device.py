"""Which device a stage runs on: the least busy GPU when there are several, checked with a fake list
of devices."""

import os
import platform
import subprocess
import sys
from collections import Counter

import pytest
import torch

from classifier.device import claim_device, least_busy, setup_torch
from tests.conftest import REPO

DEVICES = ["cuda:0", "cuda:1", "cuda:2"]
CLAIM = (
    "import sys, time; from classifier.device import claim_device; from pathlib import Path; "
    "print(claim_device(sys.argv[1:], Path('{folder}')), flush=True); time.sleep(60)"
)


def test_the_device_with_the_fewest_running_experiments_is_chosen():
    assert least_busy(DEVICES, Counter()) == "cuda:0"
    assert least_busy(DEVICES, Counter({"cuda:0": 2, "cuda:1": 1})) == "cuda:2"
    assert least_busy(DEVICES, Counter({"cuda:0": 1, "cuda:1": 1, "cuda:2": 1})) == "cuda:0"


def test_claims_of_processes_that_are_gone_do_not_count(tmp_path):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (tmp_path / f"cuda:0@{os.getppid()}").touch()  # a process that runs (this one's parent)
    (
        tmp_path / f"cuda:1@{gone.stdout.strip()}"
    ).touch()  # a process killed -9 without removing its claim
    assert claim_device(DEVICES, tmp_path) == "cuda:1"
    assert (tmp_path / f"cuda:1@{os.getpid()}").exists()


def test_experiments_that_start_together_spread_over_the_devices(tmp_path):
    """Three stages claiming at once, as `dvc queue start -j 3` starts them: three different
    devices."""
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM.format(folder=tmp_path), *DEVICES],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        assert sorted(process.stdout.readline().strip() for process in starts) == DEVICES
    finally:
        for process in starts:
            process.kill()
            process.wait()


def test_auto_with_several_gpus_claims_one(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    (tmp_path / "checkpoints/devices").mkdir(parents=True)
    (tmp_path / f"checkpoints/devices/cuda:0@{os.getppid()}").touch()
    assert setup_torch(0, "auto") == torch.device("cuda:1")


REALLOCATE = """import ctypes, resource, sys
from classifier.device import setup_torch
if sys.argv[1] == "setup":
    setup_torch(0, "cpu")
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
for _ in range(3):  # a training step's 64 MiB of activations, written, then freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(2**26)
    ctypes.memset(block, 1, 2**26)
    libc.free(block)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)"""


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the allocator's settings are glibc's"
)
def test_a_freed_block_of_a_steps_size_is_reused_without_faulting_its_pages_in_again():
    def page_faults(setup: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", REALLOCATE, setup],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        return int(run.stdout)

    pages = 2**26 // os.sysconf("SC_PAGE_SIZE")
    # glibc's default: the block goes back to the kernel every time
    assert page_faults("none") > pages / 2
    assert page_faults("setup") < pages / 20
