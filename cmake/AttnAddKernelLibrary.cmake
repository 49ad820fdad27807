# attn_add_kernel_library: compile attention cascades with attnc at build time.
#
#   attn_add_kernel_library(<target>
#     SOURCES <file.mlir>...          # cascades (attn dialect); relative paths
#                                     # are taken from the current source dir
#     [TARGETS <cpu-target>]          # host (default), x86_64-avx512, x86_64-avx2
#     [RANK_SIZES <rank>=<n>...]      # static rank sizes (attnc --rank-size)
#     [FLAGS <attnc flag>...]         # more attnc flags (--row-tile=32, ...)
#     [NAME <c-name>])                # library/entry prefix (default: <target>)
#
# All cascades of all SOURCES go into one library: attnc writes
# <bindir>/attn/<target>/lib<NAME>.a and <NAME>.h, with one entry point
# <NAME>_<cascade> per cascade (docs/abi.md). <target> is a STATIC IMPORTED
# library whose include directory holds <NAME>.h and that links pthreads and
# libm; linking it makes the build run attnc first. Cascade symbols must be
# distinct across SOURCES.
#
# attnc is AttnCompiler::attnc (find_package(AttnCompiler)), or the target
# or path in ATTN_ATTNC_COMMAND if set.

# Script mode (used by the function below): concatenate the files
# ATTN_CAT_INPUTS ('|'-separated) into ATTN_CAT_OUTPUT.
if(CMAKE_SCRIPT_MODE_FILE AND DEFINED ATTN_CAT_OUTPUT)
  string(REPLACE "|" ";" inputs "${ATTN_CAT_INPUTS}")
  set(text "")
  foreach(f IN LISTS inputs)
    file(READ "${f}" part)
    string(APPEND text "// ---- ${f}\n${part}\n")
  endforeach()
  file(WRITE "${ATTN_CAT_OUTPUT}" "${text}")
  return()
endif()

function(attn_add_kernel_library target)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "NAME"
    "SOURCES;TARGETS;RANK_SIZES;FLAGS")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "attn_add_kernel_library(${target}): unknown arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "attn_add_kernel_library(${target}): no SOURCES")
  endif()
  if(ARG_NAME)
    set(name "${ARG_NAME}")
  else()
    string(MAKE_C_IDENTIFIER "${target}" name)
  endif()
  if(NOT name MATCHES "^[A-Za-z_][A-Za-z0-9_]*$")
    message(FATAL_ERROR "attn_add_kernel_library(${target}): NAME '${name}' is not a C identifier")
  endif()

  # The CPU target: attnc builds one per library.
  set(cpu_target host)
  list(LENGTH ARG_TARGETS ntargets)
  if(ntargets GREATER 1)
    message(FATAL_ERROR "attn_add_kernel_library(${target}): TARGETS ${ARG_TARGETS}: "
      "attnc builds one CPU target per library; call attn_add_kernel_library once per target "
      "(with different NAMEs)")
  elseif(ntargets EQUAL 1)
    set(cpu_target "${ARG_TARGETS}")
    if(cpu_target STREQUAL "cpu" OR cpu_target STREQUAL "native")
      set(cpu_target host)
    endif()
    if(NOT cpu_target MATCHES "^(host|x86_64-avx512|x86_64-avx2)$")
      message(FATAL_ERROR "attn_add_kernel_library(${target}): unknown target '${ARG_TARGETS}' "
        "(host, x86_64-avx512, x86_64-avx2; GPU targets are not available from attnc yet)")
    endif()
  endif()

  if(ATTN_ATTNC_COMMAND)
    set(attnc "${ATTN_ATTNC_COMMAND}")
  elseif(TARGET AttnCompiler::attnc)
    set(attnc AttnCompiler::attnc)
  else()
    message(FATAL_ERROR "attn_add_kernel_library(${target}): no attnc (find_package(AttnCompiler) first)")
  endif()

  set(sources)
  foreach(src IN LISTS ARG_SOURCES)
    get_filename_component(abs "${src}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    if(NOT EXISTS "${abs}")
      message(FATAL_ERROR "attn_add_kernel_library(${target}): no such source: ${abs}")
    endif()
    list(APPEND sources "${abs}")
  endforeach()

  set(flags "--target=${cpu_target}")
  if(ARG_RANK_SIZES)
    string(REPLACE ";" "," sizes "${ARG_RANK_SIZES}")
    list(APPEND flags "--rank-size=${sizes}")
  endif()
  list(APPEND flags ${ARG_FLAGS})

  set(dir "${CMAKE_CURRENT_BINARY_DIR}/attn/${target}")
  set(lib "${dir}/lib${name}.a")
  set(header "${dir}/${name}.h")
  file(MAKE_DIRECTORY "${dir}")
  list(LENGTH sources nsources)
  if(nsources EQUAL 1)
    set(input "${sources}")
    set(concat_command)
  else()
    # One attnc run over all cascades: one library, one header.
    set(input "${dir}/${name}.all.mlir")
    string(REPLACE ";" "|" joined "${sources}")
    set(concat_command COMMAND "${CMAKE_COMMAND}" "-DATTN_CAT_OUTPUT=${input}"
      "-DATTN_CAT_INPUTS=${joined}" -P "${CMAKE_CURRENT_FUNCTION_LIST_FILE}")
  endif()
  add_custom_command(
    OUTPUT "${lib}" "${header}"
    ${concat_command}
    COMMAND ${attnc} "${input}" -o "${dir}/${name}" ${flags}
    DEPENDS ${sources} ${attnc}
    COMMENT "attnc: ${name} (${cpu_target}) from ${ARG_SOURCES}"
    VERBATIM)
  add_custom_target(${target}_attnc DEPENDS "${lib}" "${header}")

  find_package(Threads REQUIRED)
  add_library(${target} STATIC IMPORTED GLOBAL)
  set_target_properties(${target} PROPERTIES
    IMPORTED_LOCATION "${lib}"
    INTERFACE_INCLUDE_DIRECTORIES "${dir}"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;m")
  add_dependencies(${target} ${target}_attnc)
  set_property(TARGET ${target} PROPERTY ATTN_HEADER "${header}")
  set_property(TARGET ${target} PROPERTY ATTN_NAME "${name}")
endfunction()
