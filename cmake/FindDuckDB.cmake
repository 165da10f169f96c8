# Find the DuckDB C API (duckdb.h and libduckdb.so).
#
# Looks first in ${PROJECT_SOURCE_DIR}/.deps/duckdb, where scripts/setup.sh unpacks a
# prebuilt DuckDB when the system has none, then in the system paths (DuckDB_ROOT is
# honoured there). Header and library always come from the same place, so they match.
#
# Defines:
#   DuckDB_FOUND, DuckDB_INCLUDE_DIR, DuckDB_LIBRARY
#   DuckDB_VERSION   when known (from .deps/duckdb/VERSION)
#   DuckDB::duckdb   imported shared library target
include(FindPackageHandleStandardArgs)

set(_duckdb_deps "${PROJECT_SOURCE_DIR}/.deps/duckdb")
# A cached result whose file has gone (say .deps/ was removed) is searched for again.
foreach(_duckdb_var DuckDB_INCLUDE_DIR DuckDB_LIBRARY)
  if(${_duckdb_var} AND NOT EXISTS "${${_duckdb_var}}")
    unset(${_duckdb_var} CACHE)
  endif()
endforeach()
if(EXISTS "${_duckdb_deps}/include/duckdb.h" AND EXISTS "${_duckdb_deps}/lib/libduckdb.so")
  find_path(DuckDB_INCLUDE_DIR duckdb.h PATHS "${_duckdb_deps}/include" NO_DEFAULT_PATH)
  find_library(DuckDB_LIBRARY duckdb PATHS "${_duckdb_deps}/lib" NO_DEFAULT_PATH)
endif()
find_path(DuckDB_INCLUDE_DIR duckdb.h)
find_library(DuckDB_LIBRARY duckdb)

if(DuckDB_INCLUDE_DIR STREQUAL "${_duckdb_deps}/include" AND EXISTS "${_duckdb_deps}/VERSION")
  file(STRINGS "${_duckdb_deps}/VERSION" DuckDB_VERSION LIMIT_COUNT 1)
endif()

find_package_handle_standard_args(DuckDB
  REQUIRED_VARS DuckDB_LIBRARY DuckDB_INCLUDE_DIR
  VERSION_VAR DuckDB_VERSION)

if(DuckDB_FOUND AND NOT TARGET DuckDB::duckdb)
  add_library(DuckDB::duckdb SHARED IMPORTED)
  set_target_properties(DuckDB::duckdb PROPERTIES
    IMPORTED_LOCATION "${DuckDB_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${DuckDB_INCLUDE_DIR}")
endif()
mark_as_advanced(DuckDB_INCLUDE_DIR DuckDB_LIBRARY)
unset(_duckdb_deps)
unset(_duckdb_var)
