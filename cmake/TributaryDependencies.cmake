# Find every dependency; when one is missing, say which Debian package provides it.
# scripts/setup.sh installs all of them.
include(FindPackageHandleStandardArgs)
find_package(PkgConfig QUIET)

set(TRIBUTARY_MISSING "")
macro(tributary_require found name package)
  if(NOT ${found})
    list(APPEND TRIBUTARY_MISSING "${name} (Debian package ${package})")
  endif()
endmacro()

find_package(Threads REQUIRED)

find_package(simdjson CONFIG QUIET)
tributary_require(simdjson_FOUND "simdjson" "libsimdjson-dev")
find_package(yaml-cpp CONFIG QUIET)
tributary_require(yaml-cpp_FOUND "yaml-cpp" "libyaml-cpp-dev")
find_package(CLI11 CONFIG QUIET)
tributary_require(CLI11_FOUND "CLI11" "libcli11-dev")
find_package(fmt CONFIG QUIET)
tributary_require(fmt_FOUND "fmt" "libfmt-dev")
find_package(spdlog CONFIG QUIET)
tributary_require(spdlog_FOUND "spdlog" "libspdlog-dev")
find_package(SQLite3 QUIET)
tributary_require(SQLite3_FOUND "SQLite3" "libsqlite3-dev")
find_package(PROJ CONFIG QUIET)
tributary_require(PROJ_FOUND "PROJ" "libproj-dev proj-data")
find_package(OpenSSL QUIET)  # Paho's TLS libraries link OpenSSL::SSL
tributary_require(OpenSSL_FOUND "OpenSSL" "libssl-dev")
if(OpenSSL_FOUND)
  find_package(eclipse-paho-mqtt-c CONFIG QUIET)
endif()
tributary_require(eclipse-paho-mqtt-c_FOUND "Eclipse Paho MQTT C" "libpaho-mqtt-dev")
find_package(GDAL CONFIG QUIET)
tributary_require(GDAL_FOUND "GDAL/OGR" "libgdal-dev")
find_package(GEOS CONFIG QUIET)  # the reentrant C API: GEOS::geos_c
tributary_require(GEOS_FOUND "GEOS" "libgeos-dev")
find_package(nanoflann CONFIG QUIET)
tributary_require(nanoflann_FOUND "nanoflann" "libnanoflann-dev")
find_package(Eigen3 CONFIG QUIET)
tributary_require(Eigen3_FOUND "Eigen" "libeigen3-dev")
find_package(CURL QUIET)
tributary_require(CURL_FOUND "libcurl" "libcurl4-openssl-dev")
if(PkgConfig_FOUND)
  pkg_check_modules(RDKAFKA QUIET IMPORTED_TARGET rdkafka)
  pkg_check_modules(LIBPQ QUIET IMPORTED_TARGET libpq)
endif()
tributary_require(RDKAFKA_FOUND "librdkafka" "librdkafka-dev")
# S2 geometry (alternative spatial keys): no CMake or pkg-config file in Debian's package.
find_path(S2_INCLUDE_DIR s2/s2cell_id.h)
find_library(S2_LIBRARY s2)
if(S2_INCLUDE_DIR AND S2_LIBRARY)
  add_library(tributary_s2 INTERFACE)
  target_include_directories(tributary_s2 SYSTEM INTERFACE "${S2_INCLUDE_DIR}")
  target_link_libraries(tributary_s2 INTERFACE "${S2_LIBRARY}")
  set(S2_FOUND TRUE)
endif()
tributary_require(S2_FOUND "S2 geometry" "libs2-dev")
tributary_require(LIBPQ_FOUND "libpq" "libpq-dev")
# Backfill: compressed inputs (.gz, .zst) and the NetCDF export of surfaces. Their headers
# are in the default include path, so linking adds no compile flags.
find_package(ZLIB QUIET)
tributary_require(ZLIB_FOUND "zlib" "zlib1g-dev")
find_library(TRIBUTARY_ZSTD_LIBRARY zstd)
find_path(TRIBUTARY_ZSTD_INCLUDE_DIR zstd.h)
if(TRIBUTARY_ZSTD_LIBRARY AND TRIBUTARY_ZSTD_INCLUDE_DIR)
  set(TRIBUTARY_ZSTD_FOUND TRUE)
endif()
tributary_require(TRIBUTARY_ZSTD_FOUND "libzstd" "libzstd-dev")
find_library(TRIBUTARY_NETCDF_LIBRARY netcdf)
find_path(TRIBUTARY_NETCDF_INCLUDE_DIR netcdf.h)
if(TRIBUTARY_NETCDF_LIBRARY AND TRIBUTARY_NETCDF_INCLUDE_DIR)
  set(TRIBUTARY_NETCDF_FOUND TRUE)
endif()
tributary_require(TRIBUTARY_NETCDF_FOUND "netCDF" "libnetcdf-dev")

if(TRIBUTARY_BUILD_TESTS)
  find_package(GTest CONFIG QUIET)
  tributary_require(GTest_FOUND "GoogleTest" "libgtest-dev libgmock-dev")
endif()
if(TRIBUTARY_BUILD_BENCH)
  find_package(benchmark CONFIG QUIET)
  tributary_require(benchmark_FOUND "Google Benchmark" "libbenchmark-dev")
endif()

if(TRIBUTARY_MISSING)
  list(JOIN TRIBUTARY_MISSING "\n  - " missing_text)
  message(FATAL_ERROR
    "tributary cannot be configured; missing dependencies:\n  - ${missing_text}\n"
    "Install them with: sudo scripts/setup.sh --deps-only")
endif()

add_library(tributary_deps INTERFACE)
target_link_libraries(tributary_deps INTERFACE
  Threads::Threads simdjson::simdjson yaml-cpp CLI11::CLI11 fmt::fmt spdlog::spdlog
  SQLite::SQLite3 PROJ::proj eclipse-paho-mqtt-c::paho-mqtt3cs
  eclipse-paho-mqtt-c::paho-mqtt3as GDAL::GDAL GEOS::geos_c nanoflann::nanoflann
  Eigen3::Eigen CURL::libcurl PkgConfig::RDKAFKA PkgConfig::LIBPQ)
target_link_libraries(tributary_deps INTERFACE tributary_s2)
# SHA-256 of backfill inputs and configs (run manifests).
target_link_libraries(tributary_deps INTERFACE OpenSSL::Crypto)
target_link_libraries(tributary_deps INTERFACE ZLIB::ZLIB "${TRIBUTARY_ZSTD_LIBRARY}"
                                               "${TRIBUTARY_NETCDF_LIBRARY}")

# DuckDB (C API) is optional: with it, TRIBUTARY_HAVE_DUCKDB is defined. scripts/setup.sh
# unpacks a prebuilt copy into .deps/duckdb when the system has none (cmake/FindDuckDB.cmake).
find_package(DuckDB QUIET)
if(DuckDB_FOUND)
  target_link_libraries(tributary_deps INTERFACE DuckDB::duckdb)
  target_compile_definitions(tributary_deps INTERFACE TRIBUTARY_HAVE_DUCKDB)
  # libduckdb.so may live outside the loader's paths: the build tree's binaries get its
  # directory in their RPATH from CMake, installed ones keep it through this setting.
  set(CMAKE_INSTALL_RPATH_USE_LINK_PATH ON)
  message(STATUS "DuckDB: ${DuckDB_LIBRARY} ${DuckDB_VERSION}")
else()
  message(STATUS "DuckDB not found: building without it "
                 "(get it with: scripts/setup.sh --deps-only)")
endif()

# cpp-httplib (HTTP API): Debian ships it compiled; its pkg-config file carries the feature
# macros (TLS, compression) the library was built with, which every includer must share.
if(PkgConfig_FOUND)
  pkg_check_modules(CPPHTTPLIB QUIET IMPORTED_TARGET cpp-httplib)
endif()
if(NOT CPPHTTPLIB_FOUND)
  message(FATAL_ERROR "tributary cannot be configured; missing dependency:\n"
                      "  - cpp-httplib (Debian package libcpp-httplib-dev)\n"
                      "Install it with: sudo scripts/setup.sh --deps-only")
endif()
target_link_libraries(tributary_deps INTERFACE PkgConfig::CPPHTTPLIB)
