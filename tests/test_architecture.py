"""The layering rules of the repository, checked on the source text (every import counts, function-level included).

* ``golden/`` (the bit-exact model and the hardware's formats) imports neither Amaranth, ``hdl/`` nor ``tools/``;
* ``hdl/`` never imports ``tools/``;
* no library module imports a command (a module at the top level of ``tools/``); only a command's own tests drive it;
* there is no import cycle among the project's modules.
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Packages whose modules the rules cover, and the folder that holds the cocotb benches (imported by bare name).
PACKAGES = ("cli", "golden", "hdl", "tools")
BENCHES = "tb"


def module_name(path, root):
    """The dotted name Python gives ``path`` (a bench module in ``tb/`` is imported by its bare name)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[0] == BENCHES:
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules(root):
    """``{module name: path}`` of every module of the project's packages and benches under ``root``."""
    modules = {}
    for folder in (*PACKAGES, BENCHES):
        for path in sorted((root / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                modules[module_name(path, root)] = path
    return modules


def imported_names(path, name):
    """Every module name that the source of module ``name`` at ``path`` imports, wherever the import statement is.

    ``from package import thing`` yields both ``package`` and ``package.thing`` (``thing`` may be a submodule);
    relative imports are resolved against the module's package.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1] if package else []
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def import_graph(root):
    """``{module: set of project modules it imports}`` for the project under ``root``."""
    modules = project_modules(root)
    return {name: {imported for imported in imported_names(path, name) if imported in modules and imported != name}
            for name, path in modules.items()}


def commands(root):
    """Module names of the commands: the modules at the top level of ``tools/``."""
    return {f"tools.{path.stem}" for path in (root / "tools").glob("*.py") if path.name != "__init__.py"}


def cycles(graph):
    """The import cycles of ``graph``: its strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def violations(root):
    """One line per broken layering rule in the project under ``root``; empty when the layout is sound."""
    modules = project_modules(root)
    command_names = commands(root)
    problems = []
    for name, path in modules.items():
        imported = imported_names(path, name)
        top = {module.split(".")[0] for module in imported}
        where = path.relative_to(root)
        if name.startswith("golden") and top & {"amaranth", "hdl", "tools"}:
            problems.append(f"{where}: golden imports {', '.join(sorted(top & {'amaranth', 'hdl', 'tools'}))}")
        if name.startswith("hdl") and "tools" in top:
            problems.append(f"{where}: hdl imports tools")
        if imported & command_names:
            problems.append(f"{where}: imports the command(s) {', '.join(sorted(imported & command_names))}")
    problems.extend(f"import cycle: {' <-> '.join(cycle)}" for cycle in cycles(import_graph(root)))
    return problems


def test_the_repository_keeps_its_layering_rules():
    assert violations(REPO) == []


def test_the_project_is_found():
    modules = project_modules(REPO)
    assert {"golden.requant", "hdl.requant", "tools.quantize", "requant_bench"} <= set(modules)
    assert "tools.quantize" in commands(REPO) and "tools.__init__" not in commands(REPO)


def _tree(tmp_path, files):
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in (*PACKAGES, BENCHES):
        (tmp_path / folder).mkdir(exist_ok=True)
    return tmp_path


GOOD = {
    "golden/__init__.py": "",
    "golden/requant.py": "import numpy\n",
    "golden/conv.py": "from golden.requant import x\n",
    "hdl/__init__.py": "",
    "hdl/requant.py": "from amaranth import Module\nfrom golden import requant\n",
    "tools/__init__.py": "",
    "tools/lib/__init__.py": "from .calibrate import y\n",
    "tools/lib/calibrate.py": "from golden.conv import z\n",
    "tools/quantize.py": "from tools.lib import calibrate\n",
    "tb/requant_bench.py": "from hdl.requant import R\nfrom sim import run\n",
    "tb/sim.py": "import cocotb\n",
}


def test_a_sound_tree_has_no_violations(tmp_path):
    assert violations(_tree(tmp_path, GOOD)) == []


@pytest.mark.parametrize("path, text, problem", [
    ("golden/conv.py", "def f():\n    import tools.quantize\n",
     "golden/conv.py: golden imports tools"),
    ("golden/conv.py", "from amaranth.hdl import Signal\n", "golden/conv.py: golden imports amaranth"),
    ("hdl/requant.py", "from tools.lib.calibrate import y\n", "hdl/requant.py: hdl imports tools"),
    ("tools/lib/calibrate.py", "from tools import quantize\n",
     "tools/lib/calibrate.py: imports the command(s) tools.quantize"),
    ("tb/sim.py", "from tools.quantize import main\n", "tb/sim.py: imports the command(s) tools.quantize"),
    ("tools/report.py", "import tools.quantize\n", "tools/report.py: imports the command(s) tools.quantize"),
    ("golden/requant.py", "def f():\n    from golden.conv import g\n", "import cycle: golden.conv <-> golden.requant"),
    ("tools/lib/calibrate.py", "from . import y\n", "import cycle: tools.lib <-> tools.lib.calibrate"),
])
def test_each_broken_rule_is_reported(tmp_path, path, text, problem):
    assert problem in violations(_tree(tmp_path, {**GOOD, path: text}))
