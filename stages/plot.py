"""Stage plot: every figure for people, and the fit diagnosis.

Outputs: plots/data/samples.png (sample training images with their labels, and the shape of each split),
plots/train/curves.png, plots/evaluate/confusion.png, plots/evaluate/misclassified.png, metrics/fit.json (the
verdict alone: overfit, underfit or good; the evidence is printed, and `diagnose_fit` gives it again for the README
and the review report).
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stages.data import load_split  # noqa: E402
from stages.outputs import (CONFUSION_CSV, CONFUSION_PNG, CURVES_PNG, FIT_METRICS, HISTORY_CSV,  # noqa: E402
                            MISCLASSIFIED_PNG, SAMPLES_PNG, read_csv, save_figure, write_json)
from stages.params import StageError, check_plot, load_params, run_stage  # noqa: E402


def diagnose_fit(history: list[dict], overfit_gap: float, underfit_accuracy: float) -> dict:
    """overfit, underfit or good, the numbers behind the verdict, and the evidence in words."""
    final = history[-1]
    best = min(history, key=lambda row: row["val_loss"])
    gap = final["train_acc"] - final["val_acc"]
    val_loss_rise = final["val_loss"] - best["val_loss"]
    gap_text = (f"train accuracy {final['train_acc']:.3f} against validation {final['val_acc']:.3f} at the last "
                f"epoch, a gap of {gap:+.3f} (threshold {overfit_gap})")
    if val_loss_rise > 0:
        loss_text = f"validation loss was lowest at epoch {best['epoch']} and rose {val_loss_rise:.3f} after it"
    else:
        loss_text = "validation loss was still falling at the last epoch"
    if gap > overfit_gap or val_loss_rise > 0.05 * best["val_loss"]:
        verdict = "overfit"
        advice = ("stop earlier or regularise more" if val_loss_rise > 0
                  else "the model still improves on unseen data, so regularise more rather than stop earlier")
    elif final["train_acc"] < underfit_accuracy:
        verdict = "underfit"
        advice = f"train accuracy is below {underfit_accuracy}: train longer or use a bigger model"
    else:
        verdict = "good"
        advice = "train and validation agree"
    return {"verdict": verdict, "train_val_gap": round(gap, 5), "val_loss_rise": round(val_loss_rise, 5),
            "best_val_loss_epoch": best["epoch"], "evidence": f"{gap_text}; {loss_text}; {advice}"}


VERDICT_WORDS = {"overfit": "over-fitting", "underfit": "under-fitting", "good": "a good fit"}


def fit_text(history: list[dict], params: dict) -> str:
    """The fit diagnosis as one line of Markdown: the verdict in bold, then its evidence."""
    fit = diagnose_fit(history, params["plot"]["overfit_gap"], params["plot"]["underfit_accuracy"])
    return f"**{VERDICT_WORDS[fit['verdict']]}**: {fit['evidence']}"


def split_shapes(splits: dict) -> str:
    """'train 40,000, val 10,000, test 10,000 images of 32x32x3': the shape of each split, in words."""
    sizes = ", ".join(f"{name} {len(images):,}" for name, (images, _) in splits.items())
    return f"{sizes} images of {'x'.join(str(side) for side in next(iter(splits.values()))[0].shape[1:])}"


def plot_samples(images: np.ndarray, labels: np.ndarray, class_names: list[str], seed: int, shapes: str,
                 count: int = 30, columns: int = 10, label_height: int = 12):
    """A grid of random training images with their labels, drawn as one mosaic (one axes is 3x faster than 30),
    titled with the shape of each split."""
    chosen = np.random.default_rng(seed).choice(len(images), size=min(count, len(images)), replace=False)
    rows = -(-len(chosen) // columns)
    height, width = images.shape[1:3]
    cell_height, cell_width = height + label_height, width + 4
    mosaic = np.full((rows * cell_height, columns * cell_width, 3), 255, dtype=np.uint8)
    figure, axis = plt.subplots(figsize=(columns * 1.2, rows * 1.3))
    for k, index in enumerate(chosen):
        top, left = (k // columns) * cell_height + label_height, (k % columns) * cell_width + 2
        mosaic[top:top + height, left:left + width] = images[index]
        axis.text(left + width / 2, top - 2, class_names[labels[index]], ha="center", va="bottom", fontsize=8)
    axis.imshow(mosaic)
    axis.axis("off")
    figure.suptitle(f"Sample training images with their labels\n{shapes}")
    return figure


def plot_curves(history: list[dict], fit: dict):
    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("loss", "acc")):
        axis.plot(epochs, [row[f"train_{metric}"] for row in history], "o-", label="train")
        axis.plot(epochs, [row[f"val_{metric}"] for row in history], "o-", label="validation")
        axis.set(xlabel="epoch", ylabel="cross-entropy loss" if metric == "loss" else "accuracy")
        axis.axvline(fit["best_val_loss_epoch"], color="grey", linestyle=":", label="lowest validation loss")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"Learning curves: {VERDICT_WORDS[fit['verdict']]} "
                    f"(train - validation accuracy {fit['train_val_gap']:+.3f})")
    return figure


def plot_confusion(actual: np.ndarray, predicted: np.ndarray, class_names: list[str]):
    counts = np.zeros((len(class_names), len(class_names)), dtype=int)
    np.add.at(counts, (actual, predicted), 1)
    figure, axis = plt.subplots(figsize=(8, 7))
    image = axis.imshow(counts, cmap="Blues")
    for (row, column), count in np.ndenumerate(counts):
        color = "white" if count > counts.max() / 2 else "black"
        axis.text(column, row, count, ha="center", va="center", fontsize=8, color=color)
    ticks = range(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right")
    axis.set_yticks(ticks, class_names)
    axis.set(xlabel="predicted", ylabel="actual", title=f"Test confusion matrix ({len(actual)} images)")
    figure.colorbar(image, ax=axis)
    return figure


def plot_misclassified(images: np.ndarray, actual: np.ndarray, predicted: np.ndarray, class_names: list[str],
                       seed: int, count: int = 30):
    """A random sample of the misclassified test images, in test-set order (so grouped by true class)."""
    wrong = np.flatnonzero(actual != predicted)
    wrong = np.sort(np.random.default_rng(seed).choice(wrong, size=min(count, len(wrong)), replace=False))
    columns = 10
    rows = max(1, -(-len(wrong) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.6), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, wrong):
        axis.imshow(images[index])
        axis.set_title(f"{class_names[actual[index]]}\n→ {class_names[predicted[index]]}", fontsize=7)
    figure.suptitle("Misclassified test images (true → predicted)")
    return figure


def read_history(path: Path = HISTORY_CSV) -> list[dict]:
    return parse_history(read_csv(path))


def parse_history(rows: list[dict]) -> list[dict]:
    """history.csv's rows with numbers for values, the epoch an integer."""
    return [{key: int(value) if key == "epoch" else float(value) for key, value in row.items()} for row in rows]


def main() -> None:
    params = load_params()
    check_plot(params)
    for path in (HISTORY_CSV, CONFUSION_CSV):
        if not path.exists():
            raise StageError(f"{path} not found; run the train and evaluate stages first (dvc repro)")
    history = read_history()
    fit = diagnose_fit(history, params["plot"]["overfit_gap"], params["plot"]["underfit_accuracy"])
    loaded = {name: load_split(name) for name in ("train", "val", "test")}
    splits = {name: (images, labels) for name, (images, labels, _) in loaded.items()}
    class_names = loaded["test"][2]
    test_images, test_labels = splits["test"]
    index = {name: i for i, name in enumerate(class_names)}
    rows = read_csv(CONFUSION_CSV)
    actual = np.array([index[row["actual"]] for row in rows])
    predicted = np.array([index[row["predicted"]] for row in rows])
    if len(rows) != len(test_labels) or not np.array_equal(actual, test_labels):
        raise StageError(f"{CONFUSION_CSV} does not match the test split; re-run evaluate (dvc repro)")

    for figure, path in ((plot_samples(*splits["train"], class_names, params["seed"], split_shapes(splits)),
                          SAMPLES_PNG),
                         (plot_curves(history, fit), CURVES_PNG),
                         (plot_confusion(actual, predicted, class_names), CONFUSION_PNG),
                         (plot_misclassified(test_images, actual, predicted, class_names, params["seed"]),
                          MISCLASSIFIED_PNG)):
        save_figure(figure, path)
        plt.close(figure)
    write_json(FIT_METRICS, {"verdict": fit["verdict"]})  # the gap is a training metric; the evidence is prose
    print(f"fit: {VERDICT_WORDS[fit['verdict']]}: {fit['evidence']}")


if __name__ == "__main__":
    run_stage(main)
