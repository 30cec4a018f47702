"""The soak: 20 consecutive experiments with varied params on tiny data, then the clean-up commands,
and a check that the workspace and the cache stay consistent. Not part of `make test` (about 7
minutes): `make soak`. `dvc exp gc` is gone from DVC 3; `dvc exp remove --all-commits` takes its
place."""

import json
import time

import pytest

from tests.conftest import dvc, make_dvc_repo, repro_and_commit, run, tiny_params

OPTIMIZERS = ["sgd", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "nadam", "muon"]
CHANGED_BY_EXPERIMENTS = ("params.yaml", "dvc.lock", "metrics/", "plots/", "reports/")


def soak_params(index: int) -> list[str]:
    """Varied params for run `index`: optimizer, epochs, seed, batch size and model."""
    return [
        "-S",
        f"optimizer={OPTIMIZERS[index % len(OPTIMIZERS)]}",
        "-S",
        f"train.epochs={1 + index % 3}",
        "-S",
        f"seed={index}",
        "-S",
        f"train.batch_size={(8, 16)[index % 2]}",
        "-S",
        f"model.arch={('fast_cnn', 'seed_cnn')[index % 4 == 3]}",
    ]


@pytest.mark.soak
@pytest.mark.e2e
def test_soak(tmp_path):
    params = tiny_params()
    params["train"].update(epochs=1, batch_size=8)
    repo = repro_and_commit(make_dvc_repo(tmp_path / "repo", params))
    seconds = []
    for index in range(20):
        started = time.perf_counter()
        dvc("exp", "run", "-n", f"soak-{index}", *soak_params(index), cwd=repo)
        seconds.append(time.perf_counter() - started)

    (baseline,) = json.loads(dvc("exp", "show", "--json", cwd=repo))[1:]
    experiments = {
        exp["name"]: exp["revs"][0]["data"]["metrics"] for exp in baseline["experiments"]
    }
    assert len(experiments) == 20
    assert all(
        isinstance(metrics["metrics/evaluate.json"]["data"]["test_acc"], float)
        for metrics in experiments.values()
    )

    changed = [line[3:] for line in run(["git", "status", "--porcelain"], repo).splitlines()]
    assert all(path.startswith(CHANGED_BY_EXPERIMENTS) for path in changed), changed
    dvc("exp", "remove", *[f"soak-{index}" for index in range(10)], cwd=repo)
    assert len(json.loads(dvc("exp", "show", "--json", cwd=repo))[1]["experiments"]) == 10
    run(["git", "checkout", "--", "."], repo)
    dvc("checkout", "--force", cwd=repo)
    dvc("exp", "remove", "--all-commits", cwd=repo)  # DVC 3's replacement of `dvc exp gc`
    assert json.loads(dvc("exp", "show", "--json", cwd=repo))[1].get("experiments") in (None, [])
    dvc("gc", "--workspace", "--force", cwd=repo)

    assert "up to date" in dvc("status", cwd=repo)
    assert run(["git", "status", "--porcelain"], repo) == ""
    assert "DVC version" in dvc("doctor", cwd=repo)
    dvc("repro", cwd=repo)  # the cache still holds everything the committed dvc.lock names
    assert run(["git", "status", "--porcelain"], repo) == ""
    print(
        f"\nsoak: 20 experiments, {sum(seconds):.0f} s in all ({min(seconds):.1f} to "
        f"{max(seconds):.1f} s each); {len(changed)} files changed by them; exp remove, exp "
        "remove -A, gc -w; status, git status, doctor clean"
    )
