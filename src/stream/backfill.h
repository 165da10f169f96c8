// Backfill: one bounded run of a pipeline over archived files, reproducible and
// idempotent.
//
// The inputs (files, folders, globs) replace the pipeline's sources with one `file`
// source that keeps the first source's name and common options (mapping, units, ...);
// ingestion, the operator chain and the sinks are the pipeline's own, built from the
// same config as `run`, so the results equal those of running the same files.
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
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/status.h"
#include "core/time.h"

namespace tributary {

class Pipeline;

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
};

/// The outcome of one backfill.
struct BackfillReport {
  bool skipped = false;  ///< same run key as the existing manifest, not forced
  std::vector<BackfillInput> inputs;
  std::string run_key;
  std::string manifest_path;
  TimeUs as_of = 0;
  LedgerSnapshot ledger;  ///< of this run (empty when skipped)
};

/// Expand files, folders and glob patterns into a sorted list of regular files. A
/// folder contributes its .ndjson/.jsonl/.json/.csv/.tsv files (not recursive). An
/// input matching nothing is an error naming it.
Result<std::vector<std::string>> ExpandBackfillInputs(const std::vector<std::string>& inputs);

/// SHA-256 of a file's bytes, lowercase hex.
Result<std::string> Sha256OfFile(const std::string& path);
/// SHA-256 of bytes, lowercase hex.
std::string Sha256Hex(std::string_view bytes);

/// Run the backfill. `on_start` (may be empty) is called with the built pipeline just
/// before it runs, on the calling thread (e.g. to attach a progress display); the
/// pipeline lives until RunBackfill returns.
Result<BackfillReport> RunBackfill(const PipelineConfig& config, const BackfillOptions& options,
                                   const std::function<void(Pipeline&)>& on_start = {},
                                   const std::function<void(Pipeline&)>& on_end = {});

}  // namespace tributary
