"""A scratch copy of the project's code, where the benchmark and the tests run stages and commands."""

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("stages", "classifier", "commands", "experiments", "tools")
PIPELINE_FILES = ("dvc.yaml", ".gitignore", ".dvcignore", "data/raw/.gitignore")


def copy_code(dest: Path) -> Path:
    """The code folders and the pipeline's files, copied into dest (which may exist); not params, data or results."""
    for folder in CODE_FOLDERS:
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in PIPELINE_FILES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, dest / name)
    return dest
