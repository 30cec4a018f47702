"""Stage train: build the model and optimizer from params, train, validate after every epoch.

Outputs: models/model.pt, metrics/train/metrics.json (written by DVCLive after every epoch, so `dvc exp show`
shows a running experiment's progress), plots/train/history.csv (also rewritten every epoch, for live plots),
metrics/timing.json.
"""

import time

import torch
from dvclive import Live

from stages.data import load_split
from stages.models import build_model, init_whitening, save_checkpoint
from stages.outputs import HISTORY_CSV, LIVE_DIR, MODEL_FILE, TIMING_METRICS, write_csv, write_json
from stages.params import check_train, load_params, run_stage
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


def train(params: dict, live: Live) -> tuple[torch.nn.Module, list[dict], dict]:
    """Train as params say, logging every epoch; returns the model, the per-epoch history and the timing."""
    train_params = params["train"]
    device = setup_torch(params["seed"], train_params["device"])
    precision = resolve_precision(train_params["precision"], device)
    train_images, train_labels, class_names = load_split("train")
    val_images, val_labels, _ = load_split("val")
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
    history, train_flops, started = [], 0.0, time.perf_counter()
    for epoch in range(epochs):
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
        print(f"epoch {epoch + 1:3d}/{epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
              f"val loss {val_loss:.4f} acc {val_acc:.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)
    seconds = time.perf_counter() - started
    save_checkpoint(MODEL_FILE, model.cpu(), params["model"], class_names, mean, std, train_images.shape[1])
    return model, history, timing(seconds, total_steps * batch_size, precision, device)


def main() -> None:
    params = load_params()
    check_train(params)
    # dvcyaml=None: dvc.yaml is ours and already declares these files; no report, no experiment of its own
    with Live(str(LIVE_DIR), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        _, _, run_timing = train(params, live)
    write_json(TIMING_METRICS, run_timing)


if __name__ == "__main__":
    run_stage(main)
