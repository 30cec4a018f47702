"""Fetch the official CIFAR-10 release and write it as an image folder, for users without the DVC remote.

    python -m stages.download [--out data/raw/cifar10]

torchvision downloads the archive and checks its md5; the images are written as PNG (lossless), in the
layout the pipeline reads: train/<class>/NNNN.png and test/<class>/NNNN.png.
"""

import argparse
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def read_batches(batches_dir: Path, names: list[str]) -> tuple[np.ndarray, list[int]]:
    """Images (N, 32, 32, 3) uint8 and labels from the official pickled batches."""
    images, labels = [], []
    for name in names:
        with open(batches_dir / name, "rb") as file:
            batch = pickle.load(file, encoding="bytes")
        images.append(batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels += batch[b"labels"]
    return np.concatenate(images), labels


def write_image_folder(batches_dir: Path, out_dir: Path) -> None:
    with open(batches_dir / "batches.meta", "rb") as file:
        class_names = [name.decode() for name in pickle.load(file, encoding="bytes")[b"label_names"]]
    for split, names in BATCHES.items():
        images, labels = read_batches(batches_dir, names)
        counters = dict.fromkeys(class_names, 0)
        for image, label in zip(images, labels):
            class_dir = out_dir / split / class_names[label]
            class_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(class_dir / f"{counters[class_names[label]]:04d}.png")
            counters[class_names[label]] += 1


def convert_archive(archive: Path, out_dir: Path) -> None:
    """Unpack cifar-10-python.tar.gz and write its images to out_dir; out_dir appears only when complete."""
    from torchvision.datasets.utils import extract_archive

    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; remove it first to replace it")
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
        extract_archive(str(archive), tmp)
        partial = Path(tmp) / "images"
        write_image_folder(Path(tmp) / "cifar-10-batches-py", partial)
        partial.rename(out_dir)


def main() -> None:
    from torchvision.datasets.utils import download_url

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/raw/cifar10"))
    out_dir = parser.parse_args().out
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            download_url(URL, tmp, md5=MD5)
            convert_archive(Path(tmp) / Path(URL).name, out_dir)
    except (OSError, RuntimeError) as error:
        sys.exit(f"error: could not fetch CIFAR-10 from {URL} ({error}); "
                 "check your internet connection, or get the data with `make data` (dvc pull)")
    print(f"wrote {out_dir}; record it with `dvc add {out_dir}` before `dvc repro`")


if __name__ == "__main__":
    main()
