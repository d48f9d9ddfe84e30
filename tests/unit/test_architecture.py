"""The package's structure rules, checked on the source with `ast` (no tfl module is imported).

1. No import cycle between tfl modules, counting the imports inside functions.
2. No `obj._private` attribute read (nor write), except on `self`, `cls` and `super()` (and in
   `tfl/_compat.py`, the one place that touches Keras/TensorFlow/Keras Tuner internals).
3. No import of a private module (`tfl.pkg._mod`) from outside its own package; `tfl._compat`,
   `tfl._logging`, `tfl._progress` and `tfl._quiet_import` may be imported from anywhere in tfl.
4. No `keras.src`, `tensorflow.python` or `keras_tuner.src` outside `tfl/_compat.py`.
5. No `print(...)` outside `tfl/cli/`: the library logs through `logging.getLogger("tfl")`.

Each failure lists every offender as `tfl/path.py:LINE: what`, so one run names all that must change.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from functools import lru_cache

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(REPO, "tfl")

COMPAT = "tfl._compat"
PRIVATE_ALLOWED_EVERYWHERE = {"tfl._compat", "tfl._logging", "tfl._network", "tfl._progress", "tfl._quiet_import"}
INTERNAL_PREFIXES = ("keras.src", "tensorflow.python", "keras_tuner.src")
# Public API of namedtuples despite the underscore (they would be flagged by rule 2 otherwise).
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_field_defaults", "_make"}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@dataclass(frozen=True)
class Module:
    name: str  # tfl.training.trainer
    path: str  # tfl/training/trainer.py (relative to the repo)
    is_package: bool
    tree: ast.Module


@lru_cache(maxsize=None)
def modules() -> dict:
    """`{module name: Module}` of every .py file under tfl/, parsed, never imported."""
    out = {}
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for file in sorted(files):
            if not file.endswith(".py"):
                continue
            path = os.path.join(folder, file)
            rel = os.path.relpath(path, REPO)
            parts = rel[:-3].split(os.sep)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), filename=rel)
            name = ".".join(parts)
            out[name] = Module(name, rel, is_package, tree)
    return out


def test_the_walk_finds_the_package():
    found = modules()
    # A wrong root or a walk that skipped the subpackages would make every rule below pass vacuously.
    for name in ("tfl", "tfl.config", "tfl._compat", "tfl.training", "tfl.training.trainer", "tfl.cli",
                 "tfl.tuning.space", "tfl.data.datasets"):
        assert name in found, f"{name} not found under {PACKAGE}"
    assert found["tfl.training"].is_package and not found["tfl.training.trainer"].is_package


def _package_of(module: Module) -> str:
    return module.name if module.is_package else module.name.rpartition(".")[0]


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module name of a `from ... import` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = _package_of(module).split(".")
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking_only(tree: ast.Module) -> set:
    """ids of the nodes under `if TYPE_CHECKING:`: imports there never run, so they make no cycle."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


@dataclass(frozen=True)
class Import:
    target: str  # the module imported: `from tfl.x import y` is tfl.x.y when that module exists, else tfl.x
    line: int
    text: str  # how the source spells it
    full: str  # the dotted name imported, module or not: `from tfl.x import y` is tfl.x.y


def imports(module: Module, runtime_only: bool = False) -> list:
    """Every import statement of `module`, module level and inside functions, one entry per name, by line.

    `runtime_only` leaves out the imports under `if TYPE_CHECKING:` (for the cycle rule: they never run).
    """
    known = modules()
    skip = _type_checking_only(module.tree) if runtime_only else set()
    out = []
    for node in ast.walk(module.tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [Import(alias.name, node.lineno, f"import {alias.name}", alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if sub in known else base
                out.append(Import(target, node.lineno, f"from {base} import {alias.name}", sub))
    return sorted(out, key=lambda imp: imp.line)


def _tfl_target(name: str) -> str | None:
    """The tfl module an `import a.b.c` loads last (its longest existing prefix), or None outside tfl."""
    known = modules()
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in known:
            return candidate
    return None


def import_graph() -> dict:
    """`{module: {imported tfl module: (line, text)}}` between tfl modules (first import of each pair)."""
    graph = {}
    for name, module in modules().items():
        edges = graph.setdefault(name, {})
        for imp in imports(module, runtime_only=True):
            target = _tfl_target(imp.target)
            # A package importing its own submodules (tfl/cli/__init__.py registering the commands) is a
            # cycle only if a submodule imports the package back, which shows as that edge: both are kept.
            if target is not None and target != name:
                edges.setdefault(target, (imp.line, imp.text))
    return graph


def _cycles(graph: dict) -> list:
    """One cycle (a list of modules, first == last) per strongly connected component of more than one module."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def connect(v):  # Tarjan's algorithm; the graph is small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(set(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)

    cycles = []
    for component in components:
        # The shortest cycle through the component's first module (breadth-first inside the component).
        start = min(component)
        parents, frontier, found = {start: None}, [start], None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w == start:
                        found = v
                        break
                    if w in component and w not in parents:
                        parents[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        path = [start]
        v = found
        while v is not None and v != start:
            path.append(v)
            v = parents[v]
        path = [start] + list(reversed(path[1:])) + [start]
        cycles.append((sorted(component), path))
    return sorted(cycles)


def test_imports_resolve_to_modules():
    source = ("from tfl.training import trainer, nothing\nfrom tfl.config import TrainConfig\n"
              "def f():\n    import tfl.tuning.space\n    from . import lr_finder\n    from ..models import backbones\n"
              "if TYPE_CHECKING:\n    from tfl.serving import export\n")
    module = Module("tfl.training.plan", "tfl/training/plan.py", False, ast.parse(source))
    found = [(imp.line, imp.target) for imp in imports(module)]
    assert found == [(1, "tfl.training.trainer"), (1, "tfl.training"), (2, "tfl.config"), (4, "tfl.tuning.space"),
                     (5, "tfl.training.lr_finder"), (6, "tfl.models.backbones"), (8, "tfl.serving.export")]
    assert [imp.line for imp in imports(module, runtime_only=True)] == [1, 1, 2, 4, 5, 6]


def test_cycle_finder_finds_a_known_cycle():
    graph = {"a": {"b": (1, "")}, "b": {"c": (2, "")}, "c": {"a": (3, ""), "d": (4, "")}, "d": {}}
    assert _cycles(graph) == [(["a", "b", "c"], ["a", "b", "c", "a"])]
    assert _cycles({"a": {"b": (1, "")}, "b": {}}) == []


def test_no_import_cycles_between_tfl_modules():
    graph = import_graph()
    known = modules()
    problems = []
    for component, path in _cycles(graph):
        steps = []
        for a, b in zip(path, path[1:]):
            line, text = graph[a][b]
            steps.append(f"    {known[a].path}:{line}: {text}")
        problems.append(f"  cycle between {', '.join(component)}:\n" + "\n".join(steps))
    if problems:
        pytest.fail("import cycles between tfl modules:\n" + "\n".join(problems), pytrace=False)


def _module_chain(node: ast.expr) -> str | None:
    """`a.b.c` for a chain of attribute reads on a plain name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id] + list(reversed(parts)))


def _owner_allowed(value: ast.expr) -> bool:
    if isinstance(value, ast.Name):
        return value.id in ("self", "cls")
    return (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super"
            and not value.args)


def private_attribute_reads(module: Module) -> list:
    flagged = []
    for node in ast.walk(module.tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
            continue
        if node.attr in NAMEDTUPLE_API or _owner_allowed(node.value):
            continue
        chain = _module_chain(node)
        if chain is not None and chain in modules():
            continue  # `tfl._compat` spelled as a module path: rule 3 judges that import
        flagged.append(node)
    # `a._b._c` is one offence: report the outermost read of the chain.
    inner = {id(node.value) for node in flagged}
    verb = {ast.Load: "reads", ast.Store: "writes", ast.Del: "deletes"}
    return [f"{module.path}:{node.lineno}: {verb[type(node.ctx)]} {ast.unparse(node)}"
            for node in sorted(flagged, key=lambda n: (n.lineno, n.col_offset)) if id(node) not in inner]


def test_private_attribute_rule_catches_other_objects():
    tree = ast.parse("self._a\ncls._b\nsuper()._c\nx.__dict__\nother._d\nf()._e\nt._replace()\n"
                     "ops._registry._names\nself.model._loss\nself._a = other._g\nmodel._built = True\n")
    found = private_attribute_reads(Module("tfl.fake", "tfl/fake.py", False, tree))
    assert found == ["tfl/fake.py:5: reads other._d", "tfl/fake.py:6: reads f()._e",
                     "tfl/fake.py:8: reads ops._registry._names", "tfl/fake.py:9: reads self.model._loss",
                     "tfl/fake.py:10: reads other._g", "tfl/fake.py:11: writes model._built"]


def test_no_private_attribute_reads_outside_compat():
    problems = [p for name, module in modules().items() if name != COMPAT for p in private_attribute_reads(module)]
    if problems:
        pytest.fail("reads of another object's private attribute (move it into tfl/_compat.py or use a public "
                    "name):\n" + "\n".join(f"  {p}" for p in problems), pytrace=False)


def private_module_imports(module: Module) -> list:
    """Imports of a private tfl module, or of a private name, from outside the package that owns it.

    `tfl.training._checkpoint` (and `from tfl.training import _checkpoint`) belongs to `tfl.training`: any
    module under tfl/training/ may import it. A private name of a module (`from tfl.x.y import _helper`) is
    judged the same way, by the package of `tfl.x.y`; so is a private module that no longer exists.
    """
    known = modules()
    out = []
    for imp in imports(module):
        parts = imp.full.split(".")
        if parts[0] != "tfl":
            continue
        # The first private component decides.
        first = next((i for i, part in enumerate(parts) if _is_private(part)), None)
        if first is None:
            continue
        private = ".".join(parts[:first + 1])
        if private in PRIVATE_ALLOWED_EVERYWHERE:
            continue
        owner = ".".join(parts[:first])
        if owner in known and not known[owner].is_package:
            owner = owner.rpartition(".")[0]  # a private name of a module: private to that module's package
        if module.name == owner or module.name.startswith(owner + "."):
            continue
        out.append(f"{module.path}:{imp.line}: {imp.text} (private to {owner})")
    return out


def test_private_module_rule_allows_its_own_package_only():
    found = modules()

    def check(module_name, source):
        module = found[module_name]
        return private_module_imports(Module(module.name, module.path, False, ast.parse(source)))

    source = ("from tfl.training import _checkpoint\nfrom tfl.training._checkpoint import x\n"
              "from tfl import _compat\nimport tfl._logging\nfrom tfl.models import backbones\n"
              "from tfl.training.trainer import _helper\nfrom tfl.config import _from_dict\n"
              "import tfl.training._checkpoint\n")
    assert check("tfl.training.trainer", source) == []
    assert check("tfl.tuning.tuner", source) == [
        "tfl/tuning/tuner.py:1: from tfl.training import _checkpoint (private to tfl.training)",
        "tfl/tuning/tuner.py:2: from tfl.training._checkpoint import x (private to tfl.training)",
        "tfl/tuning/tuner.py:6: from tfl.training.trainer import _helper (private to tfl.training)",
        "tfl/tuning/tuner.py:8: import tfl.training._checkpoint (private to tfl.training)",
    ]
    assert check("tfl.training.trainer", "from tfl.models.backbones import _cached_path\n") == [
        "tfl/training/trainer.py:1: from tfl.models.backbones import _cached_path (private to tfl.models)"]


def test_no_private_module_imported_from_outside_its_package():
    problems = [p for module in modules().values() for p in private_module_imports(module)]
    if problems:
        pytest.fail("private modules imported from outside their package (make the name public, or move the "
                    "caller):\n" + "\n".join(f"  {p}" for p in problems), pytrace=False)


def _is_internal(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in INTERNAL_PREFIXES)


def internal_imports(module: Module) -> list:
    """Imports of the internals, and attribute paths into them through an imported name (`tf.python.x`)."""
    out, aliases = [], {}
    for node in ast.walk(module.tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
            for alias in node.names:
                root = alias.name.split(".")[0]
                aliases[alias.asname or root] = alias.name if alias.asname else root
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if _is_internal(name):
                out.append((node.lineno, f"{module.path}:{node.lineno}: imports {name}"))
                break
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            name = f"{aliases[node.value.id]}.{node.attr}"
            if _is_internal(name):
                out.append((node.lineno, f"{module.path}:{node.lineno}: uses {name} (as {ast.unparse(node)})"))
    return [text for _, text in sorted(out)]


def test_internal_import_rule():
    tree = ast.parse("from keras.src import tree\nimport tensorflow.python.ops\nfrom keras import src\n"
                     "from keras import layers\nimport keras_tuner\nfrom keras_tuner.src.distribute import x\n"
                     "import tensorflow as tf\ntf.python.eager.context\nkeras.srcs\ntf.nn\n")
    found = internal_imports(Module("tfl.fake", "tfl/fake.py", False, tree))
    assert found == ["tfl/fake.py:1: imports keras.src", "tfl/fake.py:2: imports tensorflow.python.ops",
                     "tfl/fake.py:3: imports keras.src", "tfl/fake.py:6: imports keras_tuner.src.distribute",
                     "tfl/fake.py:8: uses tensorflow.python (as tf.python)"]


def test_no_keras_tensorflow_or_keras_tuner_internals_outside_compat():
    problems = [p for name, module in modules().items() if name != COMPAT for p in internal_imports(module)]
    if problems:
        pytest.fail("imports of Keras/TensorFlow/Keras Tuner internals outside tfl/_compat.py:\n"
                    + "\n".join(f"  {p}" for p in problems), pytrace=False)


def print_calls(module: Module) -> list:
    return [f"{module.path}:{node.lineno}: print(...)" for node in ast.walk(module.tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"]


def test_no_print_outside_the_command_line():
    problems = [p for name, module in modules().items()
                if not (name == "tfl.cli" or name.startswith("tfl.cli.")) for p in print_calls(module)]
    if problems:
        pytest.fail('print() in library code (log through logging.getLogger("tfl") instead):\n'
                    + "\n".join(f"  {p}" for p in problems), pytrace=False)


def _top_level_names(tree: ast.Module) -> set:
    """Names a module defines at import time (functions, classes, assignments, imports; inside if/try/with)."""
    names = set()

    def visit(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
            elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                for field in ("body", "orelse", "finalbody"):
                    visit(getattr(node, field, []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return names


def unresolved_imports(module: Module) -> list:
    """tfl imports that would fail when they run: a missing module, or a name its module does not define."""
    known = modules()
    out = []
    for imp in imports(module):
        if imp.full.split(".")[0] != "tfl" or imp.full in known:
            continue
        if imp.text.startswith("import "):
            out.append(f"{module.path}:{imp.line}: {imp.text}: no module {imp.full}")
            continue
        base, _, name = imp.full.rpartition(".")
        if base not in known:
            out.append(f"{module.path}:{imp.line}: {imp.text}: no module {base}")
        elif name != "*":
            defined = _top_level_names(known[base].tree)
            if name not in defined and "__getattr__" not in defined:  # a module __getattr__ answers any name
                out.append(f"{module.path}:{imp.line}: {imp.text}: {known[base].path} defines no {name}")
    return out


def test_unresolved_import_rule():
    tree = ast.parse("from tfl.config import TrainConfig, nothing_here\nfrom tfl.training import _gone\n"
                     "import tfl.nowhere\nfrom tfl import fine_tune\nfrom tfl.models import backbones\n")
    found = unresolved_imports(Module("tfl.fake", "tfl/fake.py", False, tree))
    assert found == ["tfl/fake.py:1: from tfl.config import nothing_here: tfl/config.py defines no nothing_here",
                     "tfl/fake.py:2: from tfl.training import _gone: tfl/training/__init__.py defines no _gone",
                     "tfl/fake.py:3: import tfl.nowhere: no module tfl.nowhere"]


def test_every_tfl_import_resolves():
    # Imports inside functions run only when the function does: after a move, a stale one fails late.
    problems = sorted(p for module in modules().values() for p in unresolved_imports(module))
    if problems:
        pytest.fail("tfl imports of modules or names that do not exist:\n" + "\n".join(f"  {p}" for p in problems),
                    pytrace=False)


def test_the_lazy_public_api_names_exist():
    # tfl/__init__.py maps each public name to the module that defines it, as strings that no import checks.
    known = modules()
    api = next(node.value for node in known["tfl"].tree.body
               if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_API" for t in node.targets))
    mapping = ast.literal_eval(api)
    assert "fine_tune" in mapping and "TrainConfig" in mapping
    problems = [f"tfl/__init__.py: _API[{name!r}] = {where!r}: "
                + (f"no module {where}" if where not in known else f"{known[where].path} defines no {name}")
                for name, where in sorted(mapping.items())
                if where not in known or name not in _top_level_names(known[where].tree)]
    if problems:
        pytest.fail("the public API names what does not exist:\n" + "\n".join(f"  {p}" for p in problems),
                    pytrace=False)
