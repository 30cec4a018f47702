"""Where and in which precision the model runs: seeds, threads, which CUDA device or the CPU, bf16
or fp32."""

import atexit
import contextlib
import ctypes
import fcntl
import os
import platform
import random
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from classifier.errors import UserError


def setup_torch(seed: int, device_name: str) -> torch.device:
    """Seed every generator, use every core we are allowed (one thread per core, shared among the
    processes of a distributed run), pick the device: in a distributed run on GPUs, the one of this
    process's local rank."""
    keep_freed_memory()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // local_processes))
    if device_name == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "params.yaml: 'compute.device' is 'cuda' but no CUDA device is visible; use auto or cpu"
        )
    if device_name != "cpu" and torch.cuda.is_available() and local_processes > 1:
        return torch.device(f"cuda:{os.environ['LOCAL_RANK']}")
    if device_name == "auto" and torch.cuda.device_count() > 1:
        return torch.device(
            claim_device([f"cuda:{k}" for k in range(torch.cuda.device_count())], claims_folder())
        )
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device_name)


MALLOPT_TRIM_THRESHOLD, MALLOPT_MMAP_MAX = -1, -4  # glibc's malloc.h: M_TRIM_THRESHOLD, M_MMAP_MAX


def keep_freed_memory() -> None:
    """Keep freed memory in the process for the next training step (Linux, glibc): never give a
    block its own mapping, never hand the heap's free top back to the kernel.

    By default glibc, in some runs, returns a step's activations (tens of MiB each) to the kernel
    and faults their pages in again on the next step: 95,000 page faults a step and a fifth of the
    loop's speed lost on a 2-core AMD EPYC (287 against 355 GFLOP/s at full size). Memory then stays
    at the training's peak.
    """
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(MALLOPT_MMAP_MAX, 0)
        libc.mallopt(MALLOPT_TRIM_THRESHOLD, 2**31 - 1)


# ------------------------------------------------------------ several GPUs, several experiments


def claims_folder() -> Path:
    """Where running stages say which device they use: in the repository the experiments were queued
    from (DVC_ROOT), so that the queue's experiments, each in its own temporary workspace, see each
    other's claims."""
    return Path(os.environ.get("DVC_ROOT", ".")) / "checkpoints" / "devices"


def least_busy(devices: list[str], running: Counter) -> str:
    """The device with the fewest experiments running on it; of several, the first in the list."""
    return min(devices, key=lambda device: running[device])


def claim_device(devices: list[str], folder: Path) -> str:
    """Claim the least busy device for the rest of this process: a file <device>@<pid> in folder,
    chosen and written under a lock, so that experiments the queue starts at once (`dvc queue start
    -j N`) spread over the devices. DVC assigns no devices itself. The claim goes when the process
    ends; a claim whose process is gone (kill -9) does not count."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        running = Counter(
            claim.name.split("@")[0]
            for claim in folder.glob("*@*")
            if alive(claim.name.split("@")[1])
        )
        device = least_busy(devices, running)
        claim = folder / f"{device}@{os.getpid()}"
        claim.touch()
    atexit.register(claim.unlink, missing_ok=True)
    return device


def alive(pid: str) -> bool:
    """Whether the process with this id (text, as a pid file holds it) runs."""
    try:
        os.kill(int(pid), 0)
    except PermissionError:  # someone else's process
        return True
    except (OSError, ValueError):
        return False
    return True


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: bf16 where the hardware computes in bf16 (CUDA, CPUs with AVX-512 BF16 or AMX), else
    fp32.

    Without those instructions bf16 is emulated: the Intel machine of the committed benchmark ran
    bf16 matmuls at a fifth of its fp32 rate.
    """
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if native else "fp32"


def autocast(device: torch.device, precision: str):
    """bf16 mixed precision (autocast) where precision says so; nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
