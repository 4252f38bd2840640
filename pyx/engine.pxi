# Engine: the continuous-batching decode loop (csrc/engine.h). Python submits and drains; the C++ decode
# thread never touches Python. dmr/engine/llama.py wraps this in asyncio.
from libc.stdint cimport uint64_t
from libcpp.utility cimport move

from includes.dmr_core cimport CEngine, EngineParams, EngineStats, Event, EventKind, RequestSpec, SpecType

#: Event kinds in drain() tuples.
EVENT_TOKEN = 0
EVENT_DONE = 1
EVENT_ERROR = 2
#: finish codes in Done events
FINISH_REASONS = {1: "stop", 2: "length", 3: "abort"}

_SPEC_TYPES = {None: SpecType.Off, "none": SpecType.Off, "ngram": SpecType.Ngram, "draft": SpecType.DraftModel}


def error_from_code(int code, str message):
    """The dmr.errors instance for an Error event's (error_code, message)."""
    return _error_class(<Code>code)(message)


cdef class EngineEvent:
    """One event of the decode loop (Engine.drain): kind EVENT_TOKEN (token, text, and logprob /
    top_logprobs when the request set n_probs), EVENT_DONE (finish and the usage counts) or EVENT_ERROR
    (error_code, error_message). Fields are read-only."""
    cdef readonly unsigned long long request_id
    cdef readonly int kind
    cdef readonly int token
    cdef readonly str text
    cdef readonly int finish
    cdef readonly int n_prompt
    cdef readonly int n_cached
    cdef readonly int n_generated
    cdef readonly int n_drafted
    cdef readonly int n_accepted
    cdef readonly int error_code
    cdef readonly str error_message
    cdef readonly object logprob
    cdef readonly list top_logprobs

    @staticmethod
    def error(unsigned long long request_id, int code, str message):
        """An Error event made outside the decode loop (the engine was closed under a request)."""
        cdef EngineEvent item = EngineEvent.__new__(EngineEvent)
        item.request_id = request_id
        item.kind = <int>EventKind.Error
        item.token = -1
        item.text = ""
        item.error_code = code
        item.error_message = message
        item.top_logprobs = []
        return item

    def __repr__(self):
        return (f"EngineEvent(request_id={self.request_id}, kind={self.kind}, token={self.token}, "
                f"text={self.text!r}, error_code={self.error_code})")


cdef class Engine:
    """One model serving many concurrent requests from one decode thread.

    Thread-safe: submit/abort/pause/drain/stats may be called from any thread. fileno() becomes readable
    when drain() has events."""

    cdef unique_ptr[CEngine] c_engine
    cdef readonly Model model
    cdef readonly object draft_model

    def __init__(self):
        raise TypeError("use Engine.create(model, ...)")

    @staticmethod
    def create(Model model, *, n_ctx=None, int n_slots=4, n_batch=None, n_ubatch=None, n_threads=None,
               n_threads_batch=None, flash_attn=None, int prefill_chunk=512, int prefill_group=32,
               speculative=None,
               int spec_n_max=8, int spec_ngram_min=2, int spec_ngram_max=4, float spec_min_acceptance=0.0, bint spec_force=False,
               Model draft_model=None, draft_n_ctx=None, bint kv_unified=False, step_trace=None):
        """n_ctx: KV cells of all slots together; each request may use n_ctx / n_slots of them (all of
        them with kv_unified, at the price of batch-dependent rounding).
        prefill_chunk: most prompt tokens one request adds to a step while others decode; prefill_group:
        prompts are evaluated oldest first, and a step starts another one only below this many prompt tokens.
        spec_force: keep the draft model even where the load-time calibration finds it cannot pay.
        step_trace: a file path that gets one line per llama_decode (bench/step_trace.py reads it).
        speculative: None, "ngram" (prompt lookup) or "draft" (draft_model required)."""
        cdef Engine self = Engine.__new__(Engine)
        cdef EngineParams params
        params.ctx = _context_params(n_ctx, n_batch, n_ubatch, n_threads, n_threads_batch, flash_attn, n_slots)
        params.n_slots = n_slots
        params.prefill_chunk = prefill_chunk
        params.prefill_group = prefill_group
        params.kv_unified = kv_unified
        if step_trace:
            params.step_trace = _os.fsencode(step_trace)
        try:
            params.spec.type = _SPEC_TYPES[speculative]
        except KeyError:
            raise _errors.InvalidRequestError(f"speculative must be None, 'ngram' or 'draft', not {speculative!r}") from None
        params.spec.n_max = spec_n_max
        params.spec.ngram_min = spec_ngram_min
        params.spec.ngram_max = spec_ngram_max
        params.spec.min_acceptance = spec_min_acceptance
        params.spec.force = spec_force
        params.spec.draft_ctx = _context_params(draft_n_ctx if draft_n_ctx is not None else 0, n_batch, n_ubatch,
                                                n_threads, n_threads_batch, flash_attn, n_slots)
        cdef const CModel* c_draft = NULL
        if draft_model is not None:
            c_draft = draft_model.ptr()
        cdef CStatus st
        cdef CModel* m = model.ptr()
        with nogil:
            st = CEngine.create(m, params, c_draft, &self.c_engine)
        check_status(st)
        _forward_logs()
        self.model = model
        self.draft_model = draft_model
        return self

    cdef CEngine* ptr(self) except NULL:
        if not self.c_engine:
            raise ValueError("engine is closed")
        return self.c_engine.get()

    def submit(self, uint64_t request_id, prompt, *, bint speculative=True, **params):
        """Queues a request. prompt: list of token ids. Parameters as Session.start. Errors known at once
        (bad grammar, prompt too long, bad token ids) raise here; later ones arrive as Error events."""
        cdef CEngine* e = self.ptr()
        cdef RequestSpec spec
        spec.prompt = prompt
        spec.speculative = speculative
        _fill_request_params(&spec.sampling, &spec.gen, params)
        cdef CStatus st
        with nogil:
            st = e.submit(request_id, move(spec))
        check_status(st)

    def abort(self, uint64_t request_id):
        self.ptr().abort(request_id)

    def pause(self, uint64_t request_id, bint paused=True):
        """Backpressure: a paused request keeps its slot but is skipped by the decode loop."""
        self.ptr().set_paused(request_id, paused)

    def fileno(self):
        return self.ptr().fd()

    def drain(self):
        """Every event since the last drain, as EngineEvent objects."""
        cdef vector[Event] events
        cdef CEngine* e = self.ptr()
        e.drain(&events)
        cdef size_t i
        cdef list out = []
        cdef EngineEvent item
        for i in range(events.size()):
            ev = &events[i]
            item = EngineEvent.__new__(EngineEvent)
            item.request_id = ev.id
            item.kind = <int>ev.kind
            item.token = ev.token
            item.text = ev.text.decode("utf-8", "replace")
            item.finish = ev.finish
            item.n_prompt = ev.n_prompt
            item.n_cached = ev.n_cached
            item.n_generated = ev.n_generated
            item.n_drafted = ev.n_drafted
            item.n_accepted = ev.n_accepted
            item.error_code = ev.error_code
            item.error_message = ev.error.decode("utf-8", "replace") if ev.error.size() else ""
            item.logprob = ev.logprob if ev.has_logprob else None
            item.top_logprobs = [(p.first, p.second) for p in ev.top_logprobs] if ev.has_logprob else []
            out.append(item)
        if out:
            _forward_logs()
        return out

    def stats(self):
        cdef EngineStats s = self.ptr().stats()
        return {
            "requests": s.requests, "finished": s.finished, "aborted": s.aborted, "failed": s.failed,
            "prompt_tokens": s.prompt_tokens, "cached_tokens": s.cached_tokens,
            "generated_tokens": s.generated_tokens, "steps": s.steps, "drafted": s.drafted,
            "accepted": s.accepted, "decode_seconds": s.decode_seconds, "slots_total": s.slots_total,
            "slots_busy": s.slots_busy, "queue_depth": s.queue_depth, "kv_cells_used": s.kv_cells_used,
            "kv_cells_total": s.kv_cells_total, "live_requests": s.live_requests,
            "speculation": s.speculation,
        }

    @property
    def n_ctx(self):
        return self.ptr().n_ctx()

    @property
    def n_ctx_seq(self):
        return self.ptr().n_ctx_seq()

    @property
    def n_slots(self):
        return self.ptr().n_slots()

    def shutdown(self):
        """Stops the decode thread; what is still running ends with Error events. Idempotent."""
        cdef CEngine* e
        if self.c_engine:
            e = self.c_engine.get()
            with nogil:
                e.shutdown()

    def close(self):
        self.shutdown()
        with nogil:
            self.c_engine.reset()
