"""The ``Examples`` in the docstrings of the library packages run, and give what they show."""

import doctest
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Library packages; ``tools/`` counts only below its top level (the top level holds commands).
LIBRARIES = ("cli", "golden", "hdl", "tools/*")


def library_modules():
    """Dotted names of every module of the library packages."""
    names = []
    for pattern in LIBRARIES:
        for folder in sorted(REPO.glob(pattern)):
            if folder.is_dir() and (folder / "__init__.py").exists():
                for path in sorted(folder.rglob("*.py")):
                    parts = path.relative_to(REPO).with_suffix("").parts
                    names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _import(name):
    """The module ``name``, or ``None`` where it needs torch, which only the training commands use."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != "torch":
            raise
        return None


def test_the_examples_are_found():
    modules = [module for module in map(_import, library_modules()) if module is not None]
    found = [test for module in modules for test in doctest.DocTestFinder().find(module) if test.examples]
    assert {"golden.requant", "hdl.requant"} <= {module.__name__ for module in modules} and len(found) >= 5


@pytest.mark.parametrize("name", library_modules())
def test_examples(name):
    module = _import(name)
    if module is None:
        pytest.skip(f"{name} needs torch (pip install -e '.[train]'), which only the training commands use")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
