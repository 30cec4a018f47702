"""The raw images in (an image folder or a tar archive), decoded into uint8 arrays, and the train/validation split."""

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from classifier.cli import UserError
from classifier.images import (ARCHIVE_KINDS, IMAGE_SUFFIXES, Entry, decode_rgb, examples, is_archive, is_image_name,
                           quiet_stderr, read_entries)

SPLITS = ("train", "test")


# ----------------------------------------------------------------------------- reading the raw data

def read_raw(raw: Path) -> list[Entry]:
    """Every file and folder of data.raw, an image folder or a tar archive, sorted by path.

    One tar archive instead of 60,000 small files is what makes `dvc pull` and `dvc status` fast.
    """
    if not (raw.is_dir() or is_archive(raw)):
        raise UserError(f"params.yaml: 'data.raw' is '{raw}', which is neither an image folder nor {ARCHIVE_KINDS}; "
                         "run `make data` (dvc pull) or `make download`, or point it at your own data")
    entries = sorted(read_entries(raw), key=lambda entry: entry.path)
    unreadable = [f"{entry.path} ({entry.problem})" for entry in entries if entry.problem]
    if unreadable:
        raise UserError(f"{raw}: {len(unreadable)} entries cannot be read: {examples(unreadable)}; remove them "
                         "or replace them with the files themselves")
    return entries


def group_by_split(entries: list[Entry], raw: Path) -> dict[str, dict[str, list[tuple[str, bytes]]]]:
    """{split: {class name: [(path, contents)]}} for the images laid out as [top folder/]<split>/<class>/<file>.

    Hidden files, files without an image suffix and files elsewhere are skipped, and counted once.
    """
    layout = {split: {} for split in SPLITS}
    skipped = []
    for entry in entries:
        parts = entry.path.split("/")
        if entry.contents is None:  # a folder: [top/]<split>/<class> is a class, even with no images in it
            parts = parts[1:] if len(parts) == 3 else parts
            if len(parts) == 2 and parts[0] in layout and not parts[1].startswith("."):
                layout[parts[0]].setdefault(parts[1], [])
            continue
        if len(parts) == 4:  # one top folder, as in cifar10.tar's cifar10/train/<class>/<file>
            parts = parts[1:]
        if len(parts) == 3 and parts[0] in layout and not parts[2].startswith(".") and is_image_name(parts[2]):
            layout[parts[0]].setdefault(parts[1], []).append((entry.path, entry.contents))
        else:
            skipped.append(entry.path)
    if skipped:
        print(f"note: skipped {len(skipped)} files that are not <split>/<class>/<image> with an image suffix "
              f"({', '.join(sorted(IMAGE_SUFFIXES))}) or are hidden: {examples(skipped)}", flush=True)
    for split, classes in layout.items():
        if not classes:
            raise UserError(f"{raw} holds no {split}/<class>/<image> files ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                             "lay it out as [folder/]train/<class>/* and [folder/]test/<class>/*")
    empty = [f"{split}/{name}" for split, classes in layout.items() for name, images in classes.items() if not images]
    if empty:
        raise UserError(f"{raw}: {len(empty)} class folders hold no images ({examples(empty)}); add images or "
                         "remove the folders")
    return layout


def _decode(files: list[tuple[str, bytes]]) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Decoded RGB uint8 images, the paths that could not be decoded, and those that were converted to 8-bit RGB."""
    images, unreadable, converted = [], [], []
    with quiet_stderr():
        for path, contents in files:
            image, was_converted = decode_rgb(contents)
            if image is None:
                unreadable.append(path)
                continue
            if was_converted:
                converted.append(path)
            images.append(image.numpy())
    return images, unreadable, converted


def decode_images(files: list[tuple[str, bytes]], workers: int | None = None) -> np.ndarray:
    """Decode encoded images to one uint8 array (N, H, W, 3), in parallel; all images must share one size.

    Grayscale, palette, alpha and 16-bit images are converted to 8-bit RGB, with one note saying how many.
    """
    workers = workers or len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(workers) as pool:
        chunks = list(pool.map(_decode, [files[i::workers] for i in range(workers)]))
    unreadable = sorted(path for _, bad, _ in chunks for path in bad)
    if unreadable:
        raise UserError(f"{len(unreadable)} files are not readable images (empty, corrupt, truncated or not images "
                         f"despite their suffix): {examples(unreadable)}; remove or replace them")
    converted = sorted(path for _, _, changed in chunks for path in changed)
    if converted:
        print(f"note: converted {len(converted)} images that were not 8-bit RGB (grayscale, palette, alpha or "
              f"16-bit) to 8-bit RGB: {examples(converted)}", flush=True)
    sizes = {}
    for chunk, (images, _, _) in enumerate(chunks):
        for k, image in enumerate(images):
            sizes.setdefault(image.shape[:2], files[chunk + k * workers][0])
    if len(sizes) > 1:
        raise UserError(f"images differ in size: {', '.join(f'{p} is {w}x{h}' for (h, w), p in sizes.items())}; "
                         "resize them to one size first")
    stacked = np.empty((len(files), *chunks[0][0][0].shape), dtype=np.uint8)
    for i, (images, _, _) in enumerate(chunks):
        stacked[i::workers] = images
    return stacked


def read_dataset(raw: Path) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Class names (the class folder names, sorted) and, per split, uint8 images (N, H, W, 3) and labels."""
    layout = group_by_split(read_raw(raw), raw)
    class_names = sorted(layout["train"])
    if sorted(layout["test"]) != class_names:
        raise UserError(f"{raw}: train and test have different class folders ({', '.join(class_names)} against "
                         f"{', '.join(sorted(layout['test']))}); they must match")
    if len(class_names) < 2:
        raise UserError(f"{raw} has one class ({class_names[0]}); a classifier needs at least two class folders")
    splits = {}
    for split, classes in layout.items():
        files = [file for name in class_names for file in classes[name]]
        labels = np.repeat(np.arange(len(class_names)), [len(classes[name]) for name in class_names])
        splits[split] = (decode_images(files), labels)
    if splits["test"][0].shape[1:] != splits["train"][0].shape[1:]:
        raise UserError(f"{raw}: test images are {splits['test'][0].shape[1:]}, training images "
                         f"{splits['train'][0].shape[1:]}; they must be the same size")
    return class_names, splits


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int,
                     class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded split that keeps each class's share in both parts."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(len(members) * val_fraction))
        if n_val == 0 or n_val == len(members):
            raise UserError(f"params.yaml: 'data.val_fraction' {val_fraction} leaves class '{class_names[label]}' "
                             f"({len(members)} images) with an empty split; use a fraction nearer 0.5")
        val_idx.append(members[:n_val])
        train_idx.append(members[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))
