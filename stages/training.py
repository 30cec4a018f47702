"""What train and evaluate share: device and precision, input batches, the optimizer, the loops."""

import contextlib
import copy
import os
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from stages.data import flip_where, scale_pixels, translate
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


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: bf16 where the hardware computes in bf16 (CUDA, CPUs with AVX-512 BF16 or AMX), else fp32.

    Without those instructions bf16 is emulated and several times slower than fp32.
    """
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if native else "fp32"


def autocast(device: torch.device, precision: str):
    """bf16 mixed precision: about twice the fp32 speed on CPUs with bf16 instructions and on GPUs."""
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
    """The torch.optim optimizer that `name` stands for, with batch-norm biases in a group of their own.

    Those biases get lr x bias_lr_factor and weight_decay / bias_lr_factor (the same decay per step): with the
    batch-norm scale frozen they are the only per-channel knobs, and they need far larger steps than the filters.
    """
    optimizer_class, fixed = OPTIMIZERS[name]
    settings = dict(settings)
    factor = settings.pop("bias_lr_factor", 1)
    norm_biases = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.bias.requires_grad]
    chosen = {id(p) for p in norm_biases}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in chosen]
    groups = [{"params": others}]
    if norm_biases:
        groups.append({"params": norm_biases, "lr": settings["lr"] * factor,
                       "weight_decay": settings.get("weight_decay", 0) / factor})
    return optimizer_class(groups, **fixed, **settings)


def build_schedule(optimizer, train_params: dict, total_steps: int):
    """onecycle: linear warm-up from lr_start_factor to the full rate, then linear decay to lr_end_factor."""
    warmup_steps = max(1, round(total_steps * train_params["warmup_fraction"]))
    start, end = train_params["lr_start_factor"], train_params["lr_end_factor"]

    def factor(step: int) -> float:
        if train_params["lr_schedule"] == "constant":
            return 1.0
        if step < warmup_steps:
            return start + (1 - start) * step / warmup_steps
        done = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 1 + (end - 1) * done

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Lookahead:
    """Every `every` steps, move the weights (and batch-norm statistics) to their running average.

    The average's decay grows as (step / total)^3, so early training is untouched and the end is smoothed;
    the final model is the average. A cheap form of weight averaging, after airbench.
    """

    def __init__(self, model: nn.Module, every: int, decay: float, total_steps: int):
        self.every, self.decay, self.total_steps = every, decay, total_steps
        self.live = [t for t in model.state_dict().values() if t.is_floating_point()]
        self.average = [t.clone() for t in self.live]

    def step(self, step: int) -> None:
        if self.every and step % self.every == 0:
            self._pull(self.decay**self.every * (step / self.total_steps) ** 3)

    def finish(self) -> None:
        if self.every:
            self._pull(1.0)

    @torch.no_grad()
    def _pull(self, decay: float) -> None:
        for average, live in zip(self.average, self.live):
            average.lerp_(live, 1 - decay)
            live.copy_(average)


# ----------------------------------------------------------------------------- loops

def training_batches(images, labels, mean, std, train_params: dict, device: torch.device,
                     generator: torch.Generator, epoch: int, flip_bits: torch.Tensor):
    """Shuffled, augmented (x, y) batches of one epoch; the last partial batch is dropped (it upsets batch norm).

    Alternating flip: each image has a fixed random orientation (flip_bits) in even epochs and the mirror
    one in odd epochs, so every pair of epochs shows both, which beats an independent coin per epoch.
    """
    batch_size = train_params["batch_size"]
    order = torch.randperm(len(images), generator=generator)
    for step in range(max(1, len(images) // batch_size)):
        batch = order[step * batch_size:(step + 1) * batch_size]
        x = to_input(images[batch.to(images.device)], mean, std, device)
        if train_params["flip"] == "alternating":
            x = flip_where(x, flip_bits[batch] ^ (epoch % 2 == 1))
        elif train_params["flip"] == "random":
            x = flip_where(x, torch.rand(len(batch), generator=generator) < 0.5)
        x = translate(x, train_params["translate"], generator)
        yield x, labels[batch.to(labels.device)].to(device, non_blocking=True)


def train_one_epoch(model, optimizer, schedule, batches, steps: int, precision: str, label_smoothing: float,
                    device: torch.device, lookahead: Lookahead | None = None, desc: str = "train"):
    """One pass over the batches; returns plain cross-entropy and accuracy on them."""
    model.train()
    total_loss = total_correct = total_seen = 0.0
    progress = tqdm(batches, total=steps, desc=desc, leave=False, mininterval=1.0)
    for step, (x, y) in enumerate(progress, start=1):
        with autocast(device, precision):
            logits = model(x).float()
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"training diverged (loss {loss.item()}) at step {step} of {desc}; "
                                   "lower the optimizer's lr in params.yaml")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if lookahead is not None:
            lookahead.step(schedule.last_epoch)
        with torch.no_grad():
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            total_correct += (logits.argmax(1) == y).sum().item()
            total_seen += len(y)
        progress.set_postfix(loss=f"{total_loss / total_seen:.3f}", acc=f"{total_correct / total_seen:.3f}",
                             refresh=False)
    return total_loss / total_seen, total_correct / total_seen


def training_flops_per_image(model: nn.Module, sample: torch.Tensor) -> float:
    """Forward plus backward FLOPs per image, counted by PyTorch's FLOP counter on a copy of the model.

    Only the gradients that training needs are counted: with the whitening bias frozen, the first block's
    input needs none, and its conv skips that part of the backward pass.
    """
    model = copy.deepcopy(model).train()
    with FlopCounterMode(display=False) as counter:
        model(sample).sum().backward()
    return counter.get_total_flops() / len(sample)


@torch.no_grad()
def predict(model, images, mean, std, device: torch.device, batch_size: int, precision: str,
            tta: str = "none") -> torch.Tensor:
    """Float logits for uint8 (N, H, W, C) images, averaged over test-time views of each image.

    tta: none | mirror (the image and its mirror) | mirror_translate (also both mirrored, shifted one pixel
    up-left and down-right: six views, the unshifted pair weighted as much as the four shifted ones).
    """
    model.eval()

    def mirrored(x):
        with autocast(device, precision):
            return (model(x).float() + model(x.flip(-1)).float()) / 2

    outputs = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start:start + batch_size], mean, std, device)
        if tta == "none":
            with autocast(device, precision):
                logits = model(x).float()
        elif tta == "mirror":
            logits = mirrored(x)
        else:
            height, width = x.shape[-2:]
            padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
            shifted = [padded[..., :height, :width], padded[..., 2:, 2:]]
            logits = mirrored(x) / 2 + sum(mirrored(view) for view in shifted) / 4
        outputs.append(logits.cpu())
    return torch.cat(outputs)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss = F.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    return loss, accuracy
