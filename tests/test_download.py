"""The download path's conversion, offline, on a tiny archive in the official CIFAR-10 format."""

import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from stages.data import list_classes, read_image_folder
from stages.download import BATCHES, convert_archive

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_official_archive(tmp_path, per_batch=4):
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


def test_conversion_is_lossless_and_in_the_pipeline_layout(tmp_path):
    archive, contents = write_official_archive(tmp_path)
    out_dir = tmp_path / "data/raw/cifar10"
    out_dir.parent.mkdir(parents=True)
    convert_archive(archive, out_dir)

    data, labels = contents["test_batch"]
    first = data[0].reshape(3, 32, 32).transpose(1, 2, 0)
    class_name = CLASS_NAMES[labels[0]]
    assert np.array_equal(np.asarray(Image.open(out_dir / "test" / class_name / "0000.png")), first)

    present = sorted({CLASS_NAMES[label] for _, batch_labels in contents.values() for label in batch_labels})
    train_images, _ = read_image_folder(out_dir / "train", list_classes(out_dir / "train"))
    assert train_images.shape == (20, 32, 32, 3)
    assert set(list_classes(out_dir / "train")) | set(list_classes(out_dir / "test")) == set(present)
    train_pixels = np.concatenate([contents[name][0] for name in BATCHES["train"]])
    train_pixels = train_pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    assert sorted(map(bytes, train_images)) == sorted(map(bytes, train_pixels))


def test_conversion_refuses_to_overwrite(tmp_path):
    archive, _ = write_official_archive(tmp_path, per_batch=1)
    (tmp_path / "existing").mkdir()
    with pytest.raises(FileExistsError, match="already exists; remove it first"):
        convert_archive(archive, tmp_path / "existing")
