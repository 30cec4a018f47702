"""Where the pipeline writes, and writing each file whole or not at all (a temporary file, then a
rename)."""

import csv
import json
import os
from pathlib import Path

# Every file a stage writes. dvc.yaml declares the same files (tests/test_layout.py checks that they
# agree): metrics/ holds small numbers compared across experiments (DVC metrics), plots/ chart data
# and figures.
PREPARED_DIR = Path("data/prepared")
MODEL_FILE = Path("models/model.pt")
# rewritten after every epoch
TRAIN_METRICS = Path("metrics/train/metrics.json")
TIMING_METRICS = Path("metrics/timing.json")
HISTORY_CSV = Path("plots/train/history.csv")
EVALUATE_METRICS = Path("metrics/evaluate.json")
CLASSES_CSV = Path("plots/evaluate/classes.csv")
CONFUSION_CSV = Path("plots/evaluate/confusion.csv")
FIT_METRICS = Path("metrics/fit.json")
SAMPLES_PNG = Path("plots/data/samples.png")
CURVES_PNG = Path("plots/train/curves.png")
CONFUSION_PNG = Path("plots/evaluate/confusion.png")
MISCLASSIFIED_PNG = Path("plots/evaluate/misclassified.png")
STAGE_OUTPUTS = {
    "prepare": [PREPARED_DIR],
    "evaluate": [EVALUATE_METRICS, CONFUSION_CSV, CLASSES_CSV],
    "train": [MODEL_FILE, TRAIN_METRICS, TIMING_METRICS, HISTORY_CSV],
    "plot": [FIT_METRICS, SAMPLES_PNG, CURVES_PNG, CONFUSION_PNG, MISCLASSIFIED_PNG],
}
# the last finished epoch's training state; not a DVC output, not in Git
RESUME_FILE = Path("checkpoints/train.pt")


def write_atomically(path: Path, write) -> None:
    """write(tmp_path), then rename it to path: readers see the old file or the new one, never half
    of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    # a failed or interrupted write leaves nothing, not even the temporary file
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    write_atomically(Path(path), lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def save_torch(path: Path, data: dict) -> None:
    import torch  # here: the plot stage, which imports this module, needs no torch

    write_atomically(Path(path), lambda tmp: torch.save(data, tmp))


def write_text(path: Path, text: str) -> None:
    write_atomically(Path(path), lambda tmp: tmp.write_text(text))


def write_csv(path: Path, rows: list[dict]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(Path(path), write)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def save_figure(figure, path: Path) -> None:
    write_atomically(
        Path(path), lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    )


def confusion_rows(actual: list[int], predicted: list[int], class_names: list[str]) -> list[dict]:
    """confusion.csv's rows: one per test image, its true and its predicted class by name."""
    return [
        {"actual": class_names[a], "predicted": class_names[p]} for a, p in zip(actual, predicted)
    ]


def read_confusion(class_names: list[str]) -> tuple[list[int], list[int]]:
    """The true and predicted class of every test image, as indices of class_names, from
    confusion.csv."""
    index = {name: i for i, name in enumerate(class_names)}
    rows = read_csv(CONFUSION_CSV)
    return [index[row["actual"]] for row in rows], [index[row["predicted"]] for row in rows]


def read_history(path: Path = HISTORY_CSV) -> list[dict]:
    """history.csv, the train stage's one row per epoch."""
    return parse_history(read_csv(path))


def parse_history(rows: list[dict]) -> list[dict]:
    """history.csv's rows with numbers for values, the epoch and the count of validation images
    integers."""
    return [
        {
            key: int(value) if key in ("epoch", "val_images") else float(value)
            for key, value in row.items()
        }
        for row in rows
    ]
