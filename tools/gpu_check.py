"""The default pipeline on a CUDA GPU, timed against the GPU's own bf16 peak:
bench/gpu-<GPU model>-<precision>.json.

    python -m tools.gpu_check        (or: make gpu-check)

Runs the default params as a DVC experiment named gpu-check with compute.device cuda, then writes
the device's name, its bf16 matmul peak measured in the same run, the train stage's seconds and
images/s (validation included), its share of that peak, and the test accuracy. Needs a CUDA device;
nothing else does.
"""

import json
from datetime import date

import torch

from classifier.errors import UserError, run_main
from classifier.files import EVALUATE_METRICS, TIMING_METRICS, TRAIN_METRICS, write_json
from experiments.gitdvc import dvc, read_at
from tools.bench import result_path
from tools.bench_report import write_report
from tools.peaks import best_rate

EXPERIMENT = "gpu-check"


def matmul_gflops(side: int = 8192) -> float:
    """GFLOP/s of a bf16 matmul on the GPU, the fastest of a few after a warm-up (synchronised
    around each: its kernels run asynchronously)."""
    a, b = (torch.randn(side, side, dtype=torch.bfloat16, device="cuda") for _ in range(2))

    def matmul() -> None:
        torch.cuda.synchronize()
        torch.matmul(a, b)
        torch.cuda.synchronize()

    return best_rate(matmul, 2 * side**3)


def main() -> None:
    if not torch.cuda.is_available():
        raise UserError(
            "no CUDA device is visible; run make gpu-check on a machine with an NVIDIA GPU"
        )
    peak = matmul_gflops()
    dvc("exp", "run", "-n", EXPERIMENT, "-S", "compute.device=cuda", "--force")
    timing, trained = (
        json.loads(read_at(EXPERIMENT, path)) for path in (TIMING_METRICS, TRAIN_METRICS)
    )
    achieved = trained["train_pflop"] * 1e6 / timing["train_seconds"]
    results = {
        "date": date.today().isoformat(),
        "machine": torch.cuda.get_device_name(),
        "peak_gflops_bf16": round(peak, 1),
        "precision": timing["precision"],
        "train_seconds": timing["train_seconds"],
        "images_per_second": timing["images_per_second"],
        "train_pflop": trained["train_pflop"],
        "achieved_gflops": round(achieved, 1),
        "share_of_peak": round(achieved / peak, 3),
        "test_acc": json.loads(read_at(EXPERIMENT, EVALUATE_METRICS))["test_acc"],
    }
    path = result_path("gpu", results)
    write_json(path, results)
    write_report()
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    run_main(main)
