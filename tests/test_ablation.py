"""The ablation: its settings' checks, and the whole command on a real DVC queue with tiny data."""

import json

import pytest
import yaml

from classifier.errors import UserError
from classifier.params import parse_params
from experiments.ablation import check_ablation
from tests.conftest import REPO, dvc, make_dvc_repo, queue_logs, repro_and_commit, run, tiny_params


def test_the_committed_ablation_settings_are_valid(params):
    check_ablation(params, parse_params((REPO / "experiments/ablation.yaml").read_text()))


def test_a_misspelt_or_invalid_run_is_refused_before_any_training(params):
    ablation = {"reference": {"train.epochs": 1}, "runs": {"typo": {"train.epoch": 3}}}
    with pytest.raises(UserError, match="'train.epoch' is missing"):
        check_ablation(params, ablation)
    ablation["runs"] = {"bad": {"train.flip": "sometimes"}}
    with pytest.raises(
        UserError, match="'train.flip' is 'sometimes'; allowed: alternating | random | none"
    ):
        check_ablation(params, ablation)
    with pytest.raises(UserError, match="ablation.yaml: 'runs' is"):
        check_ablation(params, {"reference": {}, "runs": ["gelu"]})


@pytest.mark.e2e
def test_ablation_runs_on_a_real_dvc_queue(tmp_path):
    params = tiny_params()
    params["train"].update(epochs=1, batch_size=8)
    repo = make_dvc_repo(tmp_path / "repo", params)
    ablation = {
        "reference": {"train.whiten_bias_epochs": 0},
        "runs": {"random-flip": {"train.flip": "random"}},
    }
    (repo / "experiments/ablation.yaml").write_text(yaml.safe_dump(ablation))
    run(["git", "commit", "-q", "-am", "a tiny ablation"], repo)
    repro_and_commit(repo)

    output = run(["python", "-m", "experiments.ablation"], repo)
    assert "wrote reports/ablation.json and reports/ablation.md" in output
    report = json.loads((repo / "reports/ablation.json").read_text())
    assert [row["name"] for row in report["runs"]] == ["reference", "random-flip"]
    assert report["runs"][1]["changes"] == {"train.flip": "random"}
    for row in report["runs"]:
        assert row["status"] == "ok" and 0 <= row["test_acc"] <= 1 and row["train_pflop"] > 0
    assert [row["tta"] for row in report["tta"]] == ["mirror_translate", "mirror", "none"]
    assert '| random-flip | `train.flip: "random"` |' in (repo / "reports/ablation.md").read_text()
    logs = queue_logs(repo, ["ablate-reference", "ablate-random-flip"])
    assert all("Running stage 'train'" in log for log in logs.values())
    assert "ablate-random-flip" in dvc("exp", "show", "--no-pager", "--csv", cwd=repo)
