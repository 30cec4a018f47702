"""Training in several processes on one machine: DistributedDataParallel, started by PyTorch's
elastic launcher (what torchrun runs), one process per GPU with NCCL or several on the CPU with
gloo."""

import os
import sys
import uuid

import torch
import torch.distributed as dist


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    """Whether this process writes the outputs: the only one, or rank 0 of several."""
    return rank() == 0


def launched() -> bool:
    """Whether this process was started by the elastic launcher (it sets LOCAL_RANK)."""
    return "LOCAL_RANK" in os.environ


def launch(processes: int, module: str) -> int:
    """Run `python -m module` in `processes` processes through the elastic launcher, as `torchrun
    --standalone --nproc-per-node=processes -m module` would; their exit status (the first
    failure's, 130 for Ctrl-C)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
    )
    try:
        elastic_launch(config, sys.executable)("-m", module)
    except ChildFailedError as error:
        return next(iter(error.failures.values())).exitcode or 1
    except SignalException:
        return 130
    return 0


def start(device: torch.device) -> None:
    """Join the other processes: NCCL between GPUs (each process on its own, made current so that
    NCCL's communicator uses it), gloo on the CPU."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def finish() -> None:
    """Leave the other processes, once training is done: together, for gloo aborts a process that
    leaves while another still has the last epoch's checkpoint to write. A process other than rank 0
    has nothing left to write and exits here: in the interpreter's own teardown gloo's threads
    sometimes abort it ("terminate called without an active exception", in about one run of twelve
    of tests/test_distributed.py)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        if not is_main():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


def sum_across(values: list[float]) -> list[float]:
    """Each value summed over the processes."""
    if world_size() == 1:
        return values
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total)
    return total.tolist()


def all_finite(loss: torch.Tensor) -> bool:
    """Whether the loss is finite in every process, so that all of them stop together when one
    diverges."""
    return sum_across([float(not torch.isfinite(loss))])[0] == 0


def gather(value) -> list:
    """The value of every process, in rank order."""
    if world_size() == 1:
        return [value]
    values = [None] * world_size()
    dist.all_gather_object(values, value)
    return values
