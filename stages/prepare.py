"""Stage prepare: decode the raw images (a tar archive or a folder), split train/validation, write
compact arrays.

Outputs: data/prepared/{train,val,test}.npz, DVC-cached; prints the shape of each split. The plot
stage draws sample images and names the shapes again.
"""

from pathlib import Path

from classifier.batches import scale_pixels
from classifier.data import read_dataset, save_split, stratified_split
from classifier.errors import run_main
from classifier.params import check_data, load_params


def main() -> None:
    params = load_params()
    check_data(params)
    raw = Path(params["data"]["raw"])
    print(f"reading and decoding {raw} ...", flush=True)
    class_names, raw_splits = read_dataset(raw)
    labelled_images, labelled_labels = raw_splits["train"]
    train_idx, val_idx = stratified_split(
        labelled_labels, params["data"]["val_fraction"], params["data"]["split_seed"], class_names
    )
    splits = {
        "train": (labelled_images[train_idx], labelled_labels[train_idx]),
        "val": (labelled_images[val_idx], labelled_labels[val_idx]),
        "test": raw_splits["test"],
    }
    for name, (images, labels) in splits.items():
        save_split(name, images, labels, class_names)
        print(f"{name:5s} images {images.shape}, labels {labels.shape}")
    low, high = int(labelled_images.min()), int(labelled_images.max())
    print(
        f"pixels are uint8 in [{low}, {high}]; training scales them to "
        f"[{scale_pixels(float(low))}, {scale_pixels(float(high))}]"
    )


if __name__ == "__main__":
    run_main(main)
