"""Stage plot: learning curves, confusion matrix, misclassified test images, and a fit diagnosis.

Outputs: plots/train/curves.png, plots/evaluate/confusion.png, plots/evaluate/misclassified.png,
metrics/fit.json.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stages.data import load_split  # noqa: E402
from stages.outputs import (CONFUSION_CSV, CONFUSION_PNG, CURVES_PNG, FIT_METRICS, HISTORY_CSV,  # noqa: E402
                            MISCLASSIFIED_PNG, read_csv, save_figure, write_json)
from stages.params import StageError, check_plot, load_params, run_stage  # noqa: E402


def diagnose_fit(history: list[dict], overfit_gap: float, underfit_accuracy: float) -> dict:
    """Over-fitting, under-fitting or a good fit, with the evidence for the verdict."""
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
        verdict = "over-fitting"
        advice = ("stop earlier or regularise more" if val_loss_rise > 0
                  else "the model still improves on unseen data, so regularise more rather than stop earlier")
    elif final["train_acc"] < underfit_accuracy:
        verdict = "under-fitting"
        advice = f"train accuracy is below {underfit_accuracy}: train longer or use a bigger model"
    else:
        verdict = "good fit"
        advice = "train and validation agree"
    why = f"{gap_text}; {loss_text}; {advice}"
    return {"verdict": verdict, "evidence": why, "train_val_gap": round(gap, 5),
            "best_val_loss_epoch": best["epoch"], "val_loss_rise": round(val_loss_rise, 5),
            "overfitting": verdict == "over-fitting", "underfitting": verdict == "under-fitting"}


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
    figure.suptitle(f"Learning curves: {fit['verdict']} (train - validation accuracy {fit['train_val_gap']:+.3f})")
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


def main() -> None:
    params = load_params()
    check_plot(params)
    for path in (HISTORY_CSV, CONFUSION_CSV):
        if not path.exists():
            raise StageError(f"{path} not found; run the train and evaluate stages first (dvc repro)")
    history = [{key: float(value) for key, value in row.items()} for row in read_csv(HISTORY_CSV)]
    for row in history:
        row["epoch"] = int(row["epoch"])
    fit = diagnose_fit(history, params["plot"]["overfit_gap"], params["plot"]["underfit_accuracy"])

    test_images, test_labels, class_names = load_split("test")
    index = {name: i for i, name in enumerate(class_names)}
    rows = read_csv(CONFUSION_CSV)
    actual = np.array([index[row["actual"]] for row in rows])
    predicted = np.array([index[row["predicted"]] for row in rows])
    if len(rows) != len(test_labels) or not np.array_equal(actual, test_labels):
        raise StageError(f"{CONFUSION_CSV} does not match the test split; re-run evaluate (dvc repro)")

    misclassified = plot_misclassified(test_images, actual, predicted, class_names, params["seed"])
    for figure, path in ((plot_curves(history, fit), CURVES_PNG),
                         (plot_confusion(actual, predicted, class_names), CONFUSION_PNG),
                         (misclassified, MISCLASSIFIED_PNG)):
        save_figure(figure, path)
        plt.close(figure)
    write_json(FIT_METRICS, fit)
    print(f"fit: {fit['verdict']}: {fit['evidence']}")


if __name__ == "__main__":
    run_stage(main)
