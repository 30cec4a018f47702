import numpy as np
import pytest
import torch

from stages.data import (decode_images, flip_half, list_classes, list_images, load_split, read_image_folder,
                         save_split, scale_pixels, stratified_split, translate)
from stages.params import StageError
from tests.conftest import CLASSES, make_image_folder


def test_image_folder_gives_classes_from_folder_names(image_folder):
    assert list_classes(image_folder / "train") == CLASSES
    images, labels = read_image_folder(image_folder / "train", CLASSES)
    assert images.shape == (120, 16, 16, 3) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [40, 40, 40]


def test_parallel_decoding_keeps_file_order(image_folder):
    paths, _ = list_images(image_folder / "test", CLASSES)
    assert np.array_equal(decode_images(paths, workers=3), decode_images(paths, workers=1))


def test_empty_class_folder_is_an_error(tmp_path):
    (tmp_path / "train/cat").mkdir(parents=True)
    with pytest.raises(StageError, match="train/cat holds no images"):
        list_images(tmp_path / "train", ["cat"])


def test_images_of_different_sizes_are_named(tmp_path):
    make_image_folder(tmp_path / "a", {"train": 2}, size=16)
    make_image_folder(tmp_path / "b", {"train": 2}, size=8)
    paths = [*list_images(tmp_path / "a/train", CLASSES)[0], *list_images(tmp_path / "b/train", CLASSES)[0]]
    with pytest.raises(StageError, match="images differ in size: .* is 16x16, .* is 8x8"):
        decode_images(paths, workers=2)


def test_stratified_split_is_seeded_disjoint_and_keeps_class_shares():
    labels = np.repeat(np.arange(4), 50)
    train_idx, val_idx = stratified_split(labels, 0.2, seed=3)
    assert len(np.intersect1d(train_idx, val_idx)) == 0 and len(train_idx) + len(val_idx) == 200
    assert np.bincount(labels[val_idx]).tolist() == [10, 10, 10, 10]
    again, _ = stratified_split(labels, 0.2, seed=3)
    other, _ = stratified_split(labels, 0.2, seed=4)
    assert np.array_equal(train_idx, again) and not np.array_equal(train_idx, other)


def test_split_roundtrip_and_scaling(tmp_path):
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3) * 2
    save_split("val", images, np.array([0, 1]), ["a", "b"], out_dir=tmp_path)
    loaded, labels, class_names = load_split("val", prepared_dir=tmp_path)
    assert np.array_equal(loaded, images) and labels.tolist() == [0, 1] and class_names == ["a", "b"]
    scaled = scale_pixels(np.array([0, 255], dtype=np.uint8))
    assert scaled.tolist() == [0.0, 1.0]


def test_load_split_missing_says_run_prepare(tmp_path):
    with pytest.raises(StageError, match="run the prepare stage first"):
        load_split("train", prepared_dir=tmp_path)


def test_flip_half_mirrors_some_images_and_keeps_the_rest():
    images = torch.arange(64 * 3 * 4 * 4, dtype=torch.float32).reshape(64, 3, 4, 4)
    flipped = flip_half(images, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images)]
    unchanged = [torch.equal(f, i) for f, i in zip(flipped, images)]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert 10 < sum(mirrored) < 54


def test_translate_shifts_within_bounds_and_reflects():
    images = torch.rand(200, 3, 8, 8)
    shifted = translate(images, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="reflect")
    offsets = set()
    for k in range(len(images)):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(shifted[k], padded[k, :, dy:dy + 8, dx:dx + 8])]
        assert matches, "every output is a crop of the reflect-padded input"
        offsets.add(matches[0])
    assert len(offsets) > 20  # nearly all 25 shifts occur
    assert torch.equal(translate(images, 0, torch.Generator()), images)
