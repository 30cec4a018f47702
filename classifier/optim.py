"""The optimizer (any torch.optim class params.yaml names), its learning-rate schedule, and lookahead."""

import torch
from torch import nn

from classifier.params import OPTIMIZERS


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
