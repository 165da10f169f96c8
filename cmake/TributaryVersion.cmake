# Generate version.cc with the project version and the git commit it was built from.
# The commit is read at build time, so a rebuild after a new commit reports it.
set(TRIBUTARY_VERSION_FILE "${CMAKE_CURRENT_BINARY_DIR}/generated/version.cc")
add_custom_target(tributary_version_gen
  COMMAND ${CMAKE_COMMAND} -DSRC=${CMAKE_CURRENT_SOURCE_DIR} -DOUT=${TRIBUTARY_VERSION_FILE}
          -DVERSION=${PROJECT_VERSION} -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/WriteVersion.cmake
  BYPRODUCTS ${TRIBUTARY_VERSION_FILE}
  COMMENT "Recording the git commit")
