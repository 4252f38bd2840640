# Mirrors csrc/*.h. C++ classes appear here under their C++ names; the Python wrappers add no prefix.
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libcpp cimport bool as cbool
from libcpp.memory cimport unique_ptr
from libcpp.pair cimport pair
from libcpp.string cimport string
from libcpp.vector cimport vector

from includes.llama cimport llama_context, llama_model, llama_token, llama_vocab


cdef extern from "status.h" namespace "dmr" nogil:
    cdef enum class Code(int):
        Ok
        InvalidInput
        NotFound
        NotGguf
        CorruptModel
        Unsupported
        ContextFull
        Aborted
        OutOfMemory
        Fatal

    cdef cppclass CStatus "dmr::Status":
        Code code
        string msg
        cbool ok()


cdef extern from "log_sink.h" namespace "dmr" nogil:
    cdef cppclass LogLine:
        int level
        string text
    void log_install()
    void log_set_min_level(int level)
    vector[LogLine] log_drain()


cdef extern from "gguf_info.h" namespace "dmr" nogil:
    cdef cppclass GgufKV:
        string key
        int type
        int64_t i
        double f
        string s
        int arr_type
        int64_t arr_len
        vector[string] arr_str
        vector[double] arr_num

    cdef cppclass GgufInfo:
        uint32_t version
        uint64_t file_size
        uint64_t data_offset
        int64_t n_tensors
        uint64_t n_params
        uint64_t tensor_bytes
        vector[GgufKV] kvs
        vector[pair[string, int64_t]] tensor_types

    CStatus gguf_read_info(const string& path, GgufInfo* out)


cdef extern from "model.h" namespace "dmr" nogil:
    cdef cppclass ModelParams:
        int32_t n_gpu_layers
        cbool use_mmap
        cbool use_mlock
        cbool repack
        cbool (*progress)(float, void*) noexcept
        void* progress_user

    cdef cppclass CModel "dmr::Model":
        @staticmethod
        CStatus load(const string& path, const ModelParams& params, unique_ptr[CModel]* out)
        llama_model* get() const
        const llama_vocab* vocab() const
        CStatus tokenize(const string& text, cbool add_special, cbool parse_special, vector[llama_token]* out) const
        CStatus detokenize(const vector[llama_token]& tokens, cbool remove_special, cbool unparse_special,
                           string* out) const
        string token_to_piece(llama_token token, cbool special) const
        int32_t n_vocab() const

    void backend_init()


cdef extern from "context.h" namespace "dmr" nogil:
    cdef cppclass ContextParams:
        uint32_t n_ctx
        uint32_t n_batch
        uint32_t n_ubatch
        uint32_t n_seq_max
        int32_t n_threads
        int32_t n_threads_batch
        int32_t flash_attn
        cbool embeddings
        int32_t pooling
        cbool kv_unified


cdef extern from "sampling.h" namespace "dmr" nogil:
    cdef cppclass SamplingParams:
        float temperature
        int32_t top_k
        float top_p
        float min_p
        float repeat_penalty
        float presence_penalty
        float frequency_penalty
        int32_t penalty_last_n
        uint32_t seed
        vector[pair[llama_token, float]] logit_bias
        string grammar
        string grammar_root
        vector[string] grammar_triggers
        int32_t n_probs


cdef extern from "session.h" namespace "dmr" nogil:
    cdef enum class Finish(int):
        Running
        Stop
        Length

    cdef cppclass GenerateParams:
        int32_t max_tokens
        vector[string] stop
        cbool ignore_eos

    cdef cppclass Step:
        llama_token token
        string text
        Finish finish

    cdef cppclass CSession "dmr::Session":
        @staticmethod
        CStatus create(const CModel* model, const ContextParams& params, unique_ptr[CSession]* out)
        CStatus start(const vector[llama_token]& prompt, const SamplingParams& sampling, const GenerateParams& gen)
        CStatus next(Step* step)
        void abort()
        void reset()
        uint32_t n_ctx() const
        int32_t n_prompt() const
        int32_t n_cached() const
        int32_t n_generated() const
        const vector[llama_token]& kv_tokens() const
        llama_context* ctx() const


cdef extern from "embedding.h" namespace "dmr" nogil:
    cdef cppclass CEmbedder "dmr::Embedder":
        @staticmethod
        CStatus create(const CModel* model, ContextParams params, unique_ptr[CEmbedder]* out)
        int32_t dim() const
        cbool is_rank() const
        int32_t pooling() const
        uint32_t max_tokens() const
        CStatus embed(const vector[vector[llama_token]]& inputs, cbool normalize, float* out)
        void abort()


cdef extern from "event_queue.h" namespace "dmr" nogil:
    cdef enum class EventKind(int):
        Token
        Done
        Error

    cdef cppclass Event:
        uint64_t id
        EventKind kind
        llama_token token
        string text
        int32_t finish
        int32_t n_prompt
        int32_t n_cached
        int32_t n_generated
        int32_t n_drafted
        int32_t n_accepted
        int32_t error_code
        string error
        cbool has_logprob
        float logprob
        vector[pair[int32_t, float]] top_logprobs


cdef extern from "speculative.h" namespace "dmr" nogil:
    cdef enum class SpecType(int):
        Off
        Ngram
        DraftModel

    cdef cppclass SpecParams:
        SpecType type
        int32_t n_max
        int32_t ngram_min
        int32_t ngram_max
        float min_acceptance
        cbool force
        ContextParams draft_ctx


cdef extern from "engine.h" namespace "dmr" nogil:
    cdef cppclass EngineParams:
        ContextParams ctx
        int32_t n_slots
        int32_t prefill_chunk
        int32_t prefill_group
        cbool kv_unified
        SpecParams spec
        string step_trace

    cdef cppclass RequestSpec:
        vector[llama_token] prompt
        SamplingParams sampling
        GenerateParams gen
        cbool speculative

    cdef cppclass EngineStats:
        uint64_t requests
        uint64_t finished
        uint64_t aborted
        uint64_t failed
        uint64_t prompt_tokens
        uint64_t cached_tokens
        uint64_t generated_tokens
        uint64_t steps
        uint64_t drafted
        uint64_t accepted
        double decode_seconds
        int32_t slots_total
        int32_t slots_busy
        int32_t queue_depth
        int64_t kv_cells_used
        int64_t kv_cells_total
        int32_t live_requests
        int32_t speculation

    cdef cppclass CEngine "dmr::Engine":
        @staticmethod
        CStatus create(const CModel* model, const EngineParams& params, const CModel* draft,
                       unique_ptr[CEngine]* out)
        CStatus submit(uint64_t id, RequestSpec spec)
        void abort(uint64_t id)
        void set_paused(uint64_t id, cbool paused)
        int fd() const
        void drain(vector[Event]* out)
        EngineStats stats() const
        uint32_t n_ctx() const
        uint32_t n_ctx_seq() const
        int32_t n_slots() const
        void shutdown()


cdef extern from "cpu_matmul.h" namespace "dmr" nogil:
    CStatus cpu_mul_mat(int weight_type, const void * weights, size_t weights_size, int64_t rows, int64_t k,
                        const float * activations, int64_t n, int n_threads, float * out)
    cdef enum class KernelState(int):
        Absent
        Off
        Active
        Unknown
    KernelState q4_1_kernel_state()
