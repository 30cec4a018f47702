"""The machine's peak rates: the theoretical one, from its cores, clock and instruction set, and the
best one measured on it (matmuls of several shapes and the default model's convolutions).

A share of peak is taken against the higher of the two, so that it is an upper bound: on a virtual
machine the clock read is often the nominal one and a boost exceeds it, and on a CPU without AVX-512
a large matmul runs below what convolutions sustain.
"""

import os
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
MATMUL_SIDES = (1024, 2048, 4096)
REPEATS = 3


def cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    match = re.search(r"^flags\s*:(.*)$", cpuinfo.read_text() if cpuinfo.exists() else "", re.M)
    return set(match.group(1).split()) if match else set()


def clock_mhz() -> float:
    """The highest clock the machine states: cpufreq's maximum where the kernel has it, else the
    highest `cpu MHz` of /proc/cpuinfo (on a virtual machine usually the nominal clock)."""
    rates = []
    for path in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq"):
        rates.append(int(path.read_text()) / 1000)
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    rates += [float(mhz) for mhz in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
    return max(rates, default=0.0)


def flops_per_cycle(flags: set[str]) -> dict[str, int]:
    """FLOPs per cycle per core at each precision, taking two vector units per core, each doing a
    fused multiply-add on every lane of its widest registers: fp32 on 16 lanes (AVX-512) or 8
    (AVX2), bf16 as a dot product of pairs (AVX512-BF16: twice the fp32 rate) or on AMX tiles
    (1,024); bf16 without either is converted to fp32."""
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags or "avx" in flags else 4
    fp32 = 2 * lanes * (2 if "fma" in flags or "avx512f" in flags else 1)
    bf16 = 1024 if "amx_bf16" in flags else 2 * fp32 if "avx512_bf16" in flags else fp32
    return {"fp32": fp32, "bf16": bf16}


def instruction_set(flags: set[str]) -> str:
    names = ["amx_bf16", "avx512_bf16", "avx512f", "avx2", "fma"]
    return " ".join(name for name in names if name in flags) or "no AVX"


def theoretical_peaks() -> dict:
    """cores x clock x FLOPs per cycle, per precision, as the machine describes itself."""
    flags, cores, mhz = cpu_flags(), len(os.sched_getaffinity(0)), clock_mhz()
    per_cycle = flops_per_cycle(flags)
    return {
        "instruction_set": instruction_set(flags),
        "cores": cores,
        "clock_mhz": round(mhz),
        "theoretical_gflops": {
            precision: round(cores * mhz * 1e6 * flops / 1e9, 1)
            for precision, flops in per_cycle.items()
        },
    }


def best_rate(work, flop: float) -> float:
    """GFLOP/s of work, the fastest of REPEATS after a warm-up."""
    work()
    fastest = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        work()
        fastest = min(fastest, time.perf_counter() - started)
    return flop / fastest / 1e9


def matmul_rate(side: int, dtype: torch.dtype) -> float:
    a, b = (torch.randn(side, side, dtype=dtype) for _ in range(2))
    return best_rate(lambda: torch.matmul(a, b), 2 * side**3)


def conv_rate(channels: int, side: int, precision: str, batch: int = 256) -> float:
    """A 3x3 convolution of the default model's shape, forward, channels_last, as the train stage
    runs it (bf16 under autocast)."""
    x = torch.randn(batch, channels, side, side).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(channels, channels, 3, 3).contiguous(memory_format=torch.channels_last)

    def conv() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            F.conv2d(x, weight, padding=1)

    return best_rate(conv, 2 * batch * channels**2 * 9 * side**2)


def measured_peaks(
    conv_shapes: list[tuple[int, int]],
    matmul_sides: tuple[int, ...] = MATMUL_SIDES,
    precisions: tuple[str, ...] = tuple(PRECISIONS),
) -> dict:
    """The best GFLOP/s measured at each of precisions, and what reached it: square matmuls of
    matmul_sides and 3x3 convolutions of conv_shapes ((channels, side) pairs)."""
    best = {}
    for precision in precisions:
        dtype = PRECISIONS[precision]
        rates = {f"matmul {side}²": matmul_rate(side, dtype) for side in matmul_sides}
        rates |= {
            f"conv 3x3 {channels} channels {side}²": conv_rate(channels, side, precision)
            for channels, side in conv_shapes
        }
        name = max(rates, key=rates.get)
        best[precision] = {"gflops": round(rates[name], 1), "by": name}
    return best


def peaks(
    conv_shapes: list[tuple[int, int]],
    earlier: dict | None = None,
    matmul_sides: tuple[int, ...] = MATMUL_SIDES,
    precisions: tuple[str, ...] = tuple(PRECISIONS),
) -> dict:
    """The theoretical and measured peaks, the measured ones the higher of now and `earlier` (a
    measurement at the start of a run: anything else the host runs slows one), and the bound each
    share is taken against: the higher of the two. Only the given precisions are measured and
    bounded: bf16 on a CPU without bf16 instructions is emulated, and measuring it takes minutes."""
    result = {
        **theoretical_peaks(),
        "measured": measured_peaks(conv_shapes, matmul_sides, precisions),
    }
    if earlier:
        for precision, best in earlier["measured"].items():
            if best["gflops"] > result["measured"][precision]["gflops"]:
                result["measured"][precision] = best
    result["bound_gflops"] = {
        precision: max(result["theoretical_gflops"][precision], best["gflops"])
        for precision, best in result["measured"].items()
    }
    return result


def share(gflops: float, precision: str, machine_peaks: dict) -> float:
    """A rate as a share of the machine's bound at its precision."""
    return round(gflops / machine_peaks["bound_gflops"][precision], 3)
