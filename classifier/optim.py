"""The optimizers params.yaml may name (a registry of torch.optim classes), the one it names built
for a model, its learning-rate schedule, and lookahead."""

import contextlib

import torch
import torch.optim._muon
from torch import nn

OPTIMIZERS = {
    "sgd": (torch.optim.SGD, {}),
    "nesterov": (torch.optim.SGD, {"nesterov": True}),
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adagrad": (torch.optim.Adagrad, {}),
    "nadam": (torch.optim.NAdam, {}),
    # for the conv filters; Nesterov SGD (its `others`) for the rest
    "muon": (
        torch.optim.Muon,
        {},
    ),
}
# Optimizer settings that are ours, not the torch.optim class's: the batch-norm biases' lr multiple,
# which every section but muon's takes, and muon's `others` (the Nesterov SGD's settings for what is
# not a conv filter).
BIAS_EXTRAS, MUON_EXTRAS = {"bias_lr_factor"}, {"others"}
OPTIMIZER_EXTRAS = BIAS_EXTRAS | MUON_EXTRAS


def build_optimizer(
    name: str, optimizers: dict, model: nn.Module, precision: str = "bf16"
) -> torch.optim.Optimizer:
    """The optimizer `name` stands for, with its settings from `optimizers` (params.yaml's section
    of that name); precision: the run's (muon orthogonalises in it, see FilterMuon).

    Any torch.optim class: batch-norm biases get a group of their own, with lr x bias_lr_factor and
    weight_decay / bias_lr_factor (the same decay per step): with the batch-norm scale frozen they
    are the only per-channel knobs, and they need far larger steps than the filters. muon: see
    FilterMuon.
    """
    if name == "muon":
        return FilterMuon(model, optimizers["muon"], precision)
    optimizer_class, fixed = OPTIMIZERS[name]
    params = [p for p in model.parameters() if p.requires_grad]
    return optimizer_class(
        parameter_groups(model, params, optimizers[name]), **fixed, **keywords(optimizers[name])
    )


def keywords(settings: dict) -> dict:
    """The settings that are keyword arguments of the torch.optim class, without ours."""
    return {key: value for key, value in settings.items() if key not in OPTIMIZER_EXTRAS}


def parameter_groups(model: nn.Module, params: list[nn.Parameter], settings: dict) -> list[dict]:
    """params in one group, the model's batch-norm biases among them in a second one with their own
    lr and decay."""
    factor = settings.get("bias_lr_factor", 1)
    norm_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)} & {
        id(p) for p in params
    }
    groups = [{"params": [p for p in params if id(p) not in norm_biases]}]
    if norm_biases:
        groups.append(
            {
                "params": [p for p in params if id(p) in norm_biases],
                "lr": settings["lr"] * factor,
                "weight_decay": settings.get("weight_decay", 0) / factor,
            }
        )
    return groups


class FilterMuon(torch.optim.Optimizer):
    """optimizer: muon. torch.optim.Muon for the trainable convolution filters, each viewed as a
    matrix (out channels x in channels x 3 x 3), whose updates it orthogonalises; SGD with Nesterov
    momentum and the settings of optimizers.muon.others for the rest (batch-norm biases, whitening
    bias, dense layer), as the published airbench94_muon does. One optimizer to the schedule,
    lookahead and resume: its param_groups are the two optimizers' own, so the schedule scales
    both.

    torch.optim.Muon orthogonalises in bf16; a run in fp32 does it in fp32: a CPU without bf16
    instructions emulates bf16 matmuls, and there the orthogonalisation took most of a step."""

    def __init__(self, model: nn.Module, settings: dict, precision: str = "bf16"):
        self.precision = precision
        self.filters = [
            m.weight for m in model.modules() if isinstance(m, nn.Conv2d) and m.weight.requires_grad
        ]
        chosen = {id(p) for p in self.filters}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in chosen]
        self.channels_last = [not f.is_contiguous() for f in self.filters]
        self.matrices = [
            as_matrix(f.detach(), last) for f, last in zip(self.filters, self.channels_last)
        ]
        self.muon = torch.optim.Muon(self.matrices, **keywords(settings))
        others = settings["others"]
        sgd_class, fixed = OPTIMIZERS["nesterov"]
        self.sgd = sgd_class(parameter_groups(model, rest, others), **fixed, **keywords(others))
        super().__init__(self.muon.param_groups + self.sgd.param_groups, {})

    @torch.no_grad()
    def step(self, closure=None):
        for f, matrix, last in zip(self.filters, self.matrices, self.channels_last):
            matrix.grad = None if f.grad is None else as_matrix(f.grad, last)
            # batch norm follows every conv, so a filter's scale carries nothing; holding it at
            # sqrt(out channels), as airbench94_muon does, keeps each orthogonalised step the same
            # relative size
            matrix.mul_(len(matrix) ** 0.5 / matrix.norm())
        with orthogonalising_in(self.precision):
            self.muon.step()
        self.sgd.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for f in self.filters:
            f.grad = None
        self.muon.zero_grad(set_to_none)
        self.sgd.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "sgd": self.sgd.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.muon.load_state_dict(state["muon"])
        self.sgd.load_state_dict(state["sgd"])
        # loading made new group dicts
        self.param_groups = self.muon.param_groups + self.sgd.param_groups


@contextlib.contextmanager
def orthogonalising_in(precision: str):
    """torch.optim.Muon's steps orthogonalise in this precision: its own bf16, or fp32 (through its
    private _zeropower_via_newtonschulz, which torch 2.14, pinned, casts to bf16 with no option)."""
    if precision == "bf16":
        yield
        return
    original = torch.optim._muon._zeropower_via_newtonschulz
    torch.optim._muon._zeropower_via_newtonschulz = newton_schulz_fp32
    try:
        yield
    finally:
        torch.optim._muon._zeropower_via_newtonschulz = original


def newton_schulz_fp32(grad: torch.Tensor, coefficients, steps: int, eps: float) -> torch.Tensor:
    """torch.optim.Muon's orthogonalisation, the quintic Newton-Schulz iteration, in fp32."""
    a, b, c = coefficients
    tall = grad.size(0) > grad.size(1)
    x = grad.float().T if tall else grad.float()
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def as_matrix(filters: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(out, in, h, w) filters as an (out, in x h x w) matrix, a view of their memory where it can
    be: channels-last filters are laid out (out, h, w, in), and orthogonalising does not depend on
    the order of the columns."""
    return (filters.permute(0, 2, 3, 1) if channels_last else filters).reshape(len(filters), -1)


def build_schedule(optimizer, train_params: dict, total_steps: int):
    """onecycle: linear warm-up from lr_start_factor to the full rate, then linear decay to
    lr_end_factor."""
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

    The average's decay grows as (step / total)^3, so early training is untouched and the end is
    smoothed; the final model is the average. A cheap form of weight averaging, after airbench.
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
