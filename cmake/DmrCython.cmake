# dmr_cythonize(<out-var> <pyx> DEPENDS ...): run Cython (C++ mode) on a .pyx, return the generated source.
function(dmr_cythonize out pyx)
    cmake_parse_arguments(ARG "" "" "DEPENDS" ${ARGN})
    get_filename_component(name "${pyx}" NAME_WE)
    set(cpp "${CMAKE_CURRENT_BINARY_DIR}/${name}.cpp")
    add_custom_command(
        OUTPUT "${cpp}"
        COMMAND "${Python_EXECUTABLE}" -m cython --cplus -3 --fast-fail
                --module-name "dmr.${name}" -I "${PROJECT_SOURCE_DIR}/pyx" "${pyx}" -o "${cpp}"
        DEPENDS "${pyx}" ${ARG_DEPENDS}
        WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}/pyx"
        COMMENT "Cython ${name}.pyx"
        VERBATIM)
    set(${out} "${cpp}" PARENT_SCOPE)
endfunction()
