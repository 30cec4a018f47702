"""Fetch the official CIFAR-10 release and write it as the archive the pipeline reads, for users
without the remote.

    python -m commands.download [--out data/raw/cifar10.tar]

torchvision downloads the release; its md5 is checked again before anything is unpacked (the release
holds pickles, so only the known file may be read), and unpacking refuses members that would land
outside the temporary folder. The images are written as PNG (lossless) into one uncompressed tar
archive laid out as cifar10/train/<class>/NNNN.png and cifar10/test/<class>/NNNN.png.
"""

import argparse
import hashlib
import io
import os
import pickle
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from classifier.errors import UserError, run_main

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


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_archive(batches_dir: Path, archive: Path) -> None:
    """The official batches as PNG files in an uncompressed tar archive (member times 0, so it is
    reproducible)."""
    with open(batches_dir / "batches.meta", "rb") as file:
        class_names = [
            name.decode() for name in pickle.load(file, encoding="bytes")[b"label_names"]
        ]
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for split, names in BATCHES.items():
            images, labels = read_batches(batches_dir, names)
            counters = dict.fromkeys(class_names, 0)
            for image, label in zip(images, labels):
                name = class_names[label]
                contents = png_bytes(image)
                member = tarfile.TarInfo(f"{archive.stem}/{split}/{name}/{counters[name]:04d}.png")
                member.size = len(contents)
                tar.addfile(member, io.BytesIO(contents))
                counters[name] += 1


class ChecksumError(UserError):
    """The downloaded release is not the file whose md5 is published."""


def check_md5(path: Path, expected: str) -> None:
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ChecksumError(
            f"{path} has md5 {digest.hexdigest()}, not the published {expected}: the download is "
            "corrupt or not the CIFAR-10 release; delete it and download again"
        )


def convert_release(release: Path, archive: Path, md5: str = MD5) -> None:
    """Check, unpack cifar-10-python.tar.gz and write its images to archive, which appears only when
    complete."""
    if archive.exists():
        raise FileExistsError(f"{archive} already exists; remove it first to replace it")
    check_md5(release, md5)
    with tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
        with tarfile.open(release) as tar:
            # the data filter refuses members that would land outside tmp
            tar.extractall(tmp, filter="data")
        partial = Path(tmp) / archive.name
        write_archive(Path(tmp) / "cifar-10-batches-py", partial)
        os.replace(partial, archive)


def main() -> None:
    from torchvision.datasets.utils import download_url

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("data/raw/cifar10.tar"))
    archive = parser.parse_args().out
    archive.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            download_url(URL, tmp, md5=MD5)
            convert_release(Path(tmp) / Path(URL).name, archive)
    except (OSError, RuntimeError) as error:
        raise UserError(
            f"could not fetch CIFAR-10 from {URL} ({error}); check your internet connection, or "
            "get the data with `make data` (dvc pull)"
        ) from None
    print(f"wrote {archive}; record it with `dvc add {archive}` before `dvc repro`")


if __name__ == "__main__":
    run_main(main)
