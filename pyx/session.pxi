# Session: one context, one request at a time (csrc/session.h). The batching engine builds on the same core.
from includes.dmr_core cimport CSession, ContextParams, Finish, GenerateParams, SamplingParams, Step
from libcpp.pair cimport pair

cdef dict _FINISH = {1: "stop", 2: "length"}
_FLASH_ATTN = {None: -1, "auto": -1, True: 1, "on": 1, "enabled": 1, False: 0, "off": 0, "disabled": 0}
cdef unsigned int _RANDOM_SEED = 0xFFFFFFFF


cdef ContextParams _context_params(n_ctx, n_batch, n_ubatch, n_threads, n_threads_batch, flash_attn,
                                   n_seq_max) except *:
    import dmr.config as _config

    cdef ContextParams p
    p.n_ctx = _config.DEFAULT_CONTEXT_SIZE if n_ctx is None else n_ctx
    p.n_batch = _config.DEFAULT_N_BATCH if n_batch is None else n_batch
    p.n_ubatch = _config.DEFAULT_N_UBATCH if n_ubatch is None else n_ubatch
    p.n_threads = _config.default_threads() if n_threads is None else n_threads
    p.n_threads_batch = p.n_threads if n_threads_batch is None else n_threads_batch
    p.n_seq_max = n_seq_max
    try:
        p.flash_attn = _FLASH_ATTN[flash_attn]
    except (KeyError, TypeError):
        raise _errors.InvalidRequestError(f"flash_attn must be one of auto/on/off, not {flash_attn!r}") from None
    p.embeddings = False
    p.pooling = -1
    p.kv_unified = False
    return p


_REQUEST_PARAMS = frozenset({
    "max_tokens", "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "presence_penalty",
    "frequency_penalty", "penalty_last_n", "seed", "logit_bias", "grammar", "grammar_triggers", "stop",
    "ignore_eos", "n_probs"})


cdef int _fill_request_params(SamplingParams* sp, GenerateParams* gp, dict params) except -1:
    """Keyword parameters of a generation request -> the C++ structs (shared by Session and Engine)."""
    unknown = set(params) - _REQUEST_PARAMS
    if unknown:
        raise TypeError(f"unknown generation parameter(s): {', '.join(sorted(unknown))}")
    get = params.get
    sp.temperature = get("temperature", 0.8)
    sp.top_k = get("top_k", 40)
    sp.top_p = get("top_p", 0.95)
    sp.min_p = get("min_p", 0.05)
    sp.repeat_penalty = get("repeat_penalty", 1.0)
    sp.presence_penalty = get("presence_penalty", 0.0)
    sp.frequency_penalty = get("frequency_penalty", 0.0)
    sp.penalty_last_n = get("penalty_last_n", 64)
    seed = get("seed")
    sp.seed = _RANDOM_SEED if seed is None else <unsigned int>(int(seed) & 0xFFFFFFFF)
    logit_bias = get("logit_bias")
    if logit_bias:
        for token, bias in logit_bias.items():
            sp.logit_bias.push_back(pair[llama_token, float](int(token), float(bias)))
    grammar = get("grammar")
    if grammar:
        sp.grammar = grammar.encode("utf-8")
        for pattern in get("grammar_triggers") or ():
            sp.grammar_triggers.push_back(pattern.encode("utf-8"))
    n_probs = get("n_probs")
    sp.n_probs = -1 if n_probs is None else n_probs
    max_tokens = get("max_tokens")
    gp.max_tokens = -1 if max_tokens is None else max_tokens
    gp.ignore_eos = bool(get("ignore_eos", False))
    stop = get("stop")
    if stop:
        if isinstance(stop, str):
            stop = [stop]
        for text in stop:
            gp.stop.push_back(text.encode("utf-8"))
    return 0


cdef class Session:
    """A llama.cpp context for one request at a time, with KV-cache reuse between requests.

    Not thread-safe, except abort(), which any thread may call while another generates."""

    cdef unique_ptr[CSession] c_session
    cdef readonly Model model
    cdef readonly object finish_reason

    def __init__(self):
        raise TypeError("use Session.create(model, ...)")

    @staticmethod
    def create(Model model, *, n_ctx=None, n_batch=None, n_ubatch=None, n_threads=None, n_threads_batch=None,
               flash_attn=None):
        """n_ctx: context window (0: the model's training context). Defaults come from dmr.config."""
        cdef Session self = Session.__new__(Session)
        cdef ContextParams params = _context_params(n_ctx, n_batch, n_ubatch, n_threads, n_threads_batch,
                                                    flash_attn, 1)
        cdef CStatus st
        cdef CModel* m = model.ptr()
        with nogil:
            st = CSession.create(m, params, &self.c_session)
        check_status(st)
        _forward_logs()
        self.model = model
        return self

    cdef CSession* ptr(self) except NULL:
        if not self.c_session:
            raise ValueError("session is closed")
        return self.c_session.get()

    def start(self, prompt, **params):
        """Evaluates `prompt` (str, tokenized with special tokens parsed, or a list of token ids) and
        prepares sampling. Parameters (all optional): max_tokens (-1: until the context is full),
        temperature (<= 0: greedy), top_k, top_p, min_p, repeat_penalty, presence_penalty,
        frequency_penalty, penalty_last_n, seed, logit_bias ({token_id: bias}), grammar (GBNF),
        stop (strings ending the output, not included), ignore_eos."""
        cdef CSession* s = self.ptr()
        if isinstance(prompt, str):
            prompt = self.model.tokenize(prompt, add_special=True, parse_special=True)
        cdef vector[llama_token] c_prompt = prompt
        cdef SamplingParams sp
        cdef GenerateParams gp
        _fill_request_params(&sp, &gp, params)
        self.finish_reason = None
        cdef CStatus st
        with nogil:
            st = s.start(c_prompt, sp, gp)
        check_status(st)
        _forward_logs()

    def next(self):
        """One step: returns (token_id, text, finish_reason). token_id is -1 once finished; text is what
        may be shown now (held back while it could still be part of a stop string or a character)."""
        cdef CSession* s = self.ptr()
        cdef Step step
        cdef CStatus st
        with nogil:
            st = s.next(&step)
        check_status(st)
        finish = _FINISH.get(<int>step.finish)
        if finish is not None:
            self.finish_reason = finish
        return step.token, step.text.decode("utf-8", "replace"), finish

    def generate(self, prompt, **kwargs):
        """Iterator of (token_id, text) until the generation finishes; then .finish_reason and .usage
        tell why and how much. Keyword arguments as for start()."""
        self.start(prompt, **kwargs)
        while True:
            token, text, finish = self.next()
            if token >= 0 or text:
                yield token, text
            if finish is not None:
                return

    def complete(self, prompt, **kwargs):
        """The whole generated text at once."""
        return "".join(text for _, text in self.generate(prompt, **kwargs))

    def abort(self):
        """Thread-safe: the generation running in another thread raises AbortedError at its next step."""
        self.ptr().abort()

    def reset(self):
        """Forget the cached prompt (the next request evaluates everything)."""
        self.ptr().reset()

    @property
    def usage(self):
        """Token counts of the last request: prompt, cached (reused from the KV cache), completion."""
        s = self.ptr()
        return {"prompt_tokens": s.n_prompt(), "cached_tokens": s.n_cached(),
                "completion_tokens": s.n_generated()}

    @property
    def n_ctx(self):
        return self.ptr().n_ctx()

    @property
    def kv_tokens(self):
        """The tokens the KV cache holds (what the next request can reuse)."""
        return list(self.ptr().kv_tokens())

    def close(self):
        self.c_session.reset()
