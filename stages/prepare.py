"""Stage prepare: decode the raw images (a tar archive or a folder), split train/validation, write compact arrays.

Outputs: data/prepared/{train,val,test}.npz, metrics/data.json, plots/data/samples.png.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stages.data import read_dataset, save_split, scale_pixels, stratified_split  # noqa: E402
from stages.outputs import DATA_METRICS, SAMPLES_PNG, save_figure, write_json  # noqa: E402
from stages.params import check_data, load_params, run_stage  # noqa: E402


def split_summary(images: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    counts = np.bincount(labels, minlength=len(class_names))
    height, width, channels = images.shape[1:]
    return {"images": len(images), "height": height, "width": width, "channels": channels,
            "per_class": dict(zip(class_names, counts.tolist()))}


def pixel_ranges(images: np.ndarray) -> dict:
    """Pixel range before and after the scaling to [0, 1] that training applies."""
    raw_min, raw_max = int(images.min()), int(images.max())
    return {"raw_min": raw_min, "raw_max": raw_max,
            "scaled_min": scale_pixels(float(raw_min)), "scaled_max": scale_pixels(float(raw_max))}


def plot_samples(images: np.ndarray, labels: np.ndarray, class_names: list[str], seed: int, count: int = 30,
                 columns: int = 10, label_height: int = 12):
    """A grid of random training images with their labels, drawn as one mosaic (one axes is 3x faster than 30)."""
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
    figure.suptitle("Sample training images with their labels")
    save_figure(figure, SAMPLES_PNG)
    plt.close(figure)


def main() -> None:
    params = load_params()
    check_data(params)
    raw = Path(params["data"]["raw"])
    print(f"reading and decoding {raw} ...", flush=True)
    class_names, raw_splits = read_dataset(raw)
    labelled_images, labelled_labels = raw_splits["train"]
    test_images, test_labels = raw_splits["test"]
    train_idx, val_idx = stratified_split(labelled_labels, params["data"]["val_fraction"], params["seed"])
    splits = {
        "train": (labelled_images[train_idx], labelled_labels[train_idx]),
        "val": (labelled_images[val_idx], labelled_labels[val_idx]),
        "test": (test_images, test_labels),
    }

    for name, (images, labels) in splits.items():
        save_split(name, images, labels, class_names)
        print(f"{name:5s} images {images.shape}, labels {labels.shape}")
    metrics = {name: split_summary(images, labels, class_names) for name, (images, labels) in splits.items()}
    metrics["pixels"] = pixel_ranges(labelled_images)
    print(f"pixels scaled from [{metrics['pixels']['raw_min']}, {metrics['pixels']['raw_max']}] "
          f"to [{metrics['pixels']['scaled_min']}, {metrics['pixels']['scaled_max']}]")
    write_json(DATA_METRICS, metrics)
    plot_samples(*splits["train"], class_names, params["seed"])


if __name__ == "__main__":
    run_stage(main)
