# Turn one scdoc source into a roff man page:
#   cmake -DSCDOC=/usr/bin/scdoc -DIN=page.1.scd -DOUT=page.1 -P scdoc.cmake
# The page appears only when scdoc succeeds, so that a failed run is run
# again by the next build.
get_filename_component(dir ${OUT} DIRECTORY)
file(MAKE_DIRECTORY ${dir})
execute_process(COMMAND ${SCDOC} INPUT_FILE ${IN} OUTPUT_FILE ${OUT}.tmp
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(REMOVE ${OUT}.tmp)
  message(FATAL_ERROR "scdoc failed on ${IN}: ${rc}")
endif()
file(RENAME ${OUT}.tmp ${OUT})
