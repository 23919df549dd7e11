"""The determinism boundary is a folder: workflow code loads only the pure layer.

Each check runs in a fresh interpreter, so modules other tests imported cannot hide an import.
"""

from __future__ import annotations

import json
import subprocess
import sys

from agentledger.plugin._plugin import SANDBOX_PASSTHROUGH

# What workflow code must never load: I/O libraries and the layers above the pure one.
FORBIDDEN = (
    'aiosqlite',
    'boto3',
    'botocore',
    'pyfastcdc',
    'agentledger.activities',
    'agentledger.cli',
    'agentledger.client',
    'agentledger.ledger',
    'agentledger.payloads',
    'agentledger.plugin',
    'agentledger.reconcile',
    'agentledger.tools',
)


def _modules_after(statement: str) -> list[str]:
    script = f'import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))'
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + '.') for prefix in prefixes)


def test_workflow_code_loads_no_backend_activity_plugin_client_or_io_library() -> None:
    loaded = _modules_after('import agentledger.workflows')
    assert [name for name in loaded if _under(name, FORBIDDEN)] == []


def test_everything_workflow_code_loads_of_agentledger_is_passed_through_the_sandbox() -> None:
    loaded = _modules_after('import agentledger.workflows')
    ours = [name for name in loaded if _under(name, ('agentledger',)) and name != 'agentledger']
    assert ours, 'agentledger.workflows loaded nothing of agentledger'
    assert [name for name in ours if not _under(name, SANDBOX_PASSTHROUGH)] == []


def test_the_pure_layer_loads_no_io_library() -> None:
    loaded = _modules_after('import agentledger.model, agentledger.errors, agentledger._compat')
    assert [name for name in loaded if _under(name, FORBIDDEN)] == []


def test_the_package_face_loads_nothing_until_a_name_is_used() -> None:
    loaded = _modules_after('import agentledger')
    assert [name for name in loaded if _under(name, ('agentledger',))] == ['agentledger']
    used = _modules_after('import agentledger; agentledger.SqliteLedger')
    assert 'aiosqlite' in used and 'boto3' not in used
