"""Read params.yaml and check it, so that a bad value stops a stage before any work."""

import difflib
import inspect
import os
import signal
import sys
from pathlib import Path

import torch
import yaml

PARAMS_FILE = Path("params.yaml")

OPTIMIZERS = {
    "sgd": (torch.optim.SGD, {}),
    "nesterov": (torch.optim.SGD, {"nesterov": True}),
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adagrad": (torch.optim.Adagrad, {}),
    "nadam": (torch.optim.NAdam, {}),
}
ARCHS = ("fast_cnn", "seed_cnn")
ACTIVATIONS = ("relu", "gelu")
LR_SCHEDULES = ("onecycle", "constant")
FLIPS = ("alternating", "random", "none")
TTA_VIEWS = ("mirror_translate", "mirror", "none")
PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
OPTIMIZER_EXTRAS = {"bias_lr_factor"}  # optimizer settings that are ours, not the torch.optim class's

# Every key params.yaml may hold: a mistyped key must not be ignored while a stage quietly uses another value.
# A set lists a section's keys; None means any keys (optimizers: checked against each torch.optim signature).
KNOWN_KEYS = {
    "seed": set(),
    "data": {"raw", "val_fraction", "split_seed"},
    "model": {"arch": set(),
              "fast_cnn": {"widths", "activation", "dropout", "batchnorm_momentum", "batchnorm_weight",
                           "dirac_init", "output_scale"},
              "seed_cnn": {"widths", "dense", "dropout"}},
    "optimizer": set(),
    "optimizers": None,
    "train": {"epochs", "batch_size", "lr_schedule", "warmup_fraction", "lr_start_factor", "lr_end_factor",
              "label_smoothing", "flip", "translate", "whiten_bias_epochs", "lookahead_every", "lookahead_decay",
              "precision", "device", "resume"},
    "evaluate": {"tta"},
    "plot": {"overfit_gap", "underfit_accuracy"},
    "study": {"optimizers": set(), "seeds": set(), "changes": None, "target_val_acc": set(),
              "sweep": {"factors": set(), "widen": set(), "max_widenings": set(), "changes": None}},
    "ablation": {"reference": None, "runs": None},
}


class StageError(Exception):
    """A problem the user can fix; reported as one line, without a traceback."""


def run_stage(main) -> None:
    """Run a stage's main(), turning a StageError into one clear line and exit code 2, and Ctrl-C into exit 130.

    DEBUG=1 in the environment shows the traceback as well. A process started with Ctrl-C ignored (a background
    job of a non-interactive shell, a queue worker) would inherit that and train on through the user's Ctrl-C or
    `dvc queue kill`, so the default handler is put back first.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main()
    except StageError as error:
        if os.environ.get("DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted; nothing half-written was left: run the stage again", file=sys.stderr)
        sys.exit(130)


def load_params(path: Path = PARAMS_FILE) -> dict:
    """params.yaml, parsed and checked for keys that no stage knows."""
    if not path.exists():
        raise StageError(f"{path} not found; run the stages from the repository root")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "unreadable"
        raise StageError(f"{path} is not valid YAML{where} ({problem}); fix it, or restore it with "
                         f"`git checkout {path}`") from None
    if not isinstance(params, dict) or not params:
        raise StageError(f"{path} is empty or not a mapping of keys; restore it with `git checkout {path}`")
    check_known_keys(params, KNOWN_KEYS, path)
    return params


def check_known_keys(params: dict, known: dict, path: Path, prefix: str = "") -> None:
    for key, value in params.items():
        name = f"{prefix}{key}"
        if key not in known:
            close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.5)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise StageError(f"{path}: unknown key '{name}'{hint}; no stage reads it: fix its name or remove it")
        allowed = known[key]
        if isinstance(allowed, set) and allowed and isinstance(value, dict):
            check_known_keys(value, dict.fromkeys(allowed, set()), path, f"{name}.")
        elif isinstance(allowed, dict) and isinstance(value, dict):
            check_known_keys(value, allowed, path, f"{name}.")


def get(params: dict, key: str):
    """params['a']['b'] for key 'a.b', with an error naming the key when it is missing."""
    value = params
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise StageError(f"params.yaml: '{key}' is missing; add it (see the README)")
        value = value[part]
    return value


def _require(ok: bool, key: str, allowed: str, value) -> None:
    if not ok:
        raise StageError(f"params.yaml: '{key}' is {value!r}; allowed: {allowed}")


def _choice(params: dict, key: str, choices) -> str:
    value = get(params, key)
    _require(value in choices, key, " | ".join(choices), value)
    return value


def _number(params: dict, key: str, low: float, high: float, integer=False, open_low=False, open_high=False):
    value = get(params, key)
    interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    allowed = f"{'an integer' if integer else 'a number'} in {interval}"
    is_number = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    _require(is_number, key, allowed, value)
    above = value > low if open_low else value >= low
    below = value < high if open_high else value <= high
    _require(above and below, key, allowed, value)
    return value


def _bool(params: dict, key: str) -> bool:
    value = get(params, key)
    _require(isinstance(value, bool), key, "true | false", value)
    return value


def check_data(params: dict) -> None:
    _number(params, "data.split_seed", 0, 2**32 - 1, integer=True)
    _number(params, "data.val_fraction", 0, 1, open_low=True, open_high=True)
    raw = Path(get(params, "data.raw"))
    if not raw.exists():
        raise StageError(f"params.yaml: 'data.raw' is '{raw}', which does not exist; run `make data` (dvc pull) or "
                         "`make download`, or point it at a tar archive or image folder laid out as "
                         "train/<class>/* and test/<class>/*")


def check_model(params: dict) -> None:
    arch = _choice(params, "model.arch", ARCHS)
    widths = get(params, f"model.{arch}.widths")
    count = 3 if arch == "fast_cnn" else 2
    ok = isinstance(widths, list) and len(widths) == count and all(isinstance(w, int) and w > 0 for w in widths)
    _require(ok, f"model.{arch}.widths", f"a list of {count} positive integers", widths)
    _number(params, f"model.{arch}.dropout", 0, 1, open_high=True)
    if arch == "fast_cnn":
        _choice(params, "model.fast_cnn.activation", ACTIVATIONS)
        _number(params, "model.fast_cnn.batchnorm_momentum", 0, 1, open_low=True)
        _bool(params, "model.fast_cnn.batchnorm_weight")
        _bool(params, "model.fast_cnn.dirac_init")
        _number(params, "model.fast_cnn.output_scale", 0, 1e3, open_low=True)
    else:
        _number(params, "model.seed_cnn.dense", 1, 1e6, integer=True)


def check_optimizer(params: dict) -> None:
    """The chosen optimizer, and the settings of every optimizer (a typo in one shows before it is chosen)."""
    name = _choice(params, "optimizer", list(OPTIMIZERS))
    get(params, f"optimizers.{name}")
    for section, settings in get(params, "optimizers").items():
        _require(section in OPTIMIZERS, f"optimizers.{section}", " | ".join(OPTIMIZERS), section)
        _require(isinstance(settings, dict), f"optimizers.{section}", "a mapping of keyword arguments", settings)
        optimizer_class, fixed = OPTIMIZERS[section]
        accepted = set(inspect.signature(optimizer_class).parameters) - {"params"} - set(fixed) | OPTIMIZER_EXTRAS
        for key in settings:
            _require(key in accepted, f"optimizers.{section}.{key}",
                     f"a keyword of {optimizer_class.__name__}: " + ", ".join(sorted(accepted)), key)
        _number(params, f"optimizers.{section}.lr", 0, 1e3, open_low=True)
        if "bias_lr_factor" in settings:
            _number(params, f"optimizers.{section}.bias_lr_factor", 0, 1e6, open_low=True)


def check_train(params: dict) -> None:
    _number(params, "seed", 0, 2**32 - 1, integer=True)
    _number(params, "train.epochs", 1, 10_000, integer=True)
    _number(params, "train.batch_size", 1, 1_000_000, integer=True)
    _choice(params, "train.lr_schedule", LR_SCHEDULES)
    _number(params, "train.warmup_fraction", 0, 1, open_high=True)
    _number(params, "train.lr_start_factor", 0, 1)
    _number(params, "train.lr_end_factor", 0, 1)
    _number(params, "train.label_smoothing", 0, 1, open_high=True)
    _choice(params, "train.flip", FLIPS)
    _number(params, "train.translate", 0, 16, integer=True)
    _number(params, "train.whiten_bias_epochs", 0, 10_000, integer=True)
    _number(params, "train.lookahead_every", 0, 10_000, integer=True)
    _number(params, "train.lookahead_decay", 0, 1, open_high=True)
    _choice(params, "train.precision", PRECISIONS)
    _choice(params, "train.device", DEVICES)
    _bool(params, "train.resume")
    check_model(params)
    check_optimizer(params)


def check_eval(params: dict) -> None:
    _choice(params, "evaluate.tta", TTA_VIEWS)
    _choice(params, "train.precision", PRECISIONS)
    _choice(params, "train.device", DEVICES)
    _number(params, "train.batch_size", 1, 1_000_000, integer=True)


def check_plot(params: dict) -> None:
    _number(params, "plot.overfit_gap", 0, 1)
    _number(params, "plot.underfit_accuracy", 0, 1)
