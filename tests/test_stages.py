"""Each stage's main() on the tiny image folder, in order, as dvc repro runs them."""

import csv
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from classifier.data import load_split
from classifier.evaluation import loss_and_accuracy, predictor
from classifier.figures import split_shapes
from classifier.files import read_history
from classifier.fit import diagnose_fit
from classifier.models import load_checkpoint
from classifier.training import TrainingDiverged
from stages import evaluate, plot, prepare, train
from tests.conftest import CLASSES, REPO, diverging, start_stage, write_params


def run_pipeline():
    for stage in (prepare, train, evaluate, plot):
        stage.main()


def read_json(path):
    return json.loads(path.read_text())


def test_prepare_splits_into_cached_arrays_only(workdir):
    prepare.main()
    with np.load(workdir / "data/prepared/train.npz") as arrays:
        assert arrays["images"].shape == (96, 16, 16, 3) and arrays["images"].dtype == np.uint8
    assert sorted(
        path.name for path in workdir.rglob("*") if path.is_file() and "raw" not in path.parts
    ) == ["params.yaml", "test.npz", "train.npz", "val.npz"]


def test_prepare_refuses_mismatched_class_folders(workdir):
    (workdir / "data/raw/cifar10/test/circle").rename(workdir / "data/raw/cifar10/test/oval")
    with pytest.raises(Exception, match="different class folders"):
        prepare.main()
    assert not (workdir / "data/prepared").exists()


def test_epochs_validate_on_a_stratified_share_and_the_last_on_every_image(workdir, params):
    params["train"]["val_stride"] = 3
    write_params(workdir, params)
    prepare.main()
    labels = load_split("val")[1]
    # sorted by class: every class in it
    assert list(labels) == sorted(labels) and set(labels[::3]) == set(labels)
    train.main()
    model, checkpoint = load_checkpoint("models/model.pt")
    logits = predictor(model, checkpoint, params).logits(
        torch.from_numpy(load_split("val")[0]), "none"
    )
    val_loss, val_acc = loss_and_accuracy(logits, torch.from_numpy(labels))
    last = read_history()[-1]
    assert (last["val_loss"], last["val_acc"]) == (round(val_loss, 5), round(val_acc, 5))


@pytest.mark.parametrize("arch", ["fast_cnn", "seed_cnn"])
def test_full_stage_chain_writes_every_output(workdir, params, arch):
    params["model"]["arch"] = arch
    write_params(workdir, params)
    run_pipeline()

    history = list(csv.DictReader(open(workdir / "plots/train/history.csv")))
    assert [row["epoch"] for row in history] == ["1", "2"]
    assert set(history[0]) == {
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "val_images",
    }
    trained = read_json(workdir / "metrics/train/metrics.json")
    assert set(trained) == {"step", "best_val_acc", "train_pflop", "val_acc", "train_val_gap"}
    assert (
        trained["step"] == 2
        and trained["best_val_acc"] >= trained["val_acc"]
        and trained["train_pflop"] > 0
    )
    timing = read_json(workdir / "metrics/timing.json")
    assert timing["images_per_second"] > 0 and timing["device"] == "cpu"

    evaluated = read_json(workdir / "metrics/evaluate.json")
    assert set(evaluated) == {"test_acc", "test_loss", "macro_f1"}
    assert 0 <= evaluated["test_acc"] <= 1 and evaluated["test_loss"] > 0
    per_class = list(csv.DictReader(open(workdir / "plots/evaluate/classes.csv")))
    assert [row["class"] for row in per_class] == CLASSES and all(
        row["support"] == "10" for row in per_class
    )
    macro_f1 = sum(float(row["f1"]) for row in per_class) / len(per_class)
    assert macro_f1 == pytest.approx(evaluated["macro_f1"], abs=1e-4)
    confusion = list(csv.DictReader(open(workdir / "plots/evaluate/confusion.csv")))
    assert len(confusion) == 30 and {row["actual"] for row in confusion} == set(CLASSES)
    correct = sum(row["actual"] == row["predicted"] for row in confusion)
    assert correct / 30 == pytest.approx(evaluated["test_acc"], abs=1e-4)

    fit = diagnose_fit(
        read_history(), 3, params["plot"]["overfit_gap"], params["plot"]["underfit_accuracy"]
    )
    assert read_json(workdir / "metrics/fit.json") == {"verdict": fit["verdict"]}
    splits = {name: load_split(name)[:2] for name in ("train", "val", "test")}
    assert split_shapes(splits) == "train 96, val 24, test 30 images of 16x16x3"
    for png in (
        "plots/data/samples.png",
        "plots/train/curves.png",
        "plots/evaluate/confusion.png",
        "plots/evaluate/misclassified.png",
    ):
        assert (workdir / png).stat().st_size > 1000


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_tiny_task_is_learned(workdir, params, precision):
    params["train"]["epochs"] = 6
    params["compute"]["precision"] = precision
    write_params(workdir, params)
    run_pipeline()
    assert read_json(workdir / "metrics/evaluate.json")["test_acc"] >= 0.9


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_is_repeatable(workdir, params, precision):
    """Every tracked output of train but the timing is bit-identical from run to run."""
    params["compute"]["precision"] = precision
    write_params(workdir, params)
    prepare.main()
    outputs = ("plots/train/history.csv", "metrics/train/metrics.json", "models/model.pt")
    train.main()
    first = [(workdir / path).read_bytes() for path in outputs]
    train.main()
    assert [(workdir / path).read_bytes() for path in outputs] == first


def test_training_shows_its_progress_while_it_runs(workdir, params):
    """After the first epoch, and long before the last, the live metrics and the history are on
    disk."""
    params["train"]["epochs"] = 500
    write_params(workdir, params)
    prepare.main()
    training = start_stage(workdir, "train")
    live = workdir / "metrics/train/metrics.json"
    try:
        while training.poll() is None and not live.exists():
            time.sleep(0.05)
        assert training.poll() is None, "training ended before the first live metrics appeared"
        time.sleep(0.5)
        step = read_json(live)["step"]
        assert 1 <= step < 500 and training.poll() is None
        assert len(list(csv.DictReader(open(workdir / "plots/train/history.csv")))) >= step
    finally:
        training.kill()
        training.wait()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_diverging_training_stops_with_a_clear_error_and_no_model(workdir, params, precision):
    params["train"]["batch_size"] = 8
    params["compute"]["precision"] = precision
    write_params(workdir, diverging(params))
    prepare.main()
    with pytest.raises(
        TrainingDiverged,
        match=r"training diverged \(loss (nan|inf)\) at step \d+ of epoch \d/2; "
        "lower the optimizer's lr in params.yaml",
    ):
        train.main()
    assert (
        not (workdir / "models/model.pt").exists()
        and not (workdir / "metrics/timing.json").exists()
    )
    assert (
        not (workdir / "metrics/train/metrics.json").exists()
        and not (workdir / "plots/train/history.csv").exists()
    )


def rows(*accuracy_pairs, val_losses=None, val_images=2000):
    val_losses = val_losses or [1.0 - 0.1 * i for i in range(len(accuracy_pairs))]
    return [
        {
            "epoch": i + 1,
            "train_acc": t,
            "val_acc": v,
            "train_loss": 1.0,
            "val_loss": loss,
            "val_images": val_images,
        }
        for i, ((t, v), loss) in enumerate(zip(accuracy_pairs, val_losses))
    ]


def test_the_plot_stage_starts_without_torch_or_scikit_learn():
    """Every experiment runs the plot stage: torch or scikit-learn would cost it seconds of start-up
    for nothing."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, stages.plot; print(*sorted(sys.modules))"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert not {"torch", "torchvision", "sklearn"} & set(loaded)


def test_fit_diagnosis():
    assert diagnose_fit(rows((0.7, 0.7), (0.9, 0.88)), 10, 0.05, 0.8)["verdict"] == "good"
    overfit = diagnose_fit(rows((0.8, 0.75), (0.99, 0.8)), 10, 0.05, 0.8)
    assert overfit["verdict"] == "overfit" and overfit["train_val_gap"] == pytest.approx(0.19)
    rising = diagnose_fit(
        rows((0.8, 0.8), (0.85, 0.84), (0.86, 0.84), val_losses=[0.6, 0.5, 0.7]), 10, 0.05, 0.8
    )
    assert rising["verdict"] == "overfit" and rising["best_val_loss_epoch"] == 2
    assert "lowest at epoch 2 and rose 0.200" in rising["evidence"]
    assert diagnose_fit(rows((0.4, 0.35), (0.5, 0.48)), 10, 0.05, 0.8)["verdict"] == "underfit"


def test_validation_at_chance_while_training_climbs_is_a_mismatch_not_over_fitting():
    at_chance = diagnose_fit(rows((0.5, 0.1), (0.9, 0.12), (0.95, 0.7)), 10, 0.05, 0.8)
    assert at_chance["verdict"] == "mismatch"
    assert at_chance["evidence"].startswith(
        "at epoch 1 validation accuracy was 0.100, near chance (0.100), while training accuracy "
        "was 0.500"
    )
    assert "batch norm's running statistics" in at_chance["evidence"]
    exploding = diagnose_fit(rows((0.3, 0.3), (0.5, 0.45), val_losses=[0.9, 134.0]), 10, 0.05, 0.8)
    assert exploding["verdict"] == "mismatch" and "validation loss was 134" in exploding["evidence"]
    # neither far from chance: under-fitting, not a mismatch
    learning_slowly = rows((0.2, 0.17), (0.3, 0.27))
    assert diagnose_fit(learning_slowly, 10, 0.05, 0.8)["verdict"] == "underfit"


def test_a_few_validation_images_at_chance_are_noise_not_a_mismatch():
    # a tiny run's strided validation: 6 images of 3 classes, all wrong in one epoch
    few = rows((0.5, 0.0), (0.8, 0.6), val_losses=[9.0, 0.9], val_images=6)
    assert diagnose_fit(few, 3, 0.05, 0.8)["verdict"] != "mismatch"
    enough = rows((0.5, 0.0), (0.8, 0.6), val_losses=[9.0, 0.9], val_images=600)
    assert diagnose_fit(enough, 3, 0.05, 0.8)["verdict"] == "mismatch"


def test_train_warns_once_as_soon_as_evaluation_disagrees(workdir, monkeypatch, capsys):
    # what evaluation mode gave on grayscale images
    def confidently_wrong(model, images, *args, **kwargs):
        return (
            torch.nn.functional.one_hot(torch.zeros(len(images), dtype=torch.long) + 1, 3) * 100.0
        )

    prepare.main()
    monkeypatch.setattr(train, "predict_logits", confidently_wrong)
    monkeypatch.setattr("classifier.fit.MIN_VAL_IMAGES", 1)  # the tiny split has a few dozen
    train.main()
    warnings = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")
    ]
    assert len(warnings) == 1 and warnings[0].startswith(
        "warning: evaluation disagrees with training: at epoch 1 "
    )
