"""The architecture the folder tree promises: imports flow one way and each store's queries live in
its own module."""

import ast
import re
from pathlib import Path

from resources.settings import PROJECT_ROOT

PACKAGES = ("corpus_assets", "corpus_cli", "resources", "retrieval", "sensors", "schedules")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, known: set[str]) -> set[str]:
    """Project modules `path` imports anywhere (top level or inside functions)."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        targets |= {name for name in names if name in known}
    return targets


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target] if target in path else [node, target]
            if target not in state and (found := visit(target, [*path, target])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_project_imports_have_no_cycle_and_the_code_location_never_imports_the_cli():
    modules = _modules()
    # A package's __init__ importing its own submodules is not a cycle between modules.
    graph = {name: {t for t in _imports(path, set(modules)) if t != name and not t.startswith(name + ".")}
             for name, path in modules.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    for name, targets in graph.items():
        if not name.startswith("corpus_cli"):
            assert not any(t.startswith("corpus_cli") for t in targets), f"{name} imports the CLI"
        if name.startswith("resources"):  # resources may use the pure book functions, nothing else upstream
            upstream = {t for t in targets if t.startswith(("corpus_assets", "sensors", "schedules"))}
            assert all(t.startswith("corpus_assets.books") for t in upstream), f"{name} imports {upstream}"


# Statements of each store's language, and the one folder allowed to hold them.
_HOMES = {
    "SQL": (re.compile(r"\b(SELECT|INSERT INTO|DELETE FROM|UPDATE \w+ SET|ON CONFLICT|COPY \w+ \(|TRUNCATE)\b"),
            "resources/postgres/"),
    "Cypher": (re.compile(r"\b(MATCH \(|MERGE \(|DETACH DELETE|UNWIND \$)"), "resources/graph/"),
    "qdrant-client": (re.compile(r"\b(qdrant_client|QdrantClient|query_points|scroll\(|delete_collection)\b"),
                      "resources/qdrant/"),
}


def test_each_store_is_queried_from_its_own_module_only():
    misplaced = []
    for name, path in _modules().items():
        relative = path.relative_to(PROJECT_ROOT).as_posix()
        source = path.read_text()
        for store, (pattern, home) in _HOMES.items():
            if not relative.startswith(home) and pattern.search(source):
                misplaced.append(f"{store} in {relative}")
    assert misplaced == []
