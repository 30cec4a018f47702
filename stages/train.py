"""Stage train: build the model and optimizer from params, train, validate after every epoch.

Outputs: models/model.pt, metrics/train/metrics.json (written by DVCLive after every epoch, so `dvc exp show`
shows a running experiment's progress), plots/train/history.csv (also rewritten every epoch, for live plots),
metrics/timing.json. After every epoch the whole training state goes to checkpoints/train.pt (not an output);
with `train.resume: true` an interrupted run continues from there and ends with the same weights, bit for bit.
"""

import hashlib
import json
import os
import time
from pathlib import Path

import torch
from dvclive import Live

from stages.data import load_split
from stages.models import build_model, init_whitening, save_checkpoint
from stages.outputs import (HISTORY_CSV, LIVE_DIR, MODEL_FILE, RESUME_FILE, TIMING_METRICS,
                            TRAIN_METRICS, save_torch, write_csv, write_json)
from stages.params import StageError, check_train, load_params, run_stage
from stages.training import (Lookahead, build_optimizer, build_schedule, channel_stats, loss_and_accuracy, predict,
                             resolve_precision, setup_torch, stats_tensors, to_input, train_one_epoch,
                             training_batches, training_flops_per_image)


def log_epoch(live: Live, history: list[dict], train_flops: float) -> None:
    """The headline training metrics so far; DVCLive rewrites metrics/train/metrics.json with them."""
    last = history[-1]
    live.step = last["epoch"]
    live.log_metric("best_val_acc", max(row["val_acc"] for row in history), plot=False)
    live.log_metric("train_pflop", float(f"{train_flops / 1e15:.4g}"), plot=False)
    live.log_metric("val_acc", last["val_acc"], plot=False)
    live.log_metric("train_val_gap", round(last["train_acc"] - last["val_acc"], 5), plot=False)
    live.next_step()


def timing(seconds: float, images_seen: int, precision: str, device: torch.device) -> dict:
    return {"train_seconds": round(seconds, 1), "images_per_second": round(images_seen / seconds, 1),
            "precision": precision, "device": device.type}


def freeze_whiten_bias(model: torch.nn.Module, epoch: int, train_params: dict) -> None:
    """The whitening conv's bias trains for the first whiten_bias_epochs only; frozen, it saves backward work."""
    if hasattr(model, "whiten"):
        model.whiten.bias.requires_grad_(epoch < train_params["whiten_bias_epochs"])


def check_fits(params: dict, train_images, class_names: list[str]) -> None:
    """Params that are valid alone but not with this data: a batch larger than the split, a model too deep."""
    batch_size, arch = params["train"]["batch_size"], params["model"]["arch"]
    if batch_size > len(train_images):
        raise StageError(f"params.yaml: 'train.batch_size' is {batch_size}, more than the {len(train_images)} "
                         f"training images; use at most {len(train_images)} (or more data)")
    side = train_images.shape[1]
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # a trial model must not move the seeded generators
        model = build_model(params["model"], len(class_names), side).eval()
        try:
            model(torch.zeros(1, 3, side, side))
        except RuntimeError:
            pools = sum(isinstance(module, torch.nn.MaxPool2d) for module in model.modules())
            message = (f"params.yaml: model.arch '{arch}' halves the image {pools} times, too often for {side}x{side} "
                       "images; use larger images or model.arch seed_cnn with fewer widths")
            raise StageError(message) from None


def fingerprint(params: dict, splits: list[tuple]) -> str:
    """What a checkpoint must match to be resumed: every param train reads (but resume) and the loaded data."""
    train_params = {key: value for key, value in params["train"].items() if key != "resume"}
    chosen = {key: params[key] for key in ("seed", "model", "optimizer", "optimizers")}
    digest = hashlib.sha256(json.dumps({**chosen, "train": train_params}, sort_keys=True).encode())
    for images, labels, _ in splits:
        digest.update(images.tobytes())
        digest.update(labels.tobytes())
    return digest.hexdigest()


def save_training_state(epoch: int, model, optimizer, schedule, lookahead, generator, history: list[dict],
                        train_flops: float, key: str) -> None:
    """Everything the next epoch depends on, written whole."""
    state = {"epoch": epoch, "fingerprint": key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "schedule": schedule.state_dict(), "lookahead": lookahead.average, "generator": generator.get_state(),
             "torch_rng": torch.get_rng_state(), "history": history, "train_flops": train_flops}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    save_torch(RESUME_FILE, state)


def load_training_state(key: str) -> dict | None:
    """The checkpoint to resume from, or None (with the reason) when there is none that matches."""
    if not RESUME_FILE.exists() and in_temporary_workspace():
        raise StageError(f"train.resume is true, but this queued experiment's workspace has no {RESUME_FILE}: a "
                         f"queued run gets only what Git tracks; queue it with `-C {RESUME_FILE.parent}` (dvc exp "
                         "run --queue --copy-paths), or resume in the workspace: `dvc exp run -S train.resume=true`")
    if not RESUME_FILE.exists():
        print(f"train.resume: no checkpoint at {RESUME_FILE}; starting from epoch 1", flush=True)
        return None
    try:
        state = torch.load(RESUME_FILE, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a truncated or foreign file: say so and train from the start
        print(f"warning: {RESUME_FILE} is unreadable; starting from epoch 1", flush=True)
        return None
    if state.get("fingerprint") != key:
        print(f"warning: {RESUME_FILE} is from other params or data; starting from epoch 1", flush=True)
        return None
    print(f"train.resume: continuing after epoch {state['epoch']} from {RESUME_FILE}", flush=True)
    return state


def in_temporary_workspace() -> bool:
    """Whether DVC runs this stage in a queued (or --temp) experiment's own workspace: DVC_ROOT then names the
    repository the experiment was queued from, not the folder the stage runs in."""
    root = os.environ.get("DVC_ROOT")
    return root is not None and Path(root).resolve() != Path.cwd().resolve()


def restore(state: dict, model, optimizer, schedule, lookahead, generator) -> None:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    for average, saved in zip(lookahead.average, state["lookahead"]):
        average.copy_(saved)
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def train(params: dict, train_split: tuple, val_split: tuple, live: Live) -> tuple[torch.nn.Module, list[dict], dict]:
    """Train as params say, logging every epoch; returns the model, the per-epoch history and the timing."""
    train_params = params["train"]
    device = setup_torch(params["seed"], train_params["device"])
    precision = resolve_precision(train_params["precision"], device)
    (train_images, train_labels, class_names), (val_images, val_labels, _) = train_split, val_split
    mean, std = channel_stats(train_images)
    mean_t, std_t = stats_tensors(mean, std, device)
    # on a GPU the uint8 images live on the device: batches are then cut and augmented there
    train_images, train_labels = torch.from_numpy(train_images).to(device), torch.from_numpy(train_labels).to(device)
    val_images, val_labels = torch.from_numpy(val_images).to(device), torch.from_numpy(val_labels)

    model = build_model(params["model"], len(class_names), train_images.shape[1])
    model = model.to(device, memory_format=torch.channels_last)
    if hasattr(model, "whiten"):
        init_whitening(model.whiten, to_input(train_images[:5000], mean_t, std_t, device))
    optimizer = build_optimizer(params["optimizer"], params["optimizers"][params["optimizer"]], model)
    epochs, batch_size = train_params["epochs"], train_params["batch_size"]
    steps_per_epoch = max(1, len(train_images) // batch_size)
    total_steps = epochs * steps_per_epoch
    schedule = build_schedule(optimizer, train_params, total_steps)
    lookahead = Lookahead(model, train_params["lookahead_every"], train_params["lookahead_decay"], total_steps)
    generator = torch.Generator().manual_seed(params["seed"])
    flip_bits = torch.rand(len(train_images), generator=generator) < 0.5
    sample = to_input(train_images[:2], mean_t, std_t, device)

    print(f"training {params['model']['arch']} with {params['optimizer']} on {device} in {precision} "
          f"({len(train_images)} train / {len(val_images)} val images, {epochs} epochs)", flush=True)
    key = fingerprint(params, [train_split, val_split])
    state = load_training_state(key) if train_params["resume"] else None
    history, train_flops, first_epoch = [], 0.0, 0
    if state:
        restore(state, model, optimizer, schedule, lookahead, generator)
        history, train_flops, first_epoch = state["history"], state["train_flops"], state["epoch"]
        write_csv(HISTORY_CSV, history)
        log_epoch(live, history, train_flops)
    started = time.perf_counter()
    for epoch in range(first_epoch, epochs):
        freeze_whiten_bias(model, epoch, train_params)
        train_flops += training_flops_per_image(model, sample) * steps_per_epoch * batch_size
        lr = optimizer.param_groups[0]["lr"]
        batches = training_batches(train_images, train_labels, mean_t, std_t, train_params, device, generator,
                                   epoch, flip_bits)
        train_loss, train_acc = train_one_epoch(model, optimizer, schedule, batches, steps_per_epoch, precision,
                                                train_params["label_smoothing"], device, lookahead,
                                                desc=f"epoch {epoch + 1}/{epochs}")
        if epoch == epochs - 1:
            lookahead.finish()
        val_logits = predict(model, val_images, mean_t, std_t, device, batch_size, precision)
        val_loss, val_acc = loss_and_accuracy(val_logits, val_labels)
        history.append({"epoch": epoch + 1, "train_loss": round(train_loss, 5), "train_acc": round(train_acc, 5),
                        "val_loss": round(val_loss, 5), "val_acc": round(val_acc, 5), "lr": round(lr, 6)})
        write_csv(HISTORY_CSV, history)
        log_epoch(live, history, train_flops)
        save_training_state(epoch + 1, model, optimizer, schedule, lookahead, generator, history, train_flops, key)
        print(f"epoch {epoch + 1:3d}/{epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
              f"val loss {val_loss:.4f} acc {val_acc:.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)
    seconds = time.perf_counter() - started
    save_checkpoint(MODEL_FILE, model.cpu(), params["model"], class_names, mean, std, train_images.shape[1])
    RESUME_FILE.unlink(missing_ok=True)  # the model is saved; nothing is left to resume
    images_trained = (epochs - first_epoch) * steps_per_epoch * batch_size
    return model, history, timing(seconds, images_trained, precision, device)


def main() -> None:
    params = load_params()
    check_train(params)
    train_split, val_split = load_split("train"), load_split("val")
    check_fits(params, train_split[0], train_split[2])
    # dvcyaml=None: dvc.yaml is ours and already declares these files; no report, no experiment of its own
    live = Live(str(LIVE_DIR), dvcyaml=None, save_dvc_exp=False, report=None)
    try:
        _, _, run_timing = train(params, train_split, val_split, live)
    except BaseException:  # a failed or interrupted run leaves no partial history behind (kill -9 aside)
        for path in (TRAIN_METRICS, HISTORY_CSV):
            path.unlink(missing_ok=True)
        raise
    live.end()
    write_json(TIMING_METRICS, run_timing)


if __name__ == "__main__":
    run_stage(main)
