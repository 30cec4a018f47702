"""The benchmark's bookkeeping: the peak is an upper bound, results are named per machine, and
reports/bench.md is what the bench/ files say; tools.muon_precision's two kinds of run, and its
report. (Timings are measured by make bench, never asserted here.)"""

import json

import numpy as np
import torch

from classifier import optim
from classifier.data import load_split, save_split
from classifier.models import build_model
from classifier.optim import newton_schulz_fp32
from tests.conftest import REPO
from tools.bench import result_path, subset
from tools.bench_report import REPORT, bench_report
from tools.muon_precision import REPORT_JSON as MUON_JSON
from tools.muon_precision import REPORT_MD as MUON_MD
from tools.muon_precision import TORCH_BF16_TRAIN
from tools.muon_precision import report as muon_report
from tools.peaks import flops_per_cycle, peaks, share


def test_flops_per_cycle_follow_the_instruction_set():
    assert flops_per_cycle({"avx2", "fma"}) == {"fp32": 32, "bf16": 32}
    assert flops_per_cycle({"avx2", "fma", "avx512f", "avx512_bf16"}) == {"fp32": 64, "bf16": 128}
    assert flops_per_cycle({"avx512f", "avx512_bf16", "amx_bf16"})["bf16"] == 1024


def test_the_bound_is_at_least_the_theory_and_every_measurement():
    machine = peaks([(8, 8)], matmul_sides=(64,))
    for precision, bound in machine["bound_gflops"].items():
        assert bound >= machine["theoretical_gflops"][precision]
        assert bound >= machine["measured"][precision]["gflops"] > 0
        assert share(machine["measured"][precision]["gflops"], precision, machine) <= 1


def test_only_the_precisions_asked_for_are_measured_and_bounded():
    machine = peaks([(8, 8)], matmul_sides=(64,), precisions=("fp32",))
    assert set(machine["measured"]) == set(machine["bound_gflops"]) == {"fp32"}
    assert set(machine["theoretical_gflops"]) == {"fp32", "bf16"}


def test_results_of_two_machines_or_precisions_get_two_files():
    zen2 = {"machine": "AMD EPYC, 2 cores, avx2 fma", "precision": "fp32"}
    zen5 = {"machine": "AMD EPYC, 2 cores, avx512_bf16 avx512f avx2 fma", "precision": "fp32"}
    paths = {
        result_path("anchor", zen2),
        result_path("anchor", zen5),
        result_path("anchor", {**zen5, "precision": "bf16"}),
        result_path("anchor", zen5, "-4096-images"),
    }
    assert len(paths) == 4
    assert result_path("anchor", zen2).name == "anchor-amd-epyc-avx2-fp32.json"


def test_a_subset_draws_the_same_share_of_each_class(tmp_path):
    labels = np.repeat(np.arange(10), 600)
    images = np.zeros((len(labels), 4, 4, 3), dtype=np.uint8)
    for split in ("train", "val", "test"):
        save_split(split, images, labels, [str(k) for k in range(10)], tmp_path / "full")
    subset(tmp_path / "full", tmp_path / "subset", 4096)
    for split, count in (("train", 4100), ("val", 1000), ("test", 2000)):
        drawn = load_split(split, tmp_path / "subset")[1]
        assert len(drawn) == count and set(np.bincount(drawn)) == {count // 10}


def test_the_committed_report_is_what_the_bench_files_say():
    assert (REPO / REPORT).read_text() == bench_report(REPO), (
        "reports/bench.md is out of date: run `python -m tools.bench_report` and commit it"
    )
    for path in (REPO / "bench").glob("*.json"):
        assert f"`{path.name}`" in (REPO / REPORT).read_text()
        json.loads(path.read_text())


def test_the_muon_precision_runs_orthogonalise_in_fp32_and_as_torch_does(params, monkeypatch):
    """tools.muon_precision's two kinds of run in fp32: the train stage as it is, and with the patch
    of its script, after which no fp32 orthogonalisation is called (torch.optim.Muon's own bf16)."""
    calls = []

    def counted(grad, *args):
        calls.append(grad.dtype)
        return newton_schulz_fp32(grad, *args)

    monkeypatch.setattr(optim, "newton_schulz_fp32", counted)
    monkeypatch.setattr(optim, "orthogonalising_in", optim.orthogonalising_in)  # restored after
    settings = {"lr": 0.1, "momentum": 0.6, "others": {"lr": 0.1, "momentum": 0.9}}
    for patched in (False, True):
        if patched:
            exec(TORCH_BF16_TRAIN.replace("run_main(train.main)", ""), {})
        model = build_model(params["model"], 3, 16)
        optimizer = optim.build_optimizer("muon", {"muon": settings}, model, "fp32")
        model(torch.randn(8, 3, 16, 16)).logsumexp(1).mean().backward()
        calls.clear()
        optimizer.step()
        assert calls == ([] if patched else [torch.float32] * len(optimizer.filters))


def test_the_committed_muon_precision_report_is_what_its_json_says():
    result = json.loads((REPO / MUON_JSON).read_text())
    assert (REPO / MUON_MD).read_text() == muon_report(result), (
        "reports/muon-precision.md is out of date: run `python -m tools.muon_precision`"
    )
    assert {len(seeds) for seeds in result["runs"].values()} == {3}
