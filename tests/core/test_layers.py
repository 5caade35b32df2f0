"""The library's layers point one way: core <- data <- eval <- train (and the plugin's nodes over all). Core (every
module outside data/, eval/ and train/) imports none of the others; data imports neither evaluation nor training;
evaluation (metrics, the mouth expert) does not import training, which may use it (it trains the mouth expert)."""

import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "rest_core"


def layer(module: str) -> str:
    """'rest_core.train.vae' -> 'train'; the command line (__main__) dispatches to all of them and is its own."""
    parts = module.split(".")
    if parts[1:2] in (["data"], ["train"], ["eval"], ["__main__"]):
        return parts[1]
    return "core"


def imports(path: Path) -> set[str]:
    """Every rest_core module a file imports, at its top or inside a function, absolute names."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            name = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module or ""
            found |= {name} | {f"{name}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("rest_core.") and is_module(m)}


def is_module(name: str) -> bool:
    """A module or package of ours (not a name imported from one)."""
    path = ROOT / Path(*name.split("."))
    return path.with_suffix(".py").exists() or path.is_dir()


ALLOWED = {"core": {"core"}, "data": {"core", "data"}, "train": {"core", "data", "eval", "train"},
           "eval": {"core", "data", "eval"}, "__main__": {"core", "data", "train", "eval", "__main__"}}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_its_own_layer_and_the_ones_below(path):
    own = layer(".".join(path.relative_to(ROOT).with_suffix("").parts))
    wrong = sorted(m for m in imports(path) if layer(m) not in ALLOWED[own])
    assert not wrong, f"{path.relative_to(ROOT)} ({own}) imports {wrong}"
