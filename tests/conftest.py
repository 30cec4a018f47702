"""Tiny image folders and params that make every stage run in seconds."""

import copy
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["circle", "cross", "square"]


def make_image_folder(root: Path, per_class: dict, size: int = 16, seed: int = 0, suffix: str = ".png") -> Path:
    """root/<split>/<class>/NNNN.png: each class a colour and a noisy pattern, so a CNN can learn them."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for label, name in enumerate(CLASSES):
            class_dir = root / split / name
            class_dir.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = rng.integers(0, 60, (size, size, 3))
                image[..., label] += 150
                image[label::3, :, :] += 40
                Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(class_dir / f"{i:04d}{suffix}")
    return root


def make_archive(folder: Path, archive: Path) -> Path:
    """folder packed as archive, under a top folder named like the archive: the layout of cifar10.tar."""
    with tarfile.open(archive, "w") as tar:
        tar.add(folder, arcname=archive.stem)
    return archive


def tiny_params(raw: str = "data/raw/cifar10") -> dict:
    """The repository's params.yaml, shrunk: small model, two epochs, small batches, CPU."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["raw"] = raw
    params["model"]["fast_cnn"]["widths"] = [8, 16, 16]
    params["model"]["seed_cnn"]["widths"] = [4, 8]
    params["model"]["seed_cnn"]["dense"] = 16
    params["train"].update(epochs=2, batch_size=16, device="cpu")
    return params


def write_params(directory: Path, params: dict) -> None:
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """A tiny labelled image folder: 3 classes, 40 training and 10 test images each, 16x16 pixels."""
    return make_image_folder(tmp_path_factory.mktemp("raw") / "cifar10", {"train": 40, "test": 10})


@pytest.fixture
def workdir(tmp_path, monkeypatch, image_folder) -> Path:
    """A working directory laid out like the repository, with tiny data and params; stages run in it."""
    shutil.copytree(image_folder, tmp_path / "data/raw/cifar10")
    write_params(tmp_path, tiny_params())
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def params() -> dict:
    return copy.deepcopy(tiny_params())


def start_stage(workdir: Path, stage: str, **popen_args) -> subprocess.Popen:
    """`python -m stages.<stage>` in workdir, as dvc repro runs it, without waiting for it."""
    popen_args.setdefault("stdout", subprocess.DEVNULL)
    popen_args.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=workdir,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, **popen_args)


# ----------------------------------------------------------------------------- a throwaway Git + DVC repository

def run(args: list[str], cwd: Path) -> str:
    """Run a command with this interpreter's environment first on PATH (the stages call `python`)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def dvc(*args: str, cwd: Path) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd)


def make_dvc_repo(repo: Path, params: dict) -> Path:
    """A committed copy of the repository's code whose data is a tiny tar archive tracked by DVC."""
    shutil.copytree(REPO / "stages", repo / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore", "data/raw/.gitignore"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, repo / name)
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
