"""Stage prepare: decode the raw images (a tar archive or a folder), split train/validation, write compact arrays.

Outputs: data/prepared/{train,val,test}.npz, DVC-cached, and nothing else: a stage whose outputs are all cached
can be restored from DVC's run cache, so queued experiments skip it. The plot stage summarises the splits.
"""

from pathlib import Path

from stages.data import read_dataset, save_split, scale_pixels, stratified_split
from stages.params import check_data, load_params, run_stage


def main() -> None:
    params = load_params()
    check_data(params)
    raw = Path(params["data"]["raw"])
    print(f"reading and decoding {raw} ...", flush=True)
    class_names, raw_splits = read_dataset(raw)
    labelled_images, labelled_labels = raw_splits["train"]
    test_images, test_labels = raw_splits["test"]
    train_idx, val_idx = stratified_split(labelled_labels, params["data"]["val_fraction"],
                                          params["data"]["split_seed"], class_names)
    splits = {
        "train": (labelled_images[train_idx], labelled_labels[train_idx]),
        "val": (labelled_images[val_idx], labelled_labels[val_idx]),
        "test": (test_images, test_labels),
    }

    for name, (images, labels) in splits.items():
        save_split(name, images, labels, class_names)
        print(f"{name:5s} images {images.shape}, labels {labels.shape}")
    low, high = int(labelled_images.min()), int(labelled_images.max())
    print(f"pixels are uint8 in [{low}, {high}]; training scales them to "
          f"[{scale_pixels(float(low))}, {scale_pixels(float(high))}]")


if __name__ == "__main__":
    run_stage(main)
