"""The folders under nodes/ are layers: the engine (no ComfyUI, no torch at import), the node logic
(no ComfyUI), the ComfyUI layer on top. Nothing imports upward and no modules import each other in
a cycle, so the engine can serve the command line and scripts without ComfyUI or torch.

Read from the source with `ast`, so the rule holds for every module, imported by a test or not."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

NODES = Path(__file__).resolve().parent.parent / "nodes"
COMFYUI_MODULES = {"comfy", "comfy_api", "comfy_execution", "comfy_extras", "folder_paths", "server", "aiohttp",
                   "nodes", "execution"}
LAYER_ORDER = ("engine", "logic", "comfy")  # each may import only itself and the layers before it


def module_name(path: Path) -> str:
    parts = list(path.relative_to(NODES).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(importer: Path, node: ast.ImportFrom) -> str:
    """The pack-relative module a relative import names ('' for nodes/ itself)."""
    package = module_name(importer).split(".") if importer.name == "__init__.py" else \
        module_name(importer).split(".")[:-1]
    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    return ".".join([*base, *(node.module.split(".") if node.module else [])]).strip(".")


def imports_of(path: Path, *, at_load_only: bool = True) -> tuple[set[str], set[str]]:
    """(pack modules, outside top-level modules) the module imports. `at_load_only` skips function
    bodies (they run later); `if TYPE_CHECKING:` blocks never run and are always skipped."""
    pack: set[str] = set()
    outside: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for statement in statements:
            if isinstance(statement, ast.Import):
                outside.update(alias.name.split(".")[0] for alias in statement.names)
            elif isinstance(statement, ast.ImportFrom):
                if statement.level:
                    target = resolve(path, statement)
                    pack.add(target)
                    pack.update(f"{target}.{alias.name}".strip(".") for alias in statement.names)
                elif statement.module != "__future__":
                    outside.add(statement.module.split(".")[0])
            elif isinstance(statement, ast.If) and "TYPE_CHECKING" in ast.unparse(statement.test):
                continue
            elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if isinstance(statement, ast.ClassDef) or not at_load_only:
                    visit(statement.body)
            elif isinstance(statement, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                for block in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(statement, block, []):
                        visit(child.body if isinstance(child, ast.ExceptHandler) else [child])

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return pack, outside


MODULES = {module_name(path): path for path in sorted(NODES.rglob("*.py"))}
IMPORTS = {name: imports_of(path) for name, path in MODULES.items()}


def layer_of(name: str) -> str | None:
    return next((layer for layer in LAYER_ORDER if name == layer or name.startswith(f"{layer}.")), None)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_a_layer_above_its_own(name: str) -> None:
    layer = layer_of(name)
    allowed = LAYER_ORDER[: LAYER_ORDER.index(layer) + 1] if layer else ()
    upward = sorted(target for target in IMPORTS[name][0] if layer_of(target) not in (*allowed, None))
    assert not upward, f"nodes/{name.replace('.', '/')} imports {upward}, a layer above its own"


@pytest.mark.parametrize("name", sorted(name for name in MODULES if layer_of(name) in ("engine", "logic")))
def test_engine_and_node_logic_import_nothing_of_comfyui(name: str) -> None:
    comfyui = sorted(IMPORTS[name][1] & COMFYUI_MODULES)
    assert not comfyui, f"nodes/{name.replace('.', '/')} imports ComfyUI's {comfyui}"


@pytest.mark.parametrize("name", sorted(name for name in MODULES if layer_of(name) == "engine"))
def test_the_engine_imports_no_torch_when_it_loads(name: str) -> None:
    assert "torch" not in IMPORTS[name][1], f"nodes/{name.replace('.', '/')} imports torch at load time"


def test_the_comfyui_layer_is_its_own_folder() -> None:
    """Every module that imports ComfyUI lives in nodes/comfy/, and nodes/ holds only the layers."""
    outside_the_folder = sorted(name for name in MODULES if layer_of(name) != "comfy"
                                and IMPORTS[name][1] & COMFYUI_MODULES)
    assert not outside_the_folder
    assert {path.name for path in NODES.iterdir() if path.suffix == ".py"} == {"__init__.py"}


def test_no_two_modules_import_each_other_in_a_cycle() -> None:
    """Deferred imports inside functions count too: they only hide a cycle."""
    every_import = {name: imports_of(path, at_load_only=False)[0] for name, path in MODULES.items()}
    graph = {name: {target for target in every_import[name] if target in MODULES and target != name}
             for name in MODULES}
    # A package's __init__ re-exports its modules; importing from it is importing them.
    state: dict[str, str] = {}
    path: list[str] = []

    def walk(name: str) -> None:
        state[name] = "open"
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target]
                if not all(step.startswith(f"{other}.") or other.startswith(f"{step}.")
                           for step, other in zip(cycle, cycle[1:])):  # a package and its own module
                    raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            elif target not in state:
                walk(target)
        path.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name)
