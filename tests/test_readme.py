"""The README's tables are generated from the committed results: a stale number fails here."""

import shutil

import yaml

from tests.conftest import REPO
from tools.readme import BLOCK, BLOCKS, params_since_run, render


def test_readme_has_every_generated_block_once():
    names = [match.group(2) for match in BLOCK.finditer((REPO / "README.md").read_text())]
    assert sorted(names) == sorted(BLOCKS)


def test_readme_tables_match_the_committed_results():
    readme = (REPO / "README.md").read_text()
    assert render(readme, REPO) == readme, (
        "README.md is out of date: run `python -m tools.readme` and commit it"
    )


def test_the_results_block_names_the_params_changed_since_the_committed_run(tmp_path):
    for name in ("dvc.yaml", "dvc.lock", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    already = params_since_run(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train"]["epochs"] += 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert params_since_run(tmp_path) == sorted({*already, "train.epochs"})
