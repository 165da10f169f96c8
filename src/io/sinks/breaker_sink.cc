#include "io/sinks/breaker_sink.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <map>
#include <utility>

#include "core/byte_size.h"
#include "core/sink_health.h"
#include "io/sinks/batch_codec.h"
#include "io/sinks/sqlite_util.h"

namespace tributary {

namespace {

class BreakerSink final : public Sink {
 public:
  BreakerSink(std::string name, BreakerOptions options, SinkMaker make)
      : name_(std::move(name)), options_(std::move(options)), make_(std::move(make)) {}
  ~BreakerSink() override { Close(); }

  Status Open(RunContext& ctx) override;
  Status Write(const Batch& batch) override;
  Status Commit() override;
  Result<SinkCheckpointRecord> OpenCheckpoints() override;
  Status PrepareCheckpoint(uint64_t checkpoint) override;
  Status CommitCheckpoint(uint64_t checkpoint) override;
  void Close() override;

 private:
  Status OpenBuffer();
  // Send to the buffer (one durable row per batch).
  Status Buffer(const Batch& batch);
  Status Insert(const Batch& batch, uint64_t checkpoint = 0);
  Status FlushUnbuffered();
  // The buffer refused a row: report it (once per episode) as a retryable error.
  Status Full(const Status& st);
  // Open the breaker: buffer the uncommitted copies, drop the remote sink.
  Status Trip(const std::string& why);
  // Half-open when due: open a fresh remote sink and drain the buffer.
  Status MaybeProbe();
  Status Drain();
  void ProbeFailed(const Status& st);
  void Publish() { PublishSinkHealth(name_, health_); }
  void NoteCommitLatency(DurationUs dt, uint64_t rows);

  // Checkpoints (see the header): a fresh remote sink opened with its checkpoint record.
  Status OpenRemoteCheckpoints();
  // A checkpointing remote sink failed: drop it and wait for the next probe; the copies
  // of the epoch stay in memory until CommitCheckpoint puts them in the buffer.
  void Lose(const Status& st);
  // Send the buffered checkpoints to the remote sink, oldest first, each committed with
  // its own id, then deleted from the buffer.
  Status DrainCheckpoints();
  // Put the epoch's copies in the buffer under `checkpoint`, in one durable transaction.
  Status BufferCheckpoint(uint64_t checkpoint, const std::map<std::string, uint64_t>& rows);
  // Record in the buffer file what the commit of `checkpoint` stored (rows counted in
  // the ledger since `before`, drained ones included).
  Status RecordLocalCheckpoint(uint64_t checkpoint, const std::map<std::string, uint64_t>& rows);
  // This sink's committed counts in the ledger, and what was added since `before`.
  std::map<std::string, uint64_t> Committed() const;
  std::map<std::string, uint64_t> CommittedSince(
      const std::map<std::string, uint64_t>& before) const;

  std::string name_;
  BreakerOptions options_;
  SinkMaker make_;
  RunContext* ctx_ = nullptr;
  std::unique_ptr<Sink> remote_;

  SqliteDb db_;
  SqliteStatement insert_, delete_;

  SinkHealth health_;
  std::vector<Batch> uncommitted_;  // written to the remote sink since its last Commit
  std::deque<Batch> unbuffered_;    // copies a full buffer did not take when the breaker opened
  uint64_t uncommitted_rows_ = 0;
  TimeUs next_probe_ = 0;
  DurationUs probe_wait_ = 0;
  double baseline_us_ = 0;  // moving average of healthy commit latencies
  int healthy_samples_ = 0;
  int slow_in_row_ = 0;

  bool checkpointing_ = false;
  bool remote_checkpoints_ = false;  // remote_ has answered OpenCheckpoints
  uint64_t remote_checkpoint_ = 0;   // the last checkpoint the remote sink committed
  SinkCheckpointRecord remote_record_;
  uint64_t local_checkpoint_ = 0;  // the last checkpoint made durable here or remotely
  bool epoch_unsent_ = false;      // the epoch's copies were not all written to remote_
  bool zero_sent_ = false;         // buffered rows of a run without checkpoints sent, not committed
};

Status BreakerSink::Open(RunContext& ctx) {
  ctx_ = &ctx;
  TRIB_RETURN_IF_ERROR(OpenBuffer());
  probe_wait_ = options_.probe_interval;
  if (health_.buffered_rows > 0 && !ctx.checkpointing) {
    // Left by an earlier run: drain it before anything new goes to the remote sink.
    // (With checkpoints the buffer drains at the first checkpoint commit.)
    spdlog::info("sink {}: {} rows wait in the local buffer {}; draining them first", name_,
                 health_.buffered_rows, db_.path());
    health_.state = BreakerState::kOpen;
    next_probe_ = 0;
    Publish();
    return MaybeProbe();
  }
  remote_ = make_();
  Status st = remote_->Open(ctx);
  if (!st.ok()) {
    if (!st.retryable()) return st;
    remote_->Close();
    remote_.reset();
    spdlog::warn("sink {}: {}; buffering locally until it recovers", name_, st.message());
    health_.state = BreakerState::kOpen;
    ++health_.opened_total;
    next_probe_ = NowUs() + probe_wait_;
  }
  Publish();
  return Status::Ok();
}

Status BreakerSink::OpenBuffer() {
  std::string path = options_.buffer_path;
  if (path.empty()) {
    std::string dir = ctx_->data_dir.empty() ? std::string(".") : ctx_->data_dir;
    path = dir + "/" + name_ + ".buffer.sqlite";
  }
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  TRIB_RETURN_IF_ERROR(db_.Open(path));
  if (options_.buffer_max_bytes > 0) {
    TRIB_ASSIGN_OR_RETURN(int64_t page, db_.QueryInt("PRAGMA page_size"));
    const uint64_t pages =
        std::max<uint64_t>(options_.buffer_max_bytes / std::max<int64_t>(page, 512), 8);
    TRIB_RETURN_IF_ERROR(db_.Exec("PRAGMA max_page_count = " + std::to_string(pages)));
  }
  // `checkpoint`: the checkpoint a row's batch belongs to, 0 without checkpoints.
  // `checkpoint_record`: what the last checkpoint commit stored (OpenCheckpoints).
  TRIB_RETURN_IF_ERROR(
      db_.Exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
               "CREATE TABLE IF NOT EXISTS buffer (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
               "rows INTEGER NOT NULL, buffered_at_us INTEGER NOT NULL, batch BLOB NOT NULL, "
               "checkpoint INTEGER NOT NULL DEFAULT 0);"
               "CREATE TABLE IF NOT EXISTS checkpoint_record (one INTEGER PRIMARY KEY CHECK "
               "(one = 1), checkpoint INTEGER NOT NULL, rows TEXT NOT NULL)"));
  TRIB_ASSIGN_OR_RETURN(int64_t has_checkpoint,
                        db_.QueryInt("SELECT count(*) FROM pragma_table_info('buffer') "
                                     "WHERE name = 'checkpoint'"));
  if (has_checkpoint == 0) {  // a buffer file of an older build
    TRIB_RETURN_IF_ERROR(
        db_.Exec("ALTER TABLE buffer ADD COLUMN checkpoint INTEGER NOT NULL DEFAULT 0"));
  }
  TRIB_ASSIGN_OR_RETURN(int64_t rows, db_.QueryInt("SELECT COALESCE(SUM(rows), 0) FROM buffer"));
  health_.buffered_rows = static_cast<uint64_t>(rows);
  TRIB_ASSIGN_OR_RETURN(insert_, db_.Prepare("INSERT INTO buffer (rows, buffered_at_us, batch, "
                                             "checkpoint) VALUES (?1, ?2, ?3, ?4)"));
  TRIB_ASSIGN_OR_RETURN(delete_, db_.Prepare("DELETE FROM buffer WHERE seq <= ?1"));
  return Status::Ok();
}

Status BreakerSink::Insert(const Batch& batch, uint64_t checkpoint) {
  uint64_t rows = BatchRecordRows(batch);
  if (rows == 0) return Status::Ok();
  std::string bytes;
  EncodeBatchRecords(batch, bytes);
  insert_.BindInt(1, static_cast<int64_t>(rows));
  insert_.BindInt(2, NowUs());
  insert_.BindBlob(3, bytes);
  insert_.BindInt(4, static_cast<int64_t>(checkpoint));
  Status st = insert_.Run();
  if (!st.ok()) return st;
  health_.buffered_rows += rows;
  return Status::Ok();
}

Status BreakerSink::FlushUnbuffered() {
  // Copies left over from a full buffer go first, so the buffer keeps the order.
  if (unbuffered_.empty()) return Status::Ok();
  while (!unbuffered_.empty()) {
    Status st = Insert(unbuffered_.front());
    if (!st.ok()) return Full(st);
    unbuffered_.pop_front();
  }
  health_.buffer_full = false;
  Publish();
  return Status::Ok();
}

Status BreakerSink::Buffer(const Batch& batch) {
  TRIB_RETURN_IF_ERROR(FlushUnbuffered());
  Status st = Insert(batch);
  if (!st.ok()) return Full(st);
  if (health_.buffer_full) {
    health_.buffer_full = false;
    spdlog::info("sink {}: the local buffer {} takes rows again ({} rows held)", name_, db_.path(),
                 health_.buffered_rows);
  }
  Publish();
  return Status::Ok();
}

Status BreakerSink::Full(const Status& st) {
  const bool full = (sqlite3_extended_errcode(db_.get()) & 0xff) == SQLITE_FULL;
  if (!full) return st.WithContext("sink " + name_ + ": local buffer");
  uint64_t waiting = 0;
  for (const Batch& b : unbuffered_) waiting += BatchRecordRows(b);
  std::string cap = options_.buffer_max_bytes > 0
                        ? "breaker_buffer_max " + std::to_string(options_.buffer_max_bytes) +
                              " bytes reached, or the disk is full"
                        : "the disk is full";
  std::string msg = "sink " + name_ + ": local buffer " + db_.path() + " is full (" + cap +
                    "): it keeps the " + std::to_string(health_.buffered_rows) + " rows it holds" +
                    (waiting > 0 ? ", " + std::to_string(waiting) + " more wait in memory" : "") +
                    "; new rows are refused until space is freed or the remote sink recovers";
  if (!health_.buffer_full) {
    health_.buffer_full = true;
    spdlog::error("{}", msg);
  }
  Publish();
  return Status::Io(msg, true);
}

Status BreakerSink::Trip(const std::string& why) {
  spdlog::warn("sink {}: circuit breaker opens ({}); buffering in {}", name_, why, db_.path());
  if (remote_) {
    remote_->Close();  // drops what it had not committed: the copies below hold it
    remote_.reset();
  }
  health_.state = BreakerState::kOpen;
  ++health_.opened_total;
  slow_in_row_ = 0;
  probe_wait_ = options_.probe_interval;
  next_probe_ = NowUs() + probe_wait_;
  Status st;
  size_t k = 0;
  for (; k < uncommitted_.size() && st.ok(); ++k) st = Buffer(uncommitted_[k]);
  // A full buffer: keep what it did not take (the failed one included) in memory.
  if (!st.ok()) {
    for (size_t j = k - 1; j < uncommitted_.size(); ++j) {
      unbuffered_.push_back(std::move(uncommitted_[j]));
    }
  }
  uncommitted_.clear();
  uncommitted_rows_ = 0;
  Publish();
  return st;
}

void BreakerSink::ProbeFailed(const Status& st) {
  if (remote_) {
    remote_->Close();
    remote_.reset();
  }
  remote_checkpoints_ = false;
  zero_sent_ = false;
  health_.state = BreakerState::kOpen;
  probe_wait_ = std::min(probe_wait_ * 2, options_.probe_interval_max);
  next_probe_ = NowUs() + probe_wait_;
  spdlog::warn("sink {}: probe failed ({}); next probe in {}", name_, st.message(),
               FormatDuration(probe_wait_));
  Publish();
}

Status BreakerSink::MaybeProbe() {
  if (health_.state == BreakerState::kClosed || NowUs() < next_probe_) return Status::Ok();
  health_.state = BreakerState::kHalfOpen;
  Publish();
  remote_ = make_();
  Status st = remote_->Open(*ctx_);
  if (st.ok()) st = Drain();
  if (!st.ok()) {
    ProbeFailed(st);
    return Status::Ok();  // the rows are safe in the buffer
  }
  spdlog::info("sink {}: recovered; the local buffer is drained and the breaker closes", name_);
  health_.state = BreakerState::kClosed;
  probe_wait_ = options_.probe_interval;
  Publish();
  return Status::Ok();
}

Status BreakerSink::Drain() {
  TimeUs started = NowUs();
  uint64_t sent = 0;
  while (true) {
    // One chunk: consecutive batches up to drain_chunk_rows rows, one remote commit.
    int64_t last_seq = -1;
    uint64_t chunk_rows = 0;
    bool more = true;
    while (more && chunk_rows < static_cast<uint64_t>(options_.drain_chunk_rows)) {
      // Rows after last_seq, read in pages of 64 batches.
      int got = 0;
      Result<SqliteStatement> page =
          db_.Prepare("SELECT seq, rows, batch FROM buffer WHERE seq > " +
                      std::to_string(last_seq) + " ORDER BY seq LIMIT 64");
      if (!page.ok()) return page.status();
      while (chunk_rows < static_cast<uint64_t>(options_.drain_chunk_rows)) {
        Result<bool> row = page->Step();
        if (!row.ok()) return row.status();
        if (!*row) break;
        ++got;
        Result<Batch> batch = DecodeBatchRecords(page->ColumnBlob(2));
        if (!batch.ok()) return batch.status().WithContext(db_.path());
        TRIB_RETURN_IF_ERROR(remote_->Write(*batch));
        last_seq = page->ColumnInt(0);
        chunk_rows += static_cast<uint64_t>(page->ColumnInt(1));
      }
      if (got == 0) more = false;
    }
    if (last_seq < 0) break;  // empty
    TRIB_RETURN_IF_ERROR(remote_->Commit());
    delete_.BindInt(1, last_seq);
    TRIB_RETURN_IF_ERROR(delete_.Run());
    sent += chunk_rows;
    health_.buffered_rows -= std::min(health_.buffered_rows, chunk_rows);
    health_.drained_rows_total += chunk_rows;
    DurationUs elapsed = std::max<DurationUs>(NowUs() - started, 1);
    health_.drain_rows_per_s =
        static_cast<double>(sent) * static_cast<double>(kMicrosPerSecond) / elapsed;
    Publish();
  }
  if (!unbuffered_.empty()) {
    // Copies a full buffer could not take: after the buffer, before live traffic.
    uint64_t rows = 0;
    for (const Batch& b : unbuffered_) {
      TRIB_RETURN_IF_ERROR(remote_->Write(b));
      rows += BatchRecordRows(b);
    }
    TRIB_RETURN_IF_ERROR(remote_->Commit());
    unbuffered_.clear();
    sent += rows;
    health_.drained_rows_total += rows;
  }
  if (sent > 0) {
    spdlog::info("sink {}: drained {} buffered rows at {:.0f} rows/s", name_, sent,
                 health_.drain_rows_per_s);
  }
  health_.buffered_rows = 0;
  if (health_.buffer_full) {
    health_.buffer_full = false;
    spdlog::info("sink {}: the local buffer {} is drained and takes rows again", name_, db_.path());
  }
  return Status::Ok();
}

Status BreakerSink::Write(const Batch& batch) {
  if (checkpointing_) {
    // Copies of the epoch, for the buffer if the remote sink fails before its commit.
    uint64_t rows = BatchRecordRows(batch);
    if (rows == 0) return Status::Ok();
    uncommitted_.push_back(batch);
    uncommitted_rows_ += rows;
    // While checkpoints wait in the buffer, the epoch waits too: the buffered ones are
    // committed first, each alone, and the remote sink would commit whatever it holds.
    if (!remote_ || !remote_checkpoints_ || epoch_unsent_ || health_.buffered_rows > 0) {
      epoch_unsent_ = true;
      return Status::Ok();
    }
    Status st = remote_->Write(batch);
    if (!st.ok()) {
      if (!st.retryable()) return st;
      Lose(st);
    }
    return Status::Ok();
  }
  TRIB_RETURN_IF_ERROR(MaybeProbe());
  if (health_.state != BreakerState::kClosed) return Buffer(batch);
  uint64_t rows = BatchRecordRows(batch);
  if (rows == 0) return Status::Ok();
  uncommitted_.push_back(batch);
  uncommitted_rows_ += rows;
  Status st = remote_->Write(batch);
  if (!st.ok()) {
    if (!st.retryable()) return st;
    Status tripped = Trip(st.message());
    // A full buffer: the runtime retries this batch (the last copy), so do not keep it.
    if (!tripped.ok() && !unbuffered_.empty()) unbuffered_.pop_back();
    return tripped;
  }
  return Status::Ok();
}

void BreakerSink::NoteCommitLatency(DurationUs dt, uint64_t rows) {
  if (rows == 0) return;
  auto us = static_cast<double>(dt);
  bool slow = healthy_samples_ >= 3 && us > options_.latency_factor * baseline_us_ &&
              dt >= options_.min_slow;
  if (slow) {
    ++slow_in_row_;
    return;
  }
  slow_in_row_ = 0;
  baseline_us_ = healthy_samples_ == 0 ? us : 0.8 * baseline_us_ + 0.2 * us;
  ++healthy_samples_;
}

Status BreakerSink::Commit() {
  if (checkpointing_) return Status::Ok();  // rows become durable in CommitCheckpoint
  TRIB_RETURN_IF_ERROR(MaybeProbe());
  if (health_.state != BreakerState::kClosed) {
    // Buffer rows are durable; copies a full buffer did not take are not yet.
    return FlushUnbuffered();
  }
  TimeUs t0 = NowUs();
  Status st = remote_->Commit();
  if (!st.ok()) {
    if (!st.retryable()) return st;
    return Trip(st.message());
  }
  NoteCommitLatency(NowUs() - t0, uncommitted_rows_);
  uncommitted_.clear();
  uncommitted_rows_ = 0;
  if (slow_in_row_ >= options_.slow_batches) {
    return Trip(std::to_string(slow_in_row_) + " commits in a row took more than " +
                std::to_string(options_.latency_factor) + "x the usual " +
                FormatDuration(static_cast<DurationUs>(baseline_us_)));
  }
  return Status::Ok();
}

// Checkpoints. The breaker keeps the epoch's batches (everything written since the last
// CommitCheckpoint) in memory and passes them on to the remote sink while it is healthy.
// A checkpoint commits remotely when the remote sink can commit it; otherwise the epoch
// goes into the buffer under its checkpoint id in one durable transaction, and the
// checkpoint completes all the same. At the next commit with a healthy remote sink the
// buffered checkpoints are committed there first, each with its own id, oldest first:
// the remote sink's own checkpoint record says which it already holds, so none is
// stored twice and none is skipped.

std::map<std::string, uint64_t> BreakerSink::Committed() const {
  std::map<std::string, uint64_t> out;
  if (ctx_ == nullptr || ctx_->ledger == nullptr) return out;
  const std::string prefix = name_ + "/";
  for (const auto& [key, n] : ctx_->ledger->Snapshot().sink_committed) {
    if (key.compare(0, prefix.size(), prefix) == 0) out[key] = n;
  }
  return out;
}

std::map<std::string, uint64_t> BreakerSink::CommittedSince(
    const std::map<std::string, uint64_t>& before) const {
  std::map<std::string, uint64_t> out;
  for (const auto& [key, n] : Committed()) {
    auto it = before.find(key);
    const uint64_t was = it == before.end() ? 0 : it->second;
    if (n > was) out[key] = n - was;
  }
  return out;
}

Status BreakerSink::OpenRemoteCheckpoints() {
  Result<SinkCheckpointRecord> rec = remote_->OpenCheckpoints();
  if (!rec.ok()) return rec.status();
  remote_record_ = std::move(*rec);
  remote_checkpoint_ = remote_record_.checkpoint;
  remote_checkpoints_ = true;
  return Status::Ok();
}

Result<SinkCheckpointRecord> BreakerSink::OpenCheckpoints() {
  if (!options_.remote_checkpoints) {
    return Status::Invalid(
        "this sink does not take part in checkpoints behind the circuit breaker (postgres "
        "does; a kafka sink with transactional_id needs `breaker: false`)");
  }
  if (!db_.is_open()) return Status::Internal("sink " + name_ + ": OpenCheckpoints before Open");
  // A buffered checkpoint is complete once its transaction is: fsync at every commit.
  TRIB_RETURN_IF_ERROR(db_.Exec("PRAGMA synchronous = FULL"));
  SinkCheckpointRecord local;
  {
    TRIB_ASSIGN_OR_RETURN(SqliteStatement q,
                          db_.Prepare("SELECT checkpoint, rows FROM checkpoint_record"));
    TRIB_ASSIGN_OR_RETURN(bool row, q.Step());
    if (row) {
      local.checkpoint = static_cast<uint64_t>(q.ColumnInt(0));
      std::string_view text = q.ColumnText(1);
      while (!text.empty()) {
        size_t eol = text.find('\n');
        std::string_view line = text.substr(0, eol);
        text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
        size_t eq = line.rfind('=');
        if (eq == std::string_view::npos) continue;
        local.rows[std::string(line.substr(0, eq))] =
            std::strtoull(std::string(line.substr(eq + 1)).c_str(), nullptr, 10);
      }
    }
  }
  local_checkpoint_ = local.checkpoint;
  checkpointing_ = true;
  epoch_unsent_ = false;
  if (remote_) {
    Status st = OpenRemoteCheckpoints();
    if (!st.ok()) {
      if (!st.retryable()) return st;
      Lose(st);
    }
  }
  // The newer of the two records: the remote sink's is newer only when the process
  // stopped between a remote commit and its record here.
  if (remote_checkpoints_ && remote_checkpoint_ > local.checkpoint) return remote_record_;
  return local;
}

void BreakerSink::Lose(const Status& st) {
  spdlog::warn("sink {}: circuit breaker opens ({}); checkpoints go to {} until it recovers", name_,
               st.message(), db_.path());
  if (remote_) {
    remote_->Close();  // drops what it had not committed: the epoch's copies hold it
    remote_.reset();
  }
  remote_checkpoints_ = false;
  zero_sent_ = false;
  epoch_unsent_ = true;
  if (health_.state == BreakerState::kClosed) ++health_.opened_total;
  health_.state = BreakerState::kOpen;
  slow_in_row_ = 0;
  probe_wait_ = options_.probe_interval;
  next_probe_ = NowUs() + probe_wait_;
  Publish();
}

Status BreakerSink::PrepareCheckpoint(uint64_t checkpoint) {
  if (!checkpointing_ || !remote_ || !remote_checkpoints_ || epoch_unsent_) return Status::Ok();
  Status st = remote_->PrepareCheckpoint(checkpoint);
  if (!st.ok()) {
    if (!st.retryable()) return st;
    Lose(st);
  }
  return Status::Ok();
}

Status BreakerSink::DrainCheckpoints() {
  if (health_.buffered_rows == 0) return Status::Ok();
  std::vector<std::pair<uint64_t, uint64_t>> groups;  // (checkpoint, rows), oldest first
  {
    TRIB_ASSIGN_OR_RETURN(SqliteStatement q,
                          db_.Prepare("SELECT checkpoint, SUM(rows) FROM buffer GROUP BY "
                                      "checkpoint ORDER BY checkpoint"));
    while (true) {
      TRIB_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      groups.emplace_back(static_cast<uint64_t>(q.ColumnInt(0)),
                          static_cast<uint64_t>(q.ColumnInt(1)));
    }
  }
  auto send = [&](uint64_t checkpoint) -> Status {
    TRIB_ASSIGN_OR_RETURN(SqliteStatement q,
                          db_.Prepare("SELECT batch FROM buffer WHERE checkpoint = " +
                                      std::to_string(checkpoint) + " ORDER BY seq"));
    while (true) {
      TRIB_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) return Status::Ok();
      Result<Batch> batch = DecodeBatchRecords(q.ColumnBlob(0));
      if (!batch.ok()) return batch.status().WithContext(db_.path());
      TRIB_RETURN_IF_ERROR(remote_->Write(*batch));
    }
  };
  auto remove = [&](uint64_t checkpoint, uint64_t rows) -> Status {
    TRIB_RETURN_IF_ERROR(
        db_.Exec("DELETE FROM buffer WHERE checkpoint = " + std::to_string(checkpoint)));
    health_.buffered_rows -= std::min(health_.buffered_rows, rows);
    return Status::Ok();
  };
  const TimeUs started = NowUs();
  uint64_t sent = 0;
  uint64_t zero_rows = 0;
  for (const auto& [checkpoint, rows] : groups) {
    if (checkpoint == 0) {
      // Left by a run without checkpoints: committed with the next remote checkpoint.
      TRIB_RETURN_IF_ERROR(send(0));
      zero_sent_ = true;
      zero_rows = rows;
      continue;
    }
    if (checkpoint <= remote_checkpoint_) {
      // The remote sink committed it although the commit was reported as failed (or the
      // process stopped before recording it here): its rows are not counted yet.
      if (checkpoint == remote_checkpoint_) {
        for (const auto& [key, n] : remote_record_.rows) {
          if (n > 0) ctx_->ledger->AddSinkCommitted(key, n);
        }
        remote_record_.rows.clear();
      } else {
        spdlog::warn("sink {}: buffered checkpoint {} is already in the remote sink (at {})", name_,
                     checkpoint, remote_checkpoint_);
      }
      TRIB_RETURN_IF_ERROR(remove(checkpoint, rows));
      continue;
    }
    TRIB_RETURN_IF_ERROR(send(checkpoint));
    TRIB_RETURN_IF_ERROR(remote_->PrepareCheckpoint(checkpoint));
    TRIB_RETURN_IF_ERROR(remote_->CommitCheckpoint(checkpoint));
    remote_checkpoint_ = checkpoint;
    remote_record_ = SinkCheckpointRecord{};
    TRIB_RETURN_IF_ERROR(remove(checkpoint, rows));
    if (zero_sent_) {
      TRIB_RETURN_IF_ERROR(remove(0, zero_rows));
      sent += zero_rows;
      zero_sent_ = false;
    }
    sent += rows;
    health_.drained_rows_total += rows;
    DurationUs elapsed = std::max<DurationUs>(NowUs() - started, 1);
    health_.drain_rows_per_s =
        static_cast<double>(sent) * static_cast<double>(kMicrosPerSecond) / elapsed;
    Publish();
  }
  if (sent > 0) {
    spdlog::info("sink {}: drained {} buffered rows of earlier checkpoints at {:.0f} rows/s", name_,
                 sent, health_.drain_rows_per_s);
  }
  return Status::Ok();
}

Status BreakerSink::RecordLocalCheckpoint(uint64_t checkpoint,
                                          const std::map<std::string, uint64_t>& rows) {
  std::string text;
  for (const auto& [key, n] : rows) text += key + "=" + std::to_string(n) + "\n";
  TRIB_ASSIGN_OR_RETURN(SqliteStatement q,
                        db_.Prepare("INSERT OR REPLACE INTO checkpoint_record (one, checkpoint, "
                                    "rows) VALUES (1, ?1, ?2)"));
  q.BindInt(1, static_cast<int64_t>(checkpoint));
  q.BindText(2, text);
  TRIB_RETURN_IF_ERROR(q.Run());
  local_checkpoint_ = checkpoint;
  return Status::Ok();
}

Status BreakerSink::BufferCheckpoint(uint64_t checkpoint,
                                     const std::map<std::string, uint64_t>& rows) {
  const uint64_t held = health_.buffered_rows;
  TRIB_RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
  Status st;
  for (const Batch& b : uncommitted_) {
    st = Insert(b, checkpoint);
    if (!st.ok()) break;
  }
  if (st.ok()) st = RecordLocalCheckpoint(checkpoint, rows);
  if (st.ok()) st = db_.Exec("COMMIT");
  if (!st.ok()) {
    Status failed = Full(st);  // before the rollback resets the error code
    if (!db_.autocommit()) (void)db_.Exec("ROLLBACK");
    health_.buffered_rows = held;
    Publish();
    return failed.WithContext("checkpoint " + std::to_string(checkpoint));
  }
  uncommitted_.clear();
  uncommitted_rows_ = 0;
  epoch_unsent_ = remote_ == nullptr;
  Publish();
  return Status::Ok();
}

Status BreakerSink::CommitCheckpoint(uint64_t checkpoint) {
  if (!checkpointing_) {
    return Status::Internal("sink " + name_ + ": CommitCheckpoint before OpenCheckpoints");
  }
  const std::map<std::string, uint64_t> before = Committed();
  if (health_.state != BreakerState::kClosed && NowUs() >= next_probe_) {
    health_.state = BreakerState::kHalfOpen;
    Publish();
    remote_ = make_();
    Status st = remote_->Open(*ctx_);
    if (st.ok()) st = OpenRemoteCheckpoints();
    if (!st.ok()) {
      if (!st.retryable()) return st;
      ProbeFailed(st);
    } else {
      epoch_unsent_ = true;  // the epoch was written while there was no remote sink
    }
  }
  if (remote_ && remote_checkpoints_) {
    Status st = DrainCheckpoints();
    if (st.ok() && epoch_unsent_) {
      for (const Batch& b : uncommitted_) {
        st = remote_->Write(b);
        if (!st.ok()) break;
      }
      if (st.ok()) st = remote_->PrepareCheckpoint(checkpoint);
      if (st.ok()) epoch_unsent_ = false;
    }
    const TimeUs t0 = NowUs();
    if (st.ok()) st = remote_->CommitCheckpoint(checkpoint);
    if (st.ok()) {
      remote_checkpoint_ = checkpoint;
      remote_record_ = SinkCheckpointRecord{};
      if (zero_sent_) {
        TRIB_RETURN_IF_ERROR(db_.Exec("DELETE FROM buffer WHERE checkpoint = 0"));
        health_.buffered_rows = 0;
        zero_sent_ = false;
      }
      if (health_.state != BreakerState::kClosed) {
        spdlog::info(
            "sink {}: recovered; buffered checkpoints are committed and the breaker "
            "closes",
            name_);
        health_.state = BreakerState::kClosed;
        probe_wait_ = options_.probe_interval;
      } else {
        NoteCommitLatency(NowUs() - t0, uncommitted_rows_);
      }
      uncommitted_.clear();
      uncommitted_rows_ = 0;
      TRIB_RETURN_IF_ERROR(RecordLocalCheckpoint(checkpoint, CommittedSince(before)));
      if (slow_in_row_ >= options_.slow_batches) {
        Lose(Status::Io(std::to_string(slow_in_row_) + " commits in a row took more than " +
                            std::to_string(options_.latency_factor) + "x the usual " +
                            FormatDuration(static_cast<DurationUs>(baseline_us_)),
                        true));
      }
      Publish();
      return Status::Ok();
    }
    if (!st.retryable()) return st;
    if (health_.state == BreakerState::kHalfOpen) {
      ProbeFailed(st);
      epoch_unsent_ = true;
    } else {
      Lose(st);
    }
  }
  // The remote sink is out: the checkpoint completes in the buffer.
  return BufferCheckpoint(checkpoint, CommittedSince(before));
}

void BreakerSink::Close() {
  if (remote_) {
    remote_->Close();
    remote_.reset();
  }
  if (!db_.is_open()) return;
  if (health_.buffered_rows > 0) {
    spdlog::warn("sink {}: {} rows stay in the local buffer {} for the next run", name_,
                 health_.buffered_rows, db_.path());
  }
  if (!unbuffered_.empty()) {
    uint64_t rows = 0;
    for (const Batch& b : unbuffered_) rows += BatchRecordRows(b);
    spdlog::error(
        "sink {}: {} rows the full local buffer could not take were not committed (nor "
        "were their source positions)",
        name_, rows);
  }
  insert_.Finalize();
  delete_.Finalize();
  db_.Close();
}

}  // namespace

std::vector<OptionSpec> BreakerOptionSpecs() {
  return {
      {"breaker", OptionType::kBool, "true",
       "Put a circuit breaker with a durable local buffer in front of this sink: while the "
       "remote side fails or is slow, records go to a local SQLite file and are sent, in "
       "order, once it recovers."},
      {"breaker_buffer", OptionType::kString, "",
       "The breaker's buffer file. Empty: `<data-dir>/<sink name>.buffer.sqlite`."},
      {"breaker_latency_factor", OptionType::kDouble, "2",
       "A commit is slow when it takes longer than this many times the average of the "
       "healthy ones.",
       "1.."},
      {"breaker_slow_batches", OptionType::kInt, "3",
       "Open the breaker after this many slow commits in a row.", "1.."},
      {"breaker_probe_interval", OptionType::kDuration, "1s",
       "Wait before the first half-open probe; it doubles while probes fail.", "1ms..1h"},
      {"breaker_probe_interval_max", OptionType::kDuration, "30s", "Longest wait between probes.",
       "1ms..1h"},
      {"breaker_buffer_max", OptionType::kString, "",
       "Largest size of the buffer file (`256MiB`, `2GiB`): past it the buffer refuses rows "
       "as on a full disk (reported, and it keeps what it holds). Empty: what the disk "
       "allows."},
  };
}

Result<BreakerOptions> ReadBreakerOptions(const OptionReader& o) {
  BreakerOptions out;
  TRIB_ASSIGN_OR_RETURN(out.enabled, o.GetBool("breaker"));
  TRIB_ASSIGN_OR_RETURN(out.buffer_path, o.GetString("breaker_buffer"));
  TRIB_ASSIGN_OR_RETURN(out.latency_factor, o.GetDouble("breaker_latency_factor"));
  TRIB_ASSIGN_OR_RETURN(int64_t slow, o.GetInt("breaker_slow_batches"));
  out.slow_batches = static_cast<int>(std::min<int64_t>(slow, 1000000));
  TRIB_ASSIGN_OR_RETURN(out.probe_interval, o.GetDuration("breaker_probe_interval"));
  TRIB_ASSIGN_OR_RETURN(out.probe_interval_max, o.GetDuration("breaker_probe_interval_max"));
  TRIB_ASSIGN_OR_RETURN(std::string max_text, o.GetString("breaker_buffer_max"));
  if (!max_text.empty()) {
    Result<uint64_t> max = ParseByteSizeText(max_text);
    if (!max.ok()) return o.Error("breaker_buffer_max", max.status().message());
    if (*max < 64 * 1024) return o.Error("breaker_buffer_max", "must be at least 64KiB");
    out.buffer_max_bytes = *max;
  }
  if (out.probe_interval_max < out.probe_interval) {
    return o.Error("breaker_probe_interval_max", "must not be shorter than breaker_probe_interval");
  }
  return out;
}

std::unique_ptr<Sink> MakeBreakerSink(std::string name, BreakerOptions options, SinkMaker make) {
  return std::make_unique<BreakerSink>(std::move(name), std::move(options), std::move(make));
}

}  // namespace tributary
