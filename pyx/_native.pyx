# cython: language_level=3, boundscheck=False, wraparound=False, embedsignature=True
# distutils: language = c++
"""dmr._native: the one compiled module - llama.cpp through dmr's C++ core (csrc/).

Only dmr/engine/llama.py imports it in the package; tests and benchmarks use it directly.
Every call that can take time runs with the GIL released; llama.cpp's log lines are queued in C++ and
handed to Python logging ("dmr.llama") after each call, never from a llama.cpp thread.
"""

include "status.pxi"
include "log.pxi"
include "device.pxi"
include "gguf.pxi"
include "model.pxi"
include "session.pxi"
include "embedding.pxi"
include "engine.pxi"
include "kernels.pxi"

_init()
