// Checkpoints: consistent snapshots of a running pipeline, and the store they live in.
//
// A checkpoint N holds, as of one point between two raw batches of the process thread:
//   - the position of every source after the last raw batch it contributed (file
//     offsets, simulator sequence numbers: Source::RestorePosition);
//   - the state of ingestion (dedup horizon) and of every operator (open windows,
//     panes, sessions, per-key histories, the watermark tracker: Operator::Snapshot);
//   - the ledger's processing counters at that point, and the sink counters as they
//     were once every sink had committed checkpoint N − 1;
//   - the interned symbol table, since the state refers to symbols by id.
// The process thread takes the snapshot and sends it down the sink queue as a barrier
// after the batches it covers. The sink thread then runs the two-phase commit:
//   1. prepare: every sink flushes what it buffered without making it visible
//      (Sink::PrepareCheckpoint), and the sink-bound records of the interval (the
//      epoch log, below) are flushed and fsynced — written only when some sink needs
//      them given again (Sink::NeedsEpochLog: the SQLite sink makes the interval
//      durable at prepare and finishes a decided commit itself at the next open);
//   2. decide: the checkpoint row is written to the store in one SQLite transaction;
//      from this moment checkpoint N is complete;
//   3. commit: every sink makes the interval visible together with the id N, in one
//      atomic step of its own (Sink::CommitCheckpoint), then the epoch log is removed.
// A crash before 2 leaves checkpoint N − 1 the latest: sinks still hold N − 1 (they
// commit only in step 3), and the input after N − 1 is read again. A crash during 3
// leaves some sinks at N − 1: at the next start they are given the epoch log of N again
// (the same records in the same order) and commit N, so every sink ends at N.
//
// Encoding: the state is a compact binary string (CheckpointWriter): unsigned and
// signed LEB128 varints, doubles as their 8 raw little-endian bytes, strings as varint
// length + bytes. Each part is a named section, so a mismatch (a config with other
// operators) is an error naming the part rather than garbage state.
//
// Symbols: operator state keeps interned ids (uint32). The same binary with the same
// config interns the same strings in the same order while it builds the pipeline, so a
// restore interns the checkpoint's remaining strings in id order and checks that every
// id came out equal; a mismatch (a changed config) fails the restore with a clear
// error instead of mixing up keys.
//
// Threading: the writer and reader are plain values used by one thread. The store is
// used by the sink thread during a run and by Pipeline::Run before it starts.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/intern.h"
#include "core/ledger.h"
#include "core/model.h"
#include "core/status.h"
#include "core/time.h"

namespace tributary {

struct PipelineConfig;
class SqliteDb;
class Source;
class Sink;
class Operator;
class IngestStage;
class Ledger;

/// Append-only binary encoder of checkpoint state.
class CheckpointWriter {
 public:
  void U64(uint64_t v);
  void I64(int64_t v);  ///< zig-zag varint
  void F64(double v);   ///< raw bits: NaN and -0 survive
  /// `n` doubles in one copy: the same bytes as n calls of F64.
  void F64s(const double* v, size_t n) {
    bytes_.append(reinterpret_cast<const char*>(v), n * sizeof(double));
  }
  void Bool(bool v) { bytes_.push_back(v ? 1 : 0); }
  void Str(std::string_view s);
  /// Start a named part: the reader checks the name (ExpectSection).
  void Section(std::string_view name) { Str(name); }
  const std::string& bytes() const { return bytes_; }
  std::string Take() { return std::move(bytes_); }
  void Reserve(size_t n) { bytes_.reserve(n); }
  size_t size() const { return bytes_.size(); }

 private:
  std::string bytes_;
};

/// Decoder of what CheckpointWriter wrote. Reads past the end return zeros and mark the
/// reader failed; check status() once at the end of a part.
class CheckpointReader {
 public:
  explicit CheckpointReader(std::string_view bytes) : bytes_(bytes) {}
  uint64_t U64();
  int64_t I64();
  double F64();
  /// `n` doubles written by F64 or F64s, in one copy (zeros and failed when truncated).
  void F64s(double* out, size_t n);
  bool Bool();
  std::string_view Str();
  /// A count of items that each take at least one byte: fails the reader when more
  /// remain than bytes (a corrupt length must not allocate gigabytes).
  uint64_t Count();
  /// Read a section name and fail unless it is `name`.
  Status ExpectSection(std::string_view name);
  bool ok() const { return error_.empty(); }
  bool at_end() const { return pos_ >= bytes_.size(); }
  /// Ok, or Corrupt naming what failed.
  Status status() const;
  void Fail(std::string what) {
    if (error_.empty()) error_ = std::move(what);
  }

  /// The symbol id `id` of the state being read as an id of this process: itself, or
  /// through the map of SetSymbolMap (state written by another process). Every place
  /// that restores a symbol id reads it through Sym/SymId, so a partition's state can be
  /// restored by any worker (docs/SCALING.md).
  uint32_t SymId(uint64_t id);
  Symbol Sym() { return Symbol{SymId(U64())}; }
  /// Map symbol ids of the state (index) to ids of this process (not owned; null: none).
  void SetSymbolMap(const std::vector<uint32_t>* map) { symbol_map_ = map; }
  bool remaps_symbols() const { return symbol_map_ != nullptr; }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
  std::string error_;
  const std::vector<uint32_t>* symbol_map_ = nullptr;
};

/// Write the interned symbols [1, InternedCount()) in id order.
void SnapshotSymbols(CheckpointWriter& out);
/// Intern the symbols of a snapshot in order; fails unless every one gets its old id.
Status RestoreSymbols(CheckpointReader& in);
/// Intern the symbols SnapshotSymbols wrote, whatever ids they get here, and return the
/// map from their ids there to their ids here (for CheckpointReader::SetSymbolMap).
Result<std::vector<uint32_t>> ReadSymbolMap(CheckpointReader& in);

/// How often the ingest log is flushed to disk.
enum class IngestLogFsync { kEveryMessage, kInterval, kNone };

/// The resolved `checkpoint:` section.
struct CheckpointOptions {
  bool enabled = false;
  DurationUs interval = 10 * kMicrosPerSecond;
  std::string dir;  ///< resolved: <data-dir>/checkpoints when not set
  IngestLogFsync ingest_log_fsync = IngestLogFsync::kInterval;
  DurationUs ingest_log_fsync_interval = 100 * kMicrosPerMilli;
  int64_t ingest_log_segment_bytes = int64_t{64} << 20;
  int64_t keep = 2;  ///< complete checkpoints kept in the store
  /// Partition-owned state (docs/SCALING.md; set by the runtime, not by config): the
  /// state and input positions live in the kafka sink's changelog, committed with the
  /// output, so Recover restores neither from the store and gives no sink an epoch log
  /// again — it continues from the checkpoint the sinks committed.
  bool partition_state = false;
};

/// Options of the `checkpoint` section.
const SectionSpec& CheckpointSectionSpec();
/// Read the `checkpoint` section of `config` (defaults when absent).
Result<CheckpointOptions> ReadCheckpointOptions(const PipelineConfig& config);

/// One complete checkpoint as stored.
struct StoredCheckpoint {
  uint64_t id = 0;
  TimeUs created = 0;
  std::string state;      ///< CheckpointWriter bytes
  LedgerSnapshot ledger;  ///< processing counters at the barrier
  /// Sink counters ("sink/table" → rows) once every sink committed checkpoint id − 1.
  std::map<std::string, uint64_t> sink_ledger_before;
};

/// The durable store of checkpoints: <dir>/checkpoints.db (SQLite, WAL, synchronous
/// FULL), one row per complete checkpoint, written in one transaction after the state
/// it names went to <dir>/state-<id>-<created_us>.bin and was synced (stores of earlier
/// builds hold the state in chunks of the database, and are still read).
class CheckpointStore {
 public:
  CheckpointStore();
  ~CheckpointStore();
  CheckpointStore(const CheckpointStore&) = delete;
  CheckpointStore& operator=(const CheckpointStore&) = delete;

  /// Open or create the store under `dir` (created if missing).
  Status Open(const std::string& dir, int64_t keep);
  /// The latest complete checkpoint, or nullopt when there is none.
  Result<std::optional<StoredCheckpoint>> Latest();
  /// Write checkpoint `c` durably (the decision of the two-phase commit) and drop all
  /// but the `keep` latest.
  Status Save(const StoredCheckpoint& c);
  const std::string& dir() const { return dir_; }

 private:
  std::unique_ptr<SqliteDb> db_;
  std::string dir_;
  int64_t keep_ = 2;
};

/// The sink-bound records of one checkpoint interval, in the order the sinks got them:
/// <dir>/epoch-<id>.log, frames of (u32 length, EncodeBatchColumns bytes). Written
/// without fsync while the interval runs and fsynced before the checkpoint is decided,
/// so a sink that had not committed the interval when the process died can be given it
/// again. Removed once every sink committed the checkpoint.
class EpochLog {
 public:
  EpochLog() = default;
  ~EpochLog();
  EpochLog(const EpochLog&) = delete;
  EpochLog& operator=(const EpochLog&) = delete;

  static std::string PathFor(const std::string& dir, uint64_t id);
  /// Start the log of checkpoint `id` (truncates a leftover file).
  Status Begin(const std::string& dir, uint64_t id);
  /// Append the record parts of `batch` (nothing when it has none).
  Status Append(const Batch& batch);
  /// Flush and fsync; the file stays for Remove.
  Status Sync();
  /// Close and delete the log of the current id.
  void Remove();
  /// Read every batch of a log back.
  static Result<std::vector<Batch>> ReadAll(const std::string& path);
  /// Bytes appended since construction (all logs).
  uint64_t written() const { return written_; }

 private:
  Status Create();

  std::FILE* file_ = nullptr;
  std::string path_;
  std::string buf_;
  uint64_t written_ = 0;
  uint64_t id_ = 0;        // of the current log
  uint64_t first_id_ = 0;  // of the first log this process began
};

/// Where the time of checkpointing went in one run (the wall time of each step on the
/// thread that runs it), for reports and the benchmark.
struct CheckpointCosts {
  uint64_t taken = 0;          ///< snapshots taken (Take)
  DurationUs snapshot = 0;     ///< process thread: Take (the pass over the state)
  uint64_t state_bytes = 0;    ///< of the last snapshot
  DurationUs epoch_write = 0;  ///< sink thread: encoding and writing the epoch log
  uint64_t epoch_bytes = 0;    ///< written to epoch logs in the run
  DurationUs prepare = 0;      ///< sink thread: Sink::PrepareCheckpoint of every sink
  DurationUs epoch_sync = 0;   ///< sink thread: fsync of the epoch log
  DurationUs save = 0;         ///< sink thread: the store's transaction (the decision)
  DurationUs commit = 0;       ///< sink thread: Sink::CommitCheckpoint of every sink
};

/// Runs checkpoints for one pipeline run (the protocol in the file comment).
/// Load and Recover run on the thread of Pipeline::Run before the stage threads start;
/// NotePosition, Due and Take on the process thread; Record and Complete on the sink
/// thread. Take hands its snapshot to Complete under a mutex.
class CheckpointCoordinator {
 public:
  struct Stages {
    std::vector<Source*> sources;
    std::vector<std::string> source_names;
    IngestStage* ingest = nullptr;
    std::vector<Operator*> operators;
    std::vector<Sink*> sinks;
    std::vector<std::string> sink_names;
    Ledger* ledger = nullptr;
  };

  CheckpointCoordinator(CheckpointOptions options, Stages stages);
  ~CheckpointCoordinator();

  /// Before any stage opens: read the latest checkpoint and intern its symbols, so the
  /// ids in its state mean the same strings.
  Status Load();
  /// After every stage opened: check that every stage can take part, restore the state
  /// and source positions, and bring every sink to the latest checkpoint (giving a sink
  /// that had not committed it the checkpoint's epoch log again).
  Status Recover();

  /// Process thread: the source's position after the raw batch just processed.
  void NotePosition(size_t source, std::string position);
  /// Process thread: whether the interval has passed since the last checkpoint.
  bool Due(TimeUs now) const { return now - last_taken_ >= options_.interval; }
  /// Process thread, between two batches: snapshot everything and return the id the
  /// barrier batch carries (Batch::checkpoint_id).
  Result<uint64_t> Take(TimeUs now);

  /// Sink thread: a batch every sink wrote (appended to the epoch log).
  Status Record(const Batch& batch);
  /// Sink thread, at the barrier of checkpoint `id`: prepare, decide, commit.
  Status Complete(uint64_t id);

  /// After Load: the latest complete checkpoint in the store, which a sink that prepared
  /// it finishes at open (RunContext::checkpoint_decided); 0 with none, and with
  /// partition-owned state, where a checkpoint the sinks did not commit is abandoned.
  uint64_t decided() const { return loaded_ && !options_.partition_state ? loaded_->id : 0; }
  /// Whether the epoch log is written: some sink needs it (Sink::NeedsEpochLog; known
  /// after Recover).
  bool writes_epoch_log() const { return epoch_needed_; }
  /// The latest complete checkpoint (0: none).
  uint64_t last_complete() const { return last_complete_; }
  /// Time the last Recover took (restore and sink catch-up), for reports.
  DurationUs recovery_time() const { return recovery_time_; }
  /// Bytes of the last snapshot's state.
  size_t last_state_bytes() const { return last_state_bytes_; }
  /// Costs so far; call once the stage threads have ended.
  CheckpointCosts costs() const;

 private:
  struct Pending {
    uint64_t id = 0;
    std::string state;
    LedgerSnapshot ledger;
  };

  CheckpointOptions options_;
  Stages stages_;
  CheckpointStore store_;
  std::optional<StoredCheckpoint> loaded_;
  std::vector<std::string> positions_;  // per source; "" = from the beginning
  uint64_t next_id_ = 1;
  uint64_t last_complete_ = 0;
  TimeUs last_taken_ = 0;
  std::mutex mu_;  // guards pending_
  std::vector<Pending> pending_;
  EpochLog epoch_;
  bool epoch_needed_ = true;
  DurationUs recovery_time_ = 0;
  size_t last_state_bytes_ = 0;
  CheckpointCosts costs_;  // snapshot fields: process thread; the rest: sink thread
};

}  // namespace tributary
