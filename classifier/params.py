"""params.yaml, read and checked, so that a bad value stops a stage before any work."""

import difflib
import inspect
import re
from collections.abc import Hashable
from pathlib import Path

import yaml

from classifier.errors import UserError

PARAMS_FILE = Path("params.yaml")

ARCHS = ("fast_cnn", "seed_cnn")
ACTIVATIONS = ("relu", "gelu")
LR_SCHEDULES = ("onecycle", "constant")
FLIPS = ("alternating", "random", "none")
TTA_VIEWS = ("mirror_translate", "mirror", "none")
PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")

# Every key params.yaml may hold: a mistyped key must not be ignored while a stage quietly uses
# another value. A set lists a section's keys; None means any keys (optimizers: checked against each
# torch.optim signature).
KNOWN_KEYS = {
    "seed": set(),
    "data": {"raw", "val_fraction", "split_seed"},
    "model": {
        "arch": set(),
        "fast_cnn": {
            "widths",
            "activation",
            "dropout",
            "batchnorm_momentum",
            "batchnorm_weight",
            "dirac_init",
            "output_scale",
        },
        "seed_cnn": {"widths", "dense", "dropout"},
    },
    "optimizer": set(),
    "optimizers": None,
    "train": {
        "epochs",
        "batch_size",
        "lr_schedule",
        "warmup_fraction",
        "lr_start_factor",
        "lr_end_factor",
        "label_smoothing",
        "flip",
        "translate",
        "cutout",
        "whiten_bias_epochs",
        "lookahead_every",
        "lookahead_decay",
        "val_stride",
        "low_res_fraction",
        "low_res_scale",
        "processes",
        "resume",
    },
    "evaluate": {"tta", "batch_size"},
    "compute": {"device", "precision"},
    "plot": {"overfit_gap", "underfit_accuracy"},
}


class DuplicateKey(Exception):
    def __init__(self, key, first_line: int, second_line: int):
        super().__init__(f"key '{key}' is given twice, at lines {first_line} and {second_line}")


class ParamsLoader(yaml.SafeLoader):
    """YAML 1.2's floats: PyYAML (YAML 1.1) reads 2e-09 as a string, and DVC writes `-S key=2e-09`
    so. A key given twice in one mapping is an error, as in DVC; PyYAML alone would keep the last
    value."""

    def construct_mapping(self, node, deep=False):
        lines = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, Hashable) and key in lines:
                raise DuplicateKey(key, lines[key], line)
            lines[key] = line
        return super().construct_mapping(node, deep)


EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
ParamsLoader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT, list("-+0123456789"))


def parse_params(text: str) -> dict:
    return yaml.load(text, ParamsLoader)  # noqa: S506 (a SafeLoader)


def load_params(path: Path = PARAMS_FILE) -> dict:
    """params.yaml, parsed and checked for keys that no stage knows."""
    if not path.exists():
        raise UserError(f"{path} not found; run the stages from the repository root")
    try:
        params = parse_params(path.read_text())
    except DuplicateKey as error:
        raise UserError(f"{path}: {error}; DVC refuses this too: keep one of them") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "unreadable"
        raise UserError(
            f"{path} is not valid YAML{where} ({problem}); fix it, or restore it with `git "
            f"checkout {path}`"
        ) from None
    if not isinstance(params, dict) or not params:
        raise UserError(
            f"{path} is empty or not a mapping of keys; restore it with `git checkout {path}`"
        )
    check_known_keys(params, KNOWN_KEYS, path)
    return params


def check_known_keys(params: dict, known: dict, path: Path, prefix: str = "") -> None:
    for key, value in params.items():
        name = f"{prefix}{key}"
        if key not in known:
            close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.5)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise UserError(
                f"{path}: unknown key '{name}'{hint}; nothing reads it: fix its name or remove it"
            )
        allowed = known[key]
        if isinstance(allowed, set) and allowed and isinstance(value, dict):
            check_known_keys(value, dict.fromkeys(allowed, set()), path, f"{name}.")
        elif isinstance(allowed, dict) and isinstance(value, dict):
            check_known_keys(value, allowed, path, f"{name}.")


def get(params: dict, key: str, source: Path = PARAMS_FILE):
    """params['a']['b'] for key 'a.b', with an error naming the file and the key when it is
    missing."""
    value = params
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise UserError(f"{source}: '{key}' is missing; add it (see the README)")
        value = value[part]
    return value


def require(ok: bool, key: str, allowed: str, value, source: Path = PARAMS_FILE) -> None:
    if not ok:
        raise UserError(f"{source}: '{key}' is {value!r}; allowed: {allowed}")


def choice(params: dict, key: str, choices) -> str:
    value = get(params, key)
    require(value in choices, key, " | ".join(choices), value)
    return value


def number(
    params: dict,
    key: str,
    low: float,
    high: float,
    integer=False,
    open_low=False,
    open_high=False,
    source: Path = PARAMS_FILE,
):
    value = get(params, key, source)
    interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    allowed = f"{'an integer' if integer else 'a number'} in {interval}"
    is_number = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    above = is_number and (value > low if open_low else value >= low)
    below = is_number and (value < high if open_high else value <= high)
    require(above and below, key, allowed, value, source)
    return value


def boolean(params: dict, key: str) -> bool:
    value = get(params, key)
    require(isinstance(value, bool), key, "true | false", value)
    return value


def check_data(params: dict) -> None:
    number(params, "data.split_seed", 0, 2**32 - 1, integer=True)
    number(params, "data.val_fraction", 0, 1, open_low=True, open_high=True)
    raw = Path(get(params, "data.raw"))
    if not raw.exists():
        raise UserError(
            f"params.yaml: 'data.raw' is '{raw}', which does not exist; run `make data` (dvc "
            "pull) or `make download`, or point it at a tar archive or image folder laid out as "
            "train/<class>/* and test/<class>/*"
        )


def check_model(params: dict) -> None:
    arch = choice(params, "model.arch", ARCHS)
    widths = get(params, f"model.{arch}.widths")
    count = 3 if arch == "fast_cnn" else 2
    ok = (
        isinstance(widths, list)
        and len(widths) == count
        and all(isinstance(w, int) and w > 0 for w in widths)
    )
    require(ok, f"model.{arch}.widths", f"a list of {count} positive integers", widths)
    number(params, f"model.{arch}.dropout", 0, 1, open_high=True)
    if arch == "fast_cnn":
        choice(params, "model.fast_cnn.activation", ACTIVATIONS)
        number(params, "model.fast_cnn.batchnorm_momentum", 0, 1, open_low=True)
        boolean(params, "model.fast_cnn.batchnorm_weight")
        boolean(params, "model.fast_cnn.dirac_init")
        number(params, "model.fast_cnn.output_scale", 0, 1e3, open_low=True)
    else:
        number(params, "model.seed_cnn.dense", 1, 1e6, integer=True)


def check_optimizer(params: dict) -> None:
    """The chosen optimizer, and the settings of every optimizer (a typo in one shows before it is
    chosen)."""
    # imported here, not at the top: torch would cost the plot stage, which checks no optimizer,
    # seconds of start-up
    from classifier.optim import BIAS_EXTRAS, MUON_EXTRAS, OPTIMIZERS

    name = choice(params, "optimizer", list(OPTIMIZERS))
    get(params, f"optimizers.{name}")
    for section in get(params, "optimizers"):
        require(section in OPTIMIZERS, f"optimizers.{section}", " | ".join(OPTIMIZERS), section)
        if section == "muon":
            check_settings(params, "optimizers.muon", *OPTIMIZERS["muon"], MUON_EXTRAS)
            check_settings(params, "optimizers.muon.others", *OPTIMIZERS["nesterov"], BIAS_EXTRAS)
        else:
            check_settings(params, f"optimizers.{section}", *OPTIMIZERS[section], BIAS_EXTRAS)


def check_settings(params: dict, key: str, optimizer_class: type, fixed: dict, extras: set) -> None:
    """One optimizer's settings: keywords of its torch.optim class (but those we fix) or of ours, a
    positive lr."""
    settings = get(params, key)
    require(isinstance(settings, dict), key, "a mapping of keyword arguments", settings)
    accepted = set(inspect.signature(optimizer_class).parameters) - {"params"} - set(fixed) | extras
    for name in settings:
        require(
            name in accepted,
            f"{key}.{name}",
            f"a keyword of {optimizer_class.__name__}: " + ", ".join(sorted(accepted)),
            name,
        )
    number(params, f"{key}.lr", 0, 1e3, open_low=True)
    if "bias_lr_factor" in settings:
        number(params, f"{key}.bias_lr_factor", 0, 1e6, open_low=True)


def check_train(params: dict) -> None:
    number(params, "seed", 0, 2**32 - 1, integer=True)
    number(params, "train.epochs", 1, 10_000, integer=True)
    number(params, "train.batch_size", 1, 1_000_000, integer=True)
    choice(params, "train.lr_schedule", LR_SCHEDULES)
    number(params, "train.warmup_fraction", 0, 1, open_high=True)
    number(params, "train.lr_start_factor", 0, 1)
    number(params, "train.lr_end_factor", 0, 1)
    number(params, "train.label_smoothing", 0, 1, open_high=True)
    choice(params, "train.flip", FLIPS)
    number(params, "train.translate", 0, 16, integer=True)
    number(params, "train.cutout", 0, 1024, integer=True)
    number(params, "train.whiten_bias_epochs", 0, 10_000, integer=True)
    number(params, "train.lookahead_every", 0, 10_000, integer=True)
    number(params, "train.lookahead_decay", 0, 1, open_high=True)
    number(params, "train.val_stride", 1, 1_000_000, integer=True)
    number(params, "train.low_res_fraction", 0, 1, open_high=True)
    number(params, "train.low_res_scale", 0, 1, open_low=True)
    check_compute(params)
    boolean(params, "train.resume")
    processes = number(params, "train.processes", 1, 1024, integer=True)
    batch_size = get(params, "train.batch_size")
    require(
        batch_size % processes == 0,
        "train.batch_size",
        f"a multiple of train.processes ({processes}): each process takes an equal share of "
        "every batch",
        batch_size,
    )
    check_model(params)
    check_optimizer(params)


def check_compute(params: dict) -> None:
    choice(params, "compute.device", DEVICES)
    choice(params, "compute.precision", PRECISIONS)


def check_eval(params: dict) -> None:
    choice(params, "evaluate.tta", TTA_VIEWS)
    number(params, "evaluate.batch_size", 1, 1_000_000, integer=True)
    check_compute(params)


def check_plot(params: dict) -> None:
    number(params, "plot.overfit_gap", 0, 1)
    number(params, "plot.underfit_accuracy", 0, 1)
