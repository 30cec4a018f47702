"""Image folders in, compact uint8 arrays out, and the batch-level augmentation that training uses."""

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stages.outputs import PREPARED_DIR
from stages.params import StageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


# ----------------------------------------------------------------------------- reading image folders

def list_classes(split_dir: Path) -> list[str]:
    """Class names are the sub-folder names, sorted, as torchvision's ImageFolder does."""
    class_names = sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir())
    if not class_names:
        raise StageError(f"{split_dir} has no class folders; expected {split_dir}/<class>/<image files>")
    return class_names


def list_images(split_dir: Path, class_names: list[str]) -> tuple[list[Path], np.ndarray]:
    """All image files under split_dir/<class>/, in a stable order, with their label indices."""
    paths, labels = [], []
    for label, class_name in enumerate(class_names):
        class_dir = split_dir / class_name
        if not class_dir.is_dir():
            raise StageError(f"{class_dir} is missing: every split needs the same class folders")
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise StageError(f"{class_dir} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        paths += files
        labels += [label] * len(files)
    return paths, np.array(labels, dtype=np.int64)


def _decode(paths: list[Path]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths])


def decode_images(paths: list[Path], workers: int | None = None) -> np.ndarray:
    """Decode images to one uint8 array (N, H, W, 3), in parallel; all images must share one size."""
    workers = workers or len(os.sched_getaffinity(0))
    chunks = [paths[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        try:
            decoded = list(pool.map(_decode, chunks))
        except ValueError:  # np.stack of images of different sizes
            sizes = {}
            for path in paths:
                sizes.setdefault(Image.open(path).size, path)
            raise StageError(f"images differ in size: {', '.join(f'{p} is {s[0]}x{s[1]}' for s, p in sizes.items())};"
                             " resize them to one size first") from None
    images = np.empty((len(paths), *decoded[0].shape[1:]), dtype=np.uint8)
    for i, chunk in enumerate(decoded):
        images[i::workers] = chunk
    return images


def read_image_folder(split_dir: Path, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    paths, labels = list_images(split_dir, class_names)
    return decode_images(paths), labels


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

def flip_half(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of a (N, C, H, W) batch left-right."""
    flip = torch.rand(len(images), generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


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
            chosen = torch.nonzero((shifts[0] == dy) & (shifts[1] == dx)).flatten()
            out[chosen] = padded[chosen, :, dy:dy + height, dx:dx + width]
    return out
