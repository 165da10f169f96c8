// The `parquet` sink: an archive of readings, window results, quarantined payloads and
// late readings as Hive-partitioned, zstd-compressed GeoParquet files, written through
// DuckDB's C API (layout and columns: docs/SCHEMA.md).
//
//   <path>/readings/date=2024-05-01/metric=pm25/part-000007.parquet
//   <path>/windows/date=.../metric=.../part-....parquet   (date of window_start)
//   <path>/late/date=.../metric=.../part-....parquet      (date of event_time)
//   <path>/quarantine/date=.../part-....parquet           (date of arrival_time)
//
// Buffering: Write appends rows to in-memory DuckDB tables (one per table, through the
// appender's data-chunk interface). Commit writes every partition holding buffered rows
// to new files and empties the buffers: a partition larger than `target_file_bytes`
// (estimated from the files already written) is split over several files. Files are
// immutable once visible; each commit adds files, never rewrites one.
//
// Visibility: each file is written as `.part-<seq>.parquet.tmp` in its partition folder,
// flushed to disk and renamed to `part-<seq>.parquet`, so readers globbing `*.parquet`
// never see a partial file. Leftover `.tmp` files (a crash mid-commit) are removed at
// Open. Sequence numbers are unique within the archive: Open continues after the highest
// one found. One process writes one archive folder.
//
// Ledger: after all files of a table are renamed, Commit adds their rows as
// "<sink name>/<table>". A Commit that fails part-way keeps the rows of the partitions
// not yet written and returns the error; the next Commit writes the rest. A crash
// part-way through a commit leaves the renamed files in place, and the replayed input
// writes those rows again: the archive is at-least-once (deduplicate on the key columns
// when reading, see docs/SCHEMA.md).
//
// Threading: Open, Write, Commit and Close are called from one thread at a time, as the
// Sink contract promises. DuckDB uses `threads` worker threads of its own while it
// writes files.
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

/// Folder used when `path` is not set: <data-dir>/archive.
inline constexpr std::string_view kParquetDefaultFolder = "archive";

/// Column compression of the Parquet files.
enum class ParquetCompression { kZstd, kSnappy, kUncompressed };

/// The resolved options of one parquet sink.
struct ParquetSinkOptions {
  std::string name = "parquet";  ///< sink name; ledger keys are "<name>/<table>"
  std::string path;              ///< archive root; empty: <data-dir>/archive (resolved in Open)
  bool readings = true;          ///< which tables receive rows
  bool windows = true;
  bool quarantine = true;
  bool late = true;
  int64_t target_file_bytes = int64_t{128} << 20;  ///< roll over to a new file past this size
  ParquetCompression compression = ParquetCompression::kZstd;
  int threads = 1;  ///< DuckDB worker threads
};

/// Options of `sinks[] (type: parquet)`.
const SectionSpec& ParquetSinkSpec();

/// Read and validate the options of a sink entry of type parquet.
Result<ParquetSinkOptions> ReadParquetSinkOptions(const SinkEntry& entry);

/// True when this build includes DuckDB (and so the parquet sink).
bool ParquetSinkAvailable();

/// Make a parquet sink; nothing is opened before Open. Fails when built without DuckDB.
Result<std::unique_ptr<Sink>> MakeParquetSink(ParquetSinkOptions options);

/// The GeoParquet `geo` file metadata the sink writes (version 1.0.0, one WKB Point
/// column `geometry`, CRS omitted, which means OGC:CRS84 longitude/latitude).
std::string_view GeoParquetMetadata();

/// Register the `parquet` sink type.
void RegisterParquetSink(Registry& registry);

}  // namespace tributary
