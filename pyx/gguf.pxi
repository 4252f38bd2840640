# GGUF metadata without loading tensors (ggml's gguf_* reader through csrc/gguf_info.h).
from includes.dmr_core cimport GgufInfo, GgufKV, gguf_read_info
from includes.llama cimport llama_ftype, llama_ftype_name

cdef int _GGUF_TYPE_STRING = 8
cdef int _GGUF_TYPE_FLOAT32 = 6
cdef int _GGUF_TYPE_FLOAT64 = 12
cdef int _GGUF_TYPE_BOOL = 7
cdef int _GGUF_TYPE_ARRAY = 9


class GgufArray:
    """An array value too long to be worth materialising (the tokenizer's vocabulary, merges, ...)."""

    __slots__ = ("element_type", "length")

    def __init__(self, element_type, length):
        self.element_type = element_type
        self.length = length

    def __len__(self):
        return self.length

    def __repr__(self):
        return f"GgufArray(element_type={self.element_type}, length={self.length})"


cdef object _kv_value(const GgufKV& kv):
    cdef size_t j
    if kv.type == _GGUF_TYPE_STRING:
        return kv.s.decode("utf-8", "replace")
    if kv.type == _GGUF_TYPE_FLOAT32 or kv.type == _GGUF_TYPE_FLOAT64:
        return kv.f
    if kv.type == _GGUF_TYPE_BOOL:
        return bool(kv.i)
    if kv.type == _GGUF_TYPE_ARRAY:
        if <size_t>kv.arr_len == kv.arr_str.size() and kv.arr_type == _GGUF_TYPE_STRING:
            return [kv.arr_str[j].decode("utf-8", "replace") for j in range(kv.arr_str.size())]
        if <size_t>kv.arr_len == kv.arr_num.size() and kv.arr_type != _GGUF_TYPE_STRING:
            if kv.arr_type in (_GGUF_TYPE_FLOAT32, _GGUF_TYPE_FLOAT64):
                return [kv.arr_num[j] for j in range(kv.arr_num.size())]
            return [int(kv.arr_num[j]) for j in range(kv.arr_num.size())]
        return GgufArray(kv.arr_type, kv.arr_len)
    return kv.i


def read_gguf_info(path):
    """Header of a GGUF file as a dict: the raw key/values under "metadata" plus the derived facts
    (architecture, context_length, block_count, embedding_length, vocab_size, file_type, parameters,
    chat_template, special token ids, tensor type histogram, sizes). Raises dmr.errors classes."""
    cdef string c_path = _os.fsencode(path)
    cdef GgufInfo info
    cdef CStatus st
    with nogil:
        st = gguf_read_info(c_path, &info)
    check_status(st)
    cdef size_t i
    metadata = {}
    for i in range(info.kvs.size()):
        metadata[info.kvs[i].key.decode("utf-8", "replace")] = _kv_value(info.kvs[i])
    arch = metadata.get("general.architecture", "")

    def arch_key(name):
        return metadata.get(f"{arch}.{name}")

    file_type = metadata.get("general.file_type")
    tokens = metadata.get("tokenizer.ggml.tokens")
    special = {}
    for name in ("bos", "eos", "eot", "unknown", "padding", "seperator", "separator", "mask"):
        value = metadata.get(f"tokenizer.ggml.{name}_token_id")
        if value is not None:
            special[name] = value
    return {
        "path": _os.fspath(path),
        "version": info.version,
        "file_size": info.file_size,
        "tensor_bytes": info.tensor_bytes,
        "n_tensors": info.n_tensors,
        "parameters": info.n_params,
        "architecture": arch,
        "name": metadata.get("general.name"),
        "context_length": arch_key("context_length"),
        "block_count": arch_key("block_count"),
        "embedding_length": arch_key("embedding_length"),
        "head_count": arch_key("attention.head_count"),
        "vocab_size": len(tokens) if tokens is not None else arch_key("vocab_size"),
        "file_type": file_type,
        "quantization": llama_ftype_name(<llama_ftype>file_type).decode() if file_type is not None else None,
        "chat_template": metadata.get("tokenizer.chat_template"),
        "special_tokens": special,
        "tensor_types": {t.first.decode(): t.second for t in info.tensor_types},
        "metadata": metadata,
    }
