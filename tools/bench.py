"""Benchmark: how fast this machine trains, against its own peak, the reference and a naive loop,
and the pipeline's overheads. Each mode writes bench/<mode>-<machine>-<precision>.json (the machine:
its CPU model and widest instruction set) and rewrites reports/bench.md from every such file.

    python -m tools.bench            (make bench) the train stage's epochs, a naive loop, the
                                     stages' costs, 1 and 2 processes, a no-op repro, a fresh pull
    python -m tools.bench --profile  where the train stage's epoch spends its time, by operator
    python -m tools.bench --predict  (make bench-predict) commands.predict on the test images as
                                     files, against the evaluate stage on the same images
    python -m tools.bench --anchor   (make bench-anchor) the default train and evaluate stages
        [--train-images N]           against the reference, airbench94's own code, on the same
        [--precision fp32|bf16]      prepared data (or N training images of it, drawn across the
                                     classes), after the train stage's epochs alone

The machine's peak (tools/peaks.py) is the higher of its theoretical rate and the best one measured
at the start and the end of the run, so that a share of it is at most 1. Throughputs are measured
interleaved and repeated, and the median reported, because these machines are shared and noisy.
"""

import argparse
import json
import os
import platform
import re
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

from classifier.data import group_by_split, load_split, read_raw, save_split, stratified_split
from classifier.device import resolve_precision, setup_torch
from classifier.errors import UserError
from classifier.files import EVALUATE_METRICS, TIMING_METRICS, TRAIN_METRICS, write_json
from classifier.models import build_model
from classifier.optim import build_optimizer
from classifier.params import load_params
from classifier.training import epoch_scale, low_res_epochs, start_run, train_one_epoch
from experiments.gitdvc import dvc, git
from tools.bench_report import REPORT, write_report
from tools.peaks import cpu_flags, instruction_set, peaks, share

BENCH_DIR = Path("bench")  # one file per mode and machine: <mode>-<machine>.json
# the team's runner of the reference
ANCHOR_SCRIPT = Path("../shared/tools/anchor-airbench94-cpu.py")
AIRBENCH = "airbench==0.1.8"  # the reference: airbench94's own code, from its PyPI source archive
RAW_DVC_FILE = "data/raw/cifar10.tar.dvc"
REPEATS = 3
NAIVE_STEPS = 12  # timed steps of the naive loop per measurement
STAGES = ("prepare", "train", "evaluate", "plot")


def copy_code(dest: Path, prepared: Path | None = None) -> Path:
    """The code the stages and commands run, copied into a scratch folder where they run on other
    params; with prepared, that folder linked in as data/prepared."""
    for folder in ("classifier", "stages", "commands"):
        shutil.copytree(Path(folder), dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    if prepared:
        (dest / "data").mkdir()
        os.symlink(prepared.resolve(), dest / "data/prepared")
    return dest


def seconds(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def median_seconds(work, repeats: int = REPEATS) -> float:
    return statistics.median(seconds(work) for _ in range(repeats))


def machine(device: torch.device, precision: str) -> dict:
    """The date, the CPU's model name, its cores and instruction set (or the GPU's name), and the
    training precision: what a result file is named by."""
    if device.type == "cuda":
        return {
            "date": date.today().isoformat(),
            "machine": torch.cuda.get_device_name(),
            "precision": precision,
        }
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    isa = instruction_set(cpu_flags())
    return {
        "date": date.today().isoformat(),
        "machine": f"{names[0] if names else platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores, {isa}",
        "precision": precision,
    }


def result_path(mode: str, about: dict, suffix: str = "") -> Path:
    """bench/<mode>-<CPU or GPU model>[-<widest instruction set>]-<precision><suffix>.json, so that
    results from several machines sit side by side."""
    model, *details = about["machine"].split(", ")
    words = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    widest = f"-{details[-1].split()[0].replace('_', '')}" if details else ""
    return BENCH_DIR / f"{mode}-{words}{widest}-{about['precision']}{suffix}.json"


def conv_shapes(params: dict, side: int = 32) -> list[tuple[int, int]]:
    """(channels, side) of the default model's 3x3 convolutions, block by block."""
    widths = params["model"][params["model"]["arch"]]["widths"]
    return [(width, side // 2**block) for block, width in enumerate(widths)]


# ------------------------------------------------------------ training throughput


def split_folder(raw: Path, split: str, dest: Path) -> Path:
    """The raw data's train or test images written out as dest/<class>/<file>, whatever data.raw
    is."""
    for class_name, files in group_by_split(read_raw(raw), raw)[split].items():
        (dest / class_name).mkdir(parents=True, exist_ok=True)
        for path, contents in files:
            (dest / class_name / Path(path).name).write_bytes(contents)
    return dest


def naive_loop(
    params: dict,
    train_dir: Path,
    stats: tuple[list[float], list[float]],
    class_count: int,
    side: int,
):
    """The textbook loop, for context: ImageFolder, per-sample PIL transforms, DataLoader workers,
    fp32, NCHW. Returns a function that trains NAIVE_STEPS steps."""
    from torchvision import datasets, transforms

    transform = transforms.Compose(
        [
            transforms.RandomCrop(
                side, padding=params["train"]["translate"], padding_mode="reflect"
            ),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(*stats),
        ]
    )
    loader = torch.utils.data.DataLoader(
        datasets.ImageFolder(train_dir, transform),
        shuffle=True,
        batch_size=params["train"]["batch_size"],
        num_workers=len(os.sched_getaffinity(0)),
        persistent_workers=True,
    )
    model = build_model(params["model"], class_count, side)
    optimizer = build_optimizer(params["optimizer"], params["optimizers"], model, "fp32")
    batches = iter(loader)

    def steps(count: int = NAIVE_STEPS) -> None:
        for _ in range(count):
            x, y = next(batches)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    steps(2)
    return steps


def epoch_rates(run, epochs: range, after_each=lambda: None) -> dict:
    """Seconds, FLOPs, images/s and GFLOP/s of the train stage's epochs `epochs` (medians), after
    the epoch before them, untimed: it warms up oneDNN's kernels for their image size (and the first
    trains the whitening bias)."""
    images = run.steps_per_epoch * run.params["train"]["batch_size"]
    train_one_epoch(run, epochs.start - 1)
    seconds, flops = [], []
    for epoch in epochs:
        started = time.perf_counter()
        flops.append(train_one_epoch(run, epoch)[2])
        seconds.append(time.perf_counter() - started)
        after_each()
    epoch_seconds, epoch_flops = statistics.median(seconds), statistics.median(flops)
    return {
        "side": round(run.images.shape[1] * epoch_scale(run.params, epochs.start)),
        "epochs": len(epochs),
        "epoch_seconds": round(epoch_seconds, 2),
        "images_per_second": round(images / epoch_seconds, 1),
        "mflop_per_image": round(epoch_flops / images / 1e6, 1),
        "gflops": round(epoch_flops / epoch_seconds / 1e9, 1),
    }


def loop_rates(params: dict, run, after_full_epoch=lambda: None) -> dict:
    """The train stage's small-image epochs (the first low_res_epochs, when there are at least two:
    one warms up) and its full-size ones, medians of up to REPEATS epochs each; achieved_gflops is
    the default run's rate: its epochs' FLOPs over their seconds."""
    small = low_res_epochs(params)
    sizes = {"small": epoch_rates(run, range(1, min(small, REPEATS + 1)))} if small > 1 else {}
    sizes["full"] = epoch_rates(run, range(small + 1, small + 1 + REPEATS), after_full_epoch)
    counts = (
        {"small": small, "full": params["train"]["epochs"] - small}
        if "small" in sizes
        else {"full": 1}
    )
    total_seconds = sum(counts[size] * rates["epoch_seconds"] for size, rates in sizes.items())
    gflop = sum(
        counts[size] * rates["epoch_seconds"] * rates["gflops"] for size, rates in sizes.items()
    )
    return {
        "precision": run.precision,
        "epoch_rates": sizes,
        "achieved_gflops": round(gflop / total_seconds, 1),
    }


def training_throughput(params: dict) -> dict:
    """The train stage's epochs (loop_rates), its full-size ones interleaved with the naive loop."""
    images, labels, class_names = load_split("train")
    run = start_run(params, images, labels, class_names)
    with tempfile.TemporaryDirectory() as tmp:
        naive_steps = naive_loop(
            params,
            split_folder(Path(params["data"]["raw"]), "train", Path(tmp)),
            run.stats,
            len(class_names),
            images.shape[1],
        )
        naive = []
        loop = loop_rates(
            params, run, lambda: naive.append(NAIVE_STEPS / median_seconds(naive_steps, 1))
        )
    full = loop["epoch_rates"]["full"]
    return {
        "model": params["model"]["arch"],
        "batch_size": params["train"]["batch_size"],
        **loop,
        "train_mflop_per_image": full["mflop_per_image"],
        "pipeline_images_per_second": full["images_per_second"],
        "naive_images_per_second": round(
            params["train"]["batch_size"] * statistics.median(naive), 1
        ),
    }


def shares(results: dict) -> dict:
    """The achieved rate against the machine's peak, and the time the default's compute takes at
    that rate."""
    train_pflop = json.loads(TRAIN_METRICS.read_text())["train_pflop"]
    achieved = results["achieved_gflops"]
    return {
        "share_of_peak": share(achieved, results["precision"], results["peaks"]),
        "default_train_pflop": train_pflop,
        "implied_train_seconds": round(train_pflop * 1e6 / achieved, 1),
        "speedup_over_naive": round(
            results["pipeline_images_per_second"] / results["naive_images_per_second"], 2
        ),
    }


def profile_training(params: dict) -> str:
    """torch.profiler's table of a few steps of the train stage's epoch, by operator, most time
    first."""
    from torch.profiler import ProfilerActivity, profile

    run = start_run(params, *load_split("train"))
    train_one_epoch(run, 0, steps=2)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        train_one_epoch(run, 1, steps=4)
    return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


# ------------------------------------------------------------ pipeline overheads


def run_measured(args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak resident memory (GB, the largest of the process and its children) of a
    command."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); code = "
        "subprocess.run(sys.argv[1:]).returncode; print(time.perf_counter() - t, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *args], cwd=cwd, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed in {cwd}:\n{result.stderr[-2000:]}")
    seconds, max_rss_kb = result.stdout.split()[-2:]
    return float(seconds), int(max_rss_kb) / 1024**2


def stage_costs(repo: Path) -> dict:
    """Time and peak memory of each stage, run in a scratch copy (train for one epoch: memory does
    not grow)."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = copy_code(Path(tmp))
        params = load_params(repo / "params.yaml")
        params["train"]["epochs"] = 1
        params["data"]["raw"] = str((repo / params["data"]["raw"]).resolve())
        (scratch / "params.yaml").write_text(yaml.safe_dump(params))
        costs = {}
        for stage in STAGES:
            seconds, peak_gb = run_measured([sys.executable, "-m", f"stages.{stage}"], scratch)
            costs[stage] = {"seconds": round(seconds, 1), "peak_memory_gb": round(peak_gb, 2)}
    return {"stages": costs}


def processes_throughput(repo: Path) -> dict:
    """Images/s of the train stage (one epoch, validation included) in 1 and in 2 processes
    (train.processes, DistributedDataParallel over gloo on the CPU), interleaved, median of 2."""
    results = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = copy_code(Path(tmp), repo / "data/prepared")
        params = load_params(repo / "params.yaml")
        for _ in range(2):
            for processes in results:
                params["train"].update(epochs=1, processes=processes)
                (scratch / "params.yaml").write_text(yaml.safe_dump(params))
                run_measured([sys.executable, "-m", "stages.train"], scratch)
                timing = json.loads((scratch / TIMING_METRICS).read_text())
                results[processes].append(timing["images_per_second"])
    return {
        "processes_images_per_second": {
            str(processes): round(statistics.median(rates), 1)
            for processes, rates in results.items()
        }
    }


def dvc_overheads(repo: Path) -> dict:
    """Median seconds of a no-op `dvc repro` (None when the pipeline is not up to date), and of `dvc
    pull` of the raw data into a fresh clone with an empty cache."""
    up_to_date = dvc("status", "--json", cwd=repo).stdout.strip() in ("", "{}")
    noop = median_seconds(lambda: dvc("repro", cwd=repo)) if up_to_date else None
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        git("clone", "-q", str(repo), str(clone))
        shared = repo.resolve().parent / "shared"
        if shared.exists():
            os.symlink(shared, Path(tmp) / "shared")
        pull, _ = run_measured([sys.executable, "-m", "dvc", "pull", "-q", RAW_DVC_FILE], clone)
    return {
        "noop_repro_seconds": None if noop is None else round(noop, 2),
        "fresh_pull_seconds": round(pull, 1),
    }


def predict_against_evaluate(repo: Path, params: dict) -> dict:
    """Wall seconds and images per second of commands.predict on the test images as files (reading
    and decoding included) and of the evaluate stage on the same images (prepared arrays),
    interleaved, median of REPEATS."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = copy_code(Path(tmp))
        folder = split_folder(Path(params["data"]["raw"]), "test", scratch / "test-images")
        count = sum(1 for path in folder.rglob("*") if path.is_file())
        for path in ("params.yaml", "models/model.pt", "data/prepared/test.npz"):
            (scratch / path).parent.mkdir(parents=True, exist_ok=True)
            (scratch / path).write_bytes((repo / path).read_bytes())
        commands = {
            "predict": [sys.executable, "-m", "commands.predict", str(folder), "--out", "out.csv"],
            "evaluate": [sys.executable, "-m", "stages.evaluate"],
        }
        seconds = {name: [] for name in commands}
        for _ in range(REPEATS):
            for name, args in commands.items():
                seconds[name].append(run_measured(args, scratch)[0])
    return {
        name: {
            "images": count,
            "seconds": round(statistics.median(times), 1),
            "images_per_second": round(count / statistics.median(times), 1),
        }
        for name, times in seconds.items()
    }


# ------------------------------------------------------------ against the reference


def airbench_source(dest: Path) -> Path:
    """airbench's own code, unpacked from its PyPI source archive (downloaded, not installed)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            AIRBENCH,
            "-d",
            str(dest),
        ],
        check=True,
    )
    with tarfile.open(next(dest.glob("airbench-*.tar.gz"))) as archive:
        archive.extractall(dest, filter="data")
    return next(path for path in dest.iterdir() if path.is_dir())


def subset(prepared: Path, dest: Path, train_images: int, seed: int = 0) -> Path:
    """A prepared folder of about train_images training images, and of 1,000 validation and 2,000
    test images, each drawn at random with each class's share kept (the prepare stage's split)."""
    for split, count in (("train", train_images), ("val", 1000), ("test", 2000)):
        images, labels, class_names = load_split(split, prepared)
        chosen = stratified_split(labels, count / len(labels), seed, class_names)[1]
        save_split(split, images[chosen], labels[chosen], class_names, dest)
    return dest


def reference_run(prepared: Path, script: Path, tmp: Path, precision: str) -> dict:
    """The reference trained on the prepared training split in the given precision, its 6-view
    test accuracy."""
    out = tmp / "reference.json"
    run_measured(
        [
            sys.executable,
            str(script.resolve()),
            str(prepared.resolve()),
            str(airbench_source(tmp)),
            "--precision",
            precision,
            "--out",
            str(out),
        ],
        tmp,
    )
    result = json.loads(out.read_text())
    return {
        "recipe": result["recipe"],
        "train_images": result["train_images"],
        "test_acc": result["test_acc"]["tta2"],
        "epochs": result["epochs"],
        "precision": precision,
        "train_mflop_per_image": result["train_mflop_per_image"],
        "train_pflop": result["train_pflop"],
        "train_seconds": result["train_seconds"],
        "images_per_second": round(result["images_seen"] / result["train_seconds"], 1),
    }


def pipeline_run(repo: Path, prepared: Path, tmp: Path, precision: str) -> dict:
    """The train and evaluate stages with the committed params in the given precision, as `dvc
    repro` runs them, in a scratch copy."""
    scratch = copy_code(tmp / "pipeline", prepared)
    params = load_params(repo / "params.yaml")
    params["compute"]["precision"] = precision
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("train", "evaluate"):
        run_measured([sys.executable, "-m", f"stages.{stage}"], scratch)
    timing = json.loads((scratch / TIMING_METRICS).read_text())
    return {
        "recipe": f"this repository's default ({params['optimizer']}, per-epoch validation "
        "included)",
        "train_images": len(load_split("train", prepared)[1]),
        "test_acc": json.loads((scratch / EVALUATE_METRICS).read_text())["test_acc"],
        "epochs": params["train"]["epochs"],
        "precision": timing["precision"],
        "train_pflop": json.loads((scratch / TRAIN_METRICS).read_text())["train_pflop"],
        "train_seconds": timing["train_seconds"],
        "images_per_second": timing["images_per_second"],
    }


def with_rate(run: dict, machine_peaks: dict) -> dict:
    """The run with its training FLOP/s (training FLOPs / training seconds) and its share of the
    machine's peak at its precision."""
    gflops = run["train_pflop"] * 1e6 / run["train_seconds"]
    return {
        **run,
        "achieved_gflops": round(gflops, 1),
        "share_of_peak": share(gflops, run["precision"], machine_peaks),
    }


def against_reference(
    repo: Path, script: Path, prepared: Path, precision: str, tmp: Path
) -> tuple[dict, dict]:
    """This repository's default training and the reference's, one after the other in one run."""
    if not script.exists():
        raise UserError(
            f"{script} is not here: it is the team's runner of the reference (../shared/tools)"
        )
    print(f"the train and evaluate stages with the committed params, {precision} ...", flush=True)
    ours = pipeline_run(repo, prepared, tmp, precision)
    print(f"the reference ({AIRBENCH}) on the same prepared data ...", flush=True)
    return ours, reference_run(prepared, script, tmp, precision)


def compared(ours: dict, reference: dict, full_train_images: int) -> dict:
    """Seconds against the reference's, and the ratio projected for the full training split: each
    run's FLOPs there (ours from the committed run, the reference's per image times its epochs of
    the full split) at the rate it ran at here."""
    rate = ours["achieved_gflops"] / reference["achieved_gflops"]
    ours_pflop = json.loads(TRAIN_METRICS.read_text())["train_pflop"]
    reference_pflop = (
        reference["train_mflop_per_image"] * full_train_images * reference["epochs"] / 1e9
    )
    return {
        "ours": ours,
        "reference": reference,
        "seconds_ratio": round(ours["train_seconds"] / reference["train_seconds"], 3),
        "gflops_ratio": round(rate, 3),
        "projected_full_seconds_ratio": round(ours_pflop / reference_pflop / rate, 3),
        "reaches_reference_accuracy": ours["test_acc"] >= reference["test_acc"],
    }


# ------------------------------------------------------------ the modes


def bench(repo: Path, params: dict, device: torch.device, precision: str) -> dict:
    print("peak rates (matmuls, the model's convolutions) ...", flush=True)
    precisions = tuple(dict.fromkeys(("fp32", precision)))  # the naive loop's and the stage's
    started = peaks(conv_shapes(params), precisions=precisions)
    print("the train stage's epochs and a naive fp32 loop, interleaved ...", flush=True)
    results = {**machine(device, precision), **training_throughput(params)}
    results["peaks"] = peaks(conv_shapes(params), started, precisions=precisions)
    results.update(shares(results))
    print("stage costs, 1 and 2 training processes, no-op repro, fresh pull ...", flush=True)
    return {
        **results,
        **stage_costs(repo),
        **processes_throughput(repo),
        **dvc_overheads(repo),
        "repeats": REPEATS,
    }


def bench_predict(repo: Path, params: dict, device: torch.device, precision: str) -> dict:
    return {
        **machine(device, precision),
        "tta": params["evaluate"]["tta"],
        **predict_against_evaluate(repo, params),
        "repeats": REPEATS,
    }


def bench_anchor(repo: Path, params: dict, device: torch.device, args) -> dict:
    """The default's training loop alone (validation aside), then the default's train and evaluate
    stages and the reference's run, on the prepared data or on args.train_images of it."""
    print("peak rates (matmuls, the model's convolutions) ...", flush=True)
    started = peaks(conv_shapes(params), precisions=(args.precision,))
    full_train_images = len(load_split("train")[1])
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path("data/prepared")
        if args.train_images:
            prepared = subset(prepared, Path(tmp) / "prepared", args.train_images)
        print("the train stage's epochs alone, validation aside ...", flush=True)
        loop = loop_rates(params, start_run(params, *load_split("train", prepared)))
        ours, reference = against_reference(
            repo, args.anchor_script, prepared, args.precision, Path(tmp)
        )
    machine_peaks = peaks(conv_shapes(params), started, precisions=(args.precision,))
    ours, reference = with_rate(ours, machine_peaks), with_rate(reference, machine_peaks)
    return {
        **machine(device, args.precision),
        "peaks": machine_peaks,
        **compared(ours, reference, full_train_images),
        "ours_loop": {
            **loop,
            "share_of_peak": share(loop["achieved_gflops"], loop["precision"], machine_peaks),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--profile", action="store_true", help="print where a training step spends its time"
    )
    parser.add_argument(
        "--predict", action="store_true", help="time commands.predict against the evaluate stage"
    )
    parser.add_argument(
        "--anchor", action="store_true", help="train the default and the reference side by side"
    )
    parser.add_argument(
        "--anchor-script", type=Path, default=ANCHOR_SCRIPT, help="the runner of the reference"
    )
    parser.add_argument(
        "--train-images",
        type=int,
        default=0,
        help="--anchor on this many training images, drawn at random across the classes (1,000 "
        "validation and 2,000 test images likewise); 0, the default: the whole prepared data",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=None,
        help="train in this precision (default: params.yaml's compute.precision)",
    )
    args = parser.parse_args()
    params = load_params()
    if args.profile:
        print(profile_training(params))
        return
    device = setup_torch(0, params["compute"]["device"])
    args.precision = resolve_precision(args.precision or params["compute"]["precision"], device)
    params["compute"]["precision"] = args.precision
    if args.anchor:
        results = bench_anchor(Path.cwd(), params, device, args)
        suffix = f"-{args.train_images}-images" if args.train_images else ""
        path = result_path("anchor", results, suffix)
    elif args.predict:
        results = bench_predict(Path.cwd(), params, device, args.precision)
        path = result_path("predict", results)
    else:
        results = bench(Path.cwd(), params, device, args.precision)
        path = result_path("results", results)
    write_json(path, results)
    print(yaml.safe_dump(results, sort_keys=False))
    write_report()
    print(f"wrote {path} and {REPORT}")


if __name__ == "__main__":
    main()
