"""Writing metrics and plot files whole or not at all (write to a temporary file, then rename)."""

import csv
import json
import os
from pathlib import Path

import torch

# Every file the pipeline writes (dvc.yaml lists the same), so stages agree on where things are.
# metrics/: small numbers compared across experiments (DVC metrics); plots/: chart data and figures;
# reports/: tables and text for people, Git-tracked but not DVC metrics.
PREPARED_DIR = Path("data/prepared")
MODEL_FILE = Path("models/model.pt")
LIVE_DIR = Path("metrics/train")  # DVCLive's folder: it rewrites metrics.json there after every epoch
TRAIN_METRICS = LIVE_DIR / "metrics.json"
TIMING_METRICS = Path("metrics/timing.json")
HISTORY_CSV = Path("plots/train/history.csv")
EVALUATE_METRICS = Path("metrics/evaluate.json")
CLASSES_CSV = Path("plots/evaluate/classes.csv")
CONFUSION_CSV = Path("plots/evaluate/confusion.csv")
FIT_METRICS = Path("metrics/fit.json")
FIT_REPORT = Path("reports/fit.md")
DATA_REPORT = Path("reports/data.json")
SAMPLES_PNG = Path("plots/data/samples.png")
CURVES_PNG = Path("plots/train/curves.png")
CONFUSION_PNG = Path("plots/evaluate/confusion.png")
MISCLASSIFIED_PNG = Path("plots/evaluate/misclassified.png")
RESUME_FILE = Path("checkpoints/train.pt")  # the last finished epoch's training state; not a DVC output, not in Git


def write_atomically(path: Path, write) -> None:
    """write(tmp_path), then rename it to path: readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:  # a failed or interrupted write leaves nothing, not even the temporary file
        tmp_path.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    write_atomically(Path(path), lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def save_torch(path: Path, data: dict) -> None:
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
    write_atomically(Path(path), lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
