"""The package's import graph: no cycles, and lower layers never import higher ones (module and function imports)."""
import ast
from pathlib import Path
from typing import Dict, Set

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / 'restormer_arch'
# A module of a layer may import modules of its own layer and of the layers listed after it, never of those before it.
LAYERS = [
    ('restormer_arch.cli', 'restormer_arch.__main__', 'restormer_arch.options'),
    ('restormer_arch.inference', 'restormer_arch.export', 'restormer_arch.weights', 'restormer_arch.evaluation'),
    ('restormer_arch.restorer',),
    ('restormer_arch.models',),
    ('restormer_arch.data', 'restormer_arch.losses', 'restormer_arch.metrics'),
]


def _module_name(path: Path) -> str:
    name = '.'.join(path.relative_to(REPO_ROOT).with_suffix('').parts)
    return name[:-len('.__init__')] if name.endswith('.__init__') else name


def import_graph() -> Dict[str, Set[str]]:
    """Edges module -> imported module of the package, from every import statement (lazy ones included)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob('*.py')}
    graph: Dict[str, Set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == '__init__.py' else name.rpartition('.')[0]
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    parent = package.split('.')[:len(package.split('.')) - node.level + 1]
                    base = '.'.join(parent + ([node.module] if node.module else []))
                # ``from pkg import submodule`` depends on the submodule, not on everything pkg/__init__ imports.
                targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in modules else base for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name and not name.startswith(t + '.')}
    return graph


def _cycles(graph: Dict[str, Set[str]]) -> list:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: list = []
    found: list = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _layer(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + '.') for p in prefixes):
            return i
    return len(LAYERS)  # the base: archs, checkpoint, tiling, perf, atomic, errors, compat, ...


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_lower_layers_never_import_higher_ones():
    upward = sorted(f'{a} -> {b}' for a, targets in import_graph().items() for b in targets
                    if _layer(b) < _layer(a) and a != 'restormer_arch')
    assert upward == []
