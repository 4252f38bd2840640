# The one place where dmr's build knobs become upstream GGML_* / LLAMA_* switches.
#
#   DMR_BACKEND       cpu (default) | cuda | rocm | vulkan | metal | opencl   (env DMR_BACKEND via pyproject)
#   DMR_CPU_VARIANTS  OFF (default): one CPU kernel set tuned for this machine (-march=native), static libs.
#                     ON: portable release build - every x86-64 CPU variant as a loadable ggml backend, picked at
#                     run time (what llama.cpp's own releases do); needs shared libraries.
#   DMR_BUILD_TOOLS   OFF (default): also build llama-server and llama-bench from the same tree (benchmarks).

include("${CMAKE_CURRENT_LIST_DIR}/DmrBackends.cmake")
set(DMR_BACKEND "cpu" CACHE STRING "ggml backend to build: ${DMR_BACKENDS}")
set_property(CACHE DMR_BACKEND PROPERTY STRINGS ${DMR_BACKENDS})
string(TOLOWER "${DMR_BACKEND}" DMR_BACKEND)
dmr_check_backend("${DMR_BACKEND}")
option(DMR_CPU_VARIANTS "portable build: all CPU kernel variants, chosen at run time" OFF)
option(DMR_BUILD_TOOLS "also build llama-server and llama-bench for side-by-side benchmarks" OFF)
# CUDA only: GPU architectures to compile for ("90" = H100/H200; a release lists several, e.g. "75;80;86;89;90").
set(DMR_CUDA_ARCHITECTURES "" CACHE STRING "CUDA architectures (empty: ggml's default list)")

# dmr_backend_switches() and dmr_cpu_switches() live in DmrBackends.cmake (tested with `cmake -P`).
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

dmr_cpu_switches("${DMR_CPU_VARIANTS}" DMR_CPU_SWITCHES)
dmr_apply_switches(${DMR_CPU_SWITCHES})

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
