# The compiled mode's configuration check: tests/consumer.cpp, compiled for the compiled mode
# (RECURRENT_EXTERN_TEMPLATES) with two SIMD configurations in turn — x86-64's baseline, and AVX2
# with FMA — and linked against the library (LIBRARY). At least one of them differs from the
# library's; that one must fail to link, naming the library's configuration symbol
# (recurrent_compiled_abi_...), and one that links must be the library's own configuration.
set(configurations "-march=x86-64" "-march=x86-64 -mavx2 -mfma")
set(failed 0)
foreach(configuration IN LISTS configurations)
  separate_arguments(flags UNIX_COMMAND "${configuration}")
  set(args -std=c++17 -O1 ${flags} -DRECURRENT_EXTERN_TEMPLATES)
  foreach(dir IN LISTS INCLUDES)
    list(APPEND args "-I${dir}")
  endforeach()
  execute_process(COMMAND ${COMPILER} ${args} ${SOURCE} ${LIBRARY} ${LINK_FLAGS} -o ${OUTPUT}
                  RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(result EQUAL 0)
    message(STATUS "${configuration}: links (the library's own configuration)")
  else()
    string(FIND "${out}${err}" "recurrent_compiled_abi_" found)
    if(found EQUAL -1)
      message(FATAL_ERROR "${configuration}: failed, but not on the configuration symbol:\n${err}")
    endif()
    string(REGEX MATCH "recurrent_compiled_abi_[A-Za-z0-9_]*" symbol "${err}")
    message(STATUS "${configuration}: refused at link time (undefined ${symbol})")
    math(EXPR failed "${failed} + 1")
  endif()
endforeach()
if(failed EQUAL 0)
  message(FATAL_ERROR "both configurations linked: the library's configuration is not checked")
endif()
