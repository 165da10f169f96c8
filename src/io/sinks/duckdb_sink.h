// The `duckdb` sink: the local store as a DuckDB database file instead of SQLite
// (<data-dir>/tributary.duckdb by default), an alternative to the `sqlite` sink for
// analytical queries on one machine. It holds the same tables under the same names as
// the SQLite store (readings, windows, quarantine, late, alerts and the view
// latest_windows; columns in docs/SCHEMA.md), with native types: times as TIMESTAMPTZ
// next to their *_us microsecond columns, and the point geometry `geom` as WKB (what
// DuckDB's spatial extension reads with ST_GeomFromWKB).
//
// Writes: Write appends rows to in-memory staging tables through DuckDB's appender (data
// chunks, no SQL per row). Commit moves them in one transaction with INSERT OR IGNORE
// into the keyed tables, so replayed input (at-least-once delivery) stores each row once,
// and counts only the rows actually inserted in the ledger as "<sink name>/<table>".
// Keys: readings (event_time_us, device_id, metric), windows (window_start_us, window,
// group_by, group_key, metric, revision), late (event_time_us, device_id, metric,
// window); quarantine rows have no natural key and are always inserted; alerts are one
// row per alert life, updated by its later events. A failed Commit keeps the staged rows
// for the next one; Close without Commit drops them (they were never durable).
//
// A DuckDB file is opened by one process at a time (DuckDB locks it).
//
// Threading: Open, Write, Commit and Close are called from one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/config.h"
#include "core/pipeline_config.h"
#include "io/connector.h"

namespace tributary {

class Registry;

/// File name used when `path` is not set: <data-dir>/tributary.duckdb.
inline constexpr std::string_view kDuckDbDefaultFileName = "tributary.duckdb";

/// The resolved options of one duckdb sink.
struct DuckDbSinkOptions {
  std::string name = "duckdb";  ///< sink name; ledger keys are "<name>/<table>"
  std::string path;             ///< empty: <data-dir>/tributary.duckdb (resolved in Open)
  bool readings = true;         ///< which tables receive rows
  bool windows = true;
  bool quarantine = true;
  bool late = true;
  int threads = 1;  ///< DuckDB worker threads
};

/// Options of `sinks[] (type: duckdb)`.
const SectionSpec& DuckDbSinkSpec();

/// Read and validate the options of a sink entry of type duckdb.
Result<DuckDbSinkOptions> ReadDuckDbSinkOptions(const SinkEntry& entry);

/// Make a duckdb sink; nothing is opened before Open. Fails when built without DuckDB.
Result<std::unique_ptr<Sink>> MakeDuckDbSink(DuckDbSinkOptions options);

/// Register the `duckdb` sink type.
void RegisterDuckDbSink(Registry& registry);

}  // namespace tributary
