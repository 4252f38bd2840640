# Mirrors llama.h: only what the binding calls directly (the rest goes through csrc/).
from libc.stdint cimport int32_t, uint64_t

cdef extern from "llama.h" nogil:
    ctypedef int32_t llama_token
    ctypedef int32_t llama_pos
    ctypedef int32_t llama_seq_id

    cdef struct llama_model
    cdef struct llama_vocab
    cdef struct llama_context

    cdef enum llama_ftype:
        LLAMA_FTYPE_ALL_F32

    const char * llama_print_system_info()
    const char * llama_ftype_name(llama_ftype ftype)
    bint llama_supports_gpu_offload()
    bint llama_supports_mmap()
    bint llama_supports_mlock()
    size_t llama_max_devices()

    const llama_vocab * llama_model_get_vocab(const llama_model * model)
    int32_t llama_model_n_ctx_train(const llama_model * model)
    int32_t llama_model_n_embd(const llama_model * model)
    int32_t llama_model_n_layer(const llama_model * model)
    int32_t llama_model_n_head(const llama_model * model)
    uint64_t llama_model_n_params(const llama_model * model)
    uint64_t llama_model_size(const llama_model * model)
    int32_t llama_model_desc(const llama_model * model, char * buf, size_t buf_size)
    const char * llama_model_chat_template(const llama_model * model, const char * name)
    int32_t llama_model_meta_val_str(const llama_model * model, const char * key, char * buf, size_t buf_size)
    bint llama_model_has_encoder(const llama_model * model)
    bint llama_model_has_decoder(const llama_model * model)

    int32_t llama_vocab_n_tokens(const llama_vocab * vocab)
    llama_token llama_vocab_bos(const llama_vocab * vocab)
    llama_token llama_vocab_eos(const llama_vocab * vocab)
    llama_token llama_vocab_eot(const llama_vocab * vocab)
    llama_token llama_vocab_sep(const llama_vocab * vocab)
    llama_token llama_vocab_nl(const llama_vocab * vocab)
    llama_token llama_vocab_pad(const llama_vocab * vocab)
    bint llama_vocab_get_add_bos(const llama_vocab * vocab)
    bint llama_vocab_get_add_eos(const llama_vocab * vocab)
    bint llama_vocab_get_add_sep(const llama_vocab * vocab)
    bint llama_vocab_is_eog(const llama_vocab * vocab, llama_token token)
    bint llama_vocab_is_control(const llama_vocab * vocab, llama_token token)

    float * llama_get_logits_ith(llama_context * ctx, int32_t i)
