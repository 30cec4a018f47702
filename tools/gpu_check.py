"""The default pipeline on a CUDA GPU, timed against the GPU's own bf16 peak: bench/gpu.json.

    python -m tools.gpu_check        (or: make gpu-check)

Runs the default params as a DVC experiment named gpu-check with compute.device cuda, then writes
the device's name, its bf16 matmul peak measured in the same run, the train stage's seconds and
images/s (validation included), its share of that peak, and the test accuracy. Needs a CUDA device;
nothing else does.
"""

import json
from datetime import date
from pathlib import Path

import torch

from classifier.errors import UserError, run_main
from classifier.files import EVALUATE_METRICS, TIMING_METRICS, TRAIN_METRICS, write_json
from experiments.gitdvc import dvc, read_at
from tools.bench import matmul_gflops

GPU_JSON = Path("bench/gpu.json")
EXPERIMENT = "gpu-check"


def main() -> None:
    if not torch.cuda.is_available():
        raise UserError(
            "no CUDA device is visible; run make gpu-check on a machine with an NVIDIA GPU"
        )
    peak = matmul_gflops(torch.bfloat16, "cuda", size=8192)
    dvc("exp", "run", "-n", EXPERIMENT, "-S", "compute.device=cuda", "--force")
    timing, trained = (
        json.loads(read_at(EXPERIMENT, path)) for path in (TIMING_METRICS, TRAIN_METRICS)
    )
    achieved = trained["train_pflop"] * 1e6 / timing["train_seconds"]
    results = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name(),
        "peak_gflops_bf16": round(peak, 1),
        "precision": timing["precision"],
        "train_seconds": timing["train_seconds"],
        "images_per_second": timing["images_per_second"],
        "train_pflop": trained["train_pflop"],
        "achieved_gflops": round(achieved, 1),
        "share_of_peak": round(achieved / peak, 3),
        "test_acc": json.loads(read_at(EXPERIMENT, EVALUATE_METRICS))["test_acc"],
    }
    write_json(GPU_JSON, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    run_main(main)
