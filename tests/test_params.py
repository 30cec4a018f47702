import pytest

from classifier.errors import UserError
from classifier.params import (
    check_data,
    check_eval,
    check_plot,
    check_train,
    get,
    load_params,
    parse_params,
)
from stages import train
from tests.conftest import REPO, fails_in_process, write_params


def test_repository_params_are_valid(workdir, params):
    check_data(params)
    check_train(params)
    check_eval(params)
    check_plot(params)


def test_a_key_given_twice_is_an_error_naming_both_lines(workdir):
    text = (workdir / "params.yaml").read_text()
    (workdir / "params.yaml").write_text(text.replace("train:\n", "train:\n  epochs: 3\n", 1))
    line = text[: text.index("  epochs:")].count("\n") + 2
    train_line = text[: text.index("train:\n")].count("\n") + 1
    with pytest.raises(
        UserError,
        match=rf"params.yaml: key 'epochs' is given twice, at lines {train_line + 1} and "
        rf"{line}; DVC refuses this too",
    ):
        load_params()


def test_bad_test_time_views_are_named(params):
    params["evaluate"]["tta"] = "flip"
    with pytest.raises(
        UserError, match="'evaluate.tta' is 'flip'; allowed: mirror_translate | mirror | none"
    ):
        check_eval(params)


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "optimizer",
            "adamax",
            "'optimizer' is 'adamax'; allowed: sgd | nesterov | adam | adamw | rmsprop",
        ),
        ("train.epochs", -1, "'train.epochs' is -1; allowed: an integer in [1, 10000]"),
        ("train.epochs", 2.5, "'train.epochs' is 2.5"),
        ("compute.device", "tpu", "'compute.device' is 'tpu'; allowed: auto | cpu | cuda"),
        ("model.arch", "resnet", "'model.arch' is 'resnet'; allowed: fast_cnn | seed_cnn"),
        (
            "model.fast_cnn.widths",
            [64, 128],
            "'model.fast_cnn.widths' is [64, 128]; allowed: a list of 3",
        ),
        ("optimizers.nesterov.lr", 0, "'optimizers.nesterov.lr' is 0; allowed: a number in (0"),
        (
            "optimizers.nesterov.betas",
            [0.9, 0.99],
            "'optimizers.nesterov.betas' is 'betas'; allowed: a keyword of SGD",
        ),
        (
            "optimizers.nesterov.bias_lr_factor",
            0,
            "'optimizers.nesterov.bias_lr_factor' is 0; allowed: a number in (0",
        ),
        (
            "optimizers.muon.bias_lr_factor",
            64,
            "'optimizers.muon.bias_lr_factor' is 'bias_lr_factor'; allowed: a keyword",
        ),
        (
            "optimizers.muon.others.betas",
            [0.9],
            "'optimizers.muon.others.betas' is 'betas'; allowed: a keyword of SGD",
        ),
        (
            "optimizers.muon.others.lr",
            -1,
            "'optimizers.muon.others.lr' is -1; allowed: a number in (0",
        ),
        (
            "train.flip",
            "sometimes",
            "'train.flip' is 'sometimes'; allowed: alternating | random | none",
        ),
        (
            "train.lookahead_every",
            -1,
            "'train.lookahead_every' is -1; allowed: an integer in [0, 10000]",
        ),
        ("compute.precision", "fp16", "'compute.precision' is 'fp16'; allowed: auto | bf16 | fp32"),
        (
            "model.fast_cnn.activation",
            "tanh",
            "'model.fast_cnn.activation' is 'tanh'; allowed: relu | gelu",
        ),
        (
            "model.fast_cnn.dirac_init",
            "yes",
            "'model.fast_cnn.dirac_init' is 'yes'; allowed: true | false",
        ),
    ],
)
def test_bad_train_params_are_named(params, key, value, message):
    *parents, last = key.split(".")
    section = params
    for part in parents:
        section = section[part]
    section[last] = value
    with pytest.raises(UserError, match=None) as error:
        check_train(params)
    assert message in str(error.value)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.2, "half"])
def test_val_fraction_outside_open_interval_is_refused(workdir, params, fraction):
    params["data"]["val_fraction"] = fraction
    with pytest.raises(
        UserError, match=r"'data.val_fraction' is .*; allowed: a number in \(0, 1\)"
    ):
        check_data(params)


def test_missing_data_folder_says_how_to_get_it(workdir, params):
    params["data"]["raw"] = "data/raw/nowhere.tar"
    with pytest.raises(
        UserError, match=r"'data.raw' is 'data/raw/nowhere.tar', which does not exist.*make data"
    ):
        check_data(params)


def test_missing_key_is_named(params):
    del params["train"]["label_smoothing"]
    with pytest.raises(UserError, match="'train.label_smoothing' is missing"):
        get(params, "train.label_smoothing")


def test_stage_reports_one_line_and_writes_nothing(workdir, params, capsys):
    params["optimizer"] = "adamax"
    write_params(workdir, params)
    assert fails_in_process(train.main, capsys) == (
        "error: params.yaml: 'optimizer' is 'adamax'; allowed: sgd | nesterov | adam | adamw | "
        "rmsprop | adagrad | nadam | muon"
    )
    assert not (workdir / "models").exists() and not (workdir / "metrics").exists()


@pytest.mark.parametrize(
    "override, key, value",
    [
        ("train.epochs=3", "epochs:", "3"),
        ("optimizer=adam", "optimizer:", "adam"),
        ("optimizers.adam.lr=0.01", "adam:", "{lr: 0.01, weight_decay: 0.0005}"),
        ("seed=7", "seed:", "7"),
    ],
)
def test_set_param_changes_only_that_value_in_params_yaml(tmp_path, override, key, value):
    """`dvc exp run -S` rewrites params.yaml with DVC's YAML writer (dvc #8720); the committed style
    survives it."""
    from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S` calls

    path = tmp_path / "params.yaml"
    original = (REPO / "params.yaml").read_text().splitlines()
    path.write_text("\n".join(original) + "\n")
    apply_overrides(str(path), [override])
    rewritten = path.read_text().splitlines()
    changed = [(old, new) for old, new in zip(original, rewritten) if old != new]
    assert len(rewritten) == len(original) and len(changed) == 1
    old, new = changed[0]
    assert new.strip().startswith(f"{key} {value}")
    assert ("#" not in old) or old.index("#") == new.index("#"), "the comment moved"


def test_set_param_of_a_list_changes_only_its_items(tmp_path):
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    original = (REPO / "params.yaml").read_text()
    path.write_text(original)
    apply_overrides(str(path), ["model.fast_cnn.widths=[32,96,96]"])
    assert path.read_text() == original.replace(
        "    - 64\n    - 192\n    - 192\n", "    - 32\n    - 96\n    - 96\n", 1
    )


def test_params_read_floats_as_dvc_writes_them():
    """`dvc exp run -S optimizers.adam.weight_decay=6.25e-05` writes 6.25e-05, a string to YAML
    1.1."""
    assert parse_params("lr: 2e-09\nwd: 6.25E-5\nmomentum: 0.9\nepochs: 8\nname: x1e5\n") == {
        "lr": 2e-09,
        "wd": 6.25e-05,
        "momentum": 0.9,
        "epochs": 8,
        "name": "x1e5",
    }
