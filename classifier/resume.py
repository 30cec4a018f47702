"""Resuming training: the whole state after every epoch in checkpoints/train.pt, and the way back
into a run."""

import hashlib
import json
import os
from pathlib import Path

import torch

from classifier import distributed
from classifier.errors import UserError
from classifier.files import RESUME_FILE, save_torch
from classifier.training import Run

CHECKPOINT_FORMAT = 3  # 2: a random generator state per process (train.processes); 3: compute.*


def fingerprint(params: dict, splits: list[tuple]) -> str:
    """What a checkpoint must match to be resumed: its format, every param train reads (but resume)
    and the loaded data."""
    train_params = {key: value for key, value in params["train"].items() if key != "resume"}
    chosen = {key: params[key] for key in ("seed", "model", "optimizer", "optimizers", "compute")}
    digest = hashlib.sha256(
        json.dumps(
            {**chosen, "train": train_params, "format": CHECKPOINT_FORMAT}, sort_keys=True
        ).encode()
    )
    for images, labels, _ in splits:
        digest.update(images.tobytes())
        digest.update(labels.tobytes())
    return digest.hexdigest()


def rng_state(device: torch.device) -> dict:
    """This process's dropout generators: the CPU's, and its GPU's when it trains on one."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def save_state(
    run: Run, epoch: int, history: list[dict], train_flops: float, key: str, rng_states: list[dict]
) -> None:
    """Everything the next epoch depends on, written whole; rng_states holds every process's
    rng_state."""
    state = {
        "epoch": epoch,
        "fingerprint": key,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "lookahead": run.lookahead.average,
        "generator": run.generator.get_state(),
        "rng": rng_states,
        "history": history,
        "train_flops": train_flops,
    }
    save_torch(RESUME_FILE, state)


def load_state(key: str) -> dict | None:
    """The checkpoint to resume from, or None (with the reason) when there is none that matches."""
    if not RESUME_FILE.exists() and in_temporary_workspace():
        raise UserError(
            f"train.resume is true, but this queued experiment's workspace has no {RESUME_FILE}: "
            f"a queued run gets only what Git tracks; queue it with `-C {RESUME_FILE.parent}` "
            "(dvc exp run --queue --copy-paths), or resume in the workspace: `dvc exp run -S "
            "train.resume=true`"
        )
    if not RESUME_FILE.exists():
        print(f"train.resume: no checkpoint at {RESUME_FILE}; starting from epoch 1", flush=True)
        return None
    try:
        state = torch.load(RESUME_FILE, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a truncated or foreign file: say so and train from the start
        print(f"warning: {RESUME_FILE} is unreadable; starting from epoch 1", flush=True)
        return None
    if state.get("fingerprint") != key:
        print(
            f"warning: {RESUME_FILE} is from other params or data (or an older version of this "
            "code); starting from epoch 1",
            flush=True,
        )
        return None
    print(f"train.resume: continuing after epoch {state['epoch']} from {RESUME_FILE}", flush=True)
    return state


def in_temporary_workspace() -> bool:
    """Whether DVC runs this stage in a queued (or --temp) experiment's own workspace: DVC_ROOT then
    names the repository the experiment was queued from, not the folder the stage runs in."""
    root = os.environ.get("DVC_ROOT")
    return root is not None and Path(root).resolve() != Path.cwd().resolve()


def restore(run: Run, state: dict) -> None:
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.schedule.load_state_dict(state["schedule"])
    for average, saved in zip(run.lookahead.average, state["lookahead"]):
        average.copy_(saved)
    run.generator.set_state(state["generator"])
    mine = state["rng"][distributed.rank()]
    torch.set_rng_state(mine["cpu"])
    if "cuda" in mine:
        torch.cuda.set_rng_state(mine["cuda"], run.device)
