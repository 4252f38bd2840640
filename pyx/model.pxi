# Model: a loaded GGUF (weights, vocabulary, metadata). Immutable after load; shareable across threads.
from cpython.ref cimport PyObject
from libcpp cimport bool as cbool
from libcpp.memory cimport unique_ptr
from libcpp.string cimport string
from libcpp.vector cimport vector

from includes.dmr_core cimport CModel, ModelParams
from includes.llama cimport (
    llama_model_chat_template, llama_model_desc, llama_model_meta_val_str, llama_model_n_ctx_train,
    llama_model_n_embd, llama_model_n_layer, llama_model_n_params, llama_model_size, llama_token,
    llama_vocab_bos, llama_vocab_eos, llama_vocab_eot, llama_vocab_get_add_bos, llama_vocab_get_add_eos,
    llama_vocab_get_add_sep,
    llama_vocab_is_eog, llama_vocab_sep)


cdef class _ProgressState:
    cdef object callback
    cdef object error


cdef cbool _progress_trampoline(float progress, void* user) noexcept with gil:
    # Runs on the thread that called Model.load (never a llama.cpp worker), so taking the GIL is safe.
    cdef _ProgressState state = <_ProgressState>user
    try:
        return state.callback(progress) is not False
    except BaseException as exc:  # cancel the load; re-raised by Model.load
        state.error = exc
        return False


cdef class Model:
    """A GGUF model loaded by llama.cpp. Create with Model.load(path, ...)."""

    cdef unique_ptr[CModel] c_model
    cdef readonly str path

    def __init__(self):
        raise TypeError("use Model.load(path, ...)")

    @staticmethod
    def load(path, *, n_gpu_layers=None, bint use_mmap=True, bint use_mlock=False, bint repack=True, progress=None):
        """Loads a GGUF file.

        n_gpu_layers: layers to offload (-1: all); None: all when this build's GPU backend found a device,
        else none. progress: called with a float in [0, 1] as loading
        advances; return False (or raise) to cancel, which raises dmr.errors.AbortedError (or the exception).
        Raises ModelFileNotFoundError, NotAModelFileError, CorruptModelError, UnsupportedModelError,
        OutOfMemoryError."""
        cdef Model self = Model.__new__(Model)
        cdef string c_path = _os.fsencode(path)
        cdef ModelParams params
        cdef _ProgressState state = _ProgressState()
        cdef CStatus st
        params.n_gpu_layers = default_gpu_layers() if n_gpu_layers is None else n_gpu_layers
        params.use_mmap = use_mmap
        params.use_mlock = use_mlock
        params.repack = repack
        if progress is not None:
            state.callback = progress
            params.progress = _progress_trampoline
            params.progress_user = <void*>state
        with nogil:
            st = CModel.load(c_path, params, &self.c_model)
        if state.error is not None:
            _forward_logs()
            raise state.error
        check_status(st)
        _forward_logs()
        self.path = _os.fspath(path)
        return self

    cdef CModel* ptr(self) except NULL:
        if not self.c_model:
            raise ValueError("model is not loaded")
        return self.c_model.get()

    # --- facts -------------------------------------------------------------------------------------
    @property
    def n_ctx_train(self):
        return llama_model_n_ctx_train(self.ptr().get())

    @property
    def n_embd(self):
        return llama_model_n_embd(self.ptr().get())

    @property
    def n_layer(self):
        return llama_model_n_layer(self.ptr().get())

    @property
    def n_vocab(self):
        return self.ptr().n_vocab()

    @property
    def n_params(self):
        return llama_model_n_params(self.ptr().get())

    @property
    def size(self):
        """Bytes of all weight tensors."""
        return llama_model_size(self.ptr().get())

    @property
    def description(self):
        cdef char buf[256]
        n = llama_model_desc(self.ptr().get(), buf, sizeof(buf))
        return buf[:n].decode("utf-8", "replace") if n > 0 else ""

    @property
    def chat_template(self):
        """The model's default Jinja chat template, or None."""
        return self.named_chat_template(None)

    def named_chat_template(self, name):
        """A template the GGUF stores under `tokenizer.chat_template.<name>` (e.g. "rerank"), or None."""
        cdef bytes c_name = name.encode() if name is not None else b""
        cdef const char* c_key = NULL
        if name is not None:
            c_key = c_name
        cdef const char* tmpl = llama_model_chat_template(self.ptr().get(), c_key)
        return tmpl.decode("utf-8", "replace") if tmpl != NULL else None

    def meta(self, str key):
        """One GGUF metadata value as a string, or None."""
        cdef char buf[4096]
        cdef bytes c_key = key.encode()
        n = llama_model_meta_val_str(self.ptr().get(), c_key, buf, sizeof(buf))
        return buf[:n].decode("utf-8", "replace") if n >= 0 else None

    @property
    def special_tokens(self):
        v = self.ptr().vocab()
        return {
            "bos": llama_vocab_bos(v), "eos": llama_vocab_eos(v), "eot": llama_vocab_eot(v),
            "sep": llama_vocab_sep(v), "add_bos": bool(llama_vocab_get_add_bos(v)),
            "add_eos": bool(llama_vocab_get_add_eos(v)), "add_sep": bool(llama_vocab_get_add_sep(v)),
        }

    def is_eog(self, int token):
        return bool(llama_vocab_is_eog(self.ptr().vocab(), token))

    # --- text <-> tokens ----------------------------------------------------------------------------
    def tokenize(self, text, *, bint add_special=True, bint parse_special=False):
        """Text (str or UTF-8 bytes) -> list of token ids. add_special adds BOS/EOS as the model asks;
        parse_special turns control-token text such as "<|im_start|>" into its single token."""
        cdef string c_text = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        cdef vector[llama_token] out
        cdef CStatus st
        cdef CModel* m = self.ptr()
        with nogil:
            st = m.tokenize(c_text, add_special, parse_special, &out)
        check_status(st)
        return list(out)

    def detokenize(self, tokens, *, bint remove_special=False, bint unparse_special=False):
        """Token ids -> text. remove_special drops the BOS/EOS the model adds; unparse_special renders
        control tokens as their text."""
        cdef vector[llama_token] c_tokens = tokens
        cdef string out
        cdef CStatus st
        cdef CModel* m = self.ptr()
        with nogil:
            st = m.detokenize(c_tokens, remove_special, unparse_special, &out)
        check_status(st)
        return out.decode("utf-8", "replace")

    def token_to_piece(self, int token, *, bint special=False):
        """One token's raw bytes (possibly half a UTF-8 character)."""
        if token < 0 or token >= self.ptr().n_vocab():
            raise _errors.InvalidRequestError(f"token id {token} is outside the vocabulary")
        return <bytes>self.ptr().token_to_piece(token, special)

    def __repr__(self):
        return f"<dmr._native.Model {self.path!r} {self.description}>"
