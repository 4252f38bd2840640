# dmr's backend table: which DMR_BACKEND values exist and which upstream GGML_* switches each one needs.
# Pure functions with no project(), compiler or cache access, so that tests/build/test_backend_options.py can
# check every backend with `cmake -P` on a machine that has none of the toolchains. DmrOptions.cmake applies them.

set(DMR_BACKENDS cpu cuda rocm vulkan metal opencl)

# dmr_check_backend(<backend>): stop configuration with one clear line when <backend> is not a known one.
function(dmr_check_backend backend)
    if(NOT backend IN_LIST DMR_BACKENDS)
        message(FATAL_ERROR "DMR_BACKEND='${backend}' is not one of: ${DMR_BACKENDS}")
    endif()
endfunction()

# dmr_backend_switches(<backend> <out-var>): the GGML_* cache values a backend needs, as a list of NAME=VALUE.
function(dmr_backend_switches backend out)
    set(sw GGML_CUDA=OFF GGML_HIP=OFF GGML_VULKAN=OFF GGML_METAL=OFF GGML_OPENCL=OFF)
    if(backend STREQUAL "cuda")
        # No VMM: the driver API's virtual memory is not in every container runtime (environment.md).
        list(APPEND sw GGML_CUDA=ON GGML_CUDA_NO_VMM=ON)
    elseif(backend STREQUAL "rocm")
        list(APPEND sw GGML_HIP=ON)
    elseif(backend STREQUAL "vulkan")
        list(APPEND sw GGML_VULKAN=ON)
    elseif(backend STREQUAL "metal")
        list(APPEND sw GGML_METAL=ON GGML_METAL_EMBED_LIBRARY=ON)
    elseif(backend STREQUAL "opencl")
        # Adreno kernels only build for Adreno targets; the generic OpenCL path is kept.
        list(APPEND sw GGML_OPENCL=ON GGML_OPENCL_USE_ADRENO_KERNELS=OFF GGML_OPENCL_EMBED_KERNELS=ON)
    endif()
    list(FILTER sw EXCLUDE REGEX "^$")
    # later entries win: drop the default OFF of a switch that was turned on
    set(result "")
    foreach(item IN LISTS sw)
        string(REGEX REPLACE "=.*" "" name "${item}")
        list(FILTER result EXCLUDE REGEX "^${name}=")
        list(APPEND result "${item}")
    endforeach()
    set(${out} "${result}" PARENT_SCOPE)
endfunction()

# dmr_cpu_switches(<variants> <out-var>): native single-CPU build, or the portable release build that carries
# every CPU kernel variant as a loadable ggml backend (shared libraries, picked at run time).
function(dmr_cpu_switches variants out)
    if(variants)
        set(${out} GGML_NATIVE=OFF GGML_BACKEND_DL=ON GGML_CPU_ALL_VARIANTS=ON BUILD_SHARED_LIBS=ON PARENT_SCOPE)
    else()
        set(${out} GGML_NATIVE=ON GGML_BACKEND_DL=OFF GGML_CPU_ALL_VARIANTS=OFF BUILD_SHARED_LIBS=OFF PARENT_SCOPE)
    endif()
endfunction()
