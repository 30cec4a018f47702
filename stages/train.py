"""Stage train: build the model and optimizer from params, train, validate after every epoch.

Outputs: models/model.pt, metrics/train/metrics.json (rewritten after every epoch, so `dvc exp
show` shows a running experiment's progress), plots/train/history.csv (also rewritten every
epoch, for live plots), metrics/timing.json. After every epoch the whole training state goes to
checkpoints/train.pt (not an output); with `train.resume: true` an interrupted run continues from
there and ends with the same weights, bit for bit.
"""

import sys
import time

import torch
from tqdm import tqdm

from classifier import distributed
from classifier.data import load_split
from classifier.errors import run_main
from classifier.evaluation import loss_and_accuracy, predict_logits
from classifier.files import (
    HISTORY_CSV,
    MODEL_FILE,
    RESUME_FILE,
    TIMING_METRICS,
    TRAIN_METRICS,
    write_csv,
    write_json,
)
from classifier.fit import DISAGREEMENT_ADVICE, disagreement
from classifier.models import save_checkpoint
from classifier.params import check_train, load_params
from classifier.resume import fingerprint, load_state, restore, rng_state, save_state
from classifier.training import (
    Run,
    check_fits,
    epoch_scale,
    low_res_epochs,
    low_res_side,
    planned_flops,
    start_run,
    train_one_epoch,
)


def log_epoch(history: list[dict], train_flops: float) -> None:
    """The headline training metrics so far, in metrics/train/metrics.json."""
    last = history[-1]
    metrics = {
        "best_val_acc": max(row["val_acc"] for row in history),
        "train_pflop": float(f"{train_flops / 1e15:.4g}"),
        "val_acc": last["val_acc"],
        "train_val_gap": round(last["train_acc"] - last["val_acc"], 5),
        "step": last["epoch"],
    }
    write_json(TRAIN_METRICS, metrics)


def train(
    run: Run,
    val_split: tuple,
    key: str,
    history: list[dict],
    train_flops: float,
    progress: tqdm,
) -> None:
    """Train the epochs left; after each, validate (on every val_stride-th image, but all after the
    last epoch, at the size of the images it trained on), log, save the whole state (one process of
    several), and warn once when validation disagrees with training as over-fitting never does."""
    val_images, val_labels = (
        torch.from_numpy(val_split[0]).to(run.device),
        torch.from_numpy(val_split[1]),
    )
    epochs, started = run.params["train"]["epochs"], time.perf_counter()
    warned = False
    for epoch in range(len(history), epochs):
        lr = run.optimizer.param_groups[0]["lr"]
        train_loss, train_acc, flops = train_one_epoch(run, epoch, progress=progress)
        train_flops += flops
        # every process's dropout generators, for resume
        rng_states = distributed.gather(rng_state(run.device))
        if not distributed.is_main():
            continue
        stride = 1 if epoch == epochs - 1 else run.params["train"]["val_stride"]
        val_logits = predict_logits(
            run.model,
            val_images[::stride],
            run.mean,
            run.std,
            run.device,
            run.params["train"]["batch_size"],
            run.precision,
            scale=epoch_scale(run.params, epoch),
        )
        val_loss, val_acc = loss_and_accuracy(val_logits, val_labels[::stride])
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": round(train_loss, 5),
                "train_acc": round(train_acc, 5),
                "val_loss": round(val_loss, 5),
                "val_acc": round(val_acc, 5),
                "lr": round(lr, 6),
                "val_images": len(val_labels[::stride]),
            }
        )
        write_csv(HISTORY_CSV, history)
        log_epoch(history, train_flops)
        save_state(run, epoch + 1, history, train_flops, key, rng_states)
        tqdm.write(
            f"epoch {epoch + 1:3d}/{epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
            f"val loss {val_loss:.4f} acc {val_acc:.4f}  ({time.perf_counter() - started:.0f} "
            "s)"
        )
        why = disagreement(history, len(val_split[2]))
        if why and not warned:
            tqdm.write(f"warning: evaluation disagrees with training: {why}; {DISAGREEMENT_ADVICE}")
            warned = True


def whole_run_bar(run: Run, epochs: range) -> tqdm:
    """A progress bar of the whole run, in GFLOP: its rate and the time left hold from the first
    steps on, small-image epochs and full-size ones alike."""
    planned = planned_flops(run, epochs)
    if distributed.is_main():
        print(
            f"{planned / 1e15:.3f} PFLOP to train; the progress line gives the rate (GFLOP/s) and "
            "the time left",
            flush=True,
        )
    return tqdm(
        total=planned / 1e9,
        unit="GFLOP",
        desc="starting",
        mininterval=1.0,
        bar_format="{desc} |{bar:10}| {percentage:3.0f}% {elapsed}<{remaining}, {rate_fmt}",
        disable=not distributed.is_main(),
    )


def resumed(run: Run, key: str) -> tuple[list[dict], float]:
    """The history and compute of the epochs an interrupted run finished, the run put back where it
    stopped."""
    state = load_state(key)
    if not state:
        return [], 0.0
    restore(run, state)
    if distributed.is_main():
        write_csv(HISTORY_CSV, state["history"])
        log_epoch(state["history"], state["train_flops"])
    return state["history"], state["train_flops"]


def timing(run: Run, seconds: float, epochs_trained: int) -> dict:
    images = epochs_trained * run.steps_per_epoch * run.params["train"]["batch_size"]
    return {
        "train_seconds": round(seconds, 1),
        "images_per_second": round(images / seconds, 1),
        "precision": run.precision,
        "device": run.device.type,
    }


def banner(params: dict, run: Run, train_images: int, val_images: int) -> str:
    """What trains, where, on what: one line."""
    train = params["train"]
    low = low_res_side(params, run.images.shape[1])
    low_res = f" ({low_res_epochs(params)} at {low}x{low})" if low_res_epochs(params) else ""
    processes = f", {distributed.world_size()} processes" if distributed.world_size() > 1 else ""
    return (
        f"training {params['model']['arch']} with {params['optimizer']} on {run.device} in "
        f"{run.precision}: {train_images} train / {val_images} val images, {train['epochs']} "
        f"epochs{low_res}{processes}"
    )


def main() -> None:
    params = load_params()
    check_train(params)
    train_split, val_split = load_split("train"), load_split("val")
    check_fits(params, train_split[0], train_split[2])
    if params["train"]["processes"] > 1 and not distributed.launched():
        sys.exit(distributed.launch(params["train"]["processes"], "stages.train"))
    try:
        run = start_run(params, *train_split)
        if distributed.is_main():
            print(banner(params, run, len(train_split[0]), len(val_split[0])), flush=True)
        key = fingerprint(params, [train_split, val_split])
        history, train_flops = resumed(run, key) if params["train"]["resume"] else ([], 0.0)
        first_epoch = len(history)
        # the bar counts the FLOPs before the clock starts, as the benchmark's reference does; it is
        # closed on an error too, before the error's message
        with whole_run_bar(run, range(first_epoch, params["train"]["epochs"])) as progress:
            started = time.perf_counter()
            train(run, val_split, key, history, train_flops, progress)
        seconds = time.perf_counter() - started
        if distributed.is_main():
            save_checkpoint(
                MODEL_FILE,
                run.model.cpu(),
                params["model"],
                train_split[2],
                *run.stats,
                train_split[0].shape[1],
            )
            RESUME_FILE.unlink(missing_ok=True)  # the model is saved; nothing is left to resume
    # a failed or interrupted run leaves no partial history behind (kill -9 aside)
    except BaseException:
        if distributed.is_main():
            for path in (TRAIN_METRICS, HISTORY_CSV):
                path.unlink(missing_ok=True)
        raise
    distributed.finish()
    if distributed.is_main():
        write_json(TIMING_METRICS, timing(run, seconds, params["train"]["epochs"] - first_epoch))


if __name__ == "__main__":
    run_main(main)
