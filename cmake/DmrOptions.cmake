# The one place where dmr's build knobs become upstream GGML_* / LLAMA_* switches.
#
#   DMR_BACKEND       cpu (default) | cuda | rocm | vulkan | metal | opencl   (env DMR_BACKEND via pyproject)
#   DMR_CPU_VARIANTS  OFF (default): one CPU kernel set tuned for this machine (-march=native), static libs.
#                     ON: portable release build - every x86-64 CPU variant as a loadable ggml backend, picked at
#                     run time (what llama.cpp's own releases do); needs shared libraries.
#   DMR_BUILD_TOOLS   OFF (default): also build llama-server and llama-bench from the same tree (benchmarks).

set(DMR_BACKENDS cpu cuda rocm vulkan metal opencl)
set(DMR_BACKEND "cpu" CACHE STRING "ggml backend to build: ${DMR_BACKENDS}")
set_property(CACHE DMR_BACKEND PROPERTY STRINGS ${DMR_BACKENDS})
string(TOLOWER "${DMR_BACKEND}" DMR_BACKEND)
if(NOT DMR_BACKEND IN_LIST DMR_BACKENDS)
    message(FATAL_ERROR "DMR_BACKEND='${DMR_BACKEND}' is not one of: ${DMR_BACKENDS}")
endif()
option(DMR_CPU_VARIANTS "portable build: all CPU kernel variants, chosen at run time" OFF)
option(DMR_BUILD_TOOLS "also build llama-server and llama-bench for side-by-side benchmarks" OFF)
# CUDA only: GPU architectures to compile for ("90" = H100/H200; a release lists several, e.g. "75;80;86;89;90").
set(DMR_CUDA_ARCHITECTURES "" CACHE STRING "CUDA architectures (empty: ggml's default list)")

# dmr_backend_switches(<backend> <out-var>): the GGML_* cache values a backend needs, as a list of NAME=VALUE.
# A function of its own so that tests/cmake can check the mapping of every backend without compiling anything.
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

function(dmr_apply_switches)
    foreach(item IN LISTS ARGN)
        string(REGEX REPLACE "=.*" "" name "${item}")
        string(REGEX REPLACE "^[^=]*=" "" value "${item}")
        set(${name} ${value} CACHE BOOL "set by dmr (DmrOptions.cmake)" FORCE)
    endforeach()
endfunction()

dmr_backend_switches("${DMR_BACKEND}" DMR_GGML_SWITCHES)
if(DMR_BACKEND STREQUAL "cuda" AND DMR_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "${DMR_CUDA_ARCHITECTURES}" CACHE STRING "set by dmr" FORCE)
endif()
dmr_apply_switches(${DMR_GGML_SWITCHES})

if(DMR_CPU_VARIANTS)
    dmr_apply_switches(GGML_NATIVE=OFF GGML_BACKEND_DL=ON GGML_CPU_ALL_VARIANTS=ON BUILD_SHARED_LIBS=ON)
else()
    dmr_apply_switches(GGML_NATIVE=ON GGML_BACKEND_DL=OFF GGML_CPU_ALL_VARIANTS=OFF BUILD_SHARED_LIBS=OFF)
endif()

# Only the libraries: no tests, examples, web UI or network code inside the module.
dmr_apply_switches(LLAMA_BUILD_TESTS=OFF LLAMA_BUILD_EXAMPLES=OFF LLAMA_BUILD_APP=OFF LLAMA_BUILD_UI=OFF
                   LLAMA_OPENSSL=OFF LLAMA_BUILD_IS_DEV=OFF GGML_BUILD_TESTS=OFF GGML_BUILD_EXAMPLES=OFF)
if(DMR_BUILD_TOOLS)
    dmr_apply_switches(LLAMA_BUILD_COMMON=ON LLAMA_BUILD_TOOLS=ON LLAMA_BUILD_SERVER=ON)
else()
    dmr_apply_switches(LLAMA_BUILD_COMMON=OFF LLAMA_BUILD_TOOLS=OFF LLAMA_BUILD_SERVER=OFF)
endif()
set(CMAKE_POSITION_INDEPENDENT_CODE ON)
message(STATUS "dmr: backend=${DMR_BACKEND} cpu_variants=${DMR_CPU_VARIANTS} tools=${DMR_BUILD_TOOLS}")
