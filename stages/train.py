"""Stage train: build the model and optimizer from params, train, validate after every epoch.

Outputs: models/model.pt, metrics/train.json, plots/train/history.csv.
"""

import time

import torch

from stages.data import load_split
from stages.models import build_model, init_whitening, save_checkpoint
from stages.outputs import HISTORY_CSV, MODEL_FILE, TRAIN_METRICS, write_csv, write_json
from stages.params import check_train, load_params, run_stage
from stages.training import (Lookahead, build_optimizer, build_schedule, channel_stats, loss_and_accuracy, predict,
                             resolve_precision, setup_torch, stats_tensors, to_input, train_one_epoch,
                             training_batches, training_flops_per_image)


def summarise(history: list[dict], seconds: float, images_seen: int, train_flops: float, precision: str,
              device: torch.device) -> dict:
    best = max(history, key=lambda row: row["val_acc"])
    final = history[-1]
    return {
        "val_acc": final["val_acc"], "val_loss": final["val_loss"],
        "train_acc": final["train_acc"], "train_loss": final["train_loss"],
        "best_val_acc": best["val_acc"], "best_val_loss": min(row["val_loss"] for row in history),
        "best_epoch": best["epoch"], "epochs": len(history), "images_seen": images_seen,
        "train_pflop": float(f"{train_flops / 1e15:.4g}"),
        "train_seconds": round(seconds, 1), "images_per_second": round(images_seen / seconds, 1),
        "precision": precision, "device": device.type,
    }


def whiten_bias_trains(model: torch.nn.Module, epoch: int, train_params: dict) -> bool:
    """The whitening conv's bias trains for the first whiten_bias_epochs only; frozen, it saves backward work."""
    if not hasattr(model, "whiten"):
        return False
    trains = epoch < train_params["whiten_bias_epochs"]
    model.whiten.bias.requires_grad_(trains)
    return trains


def train(params: dict) -> tuple[torch.nn.Module, list[dict], dict]:
    """Train as params say; returns the model, the per-epoch history and the summary metrics."""
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
        whiten_bias_trains(model, epoch, train_params)
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
        print(f"epoch {epoch + 1:3d}/{epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
              f"val loss {val_loss:.4f} acc {val_acc:.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)
    seconds = time.perf_counter() - started
    metrics = summarise(history, seconds, total_steps * batch_size, train_flops, precision, device)
    save_checkpoint(MODEL_FILE, model.cpu(), params["model"], class_names, mean, std, train_images.shape[1])
    return model, history, metrics


def main() -> None:
    params = load_params()
    check_train(params)
    _, history, metrics = train(params)
    write_csv(HISTORY_CSV, history)
    write_json(TRAIN_METRICS, metrics)


if __name__ == "__main__":
    run_stage(main)
