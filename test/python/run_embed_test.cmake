# The embedding test (ctest: embed): install the compiler into a temporary
# prefix, configure examples/embed against it as an outside project, build
# it (attnc runs at build time) and run the program.
#
#   cmake -DBUILD_DIR=<attn build> -DSOURCE_DIR=<attn source>
#         -DWORK_DIR=<scratch> [-DGENERATOR=Ninja] -P run_embed_test.cmake
foreach(var BUILD_DIR SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_embed_test.cmake: ${var} is not set")
  endif()
endforeach()
if(NOT GENERATOR)
  set(GENERATOR "Unix Makefiles")
endif()

function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc
    OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "embed test: ${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
step("cmake --install" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")
foreach(f bin/attnc include/attn/runtime.h lib/cmake/AttnCompiler/AttnCompilerConfig.cmake)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "embed test: the install has no ${f}")
  endif()
endforeach()

# A fresh configure that sees only the installed package (no cache from the
# compiler's build, no access to its tree).
step("configure examples/embed" "${CMAKE_COMMAND}"
  -S "${SOURCE_DIR}/examples/embed" -B "${WORK_DIR}/build" -G "${GENERATOR}"
  "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_BUILD_TYPE=Release)
step("build examples/embed" "${CMAKE_COMMAND}" --build "${WORK_DIR}/build")
foreach(f attn/my_attn/libmy_attn.a attn/my_attn/my_attn.h)
  if(NOT EXISTS "${WORK_DIR}/build/${f}")
    message(FATAL_ERROR "embed test: attn_add_kernel_library wrote no ${f}")
  endif()
endforeach()
step("run embed_demo" "${WORK_DIR}/build/embed_demo")
message("${step_output}")
if(NOT step_output MATCHES "embed: OK")
  message(FATAL_ERROR "embed test: embed_demo did not print 'embed: OK'")
endif()
