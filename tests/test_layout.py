"""The layout's promises: each stage's deps in dvc.yaml are exactly the code it runs, and dvc.yaml
declares exactly the files the stages write."""

import ast

import pytest
import yaml

from classifier.files import STAGE_OUTPUTS
from tests.conftest import CODE_FOLDERS, REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def project_imports(path) -> set:
    """The project modules a module imports (as files), read from its code: `import a.b`, `from a.b
    import c` and `from a import b` (b a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    files = {
        REPO / f"{name.replace('.', '/')}.py"
        for name in names
        if name.split(".")[0] in CODE_FOLDERS
    }
    return {file for file in files if file.exists()}


def import_closure(path) -> set[str]:
    """The module and every project module it imports, directly or through another, as repository
    paths."""
    seen, todo = set(), [path]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += project_imports(module)
    return {module.relative_to(REPO).as_posix() for module in seen}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_stage_depends_on_exactly_the_code_it_imports(stage):
    code = {dep for dep in STAGES[stage]["deps"] if dep.endswith(".py")}
    imported = import_closure(REPO / f"stages/{stage}.py")
    assert not imported - code, (
        f"dvc.yaml: stage {stage} misses deps {sorted(imported - code)}: a stale model passes"
    )
    assert not code - imported, (
        f"dvc.yaml: stage {stage} has deps it never imports {sorted(code - imported)}"
    )


def test_the_closure_follows_imports_through_other_modules():
    closure = import_closure(REPO / "stages/train.py")
    assert {
        "classifier/training.py",
        "classifier/optim.py",
        "classifier/params.py",
    } <= closure  # optim via training
    assert "classifier/distributed.py" in closure  # `from classifier import distributed`
    assert "classifier/figures.py" not in closure and "experiments/study.py" not in closure


@pytest.mark.parametrize("stage", list(STAGES))
def test_dvc_yaml_declares_exactly_the_files_a_stage_writes(stage):
    declared = [
        next(iter(out)) if isinstance(out, dict) else out
        for kind in ("outs", "metrics", "plots")
        for out in STAGES[stage].get(kind, [])
    ]
    assert sorted(declared) == sorted(path.as_posix() for path in STAGE_OUTPUTS[stage])


def test_every_module_says_what_it_is_for():
    for folder in CODE_FOLDERS:
        for module in (REPO / folder).glob("*.py"):
            docstring = ast.get_docstring(ast.parse(module.read_text()))
            assert docstring and len(docstring.splitlines()[0]) > 20, (
                f"{module.relative_to(REPO)}: no first line"
            )
