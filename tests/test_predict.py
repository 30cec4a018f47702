"""commands.predict on tiny generated images with a tiny trained model: inputs, conversions,
outputs, errors."""

import csv
import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from classifier.errors import UserError, run_main
from commands import predict
from tests.conftest import CLASSES, REPO


@pytest.fixture
def workdir(trained):
    """The working directory of a tiny trained and evaluated model (a copy, made for each test)."""
    return trained


def run_predict(args: list[str], cwd) -> subprocess.CompletedProcess:
    """`python -m commands.predict ARGS` as a user runs it: exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "commands.predict", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def printed_rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines()[1:]]


def test_the_test_images_get_the_same_predictions_as_the_evaluate_stage(workdir, capsys):
    predict.main(["data/raw/cifar10/test", "--out", "predicted.csv"])
    rows = list(csv.DictReader(open(workdir / "predicted.csv")))
    evaluated = list(csv.DictReader(open(workdir / "plots/evaluate/confusion.csv")))
    assert len(rows) == len(evaluated) == 30
    assert [row["file"].split("/")[-2] for row in rows] == [row["actual"] for row in evaluated]
    assert [row["class"] for row in rows] == [row["predicted"] for row in evaluated]
    assert printed_rows(capsys.readouterr().out)[0][:2] == [rows[0]["file"], rows[0]["class"]]


def test_files_folders_and_archives_mixed_sizes_modes_and_a_bad_file(workdir, tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "nested").mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(photos / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(photos / "gray.png")
    Image.fromarray(rgb).convert("P").save(photos / "palette.png")
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(photos / "nested/alpha.png")
    big = np.random.default_rng(1).integers(0, 255, (40, 24, 3), dtype=np.uint8)
    Image.fromarray(big).save(photos / "big.jpg")
    # resized and converted: counted once
    Image.fromarray(big[..., 0]).save(photos / "big-gray.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (photos / "notes.txt").write_text("not an image, and not named like one: not tried")
    with tarfile.open(tmp_path / "more.tar", "w") as archive:
        archive.add(workdir / "data/raw/cifar10/test/circle", arcname="cifar10/test/circle")
    single = workdir / "data/raw/cifar10/test/square/0000.png"

    predict.main(
        [
            str(photos),
            str(tmp_path / "more.tar"),
            str(single),
            "--out",
            str(tmp_path / "table.json"),
        ]
    )
    out, err = capsys.readouterr()
    rows = json.loads((tmp_path / "table.json").read_text())
    assert len(rows) == len(printed_rows(out)) == 6 + 10 + 1
    assert rows[0]["file"] == f"{photos}/big-gray.png" and rows[-1]["file"] == str(single)
    assert f"{tmp_path}/more.tar:cifar10/test/circle/0000.png" in [row["file"] for row in rows]
    assert set(rows[0]) == {
        "file",
        "class",
        "probability",
        "second_class",
        "second_probability",
        "third_class",
        "third_probability",
    }
    assert all(
        row["class"] in CLASSES
        and 1 >= row["probability"] >= row["second_probability"] >= row["third_probability"] >= 0
        for row in rows
    )
    assert (
        err.count("warning:") == 1 and f"skipped {photos}/broken.jpg: not a readable image" in err
    )
    assert (
        "note: converted 5 images the model was not trained on as they are: 2 resized to 16x16, 4 "
        "converted" in err
    )


def test_probabilities_match_the_model_and_the_top_three_are_ordered():
    probabilities = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    rows = predict.table_rows(["a.png", "b.png"], probabilities, ["x", "y", "z"])
    assert rows[0] == {
        "file": "a.png",
        "class": "y",
        "probability": 0.7,
        "second_class": "z",
        "second_probability": 0.2,
        "third_class": "x",
        "third_probability": 0.1,
    }
    assert predict.format_table(rows).splitlines()[2].split() == [
        "b.png",
        "x",
        "50.0%",
        "z",
        "30.0%",
        "y",
        "20.0%",
    ]


def test_a_missing_or_foreign_model_says_how_to_get_one(workdir, tmp_path):
    with pytest.raises(
        UserError,
        match=r"nowhere.pt not found; retrain it with `dvc repro train` \(or fetch the "
        r"committed one with `dvc pull`\)",
    ):
        predict.main(["data/raw/cifar10/test", "--model", str(tmp_path / "nowhere.pt")])
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(
        UserError, match="foreign.pt is not a checkpoint of this project; retrain it"
    ):
        predict.main(["data/raw/cifar10/test", "--model", str(tmp_path / "foreign.pt")])


def test_the_command_fails_only_when_nothing_could_be_classified(workdir, tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = run_predict([str(tmp_path / "broken.png"), str(tmp_path / "missing.jpg")], workdir)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"warning: skipped {tmp_path}/broken.png: not a readable image (empty, corrupt, "
        "truncated or another format)",
        f"warning: skipped {tmp_path}/missing.jpg: no such file or folder",
        f"error: no readable images in {tmp_path}/broken.png, {tmp_path}/missing.jpg; give "
        "image files (.jpeg, .jpg, .png, .webp), folders of them or tar archives",
    ]
    # in this process, through run_main as above: a second process would import torch again
    with pytest.raises(SystemExit) as exited:
        run_main(lambda: predict.main(["x.png", "--out", "table.txt"]))
    assert exited.value.code == 2
    assert "--out table.txt: the file name must end in .csv or .json" in capsys.readouterr().err


def test_an_empty_file_and_a_refused_member_are_warned_of_and_a_compressed_archive_is_read(
    workdir, tmp_path, capsys
):
    (tmp_path / "empty.png").write_bytes(b"")
    png = (workdir / "data/raw/cifar10/test/circle/0000.png").read_bytes()
    with tarfile.open(tmp_path / "photos.tar.gz", "w:gz") as archive:
        for name in ("photos/a.png", "photos/../../escaped.png"):
            member = tarfile.TarInfo(name)
            member.size = len(png)
            archive.addfile(member, io.BytesIO(png))
    single = workdir / "data/raw/cifar10/test/square/0000.png"
    predict.main([str(tmp_path / "empty.png"), str(tmp_path / "photos.tar.gz"), str(single)])
    out, err = capsys.readouterr()
    assert [row[0] for row in printed_rows(out)] == [
        f"{tmp_path}/photos.tar.gz:photos/a.png",
        str(single),
    ]
    assert err.splitlines() == [
        f"warning: skipped {tmp_path}/empty.png: not a readable image (empty, corrupt, "
        "truncated or another format)",
        f"warning: skipped {tmp_path}/photos.tar.gz:photos/../../escaped.png: its path climbs "
        "out of the archive",
    ]
