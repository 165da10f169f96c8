// Backfill: one bounded run of a pipeline over archived files, reproducible and
// idempotent.
//
// The inputs (files, folders, globs; NDJSON/CSV plain, .gz or .zst, and Parquet — see
// backfill_input.h) replace the pipeline's sources with one `file` source that keeps
// the first source's name and common options (mapping, units, ...); ingestion, the
// operator chain and the sinks are the pipeline's own, built from the same config as
// `run`, and run by the BackfillRunner (backfill_runner.h: chunks sized from memory,
// decoded on every core, stateful operators in input order, source batches cut as
// `run` cuts them), so the results equal those of running the same files.
//
// Time bases: every record's arrival time is the run's `as_of` time (UTC µs; default:
// the newest modification time of the inputs, whole seconds), and the operators'
// processing clock (window emitted_at) is the same constant. Operators get no idle
// ticks: the watermark advances only from event times in the data, exactly as in a
// `run` whose source never stalls, so lateness is identical to `run` for the same
// input order.
//
// Atomicity: the pipeline writes into <output>/.backfill-staging/; on success every
// file there is renamed into <output> and the run manifest
// <output>/backfill-manifest.json is written (temporary name + rename). A failed run
// leaves the previous outputs as they were. Sinks given an explicit path outside the
// data folder write in place.
//
// Idempotence: the manifest holds a run key (SHA-256 over the config, registry, input
// file hashes and as_of); a run with the same key is skipped unless forced.
//
// Gridded export: each surfaces[] entry's surfaces are also written as one CF NetCDF
// file, <output>/surfaces/<name>.nc (spatial/netcdf_export.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/status.h"
#include "core/time.h"

namespace tributary {

class BackfillRunner;

/// One input file as recorded in the manifest.
struct BackfillInput {
  std::string path;
  uint64_t bytes = 0;
  std::string sha256;  ///< lowercase hex
};

/// What `tributary backfill` was asked to do.
struct BackfillOptions {
  std::vector<std::string> inputs;  ///< files, folders (their data files) or globs
  std::string output_dir;           ///< empty: the config's data folder
  bool force = false;               ///< run even when the manifest says it was done
  TimeUs as_of = kMinTime;          ///< arrival/processing time; kMinTime: input mtime
  size_t workers = 0;               ///< decode workers (backfill_runner.h); 0: one per core
  uint64_t memory_ceiling = 0;      ///< bytes; 0: 30 % of the memory available
};

/// The outcome of one backfill.
struct BackfillReport {
  bool skipped = false;  ///< same run key as the existing manifest, not forced
  std::vector<BackfillInput> inputs;
  std::string run_key;
  std::string manifest_path;
  TimeUs as_of = 0;
  LedgerSnapshot ledger;  ///< of this run (empty when skipped)
  /// The CF NetCDF file of each surfaces[] entry that produced surfaces
  /// (<output>/surfaces/<name>.nc; spatial/netcdf_export.h).
  std::vector<std::string> netcdf_files;
};

/// Expand files, folders and glob patterns into a sorted list of regular files. A
/// folder contributes its .ndjson/.jsonl/.json/.csv/.tsv files, plain or .gz/.zst, and
/// its .parquet files (not recursive; see backfill_input.h). An input matching nothing
/// is an error naming it.
Result<std::vector<std::string>> ExpandBackfillInputs(const std::vector<std::string>& inputs);

/// SHA-256 of a file's bytes, lowercase hex.
Result<std::string> Sha256OfFile(const std::string& path);
/// SHA-256 of bytes, lowercase hex.
std::string Sha256Hex(std::string_view bytes);

/// Run the backfill. `on_start` (may be empty) is called with the built runner just
/// before it runs, on the calling thread (e.g. to attach a progress display), `on_end`
/// right after; the runner lives until RunBackfill returns.
Result<BackfillReport> RunBackfill(const PipelineConfig& config, const BackfillOptions& options,
                                   const std::function<void(BackfillRunner&)>& on_start = {},
                                   const std::function<void(BackfillRunner&)>& on_end = {});

}  // namespace tributary

namespace tributary {

/// `tributary backfill --watch DIR`: a landing folder.
struct BackfillWatchOptions {
  std::string dir;                         ///< the landing folder
  DurationUs poll = 1 * kMicrosPerSecond;  ///< how often it is listed
  bool once = false;                       ///< process what is there, then return
};

/// What happened to one dropped file.
struct BackfillWatchEvent {
  std::string file;   ///< its path in the landing folder when it was picked up
  std::string moved;  ///< where it is now (done/ or failed/)
  bool ok = false;
  bool already_processed = false;  ///< same bytes processed before: not run again
  std::string reason;              ///< why it failed (also in failed/<name>.reason.txt)
  BackfillReport report;           ///< when it ran
};

/// Watch `watch.dir` until `stop` is set (or, with `once`, until it holds no new file):
/// every data file that appears (and whose size and modification time stay the same
/// over two listings, so files still being written wait; names starting with '.' are
/// ignored) is backfilled on its own with `base` (its inputs replaced by the file, its
/// outputs in <output>/<file name>/), exactly once: the SHA-256 of every file processed
/// is kept in <output>/watch-manifest.json, and a file with the same bytes as one done
/// before is not run again. A processed file moves to <dir>/done/; a failed one to
/// <dir>/failed/ beside <name>.reason.txt, which holds the error. `on_file` (may be
/// empty) is told about each file. Errors of the folder itself end the watch.
Status WatchBackfillFolder(const PipelineConfig& config, const BackfillOptions& base,
                           const BackfillWatchOptions& watch, const std::atomic<bool>& stop,
                           const std::function<void(const BackfillWatchEvent&)>& on_file = {});

}  // namespace tributary
