# dmr's own CPU kernels, put in front of llama.cpp's without editing any llama.cpp file.
#
#   DMR_KERNELS  ON (default): csrc/kernels/q4_1_gemm.cpp answers ggml's Q4_1 x Q8_1 matrix products on
#                CPUs with AVX512-VNNI (see that file for why and how). OFF: stock llama.cpp kernels; the
#                benchmarks build llama.cpp's own tools this way (bench/tools.py), so the peers run upstream code.
#
# The hook: llama.cpp's llamafile/sgemm.cpp is compiled with llamafile_sgemm renamed, and our file, added to
# every ggml CPU backend target, defines llamafile_sgemm and forwards what it does not handle to the original.
option(DMR_KERNELS "dmr's own CPU kernels in front of llama.cpp's (csrc/kernels)" ON)

function(dmr_attach_kernels)
    if(NOT DMR_KERNELS OR NOT GGML_LLAMAFILE)
        message(STATUS "dmr: own CPU kernels off (DMR_KERNELS=${DMR_KERNELS}, GGML_LLAMAFILE=${GGML_LLAMAFILE})")
        return()
    endif()
    set(ggml_src "${DMR_LLAMA_DIR}/ggml/src")
    # The native build defines its ggml-cpu target in ggml/src/ggml-cpu, a portable build its variants
    # (ggml-cpu-<variant>) in ggml/src; a source property holds per directory, so it is set in both.
    set(attached "")
    foreach(dir "${ggml_src}" "${ggml_src}/ggml-cpu")
        set_source_files_properties("${ggml_src}/ggml-cpu/llamafile/sgemm.cpp"
            DIRECTORY "${dir}"
            PROPERTIES COMPILE_DEFINITIONS "llamafile_sgemm=dmr_upstream_llamafile_sgemm")
        get_property(targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
        foreach(target IN LISTS targets)
            # not ggml-cpu-<variant>-feats: those only detect the CPU's features and link into the variant
            if(target MATCHES "^ggml-cpu(-.+)?$" AND NOT target MATCHES "-feats$")
                target_sources(${target} PRIVATE "${PROJECT_SOURCE_DIR}/csrc/kernels/q4_1_gemm.cpp")
                list(APPEND attached ${target})
            endif()
        endforeach()
    endforeach()
    if(NOT attached)
        message(FATAL_ERROR "dmr: no ggml CPU backend target found in ${ggml_src} to attach csrc/kernels to")
    endif()
    message(STATUS "dmr: own CPU kernels attached to ${attached}")
endfunction()
