# Compiles SOURCE (with the include directories INCLUDES) and passes only if the compiler fails
# and its first error contains MESSAGE: what a user sees first when a type misses the cell
# contract.
set(args -std=c++17 -fsyntax-only)
foreach(dir IN LISTS INCLUDES)
  list(APPEND args "-I${dir}")
endforeach()
execute_process(COMMAND ${COMPILER} ${args} ${SOURCE}
                RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(result EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled; it must not")
endif()
string(REGEX MATCH "error: [^\n]*" first "${err}")
string(FIND "${first}" "${MESSAGE}" found)
if(found EQUAL -1)
  message(FATAL_ERROR "the first error of ${SOURCE} is\n  ${first}\nnot one containing\n  ${MESSAGE}")
endif()
message(STATUS "first error: ${first}")
