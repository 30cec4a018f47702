"""The failure contract: bad input stops a stage with exit code 2 and one `error:` line that names
the file or the params key and what to do, with no traceback, and leaves no output behind. Each
stage runs in a directory laid out like the repository, through run_main as `python -m
stages.<name>` runs it: in this process, and each stage once as its own process, as `dvc repro`
runs it (a mistyped key)."""

import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from classifier.params import load_params
from stages import prepare, train
from tests.conftest import (
    ENV,
    REPO,
    dvc,
    fails_in_process,
    make_dvc_repo,
    make_image_folder,
    start_paused_train,
    start_stage,
    write_params,
)


def fails_as_process(workdir, stage: str) -> str:
    """Run a stage that must fail, as its own process; its one stderr line."""
    _, stderr = (
        process := start_stage(workdir, stage, stderr=subprocess.PIPE, text=True)
    ).communicate()
    lines = stderr.strip().splitlines()
    assert process.returncode == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def fails(stage: str, capsys) -> str:
    """Run a stage that must fail in this process, in the working directory, as `python -m
    stages.<stage>` runs it (test_a_mistyped_key_is_not_ignored runs a stage as a process too); its
    one stderr line."""
    return fails_in_process(importlib.import_module(f"stages.{stage}").main, capsys)


# ------------------------------------------------------------ params.yaml


@pytest.mark.parametrize(
    "text, message",
    [
        ("seed: 0\ntrain: {epochs: 2\n", "params.yaml is not valid YAML at line 3, column 1"),
        (
            "",
            "params.yaml is empty or not a mapping of keys; restore it with `git checkout "
            "params.yaml`",
        ),
        ("- a list\n", "params.yaml is empty or not a mapping of keys"),
    ],
)
def test_unreadable_params_are_named(workdir, capsys, text, message):
    (workdir / "params.yaml").write_text(text)
    assert message in fails("prepare", capsys)


@pytest.mark.parametrize(
    "typo, message",
    [
        (
            ("optimzer", "adam"),
            "unknown key 'optimzer' (did you mean 'optimizer'?); nothing reads it",
        ),
        (("train", "epoch", 3), "unknown key 'train.epoch' (did you mean 'train.epochs'?)"),
        (
            ("model", "fast_cnn", "widht", 3),
            "unknown key 'model.fast_cnn.widht' (did you mean 'model.fast_cnn.width",
        ),
        (
            ("evaluate", "tta_views", "none"),
            "unknown key 'evaluate.tta_views' (did you mean 'evaluate.tta'?)",
        ),
    ],
)
def test_a_mistyped_key_is_not_ignored(workdir, capsys, params, typo, message):
    *path, key, value = typo
    section = params
    for part in path:
        section = section[part]
    section[key] = value
    write_params(workdir, params)
    if key != "optimzer":
        assert message in fails("train", capsys)
        return
    for stage in ("prepare", "train", "evaluate", "plot"):
        assert message in fails(stage, capsys)
    # and as dvc repro runs a stage, in a process of its own (the plot stage's, which starts
    # fastest: it imports no torch)
    assert message in fails_as_process(workdir, "plot")


def test_a_batch_larger_than_the_training_split(workdir, capsys, params):
    params["train"]["batch_size"] = 500
    write_params(workdir, params)
    prepare.main()
    assert fails("train", capsys) == (
        "error: params.yaml: 'train.batch_size' is 500, more than the 96 training images; use "
        "at most 96 (or more data)"
    )
    assert not (workdir / "models").exists() and not (workdir / "metrics").exists()


def test_a_model_too_deep_for_the_image_size(tmp_path, monkeypatch, capsys, params):
    make_image_folder(tmp_path / "data/raw/cifar10", {"train": 10, "test": 2}, size=4)
    write_params(tmp_path, params)
    monkeypatch.chdir(tmp_path)
    prepare.main()
    assert "model.arch 'fast_cnn' halves the image 3 times, too often for 4x4 images" in fails(
        "train", capsys
    )


def test_low_res_epochs_too_small_for_the_model(workdir, capsys, params):
    params["train"].update(low_res_fraction=0.5, low_res_scale=0.5)
    write_params(workdir, params)
    prepare.main()
    assert fails("train", capsys) == (
        "error: params.yaml: model.arch 'fast_cnn' halves the image 3 times, too often for the "
        "8x8 images of the first epochs; raise 'train.low_res_scale' or set "
        "'train.low_res_fraction' to 0"
    )
    assert not (workdir / "models").exists() and not (workdir / "metrics").exists()


# ------------------------------------------------------------ the model file


class Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            "missing",
            "models/model.pt not found; retrain it with `dvc repro train` (or fetch the "
            "committed one with `dvc pull`)",
        ),
        ("truncated", "models/model.pt is not a readable checkpoint"),
        ("code", "models/model.pt is not a readable checkpoint (UnpicklingError)"),
        (
            "foreign",
            "models/model.pt is not a checkpoint of this project; retrain it with `dvc repro "
            "train`",
        ),
        (
            "architecture",
            "models/model.pt: its weights do not fit the architecture it names; retrain it",
        ),
        (
            "image size",
            "was trained on 8-pixel images of classes ['circle', 'cross', 'square']; the test "
            "split has 16-pixel images",
        ),
    ],
)
def test_a_bad_model_file_says_retrain(trained, capsys, damage, message):
    model = trained / "models/model.pt"
    checkpoint = torch.load(model, weights_only=True)
    if damage == "missing":
        model.unlink()
    elif damage == "truncated":
        model.write_bytes(model.read_bytes()[:1000])
    elif damage == "code":
        torch.save({"state_dict": Payload()}, model)
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, model)
    elif damage == "architecture":
        checkpoint["model_params"]["fast_cnn"]["widths"] = [8, 16, 32]
        torch.save(checkpoint, model)
    else:
        checkpoint["image_size"] = 8
        torch.save(checkpoint, model)
    (trained / "metrics/evaluate.json").unlink(missing_ok=True)
    assert message in fails("evaluate", capsys)
    assert not (trained / "pwned").exists() and not (trained / "metrics/evaluate.json").exists()


# ------------------------------------------------------------ interruption and resume
# Each signal reaches training at a known point (start_paused_train), so these tests cannot race the
# run.

OUTPUTS = ["models/model.pt", "plots/train/history.csv", "metrics/train/metrics.json"]


def set_params(workdir, precision: str | None = None, **train_params) -> None:
    params = load_params(workdir / "params.yaml")
    params["train"].update(train_params)
    if precision:
        params["compute"]["precision"] = precision
    write_params(workdir, params)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_killed_training_resumes_to_bit_identical_results(workdir, precision):
    set_params(workdir, epochs=6, precision=precision)
    prepare.main()
    train.main()
    uninterrupted = [(workdir / path).read_bytes() for path in OUTPUTS]
    assert not (workdir / "checkpoints/train.pt").exists()  # removed once the model is saved

    for path in OUTPUTS:
        (workdir / path).unlink()
    process = start_paused_train(workdir, epoch=4)
    process.kill()  # kill -9: no clean-up runs
    process.wait()
    assert torch.load(workdir / "checkpoints/train.pt", weights_only=True)["epoch"] == 3
    assert not (workdir / "models/model.pt").exists()
    set_params(workdir, resume=True)
    train.main()
    assert [(workdir / path).read_bytes() for path in OUTPUTS] == uninterrupted


@pytest.mark.parametrize(
    "sigint_ignored", [False, True], ids=["foreground", "started-with-sigint-ignored"]
)
def test_ctrl_c_stops_training_cleanly_and_keeps_the_checkpoint(workdir, sigint_ignored):
    """Also when the stage was started with SIGINT ignored, as a non-interactive shell starts a
    background job: it inherited that, and trained on to the end through the Ctrl-C (issue 16)."""
    set_params(workdir, epochs=5)
    prepare.main()
    process = start_paused_train(workdir, epoch=3, sigint_ignored=sigint_ignored)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr
    assert (
        stderr.strip()
        .splitlines()[-1]
        .startswith("error: interrupted; nothing half-written was left")
    )
    assert (
        not (workdir / "metrics/train/metrics.json").exists()
        and not (workdir / "plots/train/history.csv").exists()
    )
    assert not (workdir / "models/model.pt").exists() and not list(workdir.rglob(".*.tmp"))
    assert torch.load(workdir / "checkpoints/train.pt", weights_only=True)["epoch"] == 2


def test_resume_ignores_a_checkpoint_of_other_params(workdir, capsys):
    set_params(workdir, epochs=4)
    prepare.main()
    process = start_paused_train(workdir, epoch=3)
    process.kill()
    process.wait()
    set_params(workdir, label_smoothing=0.1, resume=True)
    train.main()
    assert (
        "warning: checkpoints/train.pt is from other params or data (or an older version of "
        "this code); starting from epoch 1"
    ) in capsys.readouterr().out


# ------------------------------------------------------------ a killed `dvc repro`


@pytest.mark.e2e
def test_killing_dvc_repro_midway_loses_nothing(tmp_path, params):
    """kill -9 of the whole `dvc repro` during training; the next `dvc repro` runs cleanly to the
    same results."""
    params["train"].update(epochs=30, batch_size=8)
    repo = make_dvc_repo(tmp_path / "repo", params)
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=repo,
        env=ENV,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while process.poll() is None and not (repo / "metrics/train/metrics.json").exists():
        time.sleep(0.05)
    assert process.poll() is None, "dvc repro ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    dvc("repro", cwd=repo)
    assert "up to date" in dvc("status", cwd=repo)
    assert not list(repo.glob("**/.*.tmp*"))
    after_kill = yaml.safe_load((repo / "dvc.lock").read_text())
    dvc("repro", "--force", cwd=repo)
    uninterrupted = yaml.safe_load((repo / "dvc.lock").read_text())

    def outs(lock):
        return {
            out["path"]: out["md5"]
            for stage in lock["stages"].values()
            for out in stage.get("outs", [])
            if out["path"] != "metrics/timing.json"
        }

    assert outs(after_kill) == outs(uninterrupted)


# ------------------------------------------------------------ the data remote


@pytest.mark.e2e
def test_an_unreachable_remote_says_how_to_get_the_data(tmp_path, params):
    repo = make_dvc_repo(tmp_path / "repo", params)
    shutil.copy(REPO / "Makefile", repo / "Makefile")
    dvc("remote", "add", "-d", "storage", str(tmp_path / "nowhere"), cwd=repo)
    shutil.rmtree(repo / ".dvc/cache")
    (repo / "data/raw/cifar10.tar").unlink()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["make", "-o", "setup", "data"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert ours == [
        "error: could not pull data/raw/cifar10.tar from the DVC remote 'storage' "
        f"({tmp_path}/nowhere); check that it is reachable, or with internet access run `make "
        "download` to fetch the official CIFAR-10 release instead"
    ]
