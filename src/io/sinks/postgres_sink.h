// The `postgres` sink: readings, window results, quarantined payloads and late readings
// in PostgreSQL with PostGIS (tables and columns: docs/SCHEMA.md, section PostgreSQL).
//
// Schema: created on Open if missing, in the configured schema: readings, windows,
// quarantine, late and alerts, each with a geometry(Point, 4326) column `geom` and a GiST
// index on it, provenance as jsonb, and the table sink_commits that records every commit
// of every sink. Where the TimescaleDB extension is available, readings is a hypertable;
// otherwise it is partitioned by range of event_time, one partition per UTC day (per month
// in stores created before), created when the first row of that day arrives.
//
// The GiST index of readings: with `geom_index: on_close` (the default) each partition
// gets its own index once it is closed, that is once readings from an hour past its end
// are committed (a sorted build, about five times cheaper per row than indexing each row
// as it arrives); the open partition has none. With `on_insert` the whole table has one
// index and every row is indexed on insert. A store keeps the layout it was created with
// where the two cannot coexist (a table-wide index covers every partition).
//
// Writes: Write encodes rows as binary COPY data in memory (EWKB points with SRID 4326,
// integer timestamps, jsonb). Commit (or a Write that fills `batch_rows`) sends them in
// one transaction per connection: per table a COPY straight into the keyed table inside
// a savepoint, then one row in sink_commits naming the commit. Without checkpoints the
// readings are shared out by device over `connections` connections that commit in
// parallel (each its own transaction and sink_commits row; a commit that fails on one
// is retried on that one only); windows, quarantine and late rows, and with checkpoints
// every row, go over the first in one transaction. Keys: readings (event_time, device_id,
// metric), windows (window_start, window, group_by, group_key, metric, revision), late
// (event_time, device_id, metric, window), quarantine (arrival_time, reason, device,
// metric, md5 of detail and raw). When a COPY hits a key already stored (SQLSTATE 23505:
// a replay after a crash or a lost acknowledgement), the transaction goes back to the
// savepoint and that table's rows go through a temporary staging table and INSERT ...
// SELECT ... ON CONFLICT DO NOTHING. Re-delivered rows are ignored either way, so
// at-least-once delivery stores each row once, and the ledger counts only rows actually
// inserted ("<sink name>/<table>").
// When the connection breaks during COMMIT the outcome is unknown; the retry first looks
// up its commit in sink_commits, so a commit is neither applied nor counted twice.
//
// Reconnects: a lost connection is re-established with exponential backoff and jitter
// (from `reconnect_backoff` doubling up to `reconnect_backoff_max`, each wait drawn
// between half and all of the current step) for at most `retry_for`; then the Write or
// Commit fails as retryable and keeps its rows, so a later call sends them.
//
// Threading: Open, Write, Commit and Close are called from one thread at a time; a
// commit runs the connections after the first on threads of its own and joins them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/config.h"
#include "core/pipeline_config.h"
#include "core/time.h"
#include "io/connector.h"

namespace tributary {

class Registry;

/// The resolved options of one postgres sink.
struct PostgresSinkOptions {
  std::string name = "postgres";  ///< sink name; ledger keys are "<name>/<table>"
  std::string conninfo;           ///< libpq connection string or postgresql:// URI
  std::string schema = "public";  ///< where the tables live (created if missing)
  bool readings = true;           ///< which tables receive rows
  bool windows = true;
  bool quarantine = true;
  bool late = true;
  int64_t batch_rows = 100000;  ///< send once this many rows are buffered
  /// Connections committing readings in parallel (without checkpoints).
  int connections = 2;
  /// Index readings.geom per partition once the partition is closed (true), or the
  /// whole table on insert (false).
  bool geom_index_on_close = true;
  DurationUs connect_timeout = 5 * kMicrosPerSecond;
  DurationUs reconnect_backoff = 200 * kMicrosPerMilli;
  DurationUs reconnect_backoff_max = 10 * kMicrosPerSecond;
  DurationUs retry_for = 60 * kMicrosPerSecond;  ///< keep reconnecting this long per call
};

/// Options of `sinks[] (type: postgres)`.
const SectionSpec& PostgresSinkSpec();

/// Read and validate the options of a sink entry of type postgres.
Result<PostgresSinkOptions> ReadPostgresSinkOptions(const SinkEntry& entry);

/// Make a postgres sink; nothing is connected before Open.
std::unique_ptr<Sink> MakePostgresSink(PostgresSinkOptions options);

/// Register the `postgres` sink type.
void RegisterPostgresSink(Registry& registry);

}  // namespace tributary
