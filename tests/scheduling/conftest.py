from __future__ import annotations

import sys
from pathlib import Path

# The end-to-end server helpers live with the server tests; expose them under a unique module name.
_helpers = Path(__file__).resolve().parents[1] / "server" / "helpers.py"
if "tests_server_helpers" not in sys.modules:
    import importlib.util

    spec = importlib.util.spec_from_file_location("tests_server_helpers", _helpers)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tests_server_helpers"] = module
    spec.loader.exec_module(module)
