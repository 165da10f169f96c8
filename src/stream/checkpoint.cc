#include "stream/checkpoint.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/crash_point.h"
#include "core/intern.h"
#include "core/pipeline_config.h"
#include "ingest/ingest.h"
#include "io/connector.h"
#include "io/sinks/batch_codec.h"
#include "io/sinks/sqlite_util.h"
#include "stream/operator.h"

namespace tributary {

// ---------------------------------------------------------------------------
// Encoding

void CheckpointWriter::U64(uint64_t v) {
  while (v >= 0x80) {
    bytes_.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  bytes_.push_back(static_cast<char>(v));
}

void CheckpointWriter::I64(int64_t v) {
  U64((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));
}

void CheckpointWriter::F64(double v) {
  char buf[8];
  std::memcpy(buf, &v, 8);
  bytes_.append(buf, 8);
}

void CheckpointWriter::Str(std::string_view s) {
  U64(s.size());
  bytes_.append(s);
}

uint64_t CheckpointReader::U64() {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ >= bytes_.size()) {
      Fail("truncated number at byte " + std::to_string(pos_));
      return 0;
    }
    auto b = static_cast<uint8_t>(bytes_[pos_++]);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return v;
  }
  Fail("overlong number at byte " + std::to_string(pos_));
  return 0;
}

int64_t CheckpointReader::I64() {
  uint64_t u = U64();
  return static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));
}

double CheckpointReader::F64() {
  if (bytes_.size() - pos_ < 8 || pos_ > bytes_.size()) {
    Fail("truncated double at byte " + std::to_string(pos_));
    pos_ = bytes_.size();
    return 0;
  }
  double v;
  std::memcpy(&v, bytes_.data() + pos_, 8);
  pos_ += 8;
  return v;
}

void CheckpointReader::F64s(double* out, size_t n) {
  const size_t left = bytes_.size() - std::min(pos_, bytes_.size());
  if (n > left / sizeof(double)) {
    Fail("truncated doubles at byte " + std::to_string(pos_));
    pos_ = bytes_.size();
    std::fill(out, out + n, 0.0);
    return;
  }
  std::memcpy(out, bytes_.data() + pos_, n * sizeof(double));
  pos_ += n * sizeof(double);
}

bool CheckpointReader::Bool() {
  if (pos_ >= bytes_.size()) {
    Fail("truncated flag at byte " + std::to_string(pos_));
    return false;
  }
  return bytes_[pos_++] != 0;
}

std::string_view CheckpointReader::Str() {
  uint64_t n = U64();
  if (n > bytes_.size() - std::min(pos_, bytes_.size())) {
    Fail("truncated string at byte " + std::to_string(pos_));
    pos_ = bytes_.size();
    return {};
  }
  std::string_view s = bytes_.substr(pos_, n);
  pos_ += n;
  return s;
}

uint64_t CheckpointReader::Count() {
  uint64_t n = U64();
  if (n > bytes_.size() - std::min(pos_, bytes_.size())) {
    Fail("item count " + std::to_string(n) + " larger than the remaining bytes at byte " +
         std::to_string(pos_));
    pos_ = bytes_.size();
    return 0;
  }
  return n;
}

uint32_t CheckpointReader::SymId(uint64_t id) {
  if (symbol_map_ == nullptr) return static_cast<uint32_t>(id);
  if (id >= symbol_map_->size()) {
    Fail("symbol id " + std::to_string(id) + " outside the state's symbol table");
    return 0;
  }
  return (*symbol_map_)[id];
}

Status CheckpointReader::ExpectSection(std::string_view name) {
  std::string_view got = Str();
  if (!ok()) return status();
  if (got != name) {
    return Status::Corrupt("checkpoint: expected part '" + std::string(name) + "', found '" +
                           std::string(got) +
                           "' (was the checkpoint written with another configuration?)");
  }
  return Status::Ok();
}

Status CheckpointReader::status() const {
  if (error_.empty()) return Status::Ok();
  return Status::Corrupt("checkpoint: " + error_);
}

void SnapshotSymbols(CheckpointWriter& out) {
  const size_t n = InternedCount();
  out.Section("symbols");
  out.U64(n);
  for (size_t id = 1; id < n; ++id) out.Str(Symbol{static_cast<uint32_t>(id)}.view());
}

Status RestoreSymbols(CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("symbols"));
  const uint64_t n = in.U64();
  for (uint64_t id = 1; id < n && in.ok(); ++id) {
    std::string_view text = in.Str();
    Symbol s = Intern(text);
    if (s.id != id) {
      return Status::Invalid("checkpoint: the symbol '" + std::string(text) + "' was number " +
                             std::to_string(id) + " when the checkpoint was taken but is " +
                             std::to_string(s.id) +
                             " now; the pipeline configuration changed since (remove the "
                             "checkpoint folder to start over)");
    }
  }
  return in.status();
}

Result<std::vector<uint32_t>> ReadSymbolMap(CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("symbols"));
  const uint64_t n = in.Count();
  std::vector<uint32_t> map(n > 0 ? n : 1, 0);
  for (uint64_t id = 1; id < n && in.ok(); ++id) map[id] = Intern(in.Str()).id;
  TRIB_RETURN_IF_ERROR(in.status());
  return map;
}

// ---------------------------------------------------------------------------
// Options

const SectionSpec& CheckpointSectionSpec() {
  static const SectionSpec spec{
      "checkpoint",
      "Periodic consistent snapshots of all operator state and source positions, with a "
      "two-phase commit of the sinks, so that `tributary run` resumes after a crash "
      "with exactly-once results (docs/RELIABILITY.md).",
      {
          {"enabled", OptionType::kBool, "false",
           "Take checkpoints and resume from the latest one at start."},
          {"interval", OptionType::kDuration, "10s",
           "Wall time between checkpoints; sinks commit only at checkpoints (replacing "
           "`pipeline.commit_interval`).",
           "100ms..1h"},
          {"dir", OptionType::kString, "",
           "Folder of the checkpoint store and epoch logs; empty: <data-dir>/checkpoints."},
          {"keep", OptionType::kInt, "2", "Complete checkpoints kept in the store.", "1..1000"},
          {"ingest_log_fsync", OptionType::kEnum, "interval",
           "When the ingest log of sources that cannot rewind is flushed to disk: "
           "`every_message`, every `ingest_log_fsync_interval` (`interval`) or `none` "
           "(the OS decides).",
           "every_message|interval|none"},
          {"ingest_log_fsync_interval", OptionType::kDuration, "100ms",
           "Flush period of the ingest log with `ingest_log_fsync: interval`.", "1ms..1m"},
          {"ingest_log_segment_bytes", OptionType::kInt, "67108864",
           "Size at which the ingest log starts a new segment file.", "4096..68719476736"},
      }};
  return spec;
}

Result<CheckpointOptions> ReadCheckpointOptions(const PipelineConfig& config) {
  CheckpointOptions o;
  const OptionReader& r = config.checkpoint;
  TRIB_ASSIGN_OR_RETURN(o.enabled, r.GetBool("enabled"));
  TRIB_ASSIGN_OR_RETURN(o.interval, r.GetDuration("interval"));
  TRIB_ASSIGN_OR_RETURN(o.dir, r.GetString("dir"));
  if (o.dir.empty()) o.dir = config.data_dir + "/checkpoints";
  TRIB_ASSIGN_OR_RETURN(o.keep, r.GetInt("keep"));
  TRIB_ASSIGN_OR_RETURN(std::string fsync, r.GetString("ingest_log_fsync"));
  o.ingest_log_fsync = fsync == "every_message" ? IngestLogFsync::kEveryMessage
                       : fsync == "none"        ? IngestLogFsync::kNone
                                                : IngestLogFsync::kInterval;
  TRIB_ASSIGN_OR_RETURN(o.ingest_log_fsync_interval, r.GetDuration("ingest_log_fsync_interval"));
  TRIB_ASSIGN_OR_RETURN(o.ingest_log_segment_bytes, r.GetInt("ingest_log_segment_bytes"));
  return o;
}

// ---------------------------------------------------------------------------
// Store

namespace {

std::string EncodeCounts(const std::map<std::string, uint64_t>& m) {
  CheckpointWriter w;
  w.U64(m.size());
  for (const auto& [k, v] : m) {
    w.Str(k);
    w.U64(v);
  }
  return w.Take();
}

std::map<std::string, uint64_t> DecodeCounts(CheckpointReader& r) {
  std::map<std::string, uint64_t> m;
  uint64_t n = r.Count();
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    std::string k(r.Str());
    m[k] = r.U64();
  }
  return m;
}

std::string EncodeLedger(const LedgerSnapshot& s, const std::map<std::string, uint64_t>& before) {
  CheckpointWriter w;
  w.U64(s.input);
  w.U64(s.accepted);
  w.U64(s.quarantined);
  w.U64(s.late);
  w.U64(s.duplicate);
  w.U64(s.windows_emitted);
  w.Str(EncodeCounts(s.quarantine_reasons));
  w.Str(EncodeCounts(before));
  return w.Take();
}

Status DecodeLedger(std::string_view bytes, StoredCheckpoint& c) {
  CheckpointReader r(bytes);
  LedgerSnapshot& s = c.ledger;
  s.input = r.U64();
  s.accepted = r.U64();
  s.quarantined = r.U64();
  s.late = r.U64();
  s.duplicate = r.U64();
  s.windows_emitted = r.U64();
  CheckpointReader reasons(r.Str());
  s.quarantine_reasons = DecodeCounts(reasons);
  CheckpointReader before(r.Str());
  c.sink_ledger_before = DecodeCounts(before);
  TRIB_RETURN_IF_ERROR(reasons.status());
  TRIB_RETURN_IF_ERROR(before.status());
  return r.status();
}

// The state file of checkpoint `c` (CheckpointStore::Save): named by id and creation
// time, so a checkpoint id used again (partition-owned state abandons a checkpoint the
// sinks did not commit) never overwrites the file a stored row refers to.
std::string StateFileName(const StoredCheckpoint& c) {
  return "state-" + std::to_string(c.id) + "-" + std::to_string(c.created) + ".bin";
}

bool IsStateFileName(const std::string& name) {
  return name.rfind("state-", 0) == 0 && name.size() > 10 &&
         name.compare(name.size() - 4, 4, ".bin") == 0;
}

Status SyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) return Status::Io("cannot open " + path + ": " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Status::Io("cannot sync " + path + ": " + std::strerror(err));
  return Status::Ok();
}

// Write `bytes` to `path` and sync the file and its folder.
Status WriteStateFile(const std::string& dir, const std::string& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Io("cannot write " + path + ": " + std::strerror(errno));
  size_t at = 0;
  while (at < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + at, bytes.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      return Status::Io("cannot write " + path + ": " + std::strerror(err));
    }
    at += static_cast<size_t>(n);
  }
  const int rc = ::fdatasync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Status::Io("cannot sync " + path + ": " + std::strerror(err));
  return SyncPath(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

// State files no checkpoint row refers to: written by a Save the process did not finish
// (that checkpoint was never decided), or of checkpoints dropped since.
Status RemoveUnreferencedStateFiles(SqliteDb& db, const std::string& dir) {
  TRIB_ASSIGN_OR_RETURN(SqliteStatement known,
                        db.Prepare("SELECT count(*) FROM checkpoints WHERE state_file = ?"));
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!IsStateFileName(name)) continue;
    known.BindText(1, name);
    TRIB_ASSIGN_OR_RETURN(bool row, known.Step());
    const bool referred = row && known.ColumnInt(0) > 0;
    known.Reset();
    if (!referred) std::filesystem::remove(entry.path(), ec);
  }
  return Status::Ok();
}

}  // namespace

CheckpointStore::CheckpointStore() = default;
CheckpointStore::~CheckpointStore() = default;

Status CheckpointStore::Open(const std::string& dir, int64_t keep) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Io("cannot create checkpoint folder " + dir + ": " + ec.message());
  dir_ = dir;
  keep_ = keep;
  db_ = std::make_unique<SqliteDb>();
  TRIB_RETURN_IF_ERROR(db_->Open(dir + "/checkpoints.db"));
  TRIB_RETURN_IF_ERROR(
      db_->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                "CREATE TABLE IF NOT EXISTS checkpoints ("
                " checkpoint_id INTEGER PRIMARY KEY, created_us INTEGER NOT NULL,"
                " state_bytes INTEGER NOT NULL, ledger BLOB NOT NULL);"
                "CREATE TABLE IF NOT EXISTS checkpoint_chunks ("
                " checkpoint_id INTEGER NOT NULL, seq INTEGER NOT NULL, bytes BLOB NOT NULL,"
                " PRIMARY KEY (checkpoint_id, seq));"));
  TRIB_ASSIGN_OR_RETURN(int64_t has_file,
                        db_->QueryInt("SELECT count(*) FROM pragma_table_info('checkpoints') "
                                      "WHERE name = 'state_file'"));
  if (has_file == 0) {
    TRIB_RETURN_IF_ERROR(db_->Exec("ALTER TABLE checkpoints ADD COLUMN state_file TEXT"));
  }
  return RemoveUnreferencedStateFiles(*db_, dir_);
}

Result<std::optional<StoredCheckpoint>> CheckpointStore::Latest() {
  TRIB_ASSIGN_OR_RETURN(
      SqliteStatement st,
      db_->Prepare("SELECT checkpoint_id, created_us, state_bytes, ledger, state_file "
                   "FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1"));
  TRIB_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<StoredCheckpoint>();
  StoredCheckpoint c;
  c.id = static_cast<uint64_t>(st.ColumnInt(0));
  c.created = st.ColumnInt(1);
  const auto state_bytes = static_cast<size_t>(st.ColumnInt(2));
  const std::string where = "checkpoint " + std::to_string(c.id) + " in " + db_->path();
  TRIB_RETURN_IF_ERROR(DecodeLedger(st.ColumnBlob(3), c).WithContext(where));
  const std::string state_file(st.ColumnBlob(4));
  TRIB_ASSIGN_OR_RETURN(SqliteStatement chunks,
                        db_->Prepare("SELECT bytes FROM checkpoint_chunks WHERE checkpoint_id = ? "
                                     "ORDER BY seq"));
  chunks.BindInt(1, static_cast<int64_t>(c.id));
  c.state.reserve(state_bytes);
  if (state_file.empty()) {
    // Checkpoints of earlier builds hold their state in chunks.
    while (true) {
      TRIB_ASSIGN_OR_RETURN(bool more, chunks.Step());
      if (!more) break;
      c.state.append(chunks.ColumnBlob(0));
    }
  } else {
    // The state is a file of its own, written and synced before the row referring to it.
    const std::string path = dir_ + "/" + state_file;
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!f) return Status::Io(where + ": cannot read " + path + ": " + std::strerror(errno));
    c.state.resize(state_bytes);
    const size_t got = std::fread(c.state.data(), 1, state_bytes, f.get());
    c.state.resize(got);
    if (got == state_bytes && std::fgetc(f.get()) != EOF) {
      return Status::Corrupt(where + ": " + path + " is longer than the " +
                             std::to_string(state_bytes) + " bytes of state expected");
    }
  }
  if (c.state.size() != state_bytes) {
    return Status::Corrupt(where + ": " + std::to_string(c.state.size()) +
                           " bytes of state stored, " + std::to_string(state_bytes) + " expected");
  }
  return std::optional<StoredCheckpoint>(std::move(c));
}

Status CheckpointStore::Save(const StoredCheckpoint& c) {
  // The state goes to a file of its own, synced before the transaction that refers to
  // it: written once, where chunks in the database were written twice (to the WAL, then
  // by the WAL checkpoint into the file) with a sync each time.
  const std::string state_file = StateFileName(c);
  TRIB_RETURN_IF_ERROR(WriteStateFile(dir_, dir_ + "/" + state_file, c.state)
                           .WithContext("checkpoint store " + db_->path()));
  TRIB_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
  auto fail = [&](Status st) {
    (void)db_->Exec("ROLLBACK");
    return st.WithContext("checkpoint store " + db_->path());
  };
  {
    auto st = db_->Prepare(
        "INSERT OR REPLACE INTO checkpoints(checkpoint_id, created_us, state_bytes, ledger, "
        "state_file) VALUES (?, ?, ?, ?, ?)");
    if (!st.ok()) return fail(st.status());
    std::string ledger = EncodeLedger(c.ledger, c.sink_ledger_before);
    st->BindInt(1, static_cast<int64_t>(c.id));
    st->BindInt(2, c.created);
    st->BindInt(3, static_cast<int64_t>(c.state.size()));
    st->BindBlob(4, ledger);
    st->BindText(5, state_file);
    Status run = st->Run();
    if (!run.ok()) return fail(run);
  }
  for (const char* sql : {"DELETE FROM checkpoints WHERE checkpoint_id <= ?",
                          "DELETE FROM checkpoint_chunks WHERE checkpoint_id <= ?"}) {
    auto st = db_->Prepare(sql);
    if (!st.ok()) return fail(st.status());
    st->BindInt(1, static_cast<int64_t>(c.id) - keep_);
    Status run = st->Run();
    if (!run.ok()) return fail(run);
  }
  Status commit = db_->Exec("COMMIT");
  if (!commit.ok()) return fail(commit);
  // The files of the checkpoints dropped or replaced (a crash before this leaves them
  // to the next Open).
  return RemoveUnreferencedStateFiles(*db_, dir_);
}

// ---------------------------------------------------------------------------
// Epoch log

EpochLog::~EpochLog() {
  if (file_ != nullptr) std::fclose(file_);
}

std::string EpochLog::PathFor(const std::string& dir, uint64_t id) {
  return dir + "/epoch-" + std::to_string(id) + ".log";
}

// The file is created with the first record (or at Sync), so an interval without
// records leaves no file behind.
Status EpochLog::Begin(const std::string& dir, uint64_t id) {
  if (file_ != nullptr) std::fclose(file_);
  file_ = nullptr;
  path_ = PathFor(dir, id);
  id_ = id;
  if (first_id_ == 0) first_id_ = id;
  std::remove(path_.c_str());  // a leftover of an earlier run
  return Status::Ok();
}

Status EpochLog::Create() {
  if (file_ != nullptr) return Status::Ok();
  if (path_.empty()) return Status::Internal("epoch log: used before Begin");
  file_ = std::fopen(path_.c_str(), "wb");
  if (file_ == nullptr) return Status::Io("cannot write " + path_ + ": " + std::strerror(errno));
  return Status::Ok();
}

Status EpochLog::Append(const Batch& batch) {
  // A batch of only alerts or spatial statistics is logged too: a sink replaying the
  // log would lose them otherwise.
  if (BatchRecordRows(batch) == 0 && batch.alerts.empty() && batch.spatial_stats.empty()) {
    return Status::Ok();
  }
  TRIB_RETURN_IF_ERROR(Create());
  buf_.assign(4, '\0');
  EncodeBatchColumns(batch, buf_);
  auto n = static_cast<uint32_t>(buf_.size() - 4);
  std::memcpy(buf_.data(), &n, 4);
  // Fault injection: a torn frame, then SIGKILL; only in a log after this process's
  // first, so that a checkpoint of this process is complete.
  if (id_ > first_id_ && CrashDue(CrashStep::kEpochWrite)) {
    std::fwrite(buf_.data(), 1, buf_.size() / 2, file_);
    std::fflush(file_);
    crash_detail::Kill(CrashStep::kEpochWrite);
  }
  if (std::fwrite(buf_.data(), 1, buf_.size(), file_) != buf_.size()) {
    return Status::Io("cannot write " + path_ + ": " + std::strerror(errno));
  }
  written_ += buf_.size();
  return Status::Ok();
}

Status EpochLog::Sync() {
  TRIB_RETURN_IF_ERROR(Create());
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) {
    return Status::Io("cannot flush " + path_ + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

void EpochLog::Remove() {
  if (file_ != nullptr) std::fclose(file_);
  file_ = nullptr;
  if (!path_.empty()) std::remove(path_.c_str());
  path_.clear();
}

Result<std::vector<Batch>> EpochLog::ReadAll(const std::string& path) {
  std::vector<Batch> out;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return Status::Io("cannot read epoch log " + path + ": " + std::strerror(errno));
  std::string buf;
  while (true) {
    uint32_t n = 0;
    size_t got = std::fread(&n, 1, 4, f.get());
    if (got == 0) break;
    if (got != 4) return Status::Corrupt("epoch log " + path + ": truncated frame header");
    buf.resize(n);
    if (std::fread(buf.data(), 1, n, f.get()) != n) {
      return Status::Corrupt("epoch log " + path + ": truncated frame");
    }
    // Columns since this format; a log an older build left behind holds rows.
    // (columns versions have the high bit set, record versions never).
    Result<Batch> b = !buf.empty() && (static_cast<uint8_t>(buf[0]) & 0x80) != 0
                          ? DecodeBatchColumns(buf)
                          : DecodeBatchRecords(buf);
    if (!b.ok()) return b.status().WithContext("epoch log " + path);
    out.push_back(std::move(*b));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Coordinator

CheckpointCoordinator::CheckpointCoordinator(CheckpointOptions options, Stages stages)
    : options_(std::move(options)), stages_(std::move(stages)) {
  positions_.resize(stages_.sources.size());
}

CheckpointCoordinator::~CheckpointCoordinator() = default;

Status CheckpointCoordinator::Load() {
  TRIB_RETURN_IF_ERROR(store_.Open(options_.dir, options_.keep));
  TRIB_ASSIGN_OR_RETURN(loaded_, store_.Latest());
  if (!loaded_) return Status::Ok();
  CheckpointReader in(loaded_->state);
  TRIB_RETURN_IF_ERROR(in.ExpectSection("checkpoint"));
  const uint64_t symbols_at = in.U64();
  TRIB_RETURN_IF_ERROR(in.status());
  if (symbols_at > loaded_->state.size()) return Status::Corrupt("checkpoint: symbol table offset");
  CheckpointReader symbols(std::string_view(loaded_->state).substr(symbols_at));
  return RestoreSymbols(symbols).WithContext("checkpoint " + std::to_string(loaded_->id));
}

Status CheckpointCoordinator::Recover() {
  const TimeUs started = NowUs();
  // Every stage must be able to take part, or a crash could not be recovered.
  for (size_t i = 0; i < stages_.sources.size(); ++i) {
    if (!stages_.sources[i]->SupportsCheckpoints()) {
      return Status::Invalid("checkpoints: source " + stages_.source_names[i] +
                             " cannot resume from a position (its type is not supported)");
    }
  }
  {
    CheckpointWriter probe;
    for (Operator* op : stages_.operators) TRIB_RETURN_IF_ERROR(op->Snapshot(probe));
  }
  std::vector<SinkCheckpointRecord> records;
  for (size_t i = 0; i < stages_.sinks.size(); ++i) {
    Result<SinkCheckpointRecord> rec = stages_.sinks[i]->OpenCheckpoints();
    if (!rec.ok()) return rec.status().WithContext("checkpoints: sink " + stages_.sink_names[i]);
    records.push_back(std::move(*rec));
  }
  epoch_needed_ = std::any_of(stages_.sinks.begin(), stages_.sinks.end(),
                              [](const Sink* s) { return s->NeedsEpochLog(); });
  if (options_.partition_state) {
    // What the sinks committed is the truth: the partitions' state and offsets of that
    // checkpoint are in the changelog, restored when the partitions are assigned. A
    // checkpoint decided here but not committed by the sinks is abandoned: its input is
    // read again by whoever owns the partitions now.
    uint64_t id = records.empty() ? (loaded_ ? loaded_->id : 0) : UINT64_MAX;
    for (const SinkCheckpointRecord& r : records) id = std::min(id, r.checkpoint);
    if (loaded_ && loaded_->id > id) {
      spdlog::info("checkpoint {} was decided but not committed by the sinks; continuing after {}",
                   loaded_->id, id);
      std::remove(EpochLog::PathFor(options_.dir, loaded_->id).c_str());
    }
    loaded_.reset();
    last_complete_ = id;
    next_id_ = id + 1;
    last_taken_ = NowUs();
    TRIB_RETURN_IF_ERROR(epoch_.Begin(options_.dir, next_id_));
    recovery_time_ = NowUs() - started;
    return Status::Ok();
  }
  const uint64_t id = loaded_ ? loaded_->id : 0;
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i].checkpoint > id) {
      return Status::Invalid("checkpoints: sink " + stages_.sink_names[i] + " holds checkpoint " +
                             std::to_string(records[i].checkpoint) + " but the store in " +
                             options_.dir + " is at " + std::to_string(id) +
                             " (was the checkpoint folder removed? remove the sink's data too "
                             "to start over)");
    }
    if (id > 1 && records[i].checkpoint + 1 < id) {
      return Status::Invalid("checkpoints: sink " + stages_.sink_names[i] + " is at checkpoint " +
                             std::to_string(records[i].checkpoint) + " but the store at " +
                             std::to_string(id) +
                             " (a sink added later or its data removed: remove the checkpoint "
                             "folder to start over)");
    }
  }
  if (loaded_) {
    CheckpointReader in(loaded_->state);
    TRIB_RETURN_IF_ERROR(in.ExpectSection("checkpoint"));
    (void)in.U64();  // symbol table offset (restored by Load)
    TRIB_RETURN_IF_ERROR(in.ExpectSection("sources"));
    const uint64_t n = in.Count();
    if (in.ok() && n != stages_.sources.size()) {
      return Status::Invalid("checkpoint " + std::to_string(id) + " has " + std::to_string(n) +
                             " sources, the pipeline " + std::to_string(stages_.sources.size()));
    }
    for (size_t i = 0; i < n && in.ok(); ++i) {
      std::string_view name = in.Str();
      if (name != stages_.source_names[i]) {
        return Status::Invalid("checkpoint " + std::to_string(id) + ": source " +
                               std::to_string(i + 1) + " was '" + std::string(name) + "', now '" +
                               stages_.source_names[i] + "'");
      }
      positions_[i] = std::string(in.Str());
    }
    TRIB_RETURN_IF_ERROR(in.status());
    TRIB_RETURN_IF_ERROR(stages_.ingest->Restore(in));
    for (Operator* op : stages_.operators) {
      TRIB_RETURN_IF_ERROR(op->Restore(in).WithContext("checkpoint " + std::to_string(id) +
                                                       ", operator " + std::string(op->name())));
    }
    for (size_t i = 0; i < stages_.sources.size(); ++i) {
      if (positions_[i].empty()) continue;
      TRIB_RETURN_IF_ERROR(stages_.sources[i]
                               ->RestorePosition(positions_[i])
                               .WithContext("source " + stages_.source_names[i]));
    }
    LedgerSnapshot ledger = loaded_->ledger;
    ledger.sink_committed = loaded_->sink_ledger_before;
    stages_.ledger->Restore(ledger);
    // Bring every sink to checkpoint `id`.
    std::optional<std::vector<Batch>> epoch;
    for (size_t i = 0; i < stages_.sinks.size(); ++i) {
      Sink& sink = *stages_.sinks[i];
      if (records[i].checkpoint == id) {
        // A table the sink committed no rows to is left out, as a run that never
        // stopped leaves it out (the ledgers of both must be equal).
        for (const auto& [key, rows] : records[i].rows) {
          if (rows > 0) stages_.ledger->AddSinkCommitted(key, rows);
        }
        continue;
      }
      if (!epoch) {
        Result<std::vector<Batch>> read = EpochLog::ReadAll(EpochLog::PathFor(options_.dir, id));
        if (!read.ok()) {
          return read.status().WithContext("checkpoints: sink " + stages_.sink_names[i] +
                                           " has not committed checkpoint " + std::to_string(id));
        }
        epoch = std::move(*read);
      }
      for (const Batch& b : *epoch) TRIB_RETURN_IF_ERROR(sink.Write(b));
      TRIB_RETURN_IF_ERROR(sink.PrepareCheckpoint(id));
      TRIB_RETURN_IF_ERROR(sink.CommitCheckpoint(id));
      spdlog::info("checkpoint {}: sink {} committed it now ({} batches)", id,
                   stages_.sink_names[i], epoch->size());
    }
    std::remove(EpochLog::PathFor(options_.dir, id).c_str());
    spdlog::info("resumed from checkpoint {} of {} ({} bytes of state)", id,
                 FormatTime(loaded_->created), loaded_->state.size());
    loaded_.reset();  // free the state
  }
  last_complete_ = id;
  next_id_ = id + 1;
  last_taken_ = NowUs();
  TRIB_RETURN_IF_ERROR(epoch_.Begin(options_.dir, next_id_));
  recovery_time_ = NowUs() - started;
  return Status::Ok();
}

void CheckpointCoordinator::NotePosition(size_t source, std::string position) {
  if (source < positions_.size() && !position.empty()) positions_[source] = std::move(position);
}

Result<uint64_t> CheckpointCoordinator::Take(TimeUs now) {
  const TimeUs started = NowUs();
  Pending p;
  p.id = next_id_++;
  CheckpointWriter w;
  // Room for a state as large as the last one and some growth: no copies while it grows.
  w.Reserve(last_state_bytes_ + last_state_bytes_ / 8);
  w.Section("checkpoint");
  // The symbol table goes last (it must include every symbol the state refers to);
  // its offset is written as a fixed 9-byte varint patched below.
  const size_t offset_at = w.size();
  for (int i = 0; i < 9; ++i) w.Bool(false);
  w.Section("sources");
  w.U64(positions_.size());
  for (size_t i = 0; i < positions_.size(); ++i) {
    w.Str(stages_.source_names[i]);
    w.Str(positions_[i]);
  }
  stages_.ingest->Snapshot(w);
  for (Operator* op : stages_.operators) TRIB_RETURN_IF_ERROR(op->Snapshot(w));
  const uint64_t symbols_at = w.size();
  SnapshotSymbols(w);
  p.state = w.Take();
  for (int i = 0; i < 9; ++i) {
    uint8_t b = static_cast<uint8_t>((symbols_at >> (7 * i)) & 0x7f);
    if (i < 8) b |= 0x80;
    p.state[offset_at + static_cast<size_t>(i)] = static_cast<char>(b);
  }
  p.ledger = stages_.ledger->Snapshot();
  p.ledger.sink_committed.clear();
  last_state_bytes_ = p.state.size();
  last_taken_ = now;
  ++costs_.taken;
  costs_.state_bytes = p.state.size();
  costs_.snapshot += NowUs() - started;
  const uint64_t id = p.id;
  std::lock_guard lock(mu_);
  pending_.push_back(std::move(p));
  return id;
}

Status CheckpointCoordinator::Record(const Batch& batch) {
  if (!epoch_needed_) return Status::Ok();
  const TimeUs started = NowUs();
  Status st = epoch_.Append(batch);
  costs_.epoch_write += NowUs() - started;
  return st;
}

CheckpointCosts CheckpointCoordinator::costs() const {
  CheckpointCosts c = costs_;
  c.epoch_bytes = epoch_.written();
  return c;
}

Status CheckpointCoordinator::Complete(uint64_t id) {
  Pending p;
  {
    std::lock_guard lock(mu_);
    auto it = std::find_if(pending_.begin(), pending_.end(),
                           [&](const Pending& x) { return x.id == id; });
    if (it == pending_.end()) {
      return Status::Internal("checkpoint " + std::to_string(id) + ": barrier without a snapshot");
    }
    p = std::move(*it);
    pending_.erase(it);
  }
  // 1. Prepare.
  TimeUs t = NowUs();
  auto lap = [&t](DurationUs& into) {
    const TimeUs now = NowUs();
    into += now - t;
    t = now;
  };
  for (size_t i = 0; i < stages_.sinks.size(); ++i) {
    TRIB_RETURN_IF_ERROR(stages_.sinks[i]->PrepareCheckpoint(id).WithContext(
        "checkpoint " + std::to_string(id) + ": sink " + stages_.sink_names[i] + " prepare"));
  }
  lap(costs_.prepare);
  if (epoch_needed_) TRIB_RETURN_IF_ERROR(epoch_.Sync());
  lap(costs_.epoch_sync);
  CrashPoint(CrashStep::kAfterPrepare);
  // 2. Decide.
  StoredCheckpoint c;
  c.id = id;
  c.created = NowUs();
  c.state = std::move(p.state);
  c.ledger = std::move(p.ledger);
  c.sink_ledger_before = stages_.ledger->Snapshot().sink_committed;
  TRIB_RETURN_IF_ERROR(store_.Save(c));
  lap(costs_.save);
  last_complete_ = id;
  CrashPoint(CrashStep::kAfterDecide);
  // 3. Commit. A failure here is recovered at the next start from the epoch log.
  for (size_t i = 0; i < stages_.sinks.size(); ++i) {
    if (i == 1) CrashPoint(CrashStep::kBetweenSinks);
    TRIB_RETURN_IF_ERROR(stages_.sinks[i]->CommitCheckpoint(id).WithContext(
        "checkpoint " + std::to_string(id) + ": sink " + stages_.sink_names[i] + " commit"));
  }
  CrashPoint(CrashStep::kAfterCommit);
  epoch_.Remove();
  lap(costs_.commit);
  return epoch_.Begin(options_.dir, id + 1);
}

}  // namespace tributary
