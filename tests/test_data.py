import io
import os
import shutil
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from classifier.batches import cutout, flip_where, scale_pixels, translate
from classifier.data import (
    decode_images,
    load_split,
    read_dataset,
    read_raw,
    save_split,
    stratified_split,
)
from classifier.errors import UserError
from tests.conftest import CLASSES, make_archive, make_image_folder


def test_image_folder_gives_classes_from_folder_names(image_folder):
    class_names, splits = read_dataset(image_folder)
    assert class_names == CLASSES
    images, labels = splits["train"]
    assert images.shape == (120, 16, 16, 3) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [40, 40, 40]
    assert splits["test"][0].shape == (30, 16, 16, 3)


def test_archive_reads_the_same_as_its_folder(image_folder, tmp_path):
    archive = make_archive(image_folder, tmp_path / "cifar10.tar")
    from_folder, from_archive = read_dataset(image_folder), read_dataset(archive)
    assert from_archive[0] == from_folder[0]
    for split in ("train", "test"):
        for folder_array, archive_array in zip(from_folder[1][split], from_archive[1][split]):
            assert np.array_equal(folder_array, archive_array)


def test_hidden_and_foreign_files_are_skipped(tmp_path):
    root = make_image_folder(tmp_path / "data", {"train": 2, "test": 1})
    (root / "train/circle/.0000.png").write_bytes((root / "train/circle/0000.png").read_bytes())
    (root / "train/circle/notes.txt").write_text("not an image")
    (root / "README.md").write_text("about the data")
    assert len(read_dataset(root)[1]["train"][1]) == 6


def test_parallel_decoding_keeps_file_order(image_folder):
    files = [
        (entry.path, entry.contents)
        for entry in read_raw(image_folder)
        if entry.path.startswith("test/") and entry.contents
    ]
    assert np.array_equal(decode_images(files, workers=3), decode_images(files, workers=1))


def test_missing_split_is_an_error(tmp_path):
    make_image_folder(tmp_path / "data", {"train": 2})
    with pytest.raises(UserError, match="holds no test/<class>/<image> files"):
        read_dataset(tmp_path / "data")


def test_classes_must_match_across_splits(image_folder, tmp_path):
    root = make_image_folder(tmp_path / "data", {"train": 2, "test": 1})
    (root / "test/circle").rename(root / "test/oval")
    with pytest.raises(UserError, match="train and test have different class folders"):
        read_dataset(root)


def test_every_unreadable_image_is_counted_and_the_first_named(tmp_path):
    root = make_image_folder(tmp_path / "data", {"train": 3, "test": 1})
    (root / "train/cross/0001.png").write_bytes(b"not a png")  # not an image, with an image suffix
    for name in ("0000", "0002"):
        png = root / f"train/square/{name}.png"
        png.write_bytes(png.read_bytes()[:60])  # truncated
    jpeg = root / "train/circle/0000.jpg"
    Image.open(root / "train/circle/0000.png").save(jpeg)
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    with pytest.raises(
        UserError,
        match=r"^4 files are not readable images \(empty, corrupt, truncated or not images "
        r"despite their suffix\): train/circle/0000.jpg, train/cross/0001.png, "
        r"train/square/0000.png and 1 more; remove or replace them",
    ):
        read_dataset(root)


def test_images_of_other_modes_are_converted_to_rgb_with_one_note(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", {"train": 2, "test": 1})
    rgb = np.asarray(Image.open(root / "train/circle/0000.png"))
    Image.fromarray(rgb).convert("L").save(root / "train/circle/0000.png")
    Image.fromarray(rgb).convert("P").save(root / "train/circle/0001.png")
    Image.fromarray(rgb).convert("RGBA").save(root / "train/cross/0000.png")
    # 16-bit grayscale
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(root / "train/cross/0001.png")
    Image.fromarray(rgb).convert("L").save(root / "test/circle/0000.jpg")
    (root / "test/circle/0000.png").unlink()
    _, splits = read_dataset(root)
    images = splits["train"][0]
    assert images.dtype == np.uint8 and images.shape == (6, 16, 16, 3)
    assert np.array_equal(images[3], rgb[..., 0][..., None].repeat(3, -1))  # 16-bit: the high byte
    output = capsys.readouterr().out
    assert "converted 4 images that were not 8-bit RGB" in output and "converted 1 images" in output


def test_empty_class_folder_is_an_error(tmp_path):
    root = make_image_folder(tmp_path / "data", {"train": 2, "test": 1})
    (root / "train/oval").mkdir()
    (root / "test/oval").mkdir()
    with pytest.raises(
        UserError, match=r"2 class folders hold no images \(train/oval, test/oval\)"
    ):
        read_dataset(root)


def test_one_class_is_not_a_classification_task(tmp_path):
    root = make_image_folder(tmp_path / "data", {"train": 2, "test": 1})
    for split in ("train", "test"):
        for name in ("cross", "square"):
            shutil.rmtree(root / split / name)
    with pytest.raises(
        UserError, match="has one class \\(circle\\); a classifier needs at least two"
    ):
        read_dataset(root)


def test_skipped_files_are_counted_once(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", {"train": 2, "test": 1})
    (root / "train/circle/.DS_Store").write_bytes(b"x")
    (root / "train/circle/labels.csv").write_text("a,b")
    read_dataset(root)
    assert capsys.readouterr().out.count("note: skipped 2 files") == 1


def test_images_of_different_sizes_are_named(tmp_path):
    make_image_folder(tmp_path / "a", {"train": 2}, size=16)
    make_image_folder(tmp_path / "b", {"train": 2}, size=8)
    files = [
        (f"{top}/{entry.path}", entry.contents)
        for top in "ab"
        for entry in read_raw(tmp_path / top)
        if entry.contents
    ]
    with pytest.raises(UserError, match="images differ in size: a/.* is 16x16, b/.* is 8x8"):
        decode_images(files, workers=2)


def test_neither_folder_nor_archive_is_an_error(tmp_path):
    (tmp_path / "data.zip").write_bytes(b"PK")
    with pytest.raises(
        UserError,
        match="'data.raw' is '.*data.zip', which is neither an image folder nor a tar "
        r"archive \(uncompressed, or compressed with gzip, bzip2 or xz\)",
    ):
        read_raw(tmp_path / "data.zip")


def test_stratified_split_is_seeded_disjoint_and_keeps_class_shares():
    labels = np.repeat(np.arange(4), 50)
    train_idx, val_idx = stratified_split(labels, 0.2, seed=3, class_names=list("abcdefghij"))
    assert len(np.intersect1d(train_idx, val_idx)) == 0 and len(train_idx) + len(val_idx) == 200
    assert np.bincount(labels[val_idx]).tolist() == [10, 10, 10, 10]
    again, _ = stratified_split(labels, 0.2, seed=3, class_names=list("abcdefghij"))
    other, _ = stratified_split(labels, 0.2, seed=4, class_names=list("abcdefghij"))
    assert np.array_equal(train_idx, again) and not np.array_equal(train_idx, other)


def test_split_roundtrip_and_scaling(tmp_path):
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3) * 2
    save_split("val", images, np.array([0, 1]), ["a", "b"], out_dir=tmp_path)
    loaded, labels, class_names = load_split("val", prepared_dir=tmp_path)
    assert (
        np.array_equal(loaded, images) and labels.tolist() == [0, 1] and class_names == ["a", "b"]
    )
    scaled = scale_pixels(np.array([0, 255], dtype=np.uint8))
    assert scaled.tolist() == [0.0, 1.0]


def test_load_split_missing_says_run_prepare(tmp_path):
    with pytest.raises(UserError, match="run the prepare stage first"):
        load_split("train", prepared_dir=tmp_path)


def test_flip_where_mirrors_exactly_the_chosen_images():
    images = torch.arange(6 * 3 * 4 * 4, dtype=torch.float32).reshape(6, 3, 4, 4)
    mask = torch.tensor([True, False, True, False, False, True])
    flipped = flip_where(images, mask)
    for image, out, chosen in zip(images, flipped, mask):
        assert torch.equal(out, image.flip(-1) if chosen else image)


def test_translate_shifts_within_bounds_and_reflects():
    images = torch.rand(200, 3, 8, 8)
    shifted = translate(images, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="reflect")
    offsets = set()
    for k in range(len(images)):
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(shifted[k], padded[k, :, dy : dy + 8, dx : dx + 8])
        ]
        assert matches, "every output is a crop of the reflect-padded input"
        offsets.add(matches[0])
    assert len(offsets) > 20  # nearly all 25 shifts occur
    assert torch.equal(translate(images, 0, torch.Generator()), images)


def test_cutout_zeroes_one_square_inside_each_image_and_nothing_else():
    images = torch.rand(200, 3, 8, 8) + 1  # no zeros of their own
    out = cutout(images, 3, torch.Generator().manual_seed(0))
    corners = set()
    for image, cut in zip(images, out):
        zero = (cut == 0).all(0)
        assert zero.sum() == 9 and (cut[:, ~zero] == image[:, ~zero]).all()
        rows, cols = torch.nonzero(zero, as_tuple=True)
        assert rows.max() - rows.min() == 2 and cols.max() - cols.min() == 2  # one 3x3 square
        corners.add((rows.min().item(), cols.min().item()))
    assert len(corners) > 30  # nearly all 36 positions occur
    assert torch.equal(cutout(images, 0, torch.Generator()), images)
    assert (cutout(images, 20, torch.Generator()) == 0).all()  # larger than the image: all of it


def test_a_split_too_small_for_a_validation_image_per_class_is_an_error():
    with pytest.raises(
        UserError, match=r"'data.val_fraction' 0.2 leaves class 'cat' \(2 images\) with an empty"
    ):
        stratified_split(
            np.repeat(np.arange(3), 2), 0.2, seed=0, class_names=["cat", "dog", "frog"]
        )


# ------------------------------------------------------------ odd but ordinary inputs


def test_an_empty_image_file_is_named_not_a_traceback(tmp_path):
    root = make_image_folder(tmp_path / "data", {"train": 2, "test": 1})
    (root / "train/cross/0001.png").write_bytes(b"")
    with pytest.raises(
        UserError,
        match=r"^1 files are not readable images \(empty, corrupt, truncated or not "
        r"images despite their suffix\): train/cross/0001.png; remove or replace",
    ):
        read_dataset(root)


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz"])
def test_a_compressed_archive_reads_the_same_as_its_folder(image_folder, tmp_path, mode):
    archive = tmp_path / "cifar10.tar"
    with tarfile.open(archive, mode) as tar:
        tar.add(image_folder, arcname="cifar10")
    from_folder, from_archive = read_dataset(image_folder), read_dataset(archive)
    assert from_archive[0] == from_folder[0]
    for split in ("train", "test"):
        assert all(
            np.array_equal(a, b) for a, b in zip(from_folder[1][split], from_archive[1][split])
        )


def test_a_class_folder_that_is_a_link_is_followed_and_a_link_loop_ends(tmp_path):
    root = make_image_folder(tmp_path / "data", {"train": 2, "test": 1})
    shutil.move(root / "train/square", tmp_path / "elsewhere")
    (root / "train/square").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere/loop").symlink_to(tmp_path / "elsewhere")
    _, splits = read_dataset(root)
    assert np.bincount(splits["train"][1]).tolist() == [2, 2, 2]


def test_a_broken_link_and_a_pipe_are_named(tmp_path):
    root = make_image_folder(tmp_path / "data", {"train": 2, "test": 1})
    (root / "train/circle/0005.png").symlink_to(tmp_path / "nowhere.png")
    os.mkfifo(root / "train/cross/0005.png")  # opening it would block forever
    with pytest.raises(
        UserError,
        match=r"2 entries cannot be read: train/circle/0005.png \(a broken link\), "
        r"train/cross/0005.png \(not a regular file\); remove them",
    ):
        read_raw(root)


def add_member(tar: tarfile.TarFile, name: str, contents: bytes = b"", **attributes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(contents)
    for key, value in attributes.items():
        setattr(member, key, value)
    tar.addfile(member, io.BytesIO(contents))


def test_archive_links_inside_it_are_read_and_members_that_climb_out_are_refused(
    image_folder, tmp_path
):
    archive = make_archive(image_folder, tmp_path / "cifar10.tar")
    png = (image_folder / "train/circle/0000.png").read_bytes()
    with tarfile.open(archive, "a") as tar:
        add_member(
            tar,
            "cifar10/train/circle/hard.png",
            type=tarfile.LNKTYPE,
            linkname="cifar10/train/circle/0000.png",
        )
        add_member(tar, "cifar10/train/circle/soft.png", type=tarfile.SYMTYPE, linkname="0001.png")
        # a leading / is dropped, as tar does
        add_member(tar, "/cifar10/train/circle/absolute.png", png)
    entries = {entry.path: entry for entry in read_raw(archive)}
    assert entries["cifar10/train/circle/hard.png"].contents == png
    assert (
        entries["cifar10/train/circle/soft.png"].contents
        == (image_folder / "train/circle/0001.png").read_bytes()
    )
    assert entries["cifar10/train/circle/absolute.png"].contents == png

    with tarfile.open(archive, "a") as tar:
        add_member(tar, "cifar10/../../escaped.png", png)
        add_member(
            tar, "cifar10/train/circle/out.png", type=tarfile.SYMTYPE, linkname="/etc/passwd"
        )
        add_member(tar, "cifar10/test/circle/fifo.png", type=tarfile.FIFOTYPE)
    with pytest.raises(
        UserError,
        match=r"cifar10.tar: 3 entries cannot be read: cifar10/\.\./\.\./escaped.png \(its "
        r"path climbs out of the archive\), cifar10/test/circle/fifo.png \(a device "
        r"or pipe, not a file\), cifar10/train/circle/out.png \(a link to an absolute "
        r"path\); remove them",
    ):
        read_raw(archive)
