"""dmr: Docker Model Runner as a Python runtime with an in-process llama.cpp core.

This module holds the version only and must never import the compiled module, so that `dmr --help`
and the pure-Python layers (models, CLI) import instantly.
"""

__version__ = "0.1.0"
