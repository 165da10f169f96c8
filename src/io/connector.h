// The source and sink contracts.
//
// Threading: each source runs on its own thread; Poll is only ever called from that
// thread, while Stop may be called from any thread and must make a blocked Poll
// return promptly. Sinks run on the sink thread; Write and Commit are never called
// concurrently for one sink. Close is idempotent and called once the stage stops,
// also after a failed Open.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "core/model.h"
#include "core/run_context.h"
#include "core/status.h"

namespace tributary {

class Source {
 public:
  virtual ~Source() = default;
  /// Connect or open files. Called once, before the first Poll.
  virtual Status Open(RunContext& ctx) = 0;
  /// Append up to `max_records` raw records to `out`, waiting at most `wait` for the
  /// first one. Set out.end_of_stream when a bounded source has nothing more.
  /// Raw records carry their arrival time (the wall clock, or the simulated clock).
  virtual Status Poll(RawBatch& out, size_t max_records, DurationUs wait) = 0;
  /// Ask a blocked Poll to return; safe from any thread. After Stop, Poll hands on only
  /// what the source already holds (e.g. messages a broker considers delivered) and
  /// then nothing: the runtime drains a stopped source that way, so nothing that was
  /// acknowledged is lost on a clean shutdown.
  virtual void Stop() {}
  /// Every sink committed the results of this source's raw batches up to and including
  /// the one whose RawBatch::checkpoint was `checkpoint` (checkpoints only grow). A
  /// source with broker offsets or a file position commits them here, so it never
  /// marks as consumed what is not yet durable downstream. Readings still held in an
  /// open window are not covered: only the rows sinks store per batch (readings,
  /// quarantine, late records) are. Called on the sink thread, concurrently with Poll;
  /// called only for checkpoints != 0; last call before Close.
  virtual void OnCommitted(uint64_t checkpoint) { (void)checkpoint; }
  /// Hold back new input (true) or take it again (false), e.g. while the process is
  /// near its memory ceiling: a broker source stops reading (Kafka partitions pause,
  /// MQTT stops taking messages), an HTTP source answers 503 with Retry-After. Nothing
  /// already accepted is dropped. Safe from any thread; the default does nothing.
  virtual void SetPaused(bool paused) { (void)paused; }
  /// Checkpoints (stream/checkpoint.h). When RunContext::checkpointing is set, a
  /// source that supports them sets RawBatch::position on every batch: an opaque
  /// string from which RestorePosition resumes right after that batch. The default
  /// cannot be checkpointed, and a pipeline with checkpoints refuses to start.
  virtual bool SupportsCheckpoints() const { return false; }
  /// Resume after the batch whose RawBatch::position was `position`. Called after Open,
  /// before the first Poll, on the run's thread. Errors name the source's input.
  virtual Status RestorePosition(std::string_view position) {
    (void)position;
    return Status::Invalid("this source cannot resume from a checkpoint");
  }
  /// The source's arrival times follow a simulated clock that does not wait for the
  /// wall clock (a simulator running as fast as possible). When every source says so,
  /// the runtime does not move watermarks by wall-clock idleness: a pause of the
  /// machine says nothing about such a source's event time, and letting it close
  /// windows would make two runs of the same input differ.
  virtual bool ClockIsSimulated() const { return false; }
  virtual void Close() {}
};

/// What a sink's last checkpoint commit stored (Sink::OpenCheckpoints).
struct SinkCheckpointRecord {
  uint64_t checkpoint = 0;               ///< 0: no checkpoint committed yet
  std::map<std::string, uint64_t> rows;  ///< "sink/table" → rows that commit stored
};

class Sink {
 public:
  virtual ~Sink() = default;
  /// Connect, create tables or folders. Called once, before the first Write.
  virtual Status Open(RunContext& ctx) = 0;
  /// Take the parts of `batch` this sink stores (readings, windows, quarantine, late).
  /// May buffer; nothing is durable before Commit.
  virtual Status Write(const Batch& batch) = 0;
  /// Make everything written so far durable (commit a transaction, rename a file) and
  /// count the committed rows in the ledger. Called periodically and at the end.
  virtual Status Commit() = 0;
  /// Checkpoints: a sink that takes part in the two-phase commit (stream/checkpoint.h)
  /// overrides the three calls below. OpenCheckpoints is called once after Open: from
  /// then on the sink makes rows visible only in CommitCheckpoint (never in Write or
  /// Commit, which only buffer), and it returns what its last CommitCheckpoint stored.
  /// A sink may instead commit rows earlier if OpenCheckpoints first removes every row
  /// committed after its last CommitCheckpoint, so that what remains is exactly that
  /// checkpoint's output (the SQLite sink does this).
  virtual Result<SinkCheckpointRecord> OpenCheckpoints() {
    return Status::Invalid("this sink does not take part in checkpoints");
  }
  /// Whether the sink needs the rows of an interval to be given again after a crash
  /// between the decision and its CommitCheckpoint (the epoch log, stream/checkpoint.h).
  /// A sink that makes everything of the interval durable in PrepareCheckpoint, and at
  /// the next open finishes a commit the store decided (RunContext::checkpoint_decided),
  /// answers false; the epoch log is written only when some sink answers true. Asked
  /// after OpenCheckpoints.
  virtual bool NeedsEpochLog() const { return true; }
  /// Phase 1: flush what is buffered as far as possible without making it visible.
  virtual Status PrepareCheckpoint(uint64_t checkpoint) {
    (void)checkpoint;
    return Status::Ok();
  }
  /// Phase 2, once checkpoint `checkpoint` is durable: make everything written since the
  /// last CommitCheckpoint visible together with the id, in one atomic step (a crash
  /// leaves either all of it or none), and count the rows in the ledger.
  virtual Status CommitCheckpoint(uint64_t checkpoint) {
    (void)checkpoint;
    return Status::Invalid("this sink does not take part in checkpoints");
  }
  virtual void Close() {}
};

}  // namespace tributary
