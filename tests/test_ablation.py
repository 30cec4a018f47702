"""The ablation: its params checks, and the whole command on a real DVC queue with tiny data."""

import json

import pytest

from classifier.cli import UserError
from experiments.ablation import check_ablation
from experiments.dvc_queue import with_changes
from tests.conftest import dvc, make_dvc_repo, queue_logs, repro_and_commit, run, tiny_params, write_params


def test_with_changes_sets_dotted_keys_on_a_copy(params):
    changed = with_changes(params, {"train.epochs": 7, "model.fast_cnn.widths": [4, 8, 8]})
    assert changed["train"]["epochs"] == 7 and changed["model"]["fast_cnn"]["widths"] == [4, 8, 8]
    assert params["train"]["epochs"] == 2


def test_a_misspelt_or_invalid_run_is_refused_before_any_training(params):
    params["ablation"] = {"reference": {"train.epochs": 1}, "runs": {"typo": {"train.epoch": 3}}}
    with pytest.raises(UserError, match="'train.epoch' is missing"):
        check_ablation(params)
    params["ablation"]["runs"] = {"bad": {"train.flip": "sometimes"}}
    with pytest.raises(UserError, match="'train.flip' is 'sometimes'; allowed: alternating | random | none"):
        check_ablation(params)


@pytest.mark.e2e
def test_ablation_runs_on_a_real_dvc_queue(tmp_path):
    params = tiny_params()
    params["train"].update(epochs=1, batch_size=8)
    params["ablation"] = {"reference": {"train.whiten_bias_epochs": 0},
                          "runs": {"random-flip": {"train.flip": "random"}}}
    repo = make_dvc_repo(tmp_path / "repo", params)
    repro_and_commit(repo)

    output = run(["python", "-m", "experiments.ablation"], repo)
    assert "wrote reports/ablation.json" in output
    ablation = json.loads((repo / "reports/ablation.json").read_text())
    assert [row["name"] for row in ablation["runs"]] == ["reference", "random-flip"]
    assert ablation["runs"][1]["changes"] == {"train.flip": "random"}
    for row in ablation["runs"]:
        assert row["status"] == "ok" and 0 <= row["test_acc"] <= 1 and row["train_pflop"] > 0
    assert [row["tta"] for row in ablation["tta"]] == ["mirror_translate", "mirror", "none"]
    assert "ablate-random-flip" in dvc("exp", "show", "--no-pager", "--csv", cwd=repo)

    # Run again with one run changed: the record keeps the unchanged run, the changed one trains.
    params["ablation"]["runs"] = {"random-flip": {"train.flip": "none"}}
    write_params(repo, {**params, "data": {**params["data"], "raw": "data/raw/cifar10.tar"}})
    again = run(["python", "-m", "experiments.ablation"], repo)
    assert "kept 1 runs recorded in reports/ablation-runs.json with the same code and params: ablate-reference" in again
    assert "Running stage 'train'" in queue_logs(repo, ["ablate-random-flip"])["ablate-random-flip"]
    rerun = json.loads((repo / "reports/ablation.json").read_text())
    assert rerun["runs"][0] == ablation["runs"][0]
    assert rerun["runs"][1]["changes"] == {"train.flip": "none"} and rerun["runs"][1]["status"] == "ok"
