"""The download path's conversion, offline, on a tiny archive in the official CIFAR-10 format."""

import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from classifier.data import decode_images, group_by_split, read_raw
from commands.download import BATCHES, ChecksumError, convert_release

CLASS_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_official_release(tmp_path, per_batch=4):
    """cifar-10-python.tar.gz as released: pickled batches of rows of 3072 bytes (R plane, G, B)."""
    rng = np.random.default_rng(0)
    batches_dir = tmp_path / "cifar-10-batches-py"
    batches_dir.mkdir()
    contents = {}
    for name in BATCHES["train"] + BATCHES["test"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(batches_dir / name, "wb") as file:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, file)
        contents[name] = (data, labels)
    with open(batches_dir / "batches.meta", "wb") as file:
        pickle.dump({b"label_names": [n.encode() for n in CLASS_NAMES], b"num_vis": 3072}, file)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(batches_dir, arcname="cifar-10-batches-py")
    return archive, contents


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_conversion_is_lossless_and_in_the_pipeline_layout(tmp_path):
    release, contents = write_official_release(tmp_path)
    archive = tmp_path / "data/raw/cifar10.tar"
    archive.parent.mkdir(parents=True)
    convert_release(release, archive, md5=md5(release))

    entries = read_raw(archive)
    files = {entry.path: entry.contents for entry in entries}
    data, labels = contents["test_batch"]
    first = data[0].reshape(3, 32, 32).transpose(1, 2, 0)
    png = files[f"cifar10/test/{CLASS_NAMES[labels[0]]}/0000.png"]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), first)

    layout = group_by_split(entries, archive)
    train_files = [file for class_files in layout["train"].values() for file in class_files]
    train_images = decode_images(train_files)
    assert train_images.shape == (20, 32, 32, 3)
    train_pixels = np.concatenate([contents[name][0] for name in BATCHES["train"]])
    train_pixels = train_pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    assert sorted(map(bytes, train_images)) == sorted(map(bytes, train_pixels))


def test_conversion_refuses_to_overwrite(tmp_path):
    release, _ = write_official_release(tmp_path, per_batch=1)
    (tmp_path / "existing.tar").write_bytes(b"")
    with pytest.raises(FileExistsError, match="already exists; remove it first"):
        convert_release(release, tmp_path / "existing.tar", md5=md5(release))


def test_release_members_outside_the_folder_are_refused(tmp_path):
    release = tmp_path / "evil.tar.gz"
    with tarfile.open(release, "w:gz") as tar:
        member = tarfile.TarInfo("../escaped.txt")
        member.size = 4
        tar.addfile(member, io.BytesIO(b"evil"))
    (tmp_path / "out").mkdir()
    with pytest.raises(tarfile.OutsideDestinationError):
        convert_release(release, tmp_path / "out/cifar10.tar", md5=md5(release))
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out/escaped.txt").exists()


def test_a_release_with_the_wrong_checksum_is_not_unpacked(tmp_path):
    release, _ = write_official_release(tmp_path, per_batch=1)
    (tmp_path / "out").mkdir()
    with pytest.raises(
        ChecksumError, match=r"cifar-10-python.tar.gz has md5 \w+, not the published c58f3"
    ):
        # the published md5, which the fake lacks
        convert_release(release, tmp_path / "out/cifar10.tar")
    assert list((tmp_path / "out").iterdir()) == []
