// A circuit breaker with a durable local buffer in front of a remote sink (postgres,
// influx, mqtt, kafka).
//
// Closed: batches go to the remote sink. The breaker keeps a copy of every batch written
// since the remote sink's last successful Commit, and times each Commit. It opens when a
// Write or Commit fails, or when `slow_batches` consecutive commits take longer than
// `latency_factor` × the baseline (a moving average of the healthy commits, which need
// at least `min_slow` to count as slow at all, so jitter on tiny commits does not trip it).
// Open: the uncommitted copies and every new batch go, in order, to a SQLite file
// (<data-dir>/<sink>.buffer.sqlite by default), one row per batch, durable at once; the
// remote sink is closed. Half-open: at the first Write or Commit after the probe interval
// (doubling from `probe_interval` up to `probe_interval_max` while probes fail) a fresh
// remote sink is opened and the buffer is sent, oldest batch first, committed chunk by
// chunk and deleted only after its chunk committed; then the breaker closes and live
// traffic follows. A failure during the drain opens the breaker again; rows sent twice
// that way are ignored by the remote sink's idempotent keys (postgres, influx); mqtt and
// kafka have none, so there a resent batch may arrive twice (at-least-once).
//
// A full buffer (SQLITE_FULL: the disk is full, or `breaker_buffer_max` is reached)
// keeps every row it holds: the failed Write returns a retryable error naming the file
// and what it holds, the sink's health says buffer_full (tributary_sink_buffer_full 1),
// an error is logged once per episode, and copies the breaker could not buffer when it
// opened stay in memory, first in line. The runtime retries the Write with backoff;
// each retry probes the remote sink, and a drain frees the space. When the retries run
// out the run fails with that error: the batch was not committed, so neither were its
// source positions.
//
// A run that stops while the breaker is open leaves the buffer on disk; the next run
// starts half-open and drains it first. The ledger counts what the remote sink committed,
// so buffered rows are counted when they are drained. State, buffer depth and drain rate
// are published through core/sink_health.h and exported by /metrics.
//
// Checkpoints (stream/checkpoint.h), for a remote sink that takes part in them
// (postgres): the breaker keeps a copy of every batch of the running epoch and passes
// it on to the remote sink. A checkpoint the remote sink commits is recorded in the
// buffer file too; one it cannot commit (it failed during the epoch, the commit failed,
// or the breaker is open) goes into the buffer as rows tagged with the checkpoint id, in
// one fsynced transaction with that record, and the checkpoint completes: the run goes
// on during the outage. At the next checkpoint commit with a healthy remote sink (a
// probe, when open) the buffered checkpoints are committed there first, each with its
// own id, oldest first, then the new one; the remote sink's own checkpoint record says
// which ones it already holds, so after a crash at any moment none is stored twice or
// skipped. OpenCheckpoints reports the newer of the two records. The ledger counts rows
// when the remote sink commits them, drained ones as part of the checkpoint whose commit
// drained them (so the record of that checkpoint restores the ledger exactly).
//
// Threading: like every sink, one thread at a time.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/time.h"
#include "io/connector.h"

namespace tributary {

/// Options of a sink's circuit breaker.
struct BreakerOptions {
  bool enabled = true;
  std::string buffer_path;  ///< empty: <data-dir>/<sink name>.buffer.sqlite
  double latency_factor = 2.0;
  int slow_batches = 3;
  DurationUs min_slow = 50 * kMicrosPerMilli;
  DurationUs probe_interval = kMicrosPerSecond;
  DurationUs probe_interval_max = 30 * kMicrosPerSecond;
  int64_t drain_chunk_rows = 50000;  ///< rows per remote commit while draining
  uint64_t buffer_max_bytes = 0;     ///< cap of the buffer file (max_page_count); 0: none
  /// The remote sink takes part in checkpoints, and so does the breaker (set by the sink
  /// type, not by config).
  bool remote_checkpoints = false;
};

/// The breaker options every remote sink accepts (appended to its own option table).
std::vector<OptionSpec> BreakerOptionSpecs();
/// Read the breaker options of a sink entry.
Result<BreakerOptions> ReadBreakerOptions(const OptionReader& options);

/// Make the remote sink anew (each probe opens a fresh one).
using SinkMaker = std::function<std::unique_ptr<Sink>()>;

/// Wrap the sink made by `make` in a circuit breaker named `name`.
std::unique_ptr<Sink> MakeBreakerSink(std::string name, BreakerOptions options, SinkMaker make);

}  // namespace tributary
