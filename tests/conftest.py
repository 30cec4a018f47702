"""Tiny image folders and params that make every stage run in seconds."""

import contextlib
import copy
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from sklearn.datasets import load_digits

from classifier.errors import run_main
from classifier.params import load_params
from experiments.gitdvc import run_command
from experiments.queue import newest_task, queue_status
from stages import evaluate, prepare, train

REPO = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("stages", "classifier", "commands", "experiments", "tools")
PIPELINE_FILES = ("dvc.yaml", ".gitignore", ".dvcignore", "data/raw/.gitignore")
CLASSES = ["circle", "cross", "square"]


def copy_code(dest: Path) -> Path:
    """The code folders and the pipeline's files, copied into dest (which may exist); not params,
    data or results."""
    for folder in CODE_FOLDERS:
        shutil.copytree(
            REPO / folder,
            dest / folder,
            ignore=shutil.ignore_patterns("__pycache__"),
            dirs_exist_ok=True,
        )
    for name in PIPELINE_FILES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, dest / name)
    return dest


def make_image_folder(
    root: Path, per_class: dict, size: int = 16, seed: int = 0, suffix: str = ".png"
) -> Path:
    """root/<split>/<class>/NNNN.png: each class a colour and a noisy pattern, so a CNN can learn
    them."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for label, name in enumerate(CLASSES):
            class_dir = root / split / name
            class_dir.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = rng.integers(0, 60, (size, size, 3))
                image[..., label] += 150
                image[label::3, :, :] += 40
                Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(
                    class_dir / f"{i:04d}{suffix}"
                )
    return root


def make_digits_folder(root: Path, colour: bool, per_class: dict, side: int = 16) -> Path:
    """root/<split>/<digit>/NNNN.png from scikit-learn's handwritten digits (8x8, grayscale), scaled
    up to side pixels: grayscale PNGs, or each image tinted with a random colour. Real images, no
    download."""
    digits = load_digits()
    rng = np.random.default_rng(0)
    counts = dict.fromkeys(range(10), 0)
    for image, label in zip(digits.images, digits.target):
        split = next(
            (
                name
                for name, end in zip(per_class, np.cumsum(list(per_class.values())))
                if counts[label] < end
            ),
            None,
        )
        counts[label] += 1
        if split is None:
            continue
        pixels = Image.fromarray((image * 255 / 16).astype(np.uint8)).resize(
            (side, side), Image.BILINEAR
        )
        pixels = np.asarray(pixels)
        if colour:
            pixels = (pixels[..., None] * rng.uniform(0.3, 1, 3)).astype(np.uint8)
        folder = root / split / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{counts[label]:04d}.png")
    return root


def make_archive(folder: Path, archive: Path) -> Path:
    """folder packed as archive, under a top folder named like the archive: the layout of
    cifar10.tar."""
    with tarfile.open(archive, "w") as tar:
        tar.add(folder, arcname=archive.stem)
    return archive


# The precision every test trains in, never `auto`: what auto picks depends on the CPU (bf16 where
# it has AVX512-BF16 or AMX), and floating-point outcomes with it. `make test PRECISION=bf16` runs
# the suite in bf16, which every x86 CPU runs (emulated, and slower, where it lacks the
# instructions).
PRECISION = os.environ.get("TEST_PRECISION", "fp32")


def pin_to_one_core() -> None:
    """With several pytest-xdist workers but no more than cores (make test-fast), each worker, and
    what it starts, computes on a core of its own. Otherwise torch runs a thread per core in every
    worker, and threads that share a core waste it waiting for each other: make test-fast spent
    far more CPU time so. (make test runs a worker more than cores: its end-to-end tests wait on
    DVC's queue, and their runs are the ones to spread.)"""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_setaffinity") else []
    if 1 < count <= len(cores):
        worker = int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw"))
        os.sched_setaffinity(0, {cores[worker]})


pin_to_one_core()
# the drivers' runs here take seconds: look at DVC's queue every 2 seconds, not every 5
os.environ.setdefault("EXPERIMENTS_POLL_SECONDS", "2")


# The modules of end-to-end tests, those with the longest first (as `make test`'s --durations lists
# them); only the order in which the tests start depends on it
E2E_MODULES = ["test_pipeline.py", "test_study.py", "test_queue.py", "test_ablation.py"]


def pytest_collection_modifyitems(items):
    """The slowest tests first: the end-to-end ones (by E2E_MODULES), then those that train in
    several processes. pytest-xdist hands the tests out in this order (a group's tests as one unit,
    the largest group first), a worker getting more whenever it has at most two left: a long test
    that came last would keep the others waiting for it."""

    def rank(item) -> tuple:
        module = item.path.name
        e2e = item.get_closest_marker("e2e") is not None
        return (
            not e2e,
            E2E_MODULES.index(module) if module in E2E_MODULES else len(E2E_MODULES),
            item.get_closest_marker("processes") is None,
        )

    items.sort(key=rank)


def fails_in_process(main, capsys) -> str:
    """Run a main that must fail, in this process, through run_main as `python -m` runs it (a
    process per case would import torch again, seconds each); its one stderr line. An exception
    other than the user's error fails the test with its traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        run_main(main)
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert exited.value.code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def tiny_params(raw: str = "data/raw/cifar10") -> dict:
    """The repository's params.yaml, shrunk: small model, two epochs, small batches, CPU, a pinned
    precision."""
    params = load_params(REPO / "params.yaml")
    params["data"]["raw"] = raw
    params["model"]["fast_cnn"]["widths"] = [8, 16, 16]
    params["model"]["seed_cnn"]["widths"] = [4, 8]
    params["model"]["seed_cnn"]["dense"] = 16
    params["train"].update(epochs=2, batch_size=16)
    params["evaluate"]["batch_size"] = 16
    params["compute"].update(device="cpu", precision=PRECISION)
    return params


def diverging(params: dict, optimizer: str = "sgd", lr: float = 1000.0) -> dict:
    """params whose training diverges in fp32 and bf16 alike, within a few steps: weight decay 100
    at lr 1000 multiplies the weights by about -100,000 every step. (A large lr alone is not enough:
    lr 900 gave NaN in fp32 and trained on in bf16, its dead ReLUs keeping the loss finite.) At lr
    0.001 the same decay trains."""
    params["optimizer"] = optimizer
    params["optimizers"][optimizer] = {"lr": lr, "weight_decay": 100.0}
    return params


def write_params(directory: Path, params: dict) -> None:
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """A tiny labelled image folder: 3 classes, 40 training and 10 test images each, 16x16
    pixels."""
    return make_image_folder(tmp_path_factory.mktemp("raw") / "cifar10", {"train": 40, "test": 10})


@pytest.fixture
def workdir(tmp_path, monkeypatch, image_folder) -> Path:
    """A working directory laid out like the repository, with tiny data and params; stages run in
    it."""
    shutil.copytree(image_folder, tmp_path / "data/raw/cifar10")
    write_params(tmp_path, tiny_params())
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def trained_once(tmp_path_factory, image_folder) -> Path:
    """A working directory with the tiny data prepared, a model trained on it and evaluated; made
    once."""
    root = tmp_path_factory.mktemp("trained")
    shutil.copytree(image_folder, root / "data/raw/cifar10")
    write_params(root, tiny_params())
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for stage in (prepare, train, evaluate):
            stage.main()
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def trained(trained_once, tmp_path, monkeypatch) -> Path:
    """A copy of trained_once to change at will, as the working directory."""
    shutil.copytree(trained_once, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def params() -> dict:
    return copy.deepcopy(tiny_params())


def start_stage(workdir: Path, stage: str, **popen_args) -> subprocess.Popen:
    """`python -m stages.<stage>` in workdir, as dvc repro runs it, without waiting for it."""
    return start_python(workdir, ["-m", f"stages.{stage}"], **popen_args)


def start_python(workdir: Path, args: list[str], **popen_args) -> subprocess.Popen:
    popen_args.setdefault("stdout", subprocess.DEVNULL)
    popen_args.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        **popen_args,
    )


# The train stage, stopped at the start of an epoch until a signal arrives: signal tests then hit a
# known point of a run, whatever the load on the machine, instead of racing it.
PAUSED_TRAIN = """
import sys, time
from classifier.errors import run_main
from stages import train
pause_at, train_one_epoch = int(sys.argv[1]), train.train_one_epoch

def pausing(run, epoch, *args, **kwargs):
    if epoch + 1 == pause_at:
        print("paused", flush=True)
        time.sleep(600)
    return train_one_epoch(run, epoch, *args, **kwargs)

train.train_one_epoch = pausing
run_main(train.main)
"""


def start_paused_train(workdir: Path, epoch: int, sigint_ignored: bool = False) -> subprocess.Popen:
    """The train stage in workdir, paused at the start of `epoch` (its checkpoint holds epoch - 1).

    sigint_ignored: start it the way a non-interactive shell starts a background job, with SIGINT
    ignored.
    """
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    process = start_python(
        workdir,
        ["-c", PAUSED_TRAIN, str(epoch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignore,
    )
    for line in process.stdout:
        if line == "paused\n":
            return process
    raise AssertionError(f"training ended before epoch {epoch}: {process.communicate()[1][-2000:]}")


# ------------------------------------------------------------ a throwaway Git + DVC repository

# The stages call `python`: this interpreter's environment comes first on PATH. Commits need an
# author.
ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def run(args: list[str], cwd: Path) -> str:
    """Run a command as a user would in that folder; its output, stdout and stderr together."""
    result = run_command(args, cwd=cwd, env=ENV)
    return result.stdout + result.stderr


def dvc(*args: str, cwd: Path) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd)


def make_dvc_repo(repo: Path, params: dict) -> Path:
    """A committed copy of the repository's code whose data is a tiny tar archive tracked by DVC."""
    copy_code(repo)
    write_params(repo, {**params, "data": {**params["data"], "raw": "data/raw/cifar10.tar"}})
    folder = make_image_folder(repo / "images/cifar10", {"train": 10, "test": 4})
    make_archive(folder, repo / "data/raw/cifar10.tar")
    shutil.rmtree(repo / "images")
    run(["git", "init", "-q", "-b", "main"], repo)
    dvc("init", "-q", cwd=repo)
    dvc("add", "-q", "data/raw/cifar10.tar", cwd=repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "tiny copy"], repo)
    return repo


def repro_and_commit(repo: Path) -> Path:
    """Run the pipeline in a repository from make_dvc_repo and commit its results, as a baseline."""
    dvc("repro", cwd=repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "baseline results"], repo)
    return repo


def queue_logs(repo: Path, names: list[str]) -> dict[str, str]:
    """The log of each name's newest queue task (`dvc queue logs NAME` may show an older one's)."""
    with contextlib.chdir(repo):
        rows = queue_status()[0]  # seconds of a core each time: asked once
        newest = {name: newest_task(name, rows) for name in names}
    return {name: dvc("queue", "logs", task, cwd=repo) for name, task in newest.items()}
