// The backfill runner: one bounded pass of a pipeline's operators over archived files,
// in chunks of bounded size, on every core.
//
//   reader ──chunk #n──► decode workers (K) ──► reorder ──► ordered stage ──► sink threads
//   (files → raw        (ingestion without       (by n)     (dedup, windows,    (one per sink,
//    records, sized      dedup: decode, units,              surfaces, alerts)   each commits
//    from memory)        CRS, validation, H3                                    periodically)
//                        cell and zones)
//
// Partitioning: the input is cut into consecutive chunks (time order of the archive);
// the stateless work — decoding, normalising, validating, H3 cells and zones — runs on
// K workers, each with its own ingestion and enrichment stages (own decoders, PROJ and
// GEOS contexts). Everything
// that keeps state across records — deduplication, the watermark, windows keyed by
// device, H3 cell, zone or all, surfaces interpolating neighbouring sensors, alerts — runs
// in one ordered stage that sees the chunks in input order, so no state is split at a
// partition boundary (nothing to merge, no overlap buffers needed) and the results are
// identical to a single-worker run, and to `run` over the same files. Each stage hands
// on whole batches; a bounded number of chunks is in flight (BackfillMemoryPlan), so
// memory does not grow with the archive. A chunk is a run of source batches cut exactly
// as the `file` source cuts them (pipeline.batch_size records, at most 8 MiB), because
// the window stage judges lateness against the watermark at the start of each batch.
//
// Sinks: each runs on its own thread and commits every pipeline.commit_interval and after
// every 500,000 rows, so a sink that buffers until Commit (parquet) holds a bounded
// number of rows however fast the run goes.
//
// Ledger: ingestion counts input and quarantined records on the workers; the ordered
// stage counts duplicates, the window stage accepted and late readings.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/status.h"
#include "core/time.h"
#include "stream/backfill_input.h"

namespace tributary {

class IngestStage;
class Operator;
class Sink;

struct BackfillRunnerOptions {
  TimeUs as_of = 0;    ///< arrival time of every record and the operators' clock
  size_t workers = 0;  ///< decode workers; 0: one per core
  BackfillMemoryPlan memory;
};

class BackfillRunner {
 public:
  /// Build the stages of `config` (its one source describes the inputs' format and
  /// mapping; its data_dir receives the outputs).
  static Result<std::unique_ptr<BackfillRunner>> Build(const PipelineConfig& config,
                                                       const BackfillRunnerOptions& options);
  ~BackfillRunner();

  /// Process `paths` in order; returns the first error.
  Status Run(const std::vector<std::string>& paths);
  /// Ask the run to stop early (safe from any thread).
  void Stop() { stop_.store(true, std::memory_order_relaxed); }

  LedgerSnapshot LedgerNow() const { return ledger_.Snapshot(); }
  uint64_t bytes_read() const { return bytes_read_.load(std::memory_order_relaxed); }
  uint64_t total_bytes() const { return total_bytes_.load(std::memory_order_relaxed); }
  size_t workers() const { return workers_.size(); }
  const BackfillMemoryPlan& memory() const { return options_.memory; }

 private:
  struct Worker;
  struct Shared;
  BackfillRunner(PipelineConfig config, BackfillRunnerOptions options);

  PipelineConfig config_;
  BackfillRunnerOptions options_;
  Ledger ledger_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> bytes_read_{0};
  std::atomic<uint64_t> total_bytes_{0};
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<Operator>> ordered_;  // windows, surfaces, alerts
  std::vector<std::unique_ptr<Sink>> sinks_;
  std::vector<std::string> sink_names_;
};

}  // namespace tributary
