"""The data: image files in (a folder or a tar archive, decoded to uint8 RGB), the stratified
train/validation split, and the prepared arrays (data/prepared/{train,val,test}.npz) that prepare
writes and the other stages read."""

import contextlib
import os
import stat
import tarfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from classifier.errors import UserError
from classifier.files import PREPARED_DIR, write_atomically

if TYPE_CHECKING:
    import torch

# ------------------------------------------------------------ image files

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
ARCHIVE_KINDS = "a tar archive (uncompressed, or compressed with gzip, bzip2 or xz)"
# what tarfile's data filter refuses, in words that make sense without extracting anything
REFUSED_MEMBERS = {
    tarfile.OutsideDestinationError: "its path climbs out of the archive",
    tarfile.AbsolutePathError: "an absolute path",
    tarfile.AbsoluteLinkError: "a link to an absolute path",
    tarfile.LinkOutsideDestinationError: "a link that points out of the archive",
    tarfile.SpecialFileError: "a device or pipe, not a file",
}


@dataclass(frozen=True)
class Entry:
    """A file or folder of an image folder or tar archive: its path inside it and its bytes (None
    for a folder).

    problem says why a file's bytes could not be read (then contents is b"").
    """

    path: str
    contents: bytes | None
    problem: str = ""


def is_image_name(path: str) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_archive(path: Path) -> bool:
    return path.is_file() and tarfile.is_tarfile(path)


def read_entries(path: Path) -> Iterator[Entry]:
    """Every file and folder of an image folder (sorted by path) or a tar archive (in the archive's
    order)."""
    yield from (_folder_entries(path) if path.is_dir() else _archive_entries(path))


def _folder_entries(root: Path) -> Iterator[Entry]:
    """Symbolic links to folders are followed (each real folder once, so a link loop ends); a broken
    link or a special file (a pipe, a device) is an Entry with a problem, never opened."""
    found, seen = [], set()
    for folder, folders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            folders.clear()
            continue
        seen.add(real)
        found += [Path(folder, name) for name in folders + files]
    for path in sorted(found):
        name = path.relative_to(root).as_posix()
        if path.is_dir():
            yield Entry(name, None)
        elif not path.exists():
            yield Entry(name, b"", "a broken link")
        elif not stat.S_ISREG(path.stat().st_mode):
            yield Entry(name, b"", "not a regular file")
        else:
            yield Entry(name, path.read_bytes())


def _archive_entries(archive_path: Path) -> Iterator[Entry]:
    """Members are vetted by tarfile's own `data` filter, the one that guards extraction: a member
    whose path climbs out of the archive ('../'), a link to an absolute path or out of the archive,
    a device or a pipe is an Entry with a problem and its bytes are never read (a leading '/' is
    dropped, as tar itself does)."""
    with tarfile.open(archive_path) as archive:
        for member in archive:
            try:
                name = tarfile.data_filter(member, "/archive").name.removeprefix("./").rstrip("/")
            except tarfile.FilterError as error:
                yield Entry(member.name, b"", REFUSED_MEMBERS.get(type(error), str(error)))
                continue
            if member.isdir():
                yield Entry(name, None)
                continue
            try:
                # a link's bytes are its target's, when that is in the archive
                file = archive.extractfile(member)
            except KeyError:
                file = None
            yield (
                Entry(name, file.read())
                if file
                else Entry(name, b"", "a link to no file in the archive")
            )


@contextlib.contextmanager
def quiet_stderr():
    """Silence what C libraries print on file descriptor 2 (libpng's "bad header"): our own message
    says it once."""
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def decode_rgb(contents: bytes) -> tuple["torch.Tensor | None", bool]:
    """8-bit RGB pixels (H, W, 3) of an encoded image and whether it had to be converted (grayscale,
    palette, alpha or 16-bit); (None, False) for bytes that are not a readable image (empty,
    truncated, corrupt)."""
    # imported here: torch and torchvision cost every stage that imports this module seconds (the
    # plot stage needs neither)
    import torch
    from torchvision.io import ImageReadMode, decode_image

    if not contents:
        return None, False
    try:
        image = decode_image(
            torch.frombuffer(bytearray(contents), dtype=torch.uint8), ImageReadMode.RGB
        )
    except (RuntimeError, ValueError):
        return None, False
    converted = image.dtype != torch.uint8 or not is_8bit_rgb(contents)
    if image.dtype != torch.uint8:  # 16-bit PNG: keep the high byte
        image = (image.to(torch.int32) >> 8).to(torch.uint8)
    return image.permute(1, 2, 0), converted


def is_8bit_rgb(contents: bytes) -> bool:
    """False for a PNG or JPEG whose header says grayscale, palette, alpha or 16-bit (it gets
    converted)."""
    if contents[:8] == b"\x89PNG\r\n\x1a\n":
        # IHDR bit depth 8, colour type 2 (truecolour)
        return contents[24] == 8 and contents[25] == 2
    if contents[:2] == b"\xff\xd8":
        position = 2
        while position + 9 < len(contents) and contents[position] == 0xFF:
            marker, length = (
                contents[position + 1],
                int.from_bytes(contents[position + 2 : position + 4], "big"),
            )
            if marker in (
                0xC0,
                0xC1,
                0xC2,
                0xC3,
                0xC5,
                0xC6,
                0xC7,
                0xC9,
                0xCA,
                0xCB,
                0xCD,
                0xCE,
                0xCF,
            ):
                return contents[position + 9] == 3  # the frame header's number of components
            position += 2 + length
    return True


def examples(paths: list[str], count: int = 3) -> str:
    """'a, b, c and 7 more': the first few of a list of paths, for a one-line message."""
    more = f" and {len(paths) - count} more" if len(paths) > count else ""
    return ", ".join(paths[:count]) + more


# ------------------------------------------------------------ the raw data set

SPLITS = ("train", "test")


def read_raw(raw: Path) -> list[Entry]:
    """Every file and folder of data.raw, an image folder or a tar archive, sorted by path.

    One tar archive instead of 60,000 small files is what makes `dvc pull` and `dvc status` fast.
    """
    if not (raw.is_dir() or is_archive(raw)):
        raise UserError(
            f"params.yaml: 'data.raw' is '{raw}', which is neither an image folder nor "
            f"{ARCHIVE_KINDS}; run `make data` (dvc pull) or `make download`, or point it at "
            "your own data"
        )
    entries = sorted(read_entries(raw), key=lambda entry: entry.path)
    unreadable = [f"{entry.path} ({entry.problem})" for entry in entries if entry.problem]
    if unreadable:
        raise UserError(
            f"{raw}: {len(unreadable)} entries cannot be read: {examples(unreadable)}; remove "
            "them or replace them with the files themselves"
        )
    return entries


def group_by_split(
    entries: list[Entry], raw: Path
) -> dict[str, dict[str, list[tuple[str, bytes]]]]:
    """{split: {class name: [(path, contents)]}} for the images laid out as [top
    folder/]<split>/<class>/<file>.

    Hidden files, files without an image suffix and files elsewhere are skipped, and counted once.
    """
    layout = {split: {} for split in SPLITS}
    skipped = []
    for entry in entries:
        parts = entry.path.split("/")
        # a folder: [top/]<split>/<class> is a class, even with no images in it
        if entry.contents is None:
            parts = parts[1:] if len(parts) == 3 else parts
            if len(parts) == 2 and parts[0] in layout and not parts[1].startswith("."):
                layout[parts[0]].setdefault(parts[1], [])
            continue
        if len(parts) == 4:  # one top folder, as in cifar10.tar's cifar10/train/<class>/<file>
            parts = parts[1:]
        if (
            len(parts) == 3
            and parts[0] in layout
            and not parts[2].startswith(".")
            and is_image_name(parts[2])
        ):
            layout[parts[0]].setdefault(parts[1], []).append((entry.path, entry.contents))
        else:
            skipped.append(entry.path)
    if skipped:
        print(
            f"note: skipped {len(skipped)} files that are not <split>/<class>/<image> with an "
            f"image suffix ({', '.join(sorted(IMAGE_SUFFIXES))}) or are hidden: "
            f"{examples(skipped)}",
            flush=True,
        )
    for split, classes in layout.items():
        if not classes:
            raise UserError(
                f"{raw} holds no {split}/<class>/<image> files "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}); lay it out as [folder/]train/<class>/* "
                "and [folder/]test/<class>/*"
            )
    empty = [
        f"{split}/{name}"
        for split, classes in layout.items()
        for name, images in classes.items()
        if not images
    ]
    if empty:
        raise UserError(
            f"{raw}: {len(empty)} class folders hold no images ({examples(empty)}); add images "
            "or remove the folders"
        )
    return layout


def _decode(files: list[tuple[str, bytes]]) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Decoded RGB uint8 images, the paths that could not be decoded, and those that were converted
    to 8-bit RGB."""
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
    """Decode encoded images to one uint8 array (N, H, W, 3), in parallel; all images must share one
    size.

    Grayscale, palette, alpha and 16-bit images are converted to 8-bit RGB, with one note saying how
    many.
    """
    # imported before the workers start, so that each inherits it: imported in each, it took longer
    # than decoding 1,700 small images
    import torchvision.io  # noqa: F401

    workers = workers or len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(workers) as pool:
        chunks = list(pool.map(_decode, [files[i::workers] for i in range(workers)]))
    unreadable = sorted(path for _, bad, _ in chunks for path in bad)
    if unreadable:
        raise UserError(
            f"{len(unreadable)} files are not readable images (empty, corrupt, truncated or not "
            f"images despite their suffix): {examples(unreadable)}; remove or replace them"
        )
    converted = sorted(path for _, _, changed in chunks for path in changed)
    if converted:
        print(
            f"note: converted {len(converted)} images that were not 8-bit RGB (grayscale, "
            f"palette, alpha or 16-bit) to 8-bit RGB: {examples(converted)}",
            flush=True,
        )
    sizes = {}
    for chunk, (images, _, _) in enumerate(chunks):
        for k, image in enumerate(images):
            sizes.setdefault(image.shape[:2], files[chunk + k * workers][0])
    if len(sizes) > 1:
        raise UserError(
            "images differ in size: "
            f"{', '.join(f'{p} is {w}x{h}' for (h, w), p in sizes.items())}; resize them to one "
            "size first"
        )
    stacked = np.empty((len(files), *chunks[0][0][0].shape), dtype=np.uint8)
    for i, (images, _, _) in enumerate(chunks):
        stacked[i::workers] = images
    return stacked


def read_dataset(raw: Path) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Class names (the class folder names, sorted) and, per split, uint8 images (N, H, W, 3) and
    labels."""
    layout = group_by_split(read_raw(raw), raw)
    class_names = sorted(layout["train"])
    if sorted(layout["test"]) != class_names:
        raise UserError(
            f"{raw}: train and test have different class folders ({', '.join(class_names)} "
            f"against {', '.join(sorted(layout['test']))}); they must match"
        )
    if len(class_names) < 2:
        raise UserError(
            f"{raw} has one class ({class_names[0]}); a classifier needs at least two class folders"
        )
    splits = {}
    for split, classes in layout.items():
        files = [file for name in class_names for file in classes[name]]
        labels = np.repeat(
            np.arange(len(class_names)), [len(classes[name]) for name in class_names]
        )
        splits[split] = (decode_images(files), labels)
    if splits["test"][0].shape[1:] != splits["train"][0].shape[1:]:
        raise UserError(
            f"{raw}: test images are {splits['test'][0].shape[1:]}, training images "
            f"{splits['train'][0].shape[1:]}; they must be the same size"
        )
    return class_names, splits


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int, class_names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded split that keeps each class's share in both parts."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(len(members) * val_fraction))
        if n_val == 0 or n_val == len(members):
            raise UserError(
                f"params.yaml: 'data.val_fraction' {val_fraction} leaves class "
                f"'{class_names[label]}' ({len(members)} images) with an empty split; use a "
                "fraction nearer 0.5"
            )
        val_idx.append(members[:n_val])
        train_idx.append(members[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


# ------------------------------------------------------------ the prepared arrays


def save_split(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    out_dir: Path = PREPARED_DIR,
) -> None:
    def write(tmp_path: Path) -> None:
        with open(tmp_path, "wb") as file:
            np.savez(file, images=images, labels=labels, class_names=np.array(class_names))

    write_atomically(out_dir / f"{name}.npz", write)


def load_split(
    name: str, prepared_dir: Path = PREPARED_DIR
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    path = prepared_dir / f"{name}.npz"
    if not path.exists():
        raise UserError(f"{path} not found; run the prepare stage first (dvc repro prepare)")
    with np.load(path) as arrays:
        return arrays["images"], arrays["labels"], [str(c) for c in arrays["class_names"]]
