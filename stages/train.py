"""Stage train: build the model and optimizer from params, train, validate after every epoch.

Outputs: models/model.pt, metrics/train.json, plots/train/history.csv.
"""

import time

import torch

from stages.data import load_split
from stages.models import init_whitening, build_model, save_checkpoint
from stages.outputs import HISTORY_CSV, MODEL_FILE, TRAIN_METRICS, write_csv, write_json
from stages.params import check_train, load_params, run_stage
from stages.training import (build_optimizer, build_schedule, channel_stats, loss_and_accuracy, predict,
                             setup_torch, stats_tensors, to_input, train_one_epoch)


def summarise(history: list[dict], seconds: float, images_seen: int, device: torch.device) -> dict:
    best = max(history, key=lambda row: row["val_acc"])
    final = history[-1]
    return {
        "val_acc": final["val_acc"], "val_loss": final["val_loss"],
        "train_acc": final["train_acc"], "train_loss": final["train_loss"],
        "best_val_acc": best["val_acc"], "best_val_loss": min(row["val_loss"] for row in history),
        "best_epoch": best["epoch"], "epochs": len(history),
        "train_seconds": round(seconds, 1), "images_per_second": round(images_seen / seconds, 1),
        "device": device.type,
    }


def train(params: dict) -> tuple[torch.nn.Module, list[dict], dict]:
    """Train as params say; returns the model, the per-epoch history and the summary metrics."""
    train_params = params["train"]
    device = setup_torch(params["seed"], train_params["device"])
    train_images, train_labels, class_names = load_split("train")
    val_images, val_labels, _ = load_split("val")
    mean, std = channel_stats(train_images)
    mean_t, std_t = stats_tensors(mean, std, device)
    train_images, train_labels = torch.from_numpy(train_images), torch.from_numpy(train_labels)
    val_images, val_labels = torch.from_numpy(val_images), torch.from_numpy(val_labels)

    model = build_model(params["model"], len(class_names), train_images.shape[1])
    if hasattr(model, "whiten"):
        init_whitening(model.whiten, to_input(train_images[:5000], mean_t, std_t, torch.device("cpu")))
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = build_optimizer(params["optimizer"], params["optimizers"][params["optimizer"]], model)
    epochs, batch_size = train_params["epochs"], train_params["batch_size"]
    steps_per_epoch = max(1, len(train_images) // batch_size)
    schedule = build_schedule(optimizer, train_params["lr_schedule"], epochs * steps_per_epoch,
                              train_params["warmup_fraction"])
    generator = torch.Generator().manual_seed(params["seed"])

    print(f"training {params['model']['arch']} with {params['optimizer']} on {device} "
          f"({len(train_images)} train / {len(val_images)} val images, {epochs} epochs)", flush=True)
    history, started = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = train_one_epoch(model, optimizer, schedule, train_images, train_labels, mean_t, std_t,
                                                train_params, device, generator, desc=f"epoch {epoch}/{epochs}")
        val_logits = predict(model, val_images, mean_t, std_t, device, batch_size, train_params["precision"])
        val_loss, val_acc = loss_and_accuracy(val_logits, val_labels)
        history.append({"epoch": epoch, "train_loss": round(train_loss, 5), "train_acc": round(train_acc, 5),
                        "val_loss": round(val_loss, 5), "val_acc": round(val_acc, 5), "lr": round(lr, 6)})
        print(f"epoch {epoch:3d}/{epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
              f"val loss {val_loss:.4f} acc {val_acc:.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)
    seconds = time.perf_counter() - started
    metrics = summarise(history, seconds, epochs * steps_per_epoch * batch_size, device)
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
