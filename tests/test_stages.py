"""Each stage's main() on the tiny image folder, in order, as dvc repro runs them."""

import csv
import json

import numpy as np
import pytest

from stages import evaluate, plot, prepare, train
from stages.plot import diagnose_fit
from stages.training import TrainingDiverged
from tests.conftest import CLASSES, write_params


def run_pipeline():
    for stage in (prepare, train, evaluate, plot):
        stage.main()


def read_json(path):
    return json.loads(path.read_text())


def test_prepare_splits_and_reports(workdir):
    prepare.main()
    data = read_json(workdir / "metrics/data.json")
    assert (data["train"]["images"], data["val"]["images"], data["test"]["images"]) == (96, 24, 30)
    assert data["val"]["per_class"] == dict.fromkeys(CLASSES, 8)
    assert (data["train"]["height"], data["train"]["width"], data["train"]["channels"]) == (16, 16, 3)
    assert data["pixels"]["scaled_min"] >= 0 and data["pixels"]["scaled_max"] <= 1
    assert data["pixels"]["raw_max"] > 200
    assert (workdir / "plots/data/samples.png").stat().st_size > 1000
    with np.load(workdir / "data/prepared/train.npz") as arrays:
        assert arrays["images"].shape == (96, 16, 16, 3) and arrays["images"].dtype == np.uint8


def test_prepare_refuses_mismatched_class_folders(workdir):
    (workdir / "data/raw/cifar10/test/circle").rename(workdir / "data/raw/cifar10/test/oval")
    with pytest.raises(Exception, match="different class folders"):
        prepare.main()
    assert not (workdir / "data/prepared").exists()


@pytest.mark.parametrize("arch", ["fast_cnn", "seed_cnn"])
def test_full_stage_chain_writes_every_output(workdir, params, arch):
    params["model"]["arch"] = arch
    write_params(workdir, params)
    run_pipeline()

    history = list(csv.DictReader(open(workdir / "plots/train/history.csv")))
    assert [row["epoch"] for row in history] == ["1", "2"]
    assert set(history[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"}
    trained = read_json(workdir / "metrics/train.json")
    assert trained["epochs"] == 2 and trained["images_per_second"] > 0
    assert trained["best_val_acc"] >= trained["val_acc"]

    evaluated = read_json(workdir / "metrics/evaluate.json")
    assert evaluated["test_images"] == 30 and 0 <= evaluated["accuracy"] <= 1 and evaluated["loss"] > 0
    assert {"macro_precision", "macro_recall", "macro_f1", "weighted_f1"} <= set(evaluated)
    per_class = read_json(workdir / "metrics/classes.json")
    assert list(per_class) == CLASSES and all(row["support"] == 10 for row in per_class.values())
    confusion = list(csv.DictReader(open(workdir / "plots/evaluate/confusion.csv")))
    assert len(confusion) == 30 and {row["actual"] for row in confusion} == set(CLASSES)
    correct = sum(row["actual"] == row["predicted"] for row in confusion)
    assert correct / 30 == pytest.approx(evaluated["accuracy"], abs=1e-4)

    fit = read_json(workdir / "metrics/fit.json")
    assert fit["verdict"] in {"over-fitting", "under-fitting", "good fit"}
    for png in ("plots/train/curves.png", "plots/evaluate/confusion.png", "plots/evaluate/misclassified.png"):
        assert (workdir / png).stat().st_size > 1000


def test_the_tiny_task_is_learned(workdir, params):
    params["train"]["epochs"] = 6
    write_params(workdir, params)
    run_pipeline()
    assert read_json(workdir / "metrics/evaluate.json")["accuracy"] >= 0.9


def test_training_is_repeatable(workdir):
    prepare.main()
    train.main()
    first = (workdir / "plots/train/history.csv").read_text()
    train.main()
    assert (workdir / "plots/train/history.csv").read_text() == first


def test_diverging_training_stops_with_a_clear_error_and_no_model(workdir, params):
    params["optimizer"] = "nesterov"
    params["optimizers"]["nesterov"]["lr"] = 1000.0
    params["train"].update(batch_size=8)
    write_params(workdir, params)
    prepare.main()
    with pytest.raises(TrainingDiverged, match=r"training diverged \(loss (nan|inf)\) at step \d+ of epoch \d/2; "
                                               "lower the optimizer's lr in params.yaml"):
        train.main()
    assert not (workdir / "models/model.pt").exists() and not (workdir / "metrics/train.json").exists()


def test_evaluate_without_model_says_train_first(workdir):
    prepare.main()
    with pytest.raises(Exception, match="models/model.pt not found; run the train stage first"):
        evaluate.main()


def rows(*accuracy_pairs, val_losses=None):
    val_losses = val_losses or [1.0 - 0.1 * i for i in range(len(accuracy_pairs))]
    return [{"epoch": i + 1, "train_acc": t, "val_acc": v, "train_loss": 1.0, "val_loss": loss}
            for i, ((t, v), loss) in enumerate(zip(accuracy_pairs, val_losses))]


def test_fit_diagnosis():
    assert diagnose_fit(rows((0.7, 0.7), (0.9, 0.88)), 0.05, 0.8)["verdict"] == "good fit"
    overfit = diagnose_fit(rows((0.8, 0.75), (0.99, 0.8)), 0.05, 0.8)
    assert overfit["verdict"] == "over-fitting" and overfit["train_val_gap"] == pytest.approx(0.19)
    rising = diagnose_fit(rows((0.8, 0.8), (0.85, 0.84), (0.86, 0.84), val_losses=[0.6, 0.5, 0.7]), 0.05, 0.8)
    assert rising["verdict"] == "over-fitting" and rising["best_val_loss_epoch"] == 2
    assert diagnose_fit(rows((0.4, 0.35), (0.5, 0.48)), 0.05, 0.8)["verdict"] == "under-fitting"
