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

def read_raw_files(raw: Path) -> list[tuple[str, bytes | None]]:
    """(path inside raw, file contents) of every regular file of an image folder or a tar archive, sorted by path;
    folders are listed too, as (path, None), so that an empty class folder can be reported.

    One tar archive instead of 60,000 small files is what makes `dvc pull` and `dvc status` fast.
    """
    if raw.is_dir():
        return [(path.relative_to(raw).as_posix(), None if path.is_dir() else path.read_bytes())
                for path in sorted(raw.rglob("*")) if path.is_dir() or path.is_file()]
    if raw.is_file() and tarfile.is_tarfile(raw):
        contents = raw.read_bytes()  # one read, then slices: faster than a read per member
        with tarfile.open(fileobj=io.BytesIO(contents)) as archive:
            members = [member for member in archive if member.isfile() or member.isdir()]
        return sorted((m.name.removeprefix("./").rstrip("/"),
                       contents[m.offset_data:m.offset_data + m.size] if m.isfile() else None) for m in members)
    raise StageError(f"params.yaml: 'data.raw' is '{raw}', which is neither an image folder nor a tar archive; "
                     "run `make data` (dvc pull) or `make download`, or point it at your own data")


def examples(paths: list[str], count: int = 3) -> str:
    """'a, b, c and 7 more': the first few of a list of paths, for a one-line message."""
    more = f" and {len(paths) - count} more" if len(paths) > count else ""
    return ", ".join(paths[:count]) + more


def group_by_split(files: list[tuple[str, bytes | None]], raw: Path) -> dict[str, dict[str, list[tuple[str, bytes]]]]:
    """{split: {class name: [(path, contents)]}} for the images laid out as [top folder/]<split>/<class>/<file>.

    Hidden files, files without an image suffix and files elsewhere are skipped, and counted once.
    """
    layout = {split: {} for split in SPLITS}
    skipped = []
    for path, contents in files:
        parts = path.split("/")
        if contents is None:  # a folder: [top/]<split>/<class> is a class, even with no images in it
            parts = parts[1:] if len(parts) == 3 else parts
            if len(parts) == 2 and parts[0] in layout and not parts[1].startswith("."):
                layout[parts[0]].setdefault(parts[1], [])
            continue
        if len(parts) == 4:  # one top folder, as in cifar10.tar's cifar10/train/<class>/<file>
            parts = parts[1:]
        if (len(parts) == 3 and parts[0] in layout and not parts[2].startswith(".")
                and Path(parts[2]).suffix.lower() in IMAGE_SUFFIXES):
            layout[parts[0]].setdefault(parts[1], []).append((path, contents))
        else:
            skipped.append(path)
    if skipped:
        print(f"note: skipped {len(skipped)} files that are not <split>/<class>/<image> with an image suffix "
              f"({', '.join(sorted(IMAGE_SUFFIXES))}) or are hidden: {examples(skipped)}", flush=True)
    for split, classes in layout.items():
        if not classes:
            raise StageError(f"{raw} holds no {split}/<class>/<image> files ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                             "lay it out as [folder/]train/<class>/* and [folder/]test/<class>/*")
    empty = [f"{split}/{name}" for split, classes in layout.items() for name, images in classes.items() if not images]
    if empty:
        raise StageError(f"{raw}: {len(empty)} class folders hold no images ({examples(empty)}); add images or "
                         "remove the folders")
    return layout


def is_8bit_rgb(contents: bytes) -> bool:
    """False for a PNG or JPEG whose header says grayscale, palette, alpha or 16-bit (it gets converted)."""
    if contents[:8] == b"\x89PNG\r\n\x1a\n":
        return contents[24] == 8 and contents[25] == 2  # IHDR bit depth 8, colour type 2 (truecolour)
    if contents[:2] == b"\xff\xd8":
        position = 2
        while position + 9 < len(contents) and contents[position] == 0xFF:
            marker, length = contents[position + 1], int.from_bytes(contents[position + 2:position + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                return contents[position + 9] == 3  # the frame header's number of components
            position += 2 + length
    return True


def _decode(files: list[tuple[str, bytes]]) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Decoded RGB uint8 images, the paths that could not be decoded, and those that were converted to 8-bit RGB."""
    images, unreadable, converted = [], [], []
    for path, contents in files:
        try:
            image = decode_image(torch.frombuffer(bytearray(contents), dtype=torch.uint8), ImageReadMode.RGB)
        except RuntimeError:
            unreadable.append(path)
            continue
        if image.dtype != torch.uint8:  # 16-bit PNG
            image = (image.to(torch.int32) >> 8).to(torch.uint8)
            converted.append(path)
        elif not is_8bit_rgb(contents):
            converted.append(path)
        images.append(image.permute(1, 2, 0).numpy())
    return images, unreadable, converted


def decode_images(files: list[tuple[str, bytes]], workers: int | None = None) -> np.ndarray:
    """Decode encoded images to one uint8 array (N, H, W, 3), in parallel; all images must share one size.

    Grayscale, palette, alpha and 16-bit images are converted to 8-bit RGB, with one note saying how many.
    torchvision's decoder (libjpeg-turbo, libpng) is 2 to 2.5x faster than PIL on these tiny images.
    """
    workers = workers or len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(workers) as pool:
        chunks = list(pool.map(_decode, [files[i::workers] for i in range(workers)]))
    unreadable = sorted(path for _, bad, _ in chunks for path in bad)
    if unreadable:
        raise StageError(f"{len(unreadable)} files are not readable images (corrupt, truncated or not images "
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
        raise StageError(f"images differ in size: {', '.join(f'{p} is {w}x{h}' for (h, w), p in sizes.items())}; "
                         "resize them to one size first")
    stacked = np.empty((len(files), *chunks[0][0][0].shape), dtype=np.uint8)
    for i, (images, _, _) in enumerate(chunks):
        stacked[i::workers] = images
    return stacked


def read_dataset(raw: Path) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Class names (the class folder names, sorted) and, per split, uint8 images (N, H, W, 3) and labels."""
    layout = group_by_split(read_raw_files(raw), raw)
    class_names = sorted(layout["train"])
    if sorted(layout["test"]) != class_names:
        raise StageError(f"{raw}: train and test have different class folders ({', '.join(class_names)} against "
                         f"{', '.join(sorted(layout['test']))}); they must match")
    if len(class_names) < 2:
        raise StageError(f"{raw} has one class ({class_names[0]}); a classifier needs at least two class folders")
    splits = {}
    for split, classes in layout.items():
        files = [file for name in class_names for file in classes[name]]
        labels = np.repeat(np.arange(len(class_names)), [len(classes[name]) for name in class_names])
        splits[split] = (decode_images(files), labels)
    if splits["test"][0].shape[1:] != splits["train"][0].shape[1:]:
        raise StageError(f"{raw}: test images are {splits['test'][0].shape[1:]}, training images "
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
            raise StageError(f"params.yaml: 'data.val_fraction' {val_fraction} leaves class '{class_names[label]}' "
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
