"""The package's layers (README, "Contributing"): read every module's imports with `ast` (imports inside functions
included) and check that no module imports a higher layer, that there is no import cycle, and that the remote-code
modules import only each other."""

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "modeling_sprm"
# Shipped with every checkpoint (transformers copies them by their relative imports): flat, only each other.
REMOTE_CODE = {"configuration_sprm", "modeling_sprm", "pipeline_sprm", "processing_sprm", "steps", "aggregation",
               "outputs", "generation", "answers", "backbones", "readouts"}  # fmt: skip
# Lowest first; a module may import its own layer and the ones below.
LAYERS = [
    {"steps", "aggregation", "answers", "backbones", "configuration_sprm", "arguments", "readouts"},
    {"outputs", "processing_sprm"},
    {"modeling_sprm"},
    {"generation"},
    {"pipeline_sprm"},
    {"registration", "data", "loading", "cards", "search", "labeling"},
    {"evaluation"},
    {"training"},
    {"apps"},
]
# Entry points and the deprecated old paths sit above everything.
TOP = {"__init__", "__main__", "_deprecated", "trainer", "losses", "features", "monitoring", "cli", "demo", "hub",
       "conversion"}  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def package_imports(path: Path) -> set[str]:
    """The package modules ``path`` imports (absolute names), at any depth of its code."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t.split(".")[0] == "modeling_sprm" and is_module(t))
    return found


def layer(name: str) -> int:
    parts = name.split(".")[1:]  # without "modeling_sprm"
    if not parts or parts[0] in TOP:
        return len(LAYERS)
    return next(i for i, members in enumerate(LAYERS) if parts[0] in members)


GRAPH = {module_name(p): package_imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_layer():
    for name in GRAPH:
        assert layer(name) is not None, name


def test_no_module_imports_a_higher_layer():
    upward = sorted(
        f"{name} -> {target}" for name, targets in GRAPH.items() for target in targets if layer(target) > layer(name)
    )
    assert upward == []


def test_no_import_cycle():
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = "open"
        stack.append(name)
        for target in sorted(GRAPH.get(name, ())):
            if target == name or target == "modeling_sprm":  # the package itself (its __init__) is the top
                continue
            assert state.get(target) != "open", "import cycle: " + " -> ".join(stack[stack.index(target):] + [target])
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_remote_code_imports_only_remote_code_relatively():
    for name in REMOTE_CODE:
        path = PACKAGE / f"{name}.py"
        outside = {t for t in GRAPH[f"modeling_sprm.{name}"] if t.split(".")[1] not in REMOTE_CODE}
        assert outside == set(), f"{name} imports {outside}"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                assert not any(m.split(".")[0] == "modeling_sprm" for m in modules), f"{name}: absolute import {modules}"
