# The one C++ -> Python error converter: every non-Ok dmr::Status becomes a dmr.errors class here.
from includes.dmr_core cimport CStatus, Code

from dmr import errors as _errors


cdef object _error_class(Code code):
    if code == Code.InvalidInput:
        return _errors.InvalidRequestError
    if code == Code.NotFound:
        return _errors.ModelFileNotFoundError
    if code == Code.NotGguf:
        return _errors.NotAModelFileError
    if code == Code.CorruptModel:
        return _errors.CorruptModelError
    if code == Code.Unsupported:
        return _errors.UnsupportedModelError
    if code == Code.ContextFull:
        return _errors.ContextFullError
    if code == Code.Aborted:
        return _errors.AbortedError
    if code == Code.OutOfMemory:
        return _errors.OutOfMemoryError
    return _errors.EngineError


cdef int raise_status(const CStatus& st) except -1:
    _forward_logs()
    raise _error_class(st.code)(st.msg.decode("utf-8", "replace"))


cdef inline int check_status(const CStatus& st) except -1 nogil:
    if st.ok():
        return 0
    with gil:
        return raise_status(st)
