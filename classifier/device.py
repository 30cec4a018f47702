"""Where and in which precision the model runs: seeds, threads, CUDA or CPU, bf16 or fp32."""

import contextlib
import os
import random

import numpy as np
import torch

from classifier.cli import UserError


def setup_torch(seed: int, device_name: str) -> torch.device:
    """Seed every generator, use every core we are allowed (one thread per core), pick the device."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    if device_name == "cuda" and not torch.cuda.is_available():
        raise UserError("params.yaml: 'train.device' is 'cuda' but no CUDA device is visible; use auto or cpu")
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device_name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: bf16 where the hardware computes in bf16 (CUDA, CPUs with AVX-512 BF16 or AMX), else fp32.

    Without those instructions bf16 is emulated: the Intel machine of the committed benchmark ran bf16 matmuls
    at a fifth of its fp32 rate.
    """
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if native else "fp32"


def autocast(device: torch.device, precision: str):
    """bf16 mixed precision (autocast) where precision says so; nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
