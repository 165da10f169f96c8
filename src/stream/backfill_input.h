// Backfill inputs: reading archived files of every supported kind into raw batches, and
// sizing the chunks they are read in from the memory available.
//
// Kinds, chosen by the file name:
//   - NDJSON (.ndjson, .jsonl, .json) and CSV (.csv, .tsv), each optionally compressed
//     with gzip (.gz) or Zstandard (.zst): records exactly as the `file` source makes
//     them (file_source.h) — one record per non-blank line, CSV rows re-encoded as JSON
//     objects keyed by the header, a byte-order mark dropped, offset = the 1-based line
//     number, topic = the path — so a compressed archive gives the same results as its
//     plain copy;
//   - Parquet (.parquet), read with DuckDB in streaming chunks: every row becomes one JSON
//     object keyed by the column names (numbers and booleans as JSON literals, timestamps
//     as ISO-8601 UTC text, NULL as null, everything else as a JSON string), offset = the
//     1-based row number.
// A file that cannot be opened or decoded (a truncated gzip stream, a corrupt Parquet
// file) is an error naming the path and what failed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/model.h"
#include "core/status.h"
#include "core/time.h"

namespace tributary {

enum class BackfillInputKind { kNdjson, kCsv, kParquet };
enum class BackfillCompression { kNone, kGzip, kZstd };

struct BackfillInputFormat {
  BackfillInputKind kind = BackfillInputKind::kNdjson;
  BackfillCompression compression = BackfillCompression::kNone;
  char delimiter = ',';  ///< CSV: '\t' for .tsv
};

/// The format of `path` by its name (case-insensitive); any other name is NDJSON.
BackfillInputFormat BackfillInputFormatOf(std::string_view path);
/// True when a folder's entry named `path` is a backfill input (.ndjson, .jsonl, .json,
/// .csv, .tsv, each optionally .gz/.zst, and .parquet).
bool IsBackfillDataFile(std::string_view path);

/// Reads one input file into raw batches, record by record.
class BackfillFileReader {
 public:
  /// Open `path`; every record gets `arrival` as its arrival time.
  static Result<std::unique_ptr<BackfillFileReader>> Open(const std::string& path, TimeUs arrival);
  virtual ~BackfillFileReader() = default;

  /// Append records to `out` until it holds `max_records` records or `max_bytes` payload
  /// bytes (at least one record when any is left). False once the file has no more.
  virtual Result<bool> Read(RawBatch& out, size_t max_records, size_t max_bytes) = 0;
  /// Bytes of the file (as stored, compressed or not) consumed so far.
  virtual uint64_t bytes_consumed() const = 0;
};

/// How much memory a backfill may use and the chunk size that follows from it.
struct BackfillMemoryPlan {
  uint64_t available_bytes = 0;  ///< MemAvailable, or the cgroup limit minus usage if lower
  uint64_t budget_bytes = 0;     ///< 30 % of available_bytes, capped by the --memory ceiling
  std::string basis;             ///< where available_bytes came from (for logs)
  size_t chunk_bytes = 0;        ///< raw payload bytes per chunk
  size_t chunk_records = 0;      ///< records per chunk
  size_t chunks_in_flight = 0;   ///< chunks read ahead of the ordered stage, at most
};

/// Plan chunks from the memory available now (30 % of MemAvailable or of the cgroup's
/// remaining limit, whichever is lower), capped by `ceiling_bytes` (0: no ceiling).
/// `workers` decoding threads each hold a chunk and its decoded batch.
BackfillMemoryPlan PlanBackfillMemory(uint64_t ceiling_bytes, size_t workers);

/// Parse a size such as "512MiB", "2GB", "300M" or a plain byte count.
Result<uint64_t> ParseByteSize(std::string_view text);

/// Peak resident set size of this process (VmHWM), bytes; 0 when unknown.
uint64_t PeakRssBytes();
/// Current resident set size of this process (VmRSS), bytes; 0 when unknown.
uint64_t CurrentRssBytes();

}  // namespace tributary
