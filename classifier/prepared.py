"""The prepared splits, uint8 arrays in data/prepared/{train,val,test}.npz: what prepare writes and the other
stages read."""

from pathlib import Path

import numpy as np

from classifier.cli import UserError
from classifier.outputs import PREPARED_DIR, write_atomically


def save_split(name: str, images: np.ndarray, labels: np.ndarray, class_names: list[str],
               out_dir: Path = PREPARED_DIR) -> None:
    def write(tmp_path: Path) -> None:
        with open(tmp_path, "wb") as file:
            np.savez(file, images=images, labels=labels, class_names=np.array(class_names))

    write_atomically(out_dir / f"{name}.npz", write)


def load_split(name: str, prepared_dir: Path = PREPARED_DIR) -> tuple[np.ndarray, np.ndarray, list[str]]:
    path = prepared_dir / f"{name}.npz"
    if not path.exists():
        raise UserError(f"{path} not found; run the prepare stage first (dvc repro prepare)")
    with np.load(path) as arrays:
        return arrays["images"], arrays["labels"], [str(c) for c in arrays["class_names"]]
