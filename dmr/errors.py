"""The error tree shared by every layer.

Each class also inherits the builtin exception it resembles, so callers that know nothing of dmr can
still catch it (`except FileNotFoundError`), and states the HTTP status the server answers it with.
This module imports nothing from dmr: every layer, the compiled binding included, may import it.
"""

from __future__ import annotations


class DmrError(Exception):
    """Base of every error dmr raises on purpose."""

    http_status: int = 500
    #: OpenAI-style error type used in error JSON.
    error_type: str = "server_error"


# --- model files -------------------------------------------------------------------------------------


class ModelFileError(DmrError):
    """A model file cannot be used."""

    http_status = 400
    error_type = "invalid_request_error"


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
    """The path does not exist."""

    http_status = 404
    error_type = "not_found_error"


class NotAModelFileError(ModelFileError, ValueError):
    """The path exists but is not a GGUF file (a directory, another format, random bytes)."""


class CorruptModelError(ModelFileError, ValueError):
    """The file starts like a GGUF but is truncated or internally inconsistent."""


class UnsupportedModelError(ModelFileError, NotImplementedError):
    """A valid GGUF whose architecture this build of llama.cpp cannot run."""

    http_status = 501


class BackendNotInstalledError(DmrError, LookupError):
    """No installed backend runs the model's format; the message names the backend that would."""

    http_status = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, backend: str | None = None) -> None:
        super().__init__(message)
        self.backend = backend


# --- requests against a loaded model ------------------------------------------------------------------


class InvalidRequestError(DmrError, ValueError):
    """Bad parameters: an unparsable grammar, a token id out of range, ..."""

    http_status = 400
    error_type = "invalid_request_error"


class ContextFullError(InvalidRequestError):
    """The prompt (plus what must be generated) does not fit in the context window."""

    def __init__(self, message: str, n_tokens: int | None = None, n_ctx: int | None = None) -> None:
        super().__init__(message)
        self.n_tokens = n_tokens
        self.n_ctx = n_ctx


class OutOfMemoryError(DmrError, MemoryError):
    """llama.cpp could not allocate a buffer (weights, KV cache or compute)."""

    http_status = 507
    error_type = "insufficient_storage"


class AbortedError(DmrError, InterruptedError):
    """The operation was cancelled (progress callback, abort(), client gone)."""

    http_status = 499
    error_type = "aborted"


class EngineError(DmrError, RuntimeError):
    """llama.cpp failed in a way that has no more specific class."""


# --- models store and registries ---------------------------------------------------------------------


class ModelNotFoundError(DmrError, LookupError):
    """No such model in the local store or on the registry."""

    http_status = 404
    error_type = "not_found_error"


class InvalidReferenceError(DmrError, ValueError):
    """A model reference that cannot be parsed."""

    http_status = 400
    error_type = "invalid_request_error"


class RegistryError(DmrError, ConnectionError):
    """A registry or hub failed or could not be reached."""

    http_status = 502


class DigestMismatchError(RegistryError):
    """Downloaded bytes do not hash to the digest the manifest promised."""


class StoreError(DmrError, OSError):
    """The local store cannot be read or written (disk full, permissions, lock timeout)."""

    http_status = 507


class ModelConflictError(DmrError, ValueError):
    """The operation would be ambiguous: deleting by ID a model that has several tags, without force."""

    http_status = 409
    error_type = "conflict_error"


class UnsafePathError(InvalidReferenceError):
    """A layer annotation or an archive entry names a path outside the model's directory."""


# --- server and scheduling ------------------------------------------------------------------------------


class InsufficientMemoryError(DmrError, MemoryError):
    """The model does not fit in the memory budget even after evicting every idle model."""

    http_status = 507
    error_type = "insufficient_storage"


class ModelBusyError(DmrError, RuntimeError):
    """The model is in use and the operation (reconfigure, unload) needs it idle."""

    http_status = 409
    error_type = "conflict_error"


class ServiceUnavailableError(DmrError, RuntimeError):
    """The server cannot take the request now (model loading failed, shutting down)."""

    http_status = 503
    error_type = "service_unavailable"


class AuthenticationError(DmrError, PermissionError):
    """A missing or wrong API key."""

    http_status = 401
    error_type = "authentication_error"


class NotSupportedError(DmrError, NotImplementedError):
    """The model cannot do what the endpoint asks (e.g. embeddings from a model with no pooling)."""

    http_status = 501
    error_type = "not_implemented_error"
