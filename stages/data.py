"""An image folder or tar archive in, compact uint8 arrays out, and the batch-level augmentation of training."""

import io
import os
import tarfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image

from stages.outputs import PREPARED_DIR
from stages.params import StageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
SPLITS = ("train", "test")


# ----------------------------------------------------------------------------- reading the raw data

def read_raw_files(raw: Path) -> list[tuple[str, bytes]]:
    """(path inside raw, file contents) of every regular file of an image folder or a tar archive, sorted by path.

    One tar archive instead of 60,000 small files is what makes `dvc pull` and `dvc status` fast.
    """
    if raw.is_dir():
        return [(path.relative_to(raw).as_posix(), path.read_bytes()) for path in sorted(raw.rglob("*"))
                if path.is_file()]
    if raw.is_file() and tarfile.is_tarfile(raw):
        contents = raw.read_bytes()  # one read, then slices: faster than a read per member
        with tarfile.open(fileobj=io.BytesIO(contents)) as archive:
            members = [member for member in archive if member.isfile()]
        return sorted((m.name.removeprefix("./"), contents[m.offset_data:m.offset_data + m.size]) for m in members)
    raise StageError(f"params.yaml: 'data.raw' is '{raw}', which is neither an image folder nor a tar archive; "
                     "run `make data` (dvc pull) or `make download`, or point it at your own data")


def group_by_split(files: list[tuple[str, bytes]], raw: Path) -> dict[str, dict[str, list[tuple[str, bytes]]]]:
    """{split: {class name: [(path, contents)]}} for the images laid out as [top folder/]<split>/<class>/<file>.

    Files elsewhere, hidden files and files without an image suffix are skipped.
    """
    layout = {split: {} for split in SPLITS}
    for path, contents in files:
        parts = path.split("/")
        if len(parts) == 4:  # one top folder, as in cifar10.tar's cifar10/train/<class>/<file>
            parts = parts[1:]
        if (len(parts) == 3 and parts[0] in layout and not parts[2].startswith(".")
                and Path(parts[2]).suffix.lower() in IMAGE_SUFFIXES):
            layout[parts[0]].setdefault(parts[1], []).append((path, contents))
    for split, classes in layout.items():
        if not classes:
            raise StageError(f"{raw} holds no {split}/<class>/<image> files ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                             "lay it out as [folder/]train/<class>/* and [folder/]test/<class>/*")
    return layout


def _decode(files: list[tuple[str, bytes]]) -> np.ndarray:
    images = []
    for path, contents in files:
        try:
            image = decode_image(torch.frombuffer(bytearray(contents), dtype=torch.uint8), ImageReadMode.RGB)
        except RuntimeError:
            raise StageError(f"{path} is not a readable image; remove or replace it") from None
        images.append(image.permute(1, 2, 0).numpy())
    return np.stack(images)


def decode_images(files: list[tuple[str, bytes]], workers: int | None = None) -> np.ndarray:
    """Decode encoded images to one uint8 array (N, H, W, 3), in parallel; all images must share one size.

    torchvision's decoder (libjpeg-turbo, libpng) is 2 to 2.5x faster than PIL on these tiny images.
    """
    workers = workers or len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(workers) as pool:
        try:
            decoded = list(pool.map(_decode, [files[i::workers] for i in range(workers)]))
        except ValueError:  # np.stack of images of different sizes
            sizes = {}
            for path, contents in files:
                image = decode_image(torch.frombuffer(bytearray(contents), dtype=torch.uint8))
                sizes.setdefault(tuple(image.shape[1:]), path)
            raise StageError(f"images differ in size: {', '.join(f'{p} is {w}x{h}' for (h, w), p in sizes.items())};"
                             " resize them to one size first") from None
    images = np.empty((len(files), *decoded[0].shape[1:]), dtype=np.uint8)
    for i, chunk in enumerate(decoded):
        images[i::workers] = chunk
    return images


def read_dataset(raw: Path) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Class names (the class folder names, sorted) and, per split, uint8 images (N, H, W, 3) and labels."""
    layout = group_by_split(read_raw_files(raw), raw)
    class_names = sorted(layout["train"])
    if sorted(layout["test"]) != class_names:
        raise StageError(f"{raw}: train and test have different class folders ({', '.join(class_names)} against "
                         f"{', '.join(sorted(layout['test']))}); they must match")
    splits = {}
    for split, classes in layout.items():
        files = [file for name in class_names for file in classes[name]]
        labels = np.repeat(np.arange(len(class_names)), [len(classes[name]) for name in class_names])
        splits[split] = (decode_images(files), labels)
    if splits["test"][0].shape[1:] != splits["train"][0].shape[1:]:
        raise StageError(f"{raw}: test images are {splits['test'][0].shape[1:]}, training images "
                         f"{splits['train'][0].shape[1:]}; they must be the same size")
    return class_names, splits


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded split that keeps each class's share in both parts."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(len(members) * val_fraction))
        if n_val == 0 or n_val == len(members):
            raise StageError(f"params.yaml: 'data.val_fraction' {val_fraction} leaves class {label} "
                             f"({len(members)} images) with an empty split; use a fraction nearer 0.5")
        val_idx.append(members[:n_val])
        train_idx.append(members[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


# ----------------------------------------------------------------------------- prepared arrays

def save_split(name: str, images: np.ndarray, labels: np.ndarray, class_names: list[str],
               out_dir: Path = PREPARED_DIR) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_path = out_dir / f".{name}.tmp.npz"
    np.savez(tmp_path, images=images, labels=labels, class_names=np.array(class_names))
    os.replace(tmp_path, out_dir / f"{name}.npz")


def load_split(name: str, prepared_dir: Path = PREPARED_DIR) -> tuple[np.ndarray, np.ndarray, list[str]]:
    path = prepared_dir / f"{name}.npz"
    if not path.exists():
        raise StageError(f"{path} not found; run the prepare stage first (dvc repro prepare)")
    with np.load(path) as arrays:
        return arrays["images"], arrays["labels"], [str(c) for c in arrays["class_names"]]


def scale_pixels(images: np.ndarray | torch.Tensor):
    """uint8 pixels in [0, 255] to floats in [0, 1]."""
    return images / 255.0


# ----------------------------------------------------------------------------- batch augmentation

def flip_where(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images of a (N, C, H, W) batch where mask (N,) is true."""
    return torch.where(mask.to(images.device)[:, None, None, None], images.flip(-1), images)


def translate(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image of a (N, C, H, W) batch by up to max_shift pixels, filling with reflection.

    Images are grouped by their shift, so this is (2 * max_shift + 1)^2 slicing operations per batch,
    not one per image.
    """
    if max_shift == 0:
        return images
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4, mode="reflect")
    shifts = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    out = torch.empty_like(images)
    for dy in range(2 * max_shift + 1):
        for dx in range(2 * max_shift + 1):
            chosen = torch.nonzero((shifts[0] == dy) & (shifts[1] == dx)).flatten().to(images.device)
            out[chosen] = padded[chosen, :, dy:dy + height, dx:dx + width]
    return out
