"""Image files in: one reader for folders and tar archives, and one decoder, shared by prepare and predict."""

import contextlib
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
ARCHIVE_KINDS = "a tar archive (uncompressed, or compressed with gzip, bzip2 or xz)"
REFUSED_MEMBERS = {  # what tarfile's data filter refuses, in words that make sense without extracting anything
    tarfile.OutsideDestinationError: "its path climbs out of the archive",
    tarfile.AbsolutePathError: "an absolute path",
    tarfile.AbsoluteLinkError: "a link to an absolute path",
    tarfile.LinkOutsideDestinationError: "a link that points out of the archive",
    tarfile.SpecialFileError: "a device or pipe, not a file",
}


@dataclass(frozen=True)
class Entry:
    """A file or folder of an image folder or tar archive: its path inside it and its bytes (None for a folder).

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
    """Every file and folder of an image folder (sorted by path) or a tar archive (in the archive's order)."""
    yield from (_folder_entries(path) if path.is_dir() else _archive_entries(path))


def _folder_entries(root: Path) -> Iterator[Entry]:
    """Symbolic links to folders are followed (each real folder once, so a link loop ends); a broken link or a
    special file (a pipe, a device) is an Entry with a problem, never opened."""
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
    """Members are vetted by tarfile's own `data` filter, the one that guards extraction: a member whose path
    climbs out of the archive ('../'), a link to an absolute path or out of the archive, a device or a pipe is an
    Entry with a problem and its bytes are never read (a leading '/' is dropped, as tar itself does)."""
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
                file = archive.extractfile(member)  # a link's bytes are its target's, when that is in the archive
            except KeyError:
                file = None
            yield Entry(name, file.read()) if file else Entry(name, b"", "a link to no file in the archive")


@contextlib.contextmanager
def quiet_stderr():
    """Silence what C libraries print on file descriptor 2 (libpng's "bad header"): our own message says it once."""
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def decode_rgb(contents: bytes) -> tuple[torch.Tensor | None, bool]:
    """8-bit RGB pixels (H, W, 3) of an encoded image and whether it had to be converted (grayscale, palette,
    alpha or 16-bit); (None, False) for bytes that are not a readable image (empty, truncated, corrupt)."""
    if not contents:
        return None, False
    try:
        image = decode_image(torch.frombuffer(bytearray(contents), dtype=torch.uint8), ImageReadMode.RGB)
    except (RuntimeError, ValueError):
        return None, False
    converted = image.dtype != torch.uint8 or not is_8bit_rgb(contents)
    if image.dtype != torch.uint8:  # 16-bit PNG: keep the high byte
        image = (image.to(torch.int32) >> 8).to(torch.uint8)
    return image.permute(1, 2, 0), converted


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


def examples(paths: list[str], count: int = 3) -> str:
    """'a, b, c and 7 more': the first few of a list of paths, for a one-line message."""
    more = f" and {len(paths) - count} more" if len(paths) > count else ""
    return ", ".join(paths[:count]) + more
