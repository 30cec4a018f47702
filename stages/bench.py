"""Benchmark: how fast this machine trains the default model, against its own peak and a naive baseline.

    python -m stages.bench            (or: make bench)
    python -m stages.bench --profile  (where the pipeline's training step spends its time)
    python -m stages.bench --predict  (make bench-predict: predict on the 10,000 test images as files, against
                                       the evaluate stage; bench/predict.json)

Prints, from one run on the current machine, and writes to bench/results.json: peak matmul rates (fp32,
bf16); the pipeline's training throughput and achieved FLOP rate as a share of the peak at the precision it
trains in; the training compute of the default params (metrics/train/metrics.json) and the training time it
implies at that rate; a naive PyTorch loop's throughput for context; `prepare` time; no-op `dvc repro` time;
`dvc pull` time from a fresh clone; peak memory per stage. Throughputs are measured interleaved and
repeated, and the median reported, because these machines are shared and noisy.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from stages.data import load_split
from stages.models import build_model
from stages.outputs import TRAIN_METRICS
from stages.training import (build_optimizer, build_schedule, channel_stats, resolve_precision, setup_torch,
                             stats_tensors, to_input, train_one_epoch, training_batches, training_flops_per_image)

RESULTS_JSON = Path("bench/results.json")
PREDICT_JSON = Path("bench/predict.json")
RAW_DVC_FILE = "data/raw/cifar10.tar.dvc"
REPEATS = 3
STEPS = 12  # timed training steps per throughput measurement
STAGES = ("prepare", "train", "evaluate", "plot")


def median_seconds(work, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# ----------------------------------------------------------------------------- compute

def matmul_peak(dtype: torch.dtype, size: int = 4096) -> float:
    """GFLOP/s of one large square matmul, the best the machine's matrix units do."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)
    return 2 * size**3 / median_seconds(lambda: torch.matmul(a, b)) / 1e9


def pipeline_loop(params: dict, model, device, images, labels, mean, std, steps: int):
    """The pipeline's own training loop over `steps` batches, warmed up once: uint8 arrays in memory,
    whole-batch augmentation, the training precision, channels-last. Returns a function that runs it again."""
    train_params = params["train"]
    optimizer = build_optimizer(params["optimizer"], params["optimizers"][params["optimizer"]], model)
    schedule = build_schedule(optimizer, {**train_params, "lr_schedule": "constant"}, 1)
    count = train_params["batch_size"] * steps
    generator = torch.Generator().manual_seed(0)
    flip_bits = torch.zeros(count, dtype=torch.bool)
    precision = resolve_precision(train_params["precision"], device)

    def run(desc: str = "pipeline") -> None:
        batches = training_batches(images[:count], labels[:count], mean, std, train_params, device, generator, 0,
                                   flip_bits)
        train_one_epoch(model, optimizer, schedule, batches, steps, precision, train_params["label_smoothing"],
                        device, desc=desc)

    run("warm-up")
    return run


def pipeline_throughput(params: dict, model, device, images, labels, mean, std) -> float:
    run = pipeline_loop(params, model, device, images, labels, mean, std, STEPS)
    return params["train"]["batch_size"] * STEPS / median_seconds(run)


def naive_throughput(params: dict, model, train_dir: Path, mean, std) -> float:
    """Images/s of the textbook loop: ImageFolder, per-sample PIL transforms, DataLoader workers, fp32, NCHW."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.RandomCrop(32, padding=params["train"]["translate"],
                                                          padding_mode="reflect"),
                                    transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                    transforms.Normalize(mean, std)])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(train_dir, transform), shuffle=True,
                                         batch_size=params["train"]["batch_size"],
                                         num_workers=len(os.sched_getaffinity(0)), persistent_workers=True)
    optimizer = build_optimizer(params["optimizer"], params["optimizers"][params["optimizer"]], model)
    model = model.to(memory_format=torch.contiguous_format).train()
    batches = iter(loader)

    def steps(count: int) -> None:
        for _ in range(count):
            x, y = next(batches)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    steps(2)
    seconds = median_seconds(lambda: steps(STEPS))
    return params["train"]["batch_size"] * STEPS / seconds


# ----------------------------------------------------------------------------- pipeline overheads

def run_measured(args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak resident memory (GB, the largest of the process and its children) of a command."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "code = subprocess.run(sys.argv[1:]).returncode; "
             "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", probe, *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed in {cwd}:\n{result.stderr[-2000:]}")
    seconds, max_rss_kb = result.stdout.split()[-2:]
    return float(seconds), int(max_rss_kb) / 1024**2


def stage_costs(repo: Path) -> dict:
    """Time and peak memory of each stage, run in a scratch copy (train for one epoch: memory does not grow)."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        shutil.copytree(repo / "stages", scratch / "stages", ignore=shutil.ignore_patterns("__pycache__"))
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["train"]["epochs"] = 1
        params["data"]["raw"] = str((repo / params["data"]["raw"]).resolve())
        (scratch / "params.yaml").write_text(yaml.safe_dump(params))
        costs = {}
        for stage in STAGES:
            seconds, peak_gb = run_measured([sys.executable, "-m", f"stages.{stage}"], scratch)
            costs[stage] = {"seconds": round(seconds, 1), "peak_memory_gb": round(peak_gb, 2)}
    return costs


def noop_repro_seconds(repo: Path) -> float | None:
    """Median seconds of `dvc repro` when everything is up to date; None when it is not."""
    status = subprocess.run(["dvc", "status", "--json"], cwd=repo, capture_output=True, text=True)
    if status.returncode != 0 or json.loads(status.stdout or "{}"):
        return None
    return median_seconds(lambda: subprocess.run(["dvc", "repro"], cwd=repo, capture_output=True, check=True))


def fresh_pull_seconds(repo: Path, dvc_file: str) -> float:
    """Seconds of `dvc pull` of the raw data in a fresh clone, with an empty cache."""
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
        shared = repo.resolve().parent / "shared"
        if shared.exists():
            os.symlink(shared, Path(tmp) / "shared")
        seconds, _ = run_measured(["dvc", "pull", "-q", dvc_file], clone)
    return seconds


def machine_name(device: torch.device) -> str:
    """The CPU's model name, its cores and whether it computes bf16 natively (or the GPU's name)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name()
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    bf16 = "bf16 instructions" if resolve_precision("auto", device) == "bf16" else "no bf16 instructions"
    return f"{names[0] if names else platform.machine()}, {len(os.sched_getaffinity(0))} cores, {bf16}"


def split_folder(raw: Path, tmp: Path, split: str) -> Path:
    """The raw data's train/ or test/ image folder, extracted from the archive when it is one."""
    if raw.is_dir():
        return raw / split
    with tarfile.open(raw) as archive:
        archive.extractall(tmp, filter="data")
    return next(tmp.glob(f"**/{split}"))


def predict_against_evaluate(repo: Path, raw: Path) -> dict:
    """Wall seconds and images per second of `stages.predict` on the test images as files (reading and decoding
    included) and of the evaluate stage on the same images (prepared arrays), interleaved, median of REPEATS."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        folder = split_folder(raw, scratch / "raw", "test")
        count = sum(1 for path in folder.rglob("*") if path.is_file())
        shutil.copytree(repo / "stages", scratch / "stages", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(repo / "params.yaml", scratch / "params.yaml")
        for path in ("models/model.pt", "data/prepared/test.npz"):
            (scratch / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(repo / path, scratch / path)
        commands = {"predict": [sys.executable, "-m", "stages.predict", str(folder), "--out", str(scratch / "out.csv")],
                    "evaluate": [sys.executable, "-m", "stages.evaluate"]}
        seconds = {name: [] for name in commands}
        for _ in range(REPEATS):
            for name, args in commands.items():
                seconds[name].append(run_measured(args, scratch)[0])
    return {name: {"images": count, "seconds": round(statistics.median(times), 1),
                   "images_per_second": round(count / statistics.median(times), 1)} for name, times in seconds.items()}


def profile_training(params: dict, model, device, images, labels, mean, std) -> str:
    """torch.profiler's table of a few pipeline training steps, by operator, most time first."""
    from torch.profiler import ProfilerActivity, profile

    run = pipeline_loop(params, model, device, images, labels, mean, std, steps=4)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        run("profile")
    return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


# ----------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", action="store_true", help="print where a training step spends its time")
    parser.add_argument("--predict", action="store_true", help="time stages.predict against the evaluate stage")
    args = parser.parse_args()
    repo = Path.cwd()
    params = yaml.safe_load(Path("params.yaml").read_text())
    if args.predict:
        device = setup_torch(0, params["train"]["device"])
        results = {"date": date.today().isoformat(), "machine": machine_name(device), "tta": params["evaluate"]["tta"],
                   **predict_against_evaluate(repo, Path(params["data"]["raw"])), "repeats": REPEATS}
        PREDICT_JSON.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))
        return
    device = setup_torch(0, params["train"]["device"])
    precision = resolve_precision(params["train"]["precision"], device)
    images, labels, class_names = load_split("train")
    mean, std = channel_stats(images[:5000])
    mean_t, std_t = stats_tensors(mean, std, device)
    images, labels = torch.from_numpy(images), torch.from_numpy(labels)

    def new_model():
        model = build_model(params["model"], len(class_names), images.shape[1])
        return model.to(device, memory_format=torch.channels_last)

    if args.profile:
        print(profile_training(params, new_model(), device, images, labels, mean_t, std_t))
        return

    print("peak matmul rates ...", flush=True)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    flops_per_image = training_flops_per_image(new_model(), to_input(images[:64], mean_t, std_t, device))

    print(f"training throughput ({precision}), pipeline and naive fp32 baseline, interleaved ...", flush=True)
    naive, pipeline = [], []
    with tempfile.TemporaryDirectory() as tmp:
        naive_dir = split_folder(Path(params["data"]["raw"]), Path(tmp), "train")
        for _ in range(REPEATS):
            naive.append(naive_throughput(params, new_model().cpu(), naive_dir, mean, std))
            pipeline.append(pipeline_throughput(params, new_model(), device, images, labels, mean_t, std_t))
    naive_ips, pipeline_ips = statistics.median(naive), statistics.median(pipeline)
    achieved_gflops = flops_per_image * pipeline_ips / 1e9
    train_pflop = json.loads(TRAIN_METRICS.read_text())["train_pflop"]

    print("stage costs, no-op repro, fresh pull ...", flush=True)
    noop_repro = noop_repro_seconds(repo)
    results = {
        "date": date.today().isoformat(),
        "machine": machine_name(device),
        "model": params["model"]["arch"], "batch_size": params["train"]["batch_size"], "precision": precision,
        "peak_gflops_fp32": round(peaks["fp32"], 1), "peak_gflops_bf16": round(peaks["bf16"], 1),
        "train_mflop_per_image": round(flops_per_image / 1e6, 1),
        "pipeline_images_per_second": round(pipeline_ips, 1),
        "achieved_gflops": round(achieved_gflops, 1),
        "share_of_peak": round(achieved_gflops / peaks[precision], 3),
        "share_of_bf16_peak": round(achieved_gflops / peaks["bf16"], 3),
        "default_train_pflop": train_pflop,
        "implied_train_seconds": round(train_pflop * 1e15 / (achieved_gflops * 1e9), 1),
        "naive_images_per_second": round(naive_ips, 1),
        "speedup_over_naive": round(pipeline_ips / naive_ips, 2),
        "stages": stage_costs(repo),
        "noop_repro_seconds": None if noop_repro is None else round(noop_repro, 2),
        "fresh_pull_seconds": round(fresh_pull_seconds(repo, RAW_DVC_FILE), 1),
        "repeats": REPEATS,
    }
    RESULTS_JSON.parent.mkdir(exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
