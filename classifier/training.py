"""Training: a run set up from params and data (start_run), then trained one epoch at a time
(train_one_epoch)."""

import copy
import itertools
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from classifier import distributed
from classifier.batches import channel_stats, stats_tensors, to_input, training_batches
from classifier.device import autocast, resolve_precision, setup_torch
from classifier.errors import UserError
from classifier.models import build_model, init_whitening
from classifier.optim import Lookahead, build_optimizer, build_schedule

WHITENING_IMAGES = (
    5000  # the whitening conv is set from the 2x2 patches of this many training images
)


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the learning rate is too high for this optimizer."""


# ------------------------------------------------------------ a run


@dataclass
class Run:
    """One training run: the training images on the device, the model and what trains it, and the
    generator that orders and augments the images."""

    params: dict
    device: torch.device
    precision: str
    images: torch.Tensor  # uint8 (N, H, W, C): batches are cut and augmented on the device
    labels: torch.Tensor
    # per-channel mean and std of the images, (1, C, 1, 1), kept in the checkpoint
    mean: torch.Tensor
    std: torch.Tensor
    flip_bits: torch.Tensor  # each image's orientation in even epochs (train.flip: alternating)
    model: nn.Module
    # what trains: the model, or its DistributedDataParallel wrapper in a distributed run
    net: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    lookahead: Lookahead
    generator: torch.Generator  # shuffling and augmentation
    flops_per_image: dict = field(default_factory=dict)  # (side, whitening bias trains): FLOPs

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.images) // self.params["train"]["batch_size"])

    @property
    def stats(self) -> tuple[list[float], list[float]]:
        return self.mean.flatten().tolist(), self.std.flatten().tolist()


def check_fits(params: dict, images: np.ndarray, class_names: list[str]) -> None:
    """Params that are valid alone but not with this data: a batch larger than the split, a model
    too deep."""
    batch_size, arch = params["train"]["batch_size"], params["model"]["arch"]
    if batch_size > len(images):
        raise UserError(
            f"params.yaml: 'train.batch_size' is {batch_size}, more than the {len(images)} "
            f"training images; use at most {len(images)} (or more data)"
        )
    side = images.shape[1]
    # a trial model must not move the seeded generators
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        model = build_model(params["model"], len(class_names), side).eval()
    pools = sum(isinstance(module, nn.MaxPool2d) for module in model.modules())
    too_deep = f"params.yaml: model.arch '{arch}' halves the image {pools} times, too often for"
    if not takes(model, side):
        raise UserError(
            f"{too_deep} {side}x{side} images; use larger images or model.arch seed_cnn with "
            "fewer widths"
        )
    low = low_res_side(params, side)
    if low_res_epochs(params) and not takes(model, low):
        raise UserError(
            f"{too_deep} the {low}x{low} images of the first epochs; raise 'train.low_res_scale' "
            "or set 'train.low_res_fraction' to 0"
        )


def takes(model: nn.Module, side: int) -> bool:
    """Whether the model runs on side x side images (too many poolings leave nothing to pool)."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        try:
            model(torch.zeros(1, 3, side, side))
        except RuntimeError:
            return False
    return True


def start_run(params: dict, images: np.ndarray, labels: np.ndarray, class_names: list[str]) -> Run:
    """Seeds, device, normalisation, the model (its whitening conv set from the data), optimizer and
    schedule.

    In a distributed run (train.processes > 1) every process sets up the same run, and seeds its own
    dropout.
    """
    train_params = params["train"]
    device = setup_torch(params["seed"] + distributed.rank(), params["compute"]["device"])
    if distributed.launched():
        distributed.start(device)
    mean, std = stats_tensors(*channel_stats(images), device)
    images, labels = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
    model = build_model(params["model"], len(class_names), images.shape[1])
    model = model.to(device, memory_format=torch.channels_last)
    if hasattr(model, "whiten"):
        init_whitening(model.whiten, to_input(images[:WHITENING_IMAGES], mean, std, device))
    precision = resolve_precision(params["compute"]["precision"], device)
    optimizer = build_optimizer(params["optimizer"], params["optimizers"], model, precision)
    total_steps = train_params["epochs"] * max(1, len(images) // train_params["batch_size"])
    schedule = build_schedule(optimizer, train_params, total_steps)
    lookahead = Lookahead(
        model, train_params["lookahead_every"], train_params["lookahead_decay"], total_steps
    )
    generator = torch.Generator().manual_seed(params["seed"])
    flip_bits = torch.rand(len(images), generator=generator) < 0.5
    return Run(
        params,
        device,
        precision,
        images,
        labels,
        mean,
        std,
        flip_bits,
        model,
        wrapped(model, device),
        optimizer,
        schedule,
        lookahead,
        generator,
    )


def wrapped(model: nn.Module, device: torch.device) -> nn.Module:
    """The model for a distributed run: DistributedDataParallel averages the gradients of the
    processes after every backward pass. Batch norm keeps its statistics per process (each
    normalises its own share of the batch, as on one process; no SyncBatchNorm, which would cost a
    collective per layer and step), and DDP gives every process rank 0's running statistics before
    each forward pass, so the saved model has them. find_unused_parameters: the whitening conv's
    bias stops training after train.whiten_bias_epochs."""
    if distributed.world_size() == 1:
        return model
    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True,
    )


def train_one_epoch(
    run: Run, epoch: int, steps: int | None = None, progress: tqdm | None = None
) -> tuple[float, float, float]:
    """Epoch `epoch` (from 0) of the run, or its first `steps` batches: train loss and accuracy, and
    the FLOPs.

    The whitening conv's bias trains for the first train.whiten_bias_epochs only: frozen, it saves
    the first block's input gradient. After the last epoch the weights move to lookahead's average.
    In a distributed run every process cuts the same batches and trains on its share of each; loss
    and accuracy are over all shares. progress, a bar of the whole run's GFLOP, advances with every
    step and shows the epoch, the step and the loss and accuracy so far.
    """
    train_params = run.params["train"]
    if hasattr(run.model, "whiten"):
        run.model.whiten.bias.requires_grad_(epoch < train_params["whiten_bias_epochs"])
    steps = steps or run.steps_per_epoch
    scale = epoch_scale(run.params, epoch)
    flops = epoch_flops(run, epoch, steps)
    batches = training_batches(
        run.images,
        run.labels,
        run.mean,
        run.std,
        train_params,
        run.device,
        run.generator,
        epoch,
        run.flip_bits,
        scale,
    )
    batches = share(itertools.islice(batches, steps))
    run.net.train()
    total_loss = total_correct = total_seen = 0.0
    for step, (x, y) in enumerate(batches, start=1):
        with autocast(run.device, run.precision):
            logits = run.net(x).float()
        loss = F.cross_entropy(logits, y, label_smoothing=train_params["label_smoothing"])
        if not (
            torch.isfinite(loss) if distributed.world_size() == 1 else distributed.all_finite(loss)
        ):
            raise TrainingDiverged(
                f"training diverged (loss {loss.item()}) at step {step} of epoch "
                f"{epoch + 1}/{train_params['epochs']}; lower the optimizer's lr in params.yaml"
            )
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.schedule.step()
        run.lookahead.step(run.schedule.last_epoch)
        with torch.no_grad():  # the plain cross-entropy, without label smoothing
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            total_correct += (logits.argmax(1) == y).sum().item()
            total_seen += len(y)
        if progress is not None:
            progress.set_description_str(
                f"epoch {epoch + 1}/{train_params['epochs']} ({step}/{steps}) loss "
                f"{total_loss / total_seen:.3f} acc {total_correct / total_seen:.3f}",
                refresh=False,
            )
            # clamped: the sum of the steps' shares can pass the planned total by a rounding
            progress.update(min(flops / steps / 1e9, progress.total - progress.n))
    if epoch == train_params["epochs"] - 1:
        run.lookahead.finish()
    total_loss, total_correct, total_seen = distributed.sum_across(
        [total_loss, total_correct, total_seen]
    )
    return total_loss / total_seen, total_correct / total_seen, flops


def low_res_epochs(params: dict) -> int:
    """How many of the first epochs train on smaller images: train.low_res_fraction of them, rounded
    (fast_cnn only: seed_cnn's dense layer takes one image size)."""
    if params["model"]["arch"] != "fast_cnn":
        return 0
    return round(params["train"]["epochs"] * params["train"]["low_res_fraction"])


def low_res_side(params: dict, side: int) -> int:
    """The side in pixels of the small-image epochs' images (as scale_down rounds it)."""
    return round(side * params["train"]["low_res_scale"])


def epoch_scale(params: dict, epoch: int) -> float:
    """The share of the images' side that epoch `epoch` (from 0) trains on."""
    return params["train"]["low_res_scale"] if epoch < low_res_epochs(params) else 1.0


def share(batches):
    """This process's rows of every batch: all of them, or one contiguous part in a distributed
    run."""
    world, rank = distributed.world_size(), distributed.rank()
    for x, y in batches:
        size = len(x) // world
        yield x[rank * size : (rank + 1) * size], y[rank * size : (rank + 1) * size]


def epoch_flops(run: Run, epoch: int, steps: int | None = None) -> float:
    """The training FLOPs of epoch `epoch` (from 0), or of its first `steps` batches.

    PyTorch's FLOP counter runs a copy of the model once per image size and whitening-bias setting
    of the run (it is slow: it bypasses the fast kernels), without moving the seeded generators.
    """
    trains_bias = epoch < run.params["train"]["whiten_bias_epochs"]
    side = round(run.images.shape[1] * epoch_scale(run.params, epoch))
    if (side, trains_bias) not in run.flops_per_image:
        model = copy.deepcopy(run.model)
        if hasattr(model, "whiten"):
            model.whiten.bias.requires_grad_(trains_bias)
        sample = torch.zeros(2, run.images.shape[3], side, side, device=run.device)
        with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
            flops = training_flops_per_image(
                model, sample.contiguous(memory_format=torch.channels_last)
            )
        run.flops_per_image[side, trains_bias] = flops
    images = (steps or run.steps_per_epoch) * run.params["train"]["batch_size"]
    return run.flops_per_image[side, trains_bias] * images


def planned_flops(run: Run, epochs: range) -> float:
    """The training FLOPs of these epochs."""
    return sum(epoch_flops(run, epoch) for epoch in epochs)


def training_flops_per_image(model: nn.Module, sample: torch.Tensor) -> float:
    """Forward plus backward FLOPs per image, counted by PyTorch's FLOP counter on a copy of the
    model.

    Only the gradients that training needs are counted: with the whitening bias frozen, the first
    block's input needs none, and its conv skips that part of the backward pass.
    """
    model = copy.deepcopy(model).train()
    with FlopCounterMode(display=False) as counter:
        model(sample).sum().backward()
    return counter.get_total_flops() / len(sample)
