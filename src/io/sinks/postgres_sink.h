// The `postgres` sink: readings, window results, quarantined payloads and late readings
// in PostgreSQL with PostGIS (tables and columns: docs/SCHEMA.md, section PostgreSQL).
//
// Schema: created on Open if missing, in the configured schema: readings, windows,
// quarantine, late and alerts, each with a geometry(Point, 4326) column `geom` and a GiST
// index on it, provenance as jsonb, and the table sink_commits that records every commit
// of every sink. Where the TimescaleDB extension is available, readings is a hypertable;
// otherwise it is partitioned by range of event_time, one partition per calendar month
// (UTC), created when the first row of that month arrives.
//
// Writes: Write encodes rows as binary COPY data in memory (EWKB points with SRID 4326,
// integer timestamps, jsonb). Commit (or a Write that fills `batch_rows`) sends them in
// one transaction: per table a COPY straight into the keyed table inside a savepoint,
// then one row in sink_commits naming the commit. Keys: readings (event_time, device_id,
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
// Threading: Open, Write, Commit and Close are called from one thread at a time.
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
