"""The README's tables are generated from the committed results: a stale number fails here."""

from tests.conftest import REPO
from tools.readme import BLOCK, BLOCKS, render


def test_readme_has_every_generated_block_once():
    names = [match.group(2) for match in BLOCK.finditer((REPO / "README.md").read_text())]
    assert sorted(names) == sorted(BLOCKS)


def test_readme_tables_match_the_committed_results():
    readme = (REPO / "README.md").read_text()
    assert render(readme, REPO) == readme, (
        "README.md is out of date: run `python -m tools.readme` and commit it"
    )
