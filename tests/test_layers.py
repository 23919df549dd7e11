"""The layers of the README's Architecture section, held against every import in the package.

A module may import its own folder and any lower layer, never a higher one nor a peer of its own
layer, so that moving a feature or adding a backend stays inside one folder.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / 'agentledger'

LAYERS: list[set[str]] = [
    {'_redaction'},
    {'errors'},
    {'model'},
    {'_compat'},
    {'workflows'},
    {'ledger'},
    {'activities'},
    {'payloads', 'reconcile', 'tools'},
    {'plugin'},
    {'client'},
    {'cli'},
]
"""From the bottom up: the README's layer diagram."""

RANK = {room: rank for rank, rooms in enumerate(LAYERS) for room in rooms}


def _room(module: str) -> str | None:
    parts = module.split('.')
    if parts[0] != 'agentledger' or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def test_every_folder_of_the_package_has_a_layer() -> None:
    modules = {path.stem for path in PACKAGE.glob('*.py')} - {'__init__', '__main__'}
    packages = {path.parent.name for path in PACKAGE.glob('*/__init__.py')}
    rooms = modules | packages
    assert rooms == set(RANK)


def test_no_module_imports_a_higher_layer_or_a_peer() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob('*.py')):
        own = _room('.'.join(('agentledger', *path.relative_to(PACKAGE).with_suffix('').parts)))
        if own is None or own in ('__init__', '__main__'):
            continue
        for line, module in _imports(path):
            target = _room(module)
            if target is None or target == own or target not in RANK:
                continue
            if RANK[target] >= RANK[own]:
                wrong.append(f'{path.relative_to(PACKAGE)}:{line} ({own}) imports {module} ({target})')
    assert wrong == []
