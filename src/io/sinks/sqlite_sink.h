// The `sqlite` sink: a local SQLite store of readings, window results, quarantined
// payloads and late readings (schema and example queries: docs/SCHEMA.md). The file is
// an OGC GeoPackage 1.3 (io/sinks/gpkg.h): readings, windows and late are point feature
// layers with a `geom` column built from their positions, quarantine an attribute table;
// each commit widens the layers' extents in gpkg_contents in the same transaction.
//
// Transactions: the first Write after a commit begins a transaction (BEGIN IMMEDIATE,
// which takes the database's write lock up front). Each Write runs inside a savepoint,
// so a failed Write leaves no partial batch behind and the runtime can retry it as a
// whole. Commit makes everything written so far durable and adds the rows actually
// inserted to the ledger as "<sink name>/<table>". A transaction that reaches
// `batch_rows` rows is committed (and counted) at the end of the Write that filled it,
// which bounds the size of the WAL between periodic commits.
//
// Staged outputs (RunContext::staged_outputs, backfill): a store at the default path is
// written with its rollback journal in memory and synchronous = OFF, and switched to WAL
// mode at Close, since the staging folder is discarded unless the run succeeds.
//
// Close without Commit rolls back what was written since the last commit: the runtime
// always commits before closing on a clean stop, and after a failure the uncommitted
// rows are exactly the ones a restart replays. Close is idempotent.
//
// Duplicates: readings are unique on (device_id, metric, event_time_us), windows on
// (window, group_by, group_key, metric, window_start_us, revision) and late rows on
// (window, device_id, metric, event_time_us). Rows are written with INSERT OR IGNORE
// and only rows actually inserted are counted, so replaying input after a crash
// (at-least-once delivery) stores each row once. Quarantine rows have no natural key
// (two identical payloads may both be bad) and are always inserted.
//
// Threading: Open, Write, Commit and Close are called from one thread at a time, as
// the Sink contract promises; the sink keeps no shared state.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/config.h"
#include "core/pipeline_config.h"
#include "core/time.h"
#include "io/connector.h"

namespace tributary {

class Registry;
class SqliteDb;

/// Version of the schema this build writes (rows of the `schema_version` table).
inline constexpr int kSqliteSchemaVersion = 3;
/// File name used when `path` is not set: <data-dir>/tributary.gpkg.
inline constexpr std::string_view kSqliteDefaultFileName = "tributary.gpkg";

/// PRAGMA synchronous of the store. In WAL mode `normal` survives a crash of the
/// process but may lose the last commits on power loss; `full` survives both.
enum class SqliteSynchronous { kOff, kNormal, kFull };

/// The resolved options of one sqlite sink.
struct SqliteSinkOptions {
  std::string name = "sqlite";  ///< sink name; ledger keys are "<name>/<table>"
  std::string path;             ///< empty: <data-dir>/tributary.gpkg (resolved in Open)
  bool readings = true;         ///< which tables receive rows
  bool windows = true;
  bool quarantine = true;
  bool late = true;
  SqliteSynchronous synchronous = SqliteSynchronous::kNormal;
  int64_t batch_rows = 50000;  ///< commit once a transaction holds this many rows
  DurationUs busy_timeout = 5 * kMicrosPerSecond;  ///< wait this long for a locked database
};

/// Options of `sinks[] (type: sqlite)`.
const SectionSpec& SqliteSinkSpec();

/// Read and validate the options of a sink entry of type sqlite.
Result<SqliteSinkOptions> ReadSqliteSinkOptions(const SinkEntry& entry);

/// Make a sqlite sink; nothing is opened before Open.
std::unique_ptr<Sink> MakeSqliteSink(SqliteSinkOptions options);

/// Create every table, index and view of the store and its GeoPackage metadata if
/// missing (upgrading a version 1 file in place) and record the schema version; fails
/// when the file was written by a newer schema version.
Status CreateSqliteSchema(SqliteDb& db);

/// Register the `sqlite` sink type.
void RegisterSqliteSink(Registry& registry);

}  // namespace tributary
