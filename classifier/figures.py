"""The figures for people: sample images, learning curves, the confusion matrix, misclassified
images."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from classifier.fit import VERDICT_WORDS  # noqa: E402


def split_shapes(splits: dict) -> str:
    """'train 40,000, val 10,000, test 10,000 images of 32x32x3': the shape of each split (images,
    labels, ...), in words."""
    sizes = ", ".join(f"{name} {len(split[0]):,}" for name, split in splits.items())
    shape = next(iter(splits.values()))[0].shape[1:]
    return f"{sizes} images of {'x'.join(str(side) for side in shape)}"


def close(figure) -> None:
    plt.close(figure)


def plot_samples(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    seed: int,
    shapes: str,
    count: int = 30,
    columns: int = 10,
    label_height: int = 12,
):
    """A grid of random training images with their labels, titled with the shape of each split;
    drawn as one mosaic in one axes, which took a third of the time of 30 axes when measured."""
    chosen = np.random.default_rng(seed).choice(
        len(images), size=min(count, len(images)), replace=False
    )
    rows = -(-len(chosen) // columns)
    height, width = images.shape[1:3]
    cell_height, cell_width = height + label_height, width + 4
    mosaic = np.full((rows * cell_height, columns * cell_width, 3), 255, dtype=np.uint8)
    figure, axis = plt.subplots(figsize=(columns * 1.2, rows * 1.3))
    for k, index in enumerate(chosen):
        top, left = (k // columns) * cell_height + label_height, (k % columns) * cell_width + 2
        mosaic[top : top + height, left : left + width] = images[index]
        axis.text(
            left + width / 2,
            top - 2,
            class_names[labels[index]],
            ha="center",
            va="bottom",
            fontsize=8,
        )
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
        axis.axvline(
            fit["best_val_loss_epoch"], color="grey", linestyle=":", label="lowest validation loss"
        )
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(
        f"Learning curves: {VERDICT_WORDS[fit['verdict']]} (train - validation accuracy "
        f"{fit['train_val_gap']:+.3f})"
    )
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
    axis.set(
        xlabel="predicted", ylabel="actual", title=f"Test confusion matrix ({len(actual)} images)"
    )
    figure.colorbar(image, ax=axis)
    return figure


def plot_misclassified(
    images: np.ndarray,
    actual: np.ndarray,
    predicted: np.ndarray,
    class_names: list[str],
    seed: int,
    count: int = 30,
):
    """A random sample of the misclassified test images, in test-set order (so grouped by true
    class)."""
    wrong = np.flatnonzero(actual != predicted)
    wrong = np.sort(
        np.random.default_rng(seed).choice(wrong, size=min(count, len(wrong)), replace=False)
    )
    columns = 10
    rows = max(1, -(-len(wrong) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.6), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, wrong):
        axis.imshow(images[index])
        axis.set_title(
            f"{class_names[actual[index]]}\n→ {class_names[predicted[index]]}", fontsize=7
        )
    figure.suptitle("Misclassified test images (true → predicted)")
    return figure
