# llama.cpp / ggml log lines -> Python logging, drained from the C++ queue (csrc/log_sink.h).
import logging as _logging

from includes.dmr_core cimport LogLine, log_drain, log_install, log_set_min_level
from libcpp.vector cimport vector

_llama_logger = _logging.getLogger("dmr.llama")

cdef dict _PY_LEVEL = {1: _logging.DEBUG, 2: _logging.INFO, 3: _logging.WARNING, 4: _logging.ERROR}


def set_log_level(level):
    """Lowest Python logging level of llama.cpp lines to keep (others are dropped in C++, at no cost)."""
    if isinstance(level, str):
        level = _logging.getLevelName(level.upper())
    cdef int ggml_level
    if level <= _logging.DEBUG:
        ggml_level = 1
    elif level <= _logging.INFO:
        ggml_level = 2
    elif level <= _logging.WARNING:
        ggml_level = 3
    else:
        ggml_level = 4
    log_set_min_level(ggml_level)


cpdef void _forward_logs():
    """Hands queued llama.cpp lines to the "dmr.llama" logger."""
    cdef vector[LogLine] lines = log_drain()
    cdef size_t i
    for i in range(lines.size()):
        _llama_logger.log(_PY_LEVEL.get(lines[i].level, _logging.INFO), lines[i].text.decode("utf-8", "replace"))


def forward_logs():
    _forward_logs()
