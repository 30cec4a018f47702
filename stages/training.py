"""What train and evaluate share: device and precision, input batches, the optimizer, the loops."""

import contextlib
import os
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from stages.data import flip_half, scale_pixels, translate
from stages.params import OPTIMIZERS, StageError


class TrainingDiverged(StageError):
    """The loss became NaN or infinite: the learning rate is too high for this optimizer."""


# ----------------------------------------------------------------------------- device and precision

def setup_torch(seed: int, device_name: str) -> torch.device:
    """Seed every generator, use every core we are allowed (one thread per core), pick the device."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    if device_name == "cuda" and not torch.cuda.is_available():
        raise StageError("params.yaml: 'train.device' is 'cuda' but no CUDA device is visible; use auto or cpu")
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device_name)


def autocast(device: torch.device, precision: str):
    """bf16 mixed precision: about twice the fp32 speed on AVX-512 bf16 CPUs and on GPUs."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 (N, H, W, C) images, in [0, 1] units."""
    pixels = scale_pixels(images.reshape(-1, images.shape[-1]).astype(np.float32))
    return pixels.mean(0).tolist(), pixels.std(0).tolist()


def to_input(images_u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, C) to a normalised float (N, C, H, W) batch in channels-last memory order.

    NHWC uint8 is already channels-last, so permute() gives the layout oneDNN and cuDNN are fastest with.
    """
    x = scale_pixels(images_u8.to(device, non_blocking=True).permute(0, 3, 1, 2).float())
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def stats_tensors(mean: list[float], std: list[float], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor(mean, device=device).view(1, -1, 1, 1), torch.tensor(std, device=device).view(1, -1, 1, 1))


# ----------------------------------------------------------------------------- optimizer and schedule

def build_optimizer(name: str, settings: dict, model: nn.Module) -> torch.optim.Optimizer:
    optimizer_class, fixed = OPTIMIZERS[name]
    trainable = [p for p in model.parameters() if p.requires_grad]
    return optimizer_class(trainable, **fixed, **settings)


def build_schedule(optimizer, kind: str, total_steps: int, warmup_fraction: float):
    """onecycle: linear warm-up from 10% to the full rate, then linear decay to zero (fast-training standard)."""
    warmup_steps = max(1, round(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if kind == "constant":
            return 1.0
        if step < warmup_steps:
            return 0.1 + 0.9 * step / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ----------------------------------------------------------------------------- loops

def train_one_epoch(model, optimizer, schedule, images, labels, mean, std, train_params: dict,
                    device: torch.device, generator: torch.Generator, desc: str = "train") -> tuple[float, float]:
    """One pass over shuffled, augmented training batches; returns plain cross-entropy and accuracy."""
    model.train()
    batch_size = train_params["batch_size"]
    order = torch.randperm(len(images), generator=generator)
    steps = max(1, len(images) // batch_size)  # drop the last partial batch: a tiny batch upsets batch norm
    total_loss = total_correct = total_seen = 0.0
    progress = tqdm(range(steps), desc=desc, leave=False, mininterval=1.0)
    for step in progress:
        batch = order[step * batch_size:(step + 1) * batch_size]
        x = to_input(images[batch], mean, std, device)
        y = labels[batch].to(device, non_blocking=True)
        if train_params["augment"]:
            x = translate(flip_half(x, generator), train_params["translate"], generator)
        with autocast(device, train_params["precision"]):
            logits = model(x).float()
        loss = F.cross_entropy(logits, y, label_smoothing=train_params["label_smoothing"])
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"training diverged (loss {loss.item()}) at step {step + 1} of {desc}; "
                                   "lower the optimizer's lr in params.yaml")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            total_correct += (logits.argmax(1) == y).sum().item()
            total_seen += len(y)
        progress.set_postfix(loss=f"{total_loss / total_seen:.3f}", acc=f"{total_correct / total_seen:.3f}",
                             refresh=False)
    return total_loss / total_seen, total_correct / total_seen


@torch.no_grad()
def predict(model, images, mean, std, device: torch.device, batch_size: int, precision: str,
            tta: bool = False) -> torch.Tensor:
    """Float logits for uint8 (N, H, W, C) images; with tta, the mean of each image's and its mirror's."""
    model.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start:start + batch_size], mean, std, device)
        with autocast(device, precision):
            logits = model(x).float()
            if tta:
                logits = (logits + model(x.flip(-1)).float()) / 2
        outputs.append(logits.cpu())
    return torch.cat(outputs)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss = F.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    return loss, accuracy
