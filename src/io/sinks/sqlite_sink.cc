#include "io/sinks/sqlite_sink.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "core/json_writer.h"
#include "core/registry.h"
#include "io/sinks/batch_codec.h"
#include "io/sinks/gpkg.h"
#include "io/sinks/sink_text.h"
#include "io/sinks/sqlite_util.h"
#include "io/sinks/table_selection.h"
#include "spatial/enrich.h"
#include "spatial/s2cell.h"

namespace tributary {

namespace {

// The tables as schema version 1 created them. Column names are part of the public
// contract (docs/SCHEMA.md): change them only with a new schema version. Tables are
// rowid tables with an INTEGER PRIMARY KEY, which GeoPackage feature tables need.
// Version 2 (CreateSqliteSchema) makes the file a GeoPackage: it registers the tables in
// gpkg_contents and appends a `geom` POINT column to readings, windows and late. Fresh
// files and version 1 files go through the same steps, so both end up identical.
//
// The unique keys lead with time: rows arrive roughly in time order, so every insert
// lands at the right edge of the key's B-tree. Led by device id instead, each insert
// touches a different leaf page and the readings table ingests about 3x slower.
constexpr std::string_view kSchemaSql = R"sql(
CREATE TABLE IF NOT EXISTS schema_version (
  version INTEGER PRIMARY KEY,
  applied_at TEXT NOT NULL,
  applied_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS readings (
  id INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL,
  metric TEXT NOT NULL,
  value REAL,
  unit TEXT,
  event_time_us INTEGER NOT NULL,
  event_time TEXT NOT NULL,
  arrival_time_us INTEGER NOT NULL,
  arrival_time TEXT NOT NULL,
  lat REAL,
  lon REAL,
  zone_id TEXT,
  h3 TEXT,
  qc_flags TEXT NOT NULL DEFAULT '',
  provenance TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS readings_key ON readings (event_time_us, device_id, metric);
CREATE TABLE IF NOT EXISTS windows (
  id INTEGER PRIMARY KEY,
  window TEXT NOT NULL,
  group_by TEXT NOT NULL,
  group_key TEXT NOT NULL,
  metric TEXT NOT NULL,
  window_start_us INTEGER NOT NULL,
  window_end_us INTEGER NOT NULL,
  window_start TEXT NOT NULL,
  window_end TEXT NOT NULL,
  sample_count INTEGER NOT NULL,
  mean REAL,
  min REAL,
  max REAL,
  std REAL,
  median REAL,
  p95 REAL,
  trimmed_mean REAL,
  first REAL,
  last REAL,
  centroid_lat REAL,
  centroid_lon REAL,
  nowcast REAL,
  aqi INTEGER,
  distinct_sensors INTEGER NOT NULL,
  late_arrival_count INTEGER NOT NULL,
  aggregation_method TEXT,
  quality_flags TEXT NOT NULL DEFAULT '',
  revision INTEGER NOT NULL,
  emitted_at_us INTEGER NOT NULL,
  emitted_at TEXT NOT NULL,
  quantiles TEXT,
  UNIQUE (window_start_us, window, group_by, group_key, metric, revision)
);
CREATE TABLE IF NOT EXISTS quarantine (
  id INTEGER PRIMARY KEY,
  reason TEXT NOT NULL,
  detail TEXT,
  raw BLOB NOT NULL,
  device_id TEXT,
  metric TEXT,
  arrival_time_us INTEGER NOT NULL,
  arrival_time TEXT NOT NULL,
  source TEXT,
  topic TEXT,
  partition INTEGER,
  offset INTEGER,
  provenance TEXT
);
CREATE TABLE IF NOT EXISTS late (
  id INTEGER PRIMARY KEY,
  window TEXT NOT NULL,
  device_id TEXT NOT NULL,
  metric TEXT NOT NULL,
  value REAL,
  event_time_us INTEGER NOT NULL,
  event_time TEXT NOT NULL,
  arrival_time_us INTEGER NOT NULL,
  arrival_time TEXT NOT NULL,
  lateness_us INTEGER NOT NULL,
  lateness_s REAL NOT NULL,
  watermark_us INTEGER,
  watermark TEXT,
  lat REAL,
  lon REAL,
  zone_id TEXT,
  h3 TEXT,
  qc_flags TEXT NOT NULL DEFAULT '',
  provenance TEXT,
  qc_score REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS late_key ON late (event_time_us, device_id, metric, window);
CREATE VIEW IF NOT EXISTS latest_windows AS
  SELECT w.* FROM windows AS w
  WHERE w.revision = (
    SELECT MAX(x.revision) FROM windows AS x
    WHERE x.window = w.window AND x.group_by = w.group_by AND x.group_key = w.group_key
      AND x.metric = w.metric AND x.window_start_us = w.window_start_us);
)sql";

// Each alert's life (alert/rules.h): one row per (rule, key, fired_at), inserted when it
// fires and updated by its re-notify and resolved events. Created by every schema
// version from 3 on (CREATE IF NOT EXISTS: older files gain it on open).
// Moran's I and the variogram of each surface's closed windows (spatial/surface.h): one
// row over all sensors (zone 'all') and one per zone of the first zone layer.
constexpr std::string_view kSpatialStatsSql = R"sql(
CREATE TABLE IF NOT EXISTS spatial_stats (
  id INTEGER PRIMARY KEY,
  surface TEXT NOT NULL,
  window TEXT NOT NULL,
  metric TEXT NOT NULL,
  window_start_us INTEGER NOT NULL,
  window_end_us INTEGER NOT NULL,
  window_start TEXT NOT NULL,
  window_end TEXT NOT NULL,
  zone_layer TEXT,
  zone TEXT NOT NULL,
  sensors INTEGER NOT NULL,
  weights TEXT NOT NULL,
  morans_i REAL,
  morans_expected REAL,
  morans_z REAL,
  variogram_model TEXT NOT NULL,
  nugget REAL,
  sill REAL,
  range_m REAL,
  nugget_sill REAL,
  surface_method TEXT NOT NULL,
  revision INTEGER NOT NULL,
  emitted_at TEXT NOT NULL,
  UNIQUE (surface, window_start_us, zone, revision)
);
CREATE INDEX IF NOT EXISTS spatial_stats_window ON spatial_stats (window_start_us, surface);
)sql";

constexpr std::string_view kInsertSpatialStats = R"sql(
INSERT OR IGNORE INTO spatial_stats (surface, window, metric, window_start_us, window_end_us,
  window_start, window_end, zone_layer, zone, sensors, weights, morans_i, morans_expected,
  morans_z, variogram_model, nugget, sill, range_m, nugget_sill, surface_method, revision,
  emitted_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
  ?20, ?21, ?22))sql";

constexpr std::string_view kAlertsSql = R"sql(
CREATE TABLE IF NOT EXISTS alerts (
  id INTEGER PRIMARY KEY,
  alert_id TEXT NOT NULL UNIQUE,
  rule TEXT NOT NULL,
  kind TEXT NOT NULL,
  key TEXT NOT NULL,
  metric TEXT,
  severity TEXT NOT NULL,
  state TEXT NOT NULL,
  fired_at_us INTEGER NOT NULL,
  fired_at TEXT NOT NULL,
  resolved_at_us INTEGER,
  resolved_at TEXT,
  first_value REAL,
  last_value REAL,
  level REAL,
  notifications INTEGER NOT NULL,
  last_event_us INTEGER NOT NULL,
  message TEXT
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, fired_at_us);
)sql";

constexpr std::string_view kUpsertAlert = R"sql(
INSERT INTO alerts (alert_id, rule, kind, key, metric, severity, state, fired_at_us, fired_at,
  resolved_at_us, resolved_at, first_value, last_value, level, notifications, last_event_us,
  message)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, 1, ?14, ?15)
ON CONFLICT (alert_id) DO UPDATE SET
  state = excluded.state,
  resolved_at_us = excluded.resolved_at_us,
  resolved_at = excluded.resolved_at,
  last_value = excluded.last_value,
  notifications = notifications + (excluded.state = 'firing'),
  last_event_us = excluded.last_event_us,
  message = excluded.message)sql";

// Parameter numbers below follow the column order of these statements.
constexpr std::string_view kInsertReading = R"sql(
INSERT OR IGNORE INTO readings (device_id, metric, value, unit, event_time_us, event_time,
  arrival_time_us, arrival_time, lat, lon, zone_id, h3, qc_flags, provenance,
  geom, zones, s2, qc_score)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18))sql";

constexpr std::string_view kInsertWindow = R"sql(
INSERT OR IGNORE INTO windows (window, group_by, group_key, metric, window_start_us,
  window_end_us, window_start, window_end, sample_count, mean, min, max, std, median, p95,
  trimmed_mean, first, last, centroid_lat, centroid_lon, distinct_sensors,
  late_arrival_count, aggregation_method, quality_flags, revision, emitted_at_us,
  emitted_at, quantiles, geom, nowcast, aqi, interpolated_sample_fraction, exceedance_count)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
  ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33))sql";

constexpr std::string_view kInsertQuarantine = R"sql(
INSERT INTO quarantine (reason, detail, raw, device_id, metric, arrival_time_us,
  arrival_time, source, topic, partition, offset, provenance)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12))sql";

constexpr std::string_view kInsertLate = R"sql(
INSERT OR IGNORE INTO late (window, device_id, metric, value, event_time_us, event_time,
  arrival_time_us, arrival_time, lateness_us, lateness_s, watermark_us, watermark, lat,
  lon, zone_id, h3, qc_flags, provenance, geom, qc_score)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
  ?18, ?19, ?20))sql";

enum TableIndex : int { kReadings = 0, kWindows, kQuarantine, kLate, kTableCount };
constexpr std::string_view kTableNames[kTableCount] = {"readings", "windows", "quarantine", "late"};
// gpkg_contents descriptions of the layers.
constexpr std::string_view kTableDescriptions[kTableCount] = {
    "Accepted readings (one per device, metric and event time)",
    "Window results per group and metric, every revision",
    "Payloads and readings that failed decoding or validation, with their raw bytes",
    "Readings that arrived after the grace period of a window definition"};

// Formats times exactly like FormatTime ("2024-05-01T12:00:00.123456Z", no fraction when
// zero) without allocating: the date part is cached per day, and one formatter is kept
// per text column, so consecutive rows (whose times share a day) only write the clock.
// The returned view points into the formatter and stays valid until its next call.
class IsoTimeText {
 public:
  std::string_view Format(TimeUs t) {
    int64_t secs = FloorDiv(t, kMicrosPerSecond);
    int64_t frac = t - secs * kMicrosPerSecond;
    int64_t days = FloorDiv(secs, 86400);
    if (days < kFirstDay || days >= kEndDay) {  // years outside 0000..9999
      slow_ = FormatTime(t);
      return slow_;
    }
    if (days != day_) {
      std::string midnight = FormatTime(days * kMicrosPerDay);  // "YYYY-MM-DDT00:00:00Z"
      std::memcpy(buf_, midnight.data(), 11);
      day_ = days;
    }
    int64_t sod = secs - days * 86400;
    char* p = buf_ + 11;
    Put2(p, sod / 3600);
    p[2] = ':';
    Put2(p + 3, sod / 60 % 60);
    p[5] = ':';
    Put2(p + 6, sod % 60);
    p += 8;
    if (frac != 0) {
      *p++ = '.';
      for (int i = 5; i >= 0; --i) {
        p[i] = static_cast<char>('0' + frac % 10);
        frac /= 10;
      }
      p += 6;
    }
    *p++ = 'Z';
    return std::string_view(buf_, static_cast<size_t>(p - buf_));
  }

 private:
  static void Put2(char* p, int64_t v) {
    p[0] = static_cast<char>('0' + v / 10);
    p[1] = static_cast<char>('0' + v % 10);
  }
  static inline const int64_t kFirstDay = DaysFromCivil(0, 1, 1);
  static inline const int64_t kEndDay = DaysFromCivil(10000, 1, 1);

  int64_t day_ = INT64_MIN;
  char buf_[32] = {};
  std::string slow_;
};

// H3 cells as lowercase hex without leading zeros (as h3-js writes them); NULL for 0.
void BindH3(SqliteStatement& s, int index, uint64_t cell, char (&buf)[24]) {
  s.BindTextOrNull(index, SinkH3Hex(cell, buf));
}

// The GeoPackage point of (lon, lat), or NULL when the position is unknown. `blob` must
// outlive the step (BindBlob does not copy).
void BindGeom(SqliteStatement& s, int index, double lon, double lat,
              uint8_t (&blob)[kGpkgPointSize]) {
  if (!HasPosition(lon, lat)) {
    s.BindNull(index);
    return;
  }
  EncodeGpkgPoint(lon, lat, blob);
  s.BindBlob(index, std::string_view(reinterpret_cast<const char*>(blob), sizeof blob));
}

// Broker offsets, partitions and line numbers use -1 for "not applicable": NULL.
void BindOptionalInt(SqliteStatement& s, int index, int64_t v) {
  if (v < 0) {
    s.BindNull(index);
  } else {
    s.BindInt(index, v);
  }
}

const char* SynchronousPragma(SqliteSynchronous s) {
  switch (s) {
    case SqliteSynchronous::kOff:
      return "PRAGMA synchronous = OFF";
    case SqliteSynchronous::kNormal:
      return "PRAGMA synchronous = NORMAL";
    case SqliteSynchronous::kFull:
      return "PRAGMA synchronous = FULL";
  }
  return "PRAGMA synchronous = NORMAL";
}

class SqliteSink final : public Sink {
 public:
  explicit SqliteSink(SqliteSinkOptions options) : options_(std::move(options)) {
    enabled_[kReadings] = options_.readings;
    enabled_[kWindows] = options_.windows;
    enabled_[kQuarantine] = options_.quarantine;
    enabled_[kLate] = options_.late;
    for (int i = 0; i < kTableCount; ++i) {
      ledger_keys_[i] = options_.name + "/" + std::string(kTableNames[i]);
    }
  }
  ~SqliteSink() override { Close(); }

  Status Open(RunContext& ctx) override;
  Status Write(const Batch& batch) override;
  Status Commit() override;
  Result<SinkCheckpointRecord> OpenCheckpoints() override;
  // Every row of the interval is committed by PrepareCheckpoint, with what
  // CommitCheckpoint needs to finish a decided checkpoint at the next open.
  bool NeedsEpochLog() const override { return false; }
  Status PrepareCheckpoint(uint64_t checkpoint) override;
  Status CommitCheckpoint(uint64_t checkpoint) override;
  void Close() override;

 private:
  Status Prepare(SqliteStatement& stmt, std::string_view sql) {
    TRIB_ASSIGN_OR_RETURN(stmt, db_.Prepare(sql));
    return Status::Ok();
  }
  // Step an insert, add 1 to `inserted` when a row was stored (not ignored), reset.
  // A stored row with a position widens `bounds`.
  Status StepInsert(SqliteStatement& stmt, uint64_t& inserted, GeoBounds* bounds = nullptr,
                    double lon = NAN, double lat = NAN) {
    Result<bool> r = stmt.Step();
    if (!r.ok()) return r.status();
    int64_t changes = db_.Changes();
    inserted += static_cast<uint64_t>(changes);
    if (changes > 0 && bounds != nullptr && HasPosition(lon, lat)) bounds->Add(lon, lat);
    stmt.Reset();
    return Status::Ok();
  }
  Status WriteRows(const Batch& batch, uint64_t (&inserted)[kTableCount],
                   GeoBounds (&bounds)[kTableCount]);
  Status InsertReading(const Reading& r, uint64_t& inserted, GeoBounds& bounds);
  Status InsertWindow(const WindowResult& w, uint64_t& inserted, GeoBounds& bounds);
  Status InsertQuarantine(const QuarantineRecord& q, uint64_t& inserted);
  Status InsertLate(const LateRecord& l, uint64_t& inserted, GeoBounds& bounds);
  Status UpsertAlert(const AlertEvent& a);
  Status InsertSpatialStats(const SpatialStats& st);
  // Undo a failed Write: back to the savepoint, or account for a rolled-back transaction.
  Status AbortWrite(const Status& cause);
  // COMMIT. Without checkpoints, or with `checkpoint` set, also count the committed rows
  // in the ledger; a commit inside a checkpoint interval leaves the interval's counts.
  Status CommitTransaction(bool checkpoint = false);
  // Checkpoints: delete the rows committed after the last CommitCheckpoint (the
  // interval a crash interrupted), so that ids and contents continue exactly where the
  // checkpoint left them.
  Result<SinkCheckpointRecord> TrimToCheckpoint();
  // At open: a checkpoint this sink prepared (sink_checkpoint_prepared) is committed
  // now when the store decided it (RunContext::checkpoint_decided) and this sink is one
  // behind it; otherwise it is dropped, and TrimToCheckpoint removes its rows.
  Status FinishPrepared();
  // A run without checkpoints commits rows after the last checkpoint that must stay:
  // the ids of this sink's checkpoint row are cleared, and a later run with checkpoints
  // takes the ids of then (TrimToCheckpoint) instead of removing these rows.
  Status ForgetCheckpointIds();
  // The transaction of CommitCheckpoint: held alerts and spatial statistics, the
  // sink_checkpoints row, the commit and the ledger count.
  Status CheckpointTransaction(uint64_t checkpoint);
  // The transaction of PrepareCheckpoint: the interval's last rows and its
  // sink_checkpoint_prepared row.
  Status PreparedTransaction(uint64_t checkpoint);
  // The transaction is gone (SQLite rolled it back): forget its rows and say so.
  Status TransactionLost(const Status& cause);
  void ClearPending() {
    for (uint64_t& n : pending_) n = 0;
    for (GeoBounds& b : pending_bounds_) b = GeoBounds{};
    pending_rows_ = 0;
    held_alerts_.clear();
    held_spatial_stats_.clear();
  }

  SqliteSinkOptions options_;
  bool enabled_[kTableCount] = {};
  std::string ledger_keys_[kTableCount];
  Ledger* ledger_ = nullptr;
  std::string path_;

  // Statements are declared after db_ so they are finalized before it closes.
  SqliteDb db_;
  SqliteStatement begin_, commit_, rollback_, savepoint_, release_, rollback_to_;
  SqliteStatement insert_[kTableCount];
  SqliteStatement upsert_alert_;
  SqliteStatement insert_spatial_stats_;

  bool in_transaction_ = false;
  bool bulk_ = false;  // staged file: no WAL, no fsync until Close
  // With checkpoints, rows are committed every batch_rows as without them; a row
  // belongs to the checkpoint whose CommitCheckpoint follows it, and OpenCheckpoints
  // removes the rows after the last one (TrimToCheckpoint). Alerts and spatial
  // statistics (upserts and rows without a per-sink id range) wait for the
  // CommitCheckpoint transaction instead.
  bool checkpointing_ = false;
  uint64_t checkpoint_decided_ = 0;  // RunContext::checkpoint_decided
  uint64_t prepared_ = 0;            // the last checkpoint PrepareCheckpoint made durable
  SqliteStatement record_checkpoint_, record_prepared_, drop_prepared_;
  std::vector<AlertEvent> held_alerts_;
  std::vector<SpatialStats> held_spatial_stats_;
  // Rows inserted since the last ledger count: in the open transaction, or with
  // checkpoints since the last CommitCheckpoint.
  uint64_t pending_[kTableCount] = {};
  uint64_t pending_rows_ = 0;              // rows written (inserted or ignored) in the transaction
  GeoBounds pending_bounds_[kTableCount];  // positions of the rows inserted in it

  // Per-row scratch, reused so the hot path does not allocate: BindText does not copy,
  // so every text bound to one row needs its own buffer.
  IsoTimeText time_a_, time_b_, time_c_;
  SinkFlagsText flags_text_;
  SinkProvenanceJson provenance_;
  std::string json_;
  char h3_buf_[24] = {};
  uint8_t geom_buf_[kGpkgPointSize] = {};
  std::vector<std::string> extra_zone_layers_;  // zones.layers after the first
  std::string zones_json_, s2_token_;
};

Status SqliteSink::Open(RunContext& ctx) {
  if (db_.is_open()) return Status::Internal("sqlite sink " + options_.name + " opened twice");
  ledger_ = ctx.ledger;
  checkpoint_decided_ = ctx.checkpoint_decided;
  if (ctx.config != nullptr) extra_zone_layers_ = ExtraZoneLayerNames(*ctx.config);
  if (options_.path.empty()) {
    std::string dir = ctx.data_dir.empty() ? std::string(".") : ctx.data_dir;
    path_ = dir + "/" + std::string(kSqliteDefaultFileName);
  } else {
    path_ = options_.path;
  }
  std::filesystem::path parent = std::filesystem::path(path_).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return Status::Io("sqlite " + path_ + ": cannot create the folder " + parent.string() + ": " +
                        ec.message());
    }
  }
  int busy_ms =
      static_cast<int>(std::min<DurationUs>(options_.busy_timeout / kMicrosPerMilli, INT32_MAX));
  TRIB_RETURN_IF_ERROR(db_.Open(path_, /*read_only=*/false, busy_ms));
  // A staged file (backfill) is thrown away unless the run succeeds, so it is written
  // without the WAL (every page once instead of twice: to the log, then checkpointed)
  // and without fsync; the rollback journal in memory still undoes a failed Write's
  // savepoint. Close switches it to WAL, so the finished file is the same as `run`'s
  // but for its pages of 16 KiB (a new file only): for a file written once, in bulk,
  // four times fewer B-tree pages and writes cost about a tenth less CPU than 4 KiB.
  bulk_ = ctx.staged_outputs && options_.path.empty();
  if (bulk_) {
    TRIB_RETURN_IF_ERROR(db_.Exec(
        "PRAGMA page_size = 16384; PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF"));
  } else {
    // WAL lets readers (the sqlite3 CLI, the dashboard) query while the sink writes.
    TRIB_ASSIGN_OR_RETURN(std::string mode, db_.QueryText("PRAGMA journal_mode = WAL"));
    if (mode != "wal") {
      spdlog::warn(
          "sqlite {}: WAL mode unavailable (journal mode is '{}'); readers may block "
          "writes",
          path_, mode);
    }
    TRIB_RETURN_IF_ERROR(db_.Exec(SynchronousPragma(options_.synchronous)));
  }
  // A transaction of batch_rows readings is about 16 MiB of pages: a cache that holds it
  // keeps SQLite from spilling and re-reading pages before the commit. The WAL file is
  // truncated back to 64 MiB after a checkpoint instead of keeping its peak size.
  TRIB_RETURN_IF_ERROR(
      db_.Exec("PRAGMA cache_size = -16384; PRAGMA journal_size_limit = 67108864"));
  TRIB_RETURN_IF_ERROR(CreateSqliteSchema(db_));
  if (!ctx.checkpointing) TRIB_RETURN_IF_ERROR(ForgetCheckpointIds());
  TRIB_RETURN_IF_ERROR(Prepare(begin_, "BEGIN IMMEDIATE"));
  TRIB_RETURN_IF_ERROR(Prepare(commit_, "COMMIT"));
  TRIB_RETURN_IF_ERROR(Prepare(rollback_, "ROLLBACK"));
  TRIB_RETURN_IF_ERROR(Prepare(savepoint_, "SAVEPOINT sink_write"));
  TRIB_RETURN_IF_ERROR(Prepare(release_, "RELEASE sink_write"));
  TRIB_RETURN_IF_ERROR(Prepare(rollback_to_, "ROLLBACK TO sink_write"));
  TRIB_RETURN_IF_ERROR(Prepare(insert_[kReadings], kInsertReading));
  TRIB_RETURN_IF_ERROR(Prepare(insert_[kWindows], kInsertWindow));
  TRIB_RETURN_IF_ERROR(Prepare(insert_[kQuarantine], kInsertQuarantine));
  TRIB_RETURN_IF_ERROR(Prepare(insert_[kLate], kInsertLate));
  TRIB_RETURN_IF_ERROR(Prepare(upsert_alert_, kUpsertAlert));
  TRIB_RETURN_IF_ERROR(Prepare(insert_spatial_stats_, kInsertSpatialStats));
  return Status::Ok();
}

Status SqliteSink::Write(const Batch& batch) {
  if (!db_.is_open()) {
    return Status::Internal("sqlite sink " + options_.name + ": Write before a successful Open");
  }
  size_t rows = (enabled_[kReadings] ? batch.readings.size() : 0) +
                (enabled_[kWindows] ? batch.windows.size() : 0) +
                (enabled_[kQuarantine] ? batch.quarantine.size() : 0) +
                (enabled_[kLate] ? batch.late.size() : 0) + batch.alerts.size() +
                batch.spatial_stats.size();
  if (rows == 0) return Status::Ok();
  if (!in_transaction_) {
    TRIB_RETURN_IF_ERROR(begin_.Run());
    in_transaction_ = true;
  }
  Status st = savepoint_.Run();
  if (!st.ok()) return AbortWrite(st);
  uint64_t inserted[kTableCount] = {};
  GeoBounds bounds[kTableCount];
  st = WriteRows(batch, inserted, bounds);
  if (st.ok()) st = release_.Run();
  if (!st.ok()) return AbortWrite(st);
  if (checkpointing_) {
    held_alerts_.insert(held_alerts_.end(), batch.alerts.begin(), batch.alerts.end());
    held_spatial_stats_.insert(held_spatial_stats_.end(), batch.spatial_stats.begin(),
                               batch.spatial_stats.end());
  }
  for (int i = 0; i < kTableCount; ++i) {
    pending_[i] += inserted[i];
    if (!bounds[i].empty) {
      pending_bounds_[i].Add(bounds[i].min_x, bounds[i].min_y);
      pending_bounds_[i].Add(bounds[i].max_x, bounds[i].max_y);
    }
  }
  pending_rows_ += rows;
  if (pending_rows_ >= static_cast<uint64_t>(options_.batch_rows)) {
    st = CommitTransaction();
    // A commit that failed but left the transaction open is retried by the next Commit;
    // this batch is safely inside the transaction, so the Write itself succeeded.
    if (!st.ok() && !in_transaction_) return st;
    if (!st.ok()) spdlog::warn("{} (retried at the next commit)", st.message());
  }
  return Status::Ok();
}

Status SqliteSink::WriteRows(const Batch& batch, uint64_t (&inserted)[kTableCount],
                             GeoBounds (&bounds)[kTableCount]) {
  if (enabled_[kReadings]) {
    for (const Reading& r : batch.readings) {
      TRIB_RETURN_IF_ERROR(InsertReading(r, inserted[kReadings], bounds[kReadings]));
    }
  }
  if (enabled_[kWindows]) {
    for (const WindowResult& w : batch.windows) {
      TRIB_RETURN_IF_ERROR(InsertWindow(w, inserted[kWindows], bounds[kWindows]));
    }
  }
  if (enabled_[kQuarantine]) {
    for (const QuarantineRecord& q : batch.quarantine) {
      TRIB_RETURN_IF_ERROR(InsertQuarantine(q, inserted[kQuarantine]));
    }
  }
  if (enabled_[kLate]) {
    for (const LateRecord& l : batch.late) {
      TRIB_RETURN_IF_ERROR(InsertLate(l, inserted[kLate], bounds[kLate]));
    }
  }
  if (checkpointing_) return Status::Ok();  // held by Write for CommitCheckpoint
  for (const AlertEvent& a : batch.alerts) TRIB_RETURN_IF_ERROR(UpsertAlert(a));
  for (const SpatialStats& st : batch.spatial_stats) TRIB_RETURN_IF_ERROR(InsertSpatialStats(st));
  return Status::Ok();
}

Status SqliteSink::InsertSpatialStats(const SpatialStats& st) {
  SqliteStatement& s = insert_spatial_stats_;
  s.BindText(1, st.surface.view());
  s.BindText(2, st.window.view());
  s.BindText(3, st.metric.view());
  s.BindInt(4, st.start);
  s.BindInt(5, st.end);
  s.BindText(6, time_a_.Format(st.start));
  s.BindText(7, time_b_.Format(st.end));
  s.BindTextOrNull(8, st.zone_layer.view());
  s.BindText(9, st.zone.view());
  s.BindInt(10, st.sensors);
  s.BindText(11, st.weights.view());
  s.BindDouble(12, st.morans_i);
  s.BindDouble(13, st.morans_expected);
  s.BindDouble(14, st.morans_z);
  s.BindText(15, st.variogram_model.view());
  s.BindDouble(16, st.nugget);
  s.BindDouble(17, st.sill);
  s.BindDouble(18, st.range_m);
  s.BindDouble(19, st.nugget_sill);
  s.BindText(20, st.method.view());
  s.BindInt(21, st.revision);
  s.BindText(22, time_c_.Format(st.emitted_at));
  return s.Run();
}

Status SqliteSink::UpsertAlert(const AlertEvent& a) {
  SqliteStatement& s = upsert_alert_;
  std::string id = a.rule.str() + "|" + a.key.str() + "|" + std::to_string(a.fired_at);
  bool resolved = a.state == AlertState::kResolved;
  s.BindText(1, id);
  s.BindText(2, a.rule.view());
  s.BindText(3, a.kind.view());
  s.BindText(4, a.key.view());
  s.BindTextOrNull(5, a.metric.view());
  s.BindText(6, a.severity.view());
  s.BindText(7, resolved ? "resolved" : "firing");
  s.BindInt(8, a.fired_at);
  s.BindText(9, time_a_.Format(a.fired_at));
  if (resolved) {
    s.BindInt(10, a.event_time);
    s.BindText(11, time_b_.Format(a.event_time));
  } else {
    s.BindNull(10);
    s.BindNull(11);
  }
  s.BindDouble(12, a.value);
  s.BindDouble(13, a.level);
  s.BindInt(14, a.event_time);
  s.BindText(15, a.message);
  return s.Run();
}

Status SqliteSink::InsertReading(const Reading& r, uint64_t& inserted, GeoBounds& bounds) {
  SqliteStatement& s = insert_[kReadings];
  s.BindText(1, r.device.view());
  s.BindText(2, r.metric.view());
  s.BindDouble(3, r.value);
  s.BindNull(4);  // unit: filled once the metric registry exposes canonical units
  s.BindInt(5, r.event_time);
  s.BindText(6, time_a_.Format(r.event_time));
  s.BindInt(7, r.arrival_time);
  s.BindText(8, time_b_.Format(r.arrival_time));
  s.BindDouble(9, r.lat);
  s.BindDouble(10, r.lon);
  s.BindTextOrNull(11, r.zone.view());
  BindH3(s, 12, r.h3, h3_buf_);
  s.BindText(13, flags_text_.Format(r.flags.bits, false));
  s.BindText(14, provenance_.Format(r.prov, r.device, r.flags));
  BindGeom(s, 15, r.lon, r.lat, geom_buf_);
  zones_json_.clear();
  AppendExtraZonesJson(r, extra_zone_layers_, zones_json_);
  s.BindTextOrNull(16, zones_json_);
  s2_token_ = S2CellToken(r.s2);
  s.BindTextOrNull(17, s2_token_);
  s.BindDouble(18, r.qc_score);
  return StepInsert(s, inserted, &bounds, r.lon, r.lat);
}

Status SqliteSink::InsertWindow(const WindowResult& w, uint64_t& inserted, GeoBounds& bounds) {
  SqliteStatement& s = insert_[kWindows];
  s.BindText(1, w.window.view());
  s.BindText(2, w.group_by.view());
  s.BindText(3, w.group.view());
  s.BindText(4, w.metric.view());
  s.BindInt(5, w.start);
  s.BindInt(6, w.end);
  s.BindText(7, time_a_.Format(w.start));
  s.BindText(8, time_b_.Format(w.end));
  s.BindInt(9, static_cast<int64_t>(w.count));
  s.BindDouble(10, w.mean);
  s.BindDouble(11, w.min);
  s.BindDouble(12, w.max);
  s.BindDouble(13, w.std);
  s.BindDouble(14, w.median);
  s.BindDouble(15, w.p95);
  s.BindDouble(16, w.trimmed_mean);
  s.BindDouble(17, w.first);
  s.BindDouble(18, w.last);
  s.BindDouble(19, w.centroid_lat);
  s.BindDouble(20, w.centroid_lon);
  s.BindInt(21, w.distinct_sensors);
  s.BindInt(22, static_cast<int64_t>(w.late_count));
  s.BindTextOrNull(23, w.aggregation_method.view());
  s.BindText(24, flags_text_.Format(w.flags, true));
  s.BindInt(25, w.revision);
  s.BindInt(26, w.emitted_at);
  s.BindText(27, time_c_.Format(w.emitted_at));
  if (w.quantiles.empty()) {
    s.BindNull(28);
  } else {
    SinkQuantilesJson(w.quantiles, json_);
    s.BindText(28, json_);
  }
  BindGeom(s, 29, w.centroid_lon, w.centroid_lat, geom_buf_);
  s.BindDouble(30, w.nowcast);
  s.BindDouble(31, w.aqi);
  s.BindDouble(32, w.interpolated_sample_fraction);
  if (w.exceedance_count < 0) {
    s.BindNull(33);
  } else {
    s.BindInt(33, w.exceedance_count);
  }
  return StepInsert(s, inserted, &bounds, w.centroid_lon, w.centroid_lat);
}

Status SqliteSink::InsertQuarantine(const QuarantineRecord& q, uint64_t& inserted) {
  SqliteStatement& s = insert_[kQuarantine];
  s.BindText(1, q.reason.view());
  s.BindTextOrNull(2, q.detail);
  s.BindBlob(3, q.raw);
  s.BindTextOrNull(4, q.device.view());
  s.BindTextOrNull(5, q.metric.view());
  s.BindInt(6, q.arrival_time);
  s.BindText(7, time_a_.Format(q.arrival_time));
  s.BindTextOrNull(8, q.prov.source.view());
  s.BindTextOrNull(9, q.prov.topic.view());
  BindOptionalInt(s, 10, q.prov.partition);
  BindOptionalInt(s, 11, q.prov.offset);
  s.BindText(12, provenance_.Format(q.prov, q.device, QcFlags{}));
  return StepInsert(s, inserted);
}

Status SqliteSink::InsertLate(const LateRecord& l, uint64_t& inserted, GeoBounds& bounds) {
  SqliteStatement& s = insert_[kLate];
  const Reading& r = l.reading;
  s.BindText(1, l.window.view());
  s.BindText(2, r.device.view());
  s.BindText(3, r.metric.view());
  s.BindDouble(4, r.value);
  s.BindInt(5, r.event_time);
  s.BindText(6, time_a_.Format(r.event_time));
  s.BindInt(7, r.arrival_time);
  s.BindText(8, time_b_.Format(r.arrival_time));
  s.BindInt(9, l.lateness);
  s.BindDouble(10, static_cast<double>(l.lateness) / static_cast<double>(kMicrosPerSecond));
  if (l.watermark <= kMinTime) {
    s.BindNull(11);
    s.BindNull(12);
  } else {
    s.BindInt(11, l.watermark);
    s.BindText(12, time_c_.Format(l.watermark));
  }
  s.BindDouble(13, r.lat);
  s.BindDouble(14, r.lon);
  s.BindTextOrNull(15, r.zone.view());
  BindH3(s, 16, r.h3, h3_buf_);
  s.BindText(17, flags_text_.Format(r.flags.bits, false));
  s.BindText(18, provenance_.Format(r.prov, r.device, r.flags));
  BindGeom(s, 19, r.lon, r.lat, geom_buf_);
  s.BindDouble(20, r.qc_score);
  return StepInsert(s, inserted, &bounds, r.lon, r.lat);
}

Status SqliteSink::AbortWrite(const Status& cause) {
  if (db_.autocommit()) return TransactionLost(cause);
  Status back = rollback_to_.Run();
  if (back.ok()) back = release_.Run();
  if (!back.ok()) {
    // The savepoint cannot be restored: drop the whole transaction rather than commit
    // a partial batch later.
    (void)rollback_.Run();
    return TransactionLost(cause);
  }
  return cause;  // the batch left no trace; retrying the Write is safe
}

Status SqliteSink::TransactionLost(const Status& cause) {
  in_transaction_ = false;
  uint64_t lost = 0;
  for (uint64_t n : pending_) lost += n;
  ClearPending();
  if (lost == 0) return cause;  // only the failed batch was in it: a retry redoes it all
  return Status(cause.code(),
                cause.message() + "; the transaction was rolled back and " + std::to_string(lost) +
                    " rows written since the last commit were lost",
                /*retryable=*/false);
}

Status SqliteSink::CommitTransaction(bool checkpoint) {
  // The layer extents in gpkg_contents change in the same transaction as the rows.
  Status st;
  for (int i : {kReadings, kWindows, kLate}) {
    if (st.ok()) st = ExtendGpkgBounds(db_, kTableNames[i], pending_bounds_[i]);
  }
  if (st.ok()) st = commit_.Run();
  if (!st.ok()) {
    if (db_.autocommit()) return TransactionLost(st);
    return st;  // still open: the caller may retry
  }
  in_transaction_ = false;
  if (checkpointing_ && !checkpoint) {
    // Inside a checkpoint interval: the rows count when the checkpoint commits.
    for (GeoBounds& b : pending_bounds_) b = GeoBounds{};
    pending_rows_ = 0;
    return Status::Ok();
  }
  if (ledger_ != nullptr) {
    for (int i = 0; i < kTableCount; ++i) {
      if (enabled_[i]) ledger_->AddSinkCommitted(ledger_keys_[i], pending_[i]);
    }
  }
  ClearPending();
  return Status::Ok();
}

Status SqliteSink::Commit() {
  if (checkpointing_ || !in_transaction_) return Status::Ok();
  return CommitTransaction();
}

// One row per sink name: the last checkpoint committed, the rows it stored and the
// largest id of each table when it committed (rows after it belong to an interval no
// checkpoint covers yet), written in the transaction of the checkpoint's last rows.
constexpr std::string_view kSinkCheckpointsSql =
    "CREATE TABLE IF NOT EXISTS sink_checkpoints ("
    " sink TEXT PRIMARY KEY, checkpoint_id INTEGER NOT NULL,"
    " readings INTEGER NOT NULL, windows INTEGER NOT NULL,"
    " quarantine INTEGER NOT NULL, late INTEGER NOT NULL, committed_us INTEGER NOT NULL)";
// The checkpoint this sink prepared and has not committed yet: written in the
// transaction of the interval's last rows at PrepareCheckpoint (synced), removed in the
// transaction of CommitCheckpoint. It holds what that commit writes — the rows per
// table, the largest ids, the held alerts and spatial statistics (`held`,
// EncodeBatchColumns) — so a commit the process did not reach is finished at the next
// open, without the epoch log (FinishPrepared).
constexpr std::string_view kSinkCheckpointPreparedSql =
    "CREATE TABLE IF NOT EXISTS sink_checkpoint_prepared ("
    " sink TEXT PRIMARY KEY, checkpoint_id INTEGER NOT NULL,"
    " readings INTEGER NOT NULL, windows INTEGER NOT NULL,"
    " quarantine INTEGER NOT NULL, late INTEGER NOT NULL,"
    " readings_id INTEGER NOT NULL, windows_id INTEGER NOT NULL,"
    " quarantine_id INTEGER NOT NULL, late_id INTEGER NOT NULL, held BLOB NOT NULL)";
// Added to files whose sink_checkpoints predates them; NULL in rows written before.
constexpr const char* kSinkCheckpointIdColumns[kTableCount] = {"readings_id", "windows_id",
                                                               "quarantine_id", "late_id"};

Result<SinkCheckpointRecord> SqliteSink::OpenCheckpoints() {
  if (!db_.is_open()) return Status::Internal("sqlite sink: OpenCheckpoints before Open");
  if (in_transaction_) return Status::Internal("sqlite sink: OpenCheckpoints after a Write");
  TRIB_RETURN_IF_ERROR(db_.Exec(kSinkCheckpointsSql));
  TRIB_RETURN_IF_ERROR(db_.Exec(kSinkCheckpointPreparedSql));
  for (const char* column : kSinkCheckpointIdColumns) {
    TRIB_ASSIGN_OR_RETURN(int64_t present,
                          db_.QueryInt("SELECT count(*) FROM pragma_table_info('sink_checkpoints') "
                                       "WHERE name = '" +
                                       std::string(column) + "'"));
    if (present == 0) {
      TRIB_RETURN_IF_ERROR(
          db_.Exec(std::string("ALTER TABLE sink_checkpoints ADD COLUMN ") + column + " INTEGER"));
    }
  }
  std::string max_ids;
  for (int i = 0; i < kTableCount; ++i) {
    max_ids +=
        std::string(", (SELECT COALESCE(MAX(id), 0) FROM ") + std::string(kTableNames[i]) + ")";
  }
  TRIB_RETURN_IF_ERROR(Prepare(record_checkpoint_,
                               "INSERT OR REPLACE INTO sink_checkpoints(sink, checkpoint_id, "
                               "readings, windows, quarantine, late, committed_us, readings_id, "
                               "windows_id, quarantine_id, late_id) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?" +
                                   max_ids + ")"));
  TRIB_RETURN_IF_ERROR(Prepare(record_prepared_,
                               "INSERT OR REPLACE INTO sink_checkpoint_prepared(sink, "
                               "checkpoint_id, readings, windows, quarantine, late, readings_id, "
                               "windows_id, quarantine_id, late_id, held) "
                               "VALUES (?, ?, ?, ?, ?, ?" +
                                   max_ids + ", ?)"));
  TRIB_RETURN_IF_ERROR(
      Prepare(drop_prepared_, "DELETE FROM sink_checkpoint_prepared WHERE sink = ?"));
  TRIB_RETURN_IF_ERROR(begin_.Run());
  in_transaction_ = true;
  Status finished = FinishPrepared();
  Result<SinkCheckpointRecord> rec =
      finished.ok() ? TrimToCheckpoint() : Result<SinkCheckpointRecord>(finished);
  Status st = rec.ok() ? commit_.Run() : rec.status();
  in_transaction_ = false;
  if (!st.ok()) {
    if (!db_.autocommit()) (void)rollback_.Run();
    return st.WithContext("sqlite " + path_ + ": reading the last checkpoint");
  }
  checkpointing_ = true;
  return rec;
}

Status SqliteSink::ForgetCheckpointIds() {
  TRIB_ASSIGN_OR_RETURN(int64_t present,
                        db_.QueryInt("SELECT count(*) FROM pragma_table_info('sink_checkpoints') "
                                     "WHERE name = 'readings_id'"));
  if (present == 0) return Status::Ok();
  std::string clear = "UPDATE sink_checkpoints SET ";
  for (int i = 0; i < kTableCount; ++i) {
    clear += std::string(i > 0 ? ", " : "") + kSinkCheckpointIdColumns[i] + " = NULL";
  }
  TRIB_ASSIGN_OR_RETURN(SqliteStatement update, db_.Prepare(clear + " WHERE sink = ?"));
  update.BindText(1, options_.name);
  TRIB_RETURN_IF_ERROR(update.Run());
  // A checkpoint prepared but not committed belongs to the rows this run keeps: finished
  // later, it would set ids below them and remove them.
  TRIB_ASSIGN_OR_RETURN(
      int64_t prepared,
      db_.QueryInt("SELECT count(*) FROM sqlite_master WHERE name = 'sink_checkpoint_prepared'"));
  if (prepared == 0) return Status::Ok();
  TRIB_ASSIGN_OR_RETURN(SqliteStatement drop,
                        db_.Prepare("DELETE FROM sink_checkpoint_prepared WHERE sink = ?"));
  drop.BindText(1, options_.name);
  return drop.Run();
}

Result<SinkCheckpointRecord> SqliteSink::TrimToCheckpoint() {
  // A sink without a row, or with one from a build that kept the whole interval in one
  // transaction, has committed nothing after its last checkpoint: the ids of now are
  // that checkpoint's.
  SqliteStatement add;
  TRIB_ASSIGN_OR_RETURN(add, db_.Prepare("INSERT OR IGNORE INTO sink_checkpoints(sink, "
                                         "checkpoint_id, readings, windows, quarantine, late, "
                                         "committed_us) VALUES (?, 0, 0, 0, 0, 0, ?)"));
  add.BindText(1, options_.name);
  add.BindInt(2, NowUs());
  TRIB_RETURN_IF_ERROR(add.Run());
  std::string fill = "UPDATE sink_checkpoints SET ";
  for (int i = 0; i < kTableCount; ++i) {
    fill += std::string(i > 0 ? ", " : "") + kSinkCheckpointIdColumns[i] + " = COALESCE(" +
            kSinkCheckpointIdColumns[i] + ", (SELECT COALESCE(MAX(id), 0) FROM " +
            std::string(kTableNames[i]) + "))";
  }
  SqliteStatement update;
  TRIB_ASSIGN_OR_RETURN(update, db_.Prepare(fill + " WHERE sink = ?"));
  update.BindText(1, options_.name);
  TRIB_RETURN_IF_ERROR(update.Run());
  TRIB_ASSIGN_OR_RETURN(
      SqliteStatement q,
      db_.Prepare("SELECT checkpoint_id, readings, windows, quarantine, late, readings_id, "
                  "windows_id, quarantine_id, late_id FROM sink_checkpoints WHERE sink = ?"));
  q.BindText(1, options_.name);
  TRIB_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return Status::Internal("sqlite sink: no sink_checkpoints row for " + options_.name);
  SinkCheckpointRecord rec;
  rec.checkpoint = static_cast<uint64_t>(q.ColumnInt(0));
  int64_t last_id[kTableCount] = {};
  for (int i = 0; i < kTableCount; ++i) {
    if (enabled_[i]) rec.rows[ledger_keys_[i]] = static_cast<uint64_t>(q.ColumnInt(1 + i));
    last_id[i] = q.ColumnInt(5 + i);
  }
  q.Reset();
  uint64_t removed = 0;
  for (int i = 0; i < kTableCount; ++i) {
    if (!enabled_[i]) continue;
    SqliteStatement del;
    TRIB_ASSIGN_OR_RETURN(
        del, db_.Prepare("DELETE FROM " + std::string(kTableNames[i]) + " WHERE id > ?"));
    del.BindInt(1, last_id[i]);
    TRIB_RETURN_IF_ERROR(del.Run());
    removed += static_cast<uint64_t>(db_.Changes());
  }
  if (removed > 0) {
    spdlog::info(
        "sqlite {}: removed {} rows committed after checkpoint {} (their input is processed "
        "again)",
        path_, removed, rec.checkpoint);
  }
  return rec;
}

Status SqliteSink::FinishPrepared() {
  SqliteStatement q;
  TRIB_ASSIGN_OR_RETURN(
      q, db_.Prepare("SELECT checkpoint_id, readings, windows, quarantine, late, readings_id, "
                     "windows_id, quarantine_id, late_id, held FROM sink_checkpoint_prepared "
                     "WHERE sink = ?"));
  q.BindText(1, options_.name);
  TRIB_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return Status::Ok();
  const auto prepared = static_cast<uint64_t>(q.ColumnInt(0));
  int64_t values[8] = {};
  for (int i = 0; i < 8; ++i) values[i] = q.ColumnInt(1 + i);
  const std::string held(q.ColumnBlob(9));
  q.Reset();
  TRIB_ASSIGN_OR_RETURN(q,
                        db_.Prepare("SELECT checkpoint_id FROM sink_checkpoints WHERE sink = ?"));
  q.BindText(1, options_.name);
  TRIB_ASSIGN_OR_RETURN(row, q.Step());
  const int64_t committed = row ? q.ColumnInt(0) : 0;
  q.Reset();
  if (prepared == checkpoint_decided_ && static_cast<uint64_t>(committed) + 1 == prepared) {
    // The store decided the checkpoint after this sink prepared it; the process died
    // before CommitCheckpoint. Its rows are all committed: write what that commit would.
    Batch batch;
    if (!held.empty()) {
      Result<Batch> decoded = DecodeBatchColumns(held);
      if (!decoded.ok()) {
        return decoded.status().WithContext("sqlite " + path_ + ": prepared checkpoint " +
                                            std::to_string(prepared));
      }
      batch = std::move(*decoded);
    }
    for (const AlertEvent& a : batch.alerts) TRIB_RETURN_IF_ERROR(UpsertAlert(a));
    for (const SpatialStats& st : batch.spatial_stats) TRIB_RETURN_IF_ERROR(InsertSpatialStats(st));
    SqliteStatement record;
    TRIB_ASSIGN_OR_RETURN(
        record, db_.Prepare("INSERT OR REPLACE INTO sink_checkpoints(sink, checkpoint_id, "
                            "readings, windows, quarantine, late, committed_us, "
                            "readings_id, windows_id, quarantine_id, late_id) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    record.BindText(1, options_.name);
    record.BindInt(2, static_cast<int64_t>(prepared));
    for (int i = 0; i < 4; ++i) record.BindInt(3 + i, values[i]);
    record.BindInt(7, NowUs());
    for (int i = 0; i < 4; ++i) record.BindInt(8 + i, values[4 + i]);
    TRIB_RETURN_IF_ERROR(record.Run());
    spdlog::info("sqlite {}: committed checkpoint {}, prepared before the process stopped", path_,
                 prepared);
  }
  // Otherwise the checkpoint was never decided: TrimToCheckpoint removes its rows.
  drop_prepared_.BindText(1, options_.name);
  return drop_prepared_.Run();
}

Status SqliteSink::PrepareCheckpoint(uint64_t checkpoint) {
  if (!checkpointing_)
    return Status::Internal("sqlite sink: PrepareCheckpoint before OpenCheckpoints");
  // Before the decision the interval becomes durable: its last rows and the
  // sink_checkpoint_prepared row in one transaction that syncs the WAL (and with it the
  // interval's earlier commits) even with `normal`. SQLite changes `synchronous` only
  // outside a transaction, so the rows written since the last commit are committed
  // first, as any other batch (rows after the last checkpoint are removed at open).
  const bool sync_now = options_.synchronous == SqliteSynchronous::kNormal;
  if (sync_now && in_transaction_) TRIB_RETURN_IF_ERROR(CommitTransaction());
  if (sync_now && !in_transaction_) TRIB_RETURN_IF_ERROR(db_.Exec("PRAGMA synchronous = FULL"));
  Status st = PreparedTransaction(checkpoint);
  if (sync_now && db_.autocommit()) {
    Status back = db_.Exec(SynchronousPragma(options_.synchronous));
    if (st.ok()) st = back;
  }
  if (st.ok()) prepared_ = checkpoint;
  return st;
}

Status SqliteSink::PreparedTransaction(uint64_t checkpoint) {
  if (!in_transaction_) {
    TRIB_RETURN_IF_ERROR(begin_.Run());
    in_transaction_ = true;
  }
  std::string held;
  if (!held_alerts_.empty() || !held_spatial_stats_.empty()) {
    Batch batch;
    batch.alerts = held_alerts_;
    batch.spatial_stats = held_spatial_stats_;
    EncodeBatchColumns(batch, held);
  }
  record_prepared_.BindText(1, options_.name);
  record_prepared_.BindInt(2, static_cast<int64_t>(checkpoint));
  for (int i = 0; i < kTableCount; ++i) {
    record_prepared_.BindInt(3 + i, static_cast<int64_t>(pending_[i]));
  }
  record_prepared_.BindBlob(7, held);
  Status st = record_prepared_.Run();
  if (!st.ok()) {
    if (db_.autocommit()) return TransactionLost(st);
    return st;
  }
  return CommitTransaction();  // the interval's counts stay for CommitCheckpoint
}

Status SqliteSink::CommitCheckpoint(uint64_t checkpoint) {
  if (!checkpointing_)
    return Status::Internal("sqlite sink: CommitCheckpoint before OpenCheckpoints");
  if (prepared_ == checkpoint) {
    // Everything this transaction writes is durable since PrepareCheckpoint: a commit
    // lost with the machine is finished again at the next open (FinishPrepared), so it
    // needs no sync of its own.
    return CheckpointTransaction(checkpoint);
  }
  // Not prepared (a caller of the two-phase commit without phase 1): the checkpoint's
  // transaction syncs the WAL itself even with `normal`, after the interval's last
  // rows went in a commit of their own (SQLite changes `synchronous` only outside a
  // transaction).
  const bool sync_now = options_.synchronous == SqliteSynchronous::kNormal;
  if (sync_now && in_transaction_) TRIB_RETURN_IF_ERROR(CommitTransaction());
  if (sync_now && !in_transaction_) TRIB_RETURN_IF_ERROR(db_.Exec("PRAGMA synchronous = FULL"));
  Status st = CheckpointTransaction(checkpoint);
  if (sync_now && db_.autocommit()) {
    Status back = db_.Exec(SynchronousPragma(options_.synchronous));
    if (st.ok()) st = back;
  }
  return st;
}

Status SqliteSink::CheckpointTransaction(uint64_t checkpoint) {
  if (!in_transaction_) {
    TRIB_RETURN_IF_ERROR(begin_.Run());
    in_transaction_ = true;
  }
  Status st;
  for (const AlertEvent& a : held_alerts_) {
    if (st.ok()) st = UpsertAlert(a);
  }
  for (const SpatialStats& s : held_spatial_stats_) {
    if (st.ok()) st = InsertSpatialStats(s);
  }
  if (st.ok()) {
    record_checkpoint_.BindText(1, options_.name);
    record_checkpoint_.BindInt(2, static_cast<int64_t>(checkpoint));
    for (int i = 0; i < kTableCount; ++i) {
      record_checkpoint_.BindInt(3 + i, static_cast<int64_t>(pending_[i]));
    }
    record_checkpoint_.BindInt(7, NowUs());
    st = record_checkpoint_.Run();
  }
  if (st.ok()) {
    drop_prepared_.BindText(1, options_.name);
    st = drop_prepared_.Run();
  }
  if (!st.ok()) {
    if (db_.autocommit()) return TransactionLost(st);
    return st;
  }
  return CommitTransaction(/*checkpoint=*/true);
}

void SqliteSink::Close() {
  if (in_transaction_) {
    if (pending_rows_ > 0) {
      spdlog::warn("sqlite {}: closed without a commit; rolling back {} uncommitted rows", path_,
                   pending_rows_);
    }
    (void)rollback_.Run();
    in_transaction_ = false;
    ClearPending();
  }
  for (SqliteStatement& s : insert_) s.Finalize();
  upsert_alert_.Finalize();
  insert_spatial_stats_.Finalize();
  record_checkpoint_.Finalize();
  record_prepared_.Finalize();
  drop_prepared_.Finalize();
  for (SqliteStatement* s :
       {&begin_, &commit_, &rollback_, &savepoint_, &release_, &rollback_to_}) {
    s->Finalize();
  }
  if (bulk_ && db_.is_open()) {
    Result<std::string> mode = db_.QueryText("PRAGMA journal_mode = WAL");
    if (!mode.ok() || *mode != "wal") {
      spdlog::warn("sqlite {}: cannot switch the staged file to WAL mode", path_);
    }
    bulk_ = false;
  }
  db_.Close();
}

}  // namespace

namespace {

// Every step is idempotent: a fresh file, a version 1 file and a current one all end up
// with the same tables, columns and GeoPackage registrations.
Status ApplySchema(SqliteDb& db) {
  TRIB_RETURN_IF_ERROR(db.Exec(kSchemaSql));
  // Version 2: the GeoPackage layout.
  TRIB_RETURN_IF_ERROR(CreateGpkgMetadata(db));
  for (int i = 0; i < kTableCount; ++i) {
    GpkgDataType type = i == kQuarantine ? GpkgDataType::kAttributes : GpkgDataType::kFeatures;
    TRIB_RETURN_IF_ERROR(RegisterGpkgTable(db, kTableNames[i], type, kTableDescriptions[i]));
  }
  TRIB_RETURN_IF_ERROR(AddGpkgPointColumn(db, "readings", "lon", "lat"));
  TRIB_RETURN_IF_ERROR(AddGpkgPointColumn(db, "windows", "centroid_lon", "centroid_lat"));
  TRIB_RETURN_IF_ERROR(AddGpkgPointColumn(db, "late", "lon", "lat"));
  TRIB_RETURN_IF_ERROR(db.Exec(kAlertsSql));
  TRIB_RETURN_IF_ERROR(db.Exec(kSpatialStatsSql));
  // Version 3: the regulatory columns of windows; then the share of resampled grid
  // points (added where missing, so older version 3 files gain it too).
  for (const char* column : {"nowcast REAL", "aqi INTEGER", "interpolated_sample_fraction REAL",
                             "exceedance_count INTEGER"}) {
    std::string name(column, std::strchr(column, ' '));
    TRIB_ASSIGN_OR_RETURN(
        int64_t present,
        db.QueryInt("SELECT count(*) FROM pragma_table_info('windows') WHERE name = '" + name +
                    "'"));
    if (present == 0) {
      TRIB_RETURN_IF_ERROR(db.Exec(std::string("ALTER TABLE windows ADD COLUMN ") + column));
    }
  }
  // The zone ids of the extra zone layers (a JSON object by layer name) and the S2 cell
  // token of readings, and the QC score (stream/qc/qc.h), added where missing.
  for (const char* column : {"zones TEXT", "s2 TEXT", "qc_score REAL"}) {
    std::string name(column, std::strchr(column, ' '));
    TRIB_ASSIGN_OR_RETURN(
        int64_t present,
        db.QueryInt("SELECT count(*) FROM pragma_table_info('readings') WHERE name = '" + name +
                    "'"));
    if (present == 0) {
      TRIB_RETURN_IF_ERROR(db.Exec(std::string("ALTER TABLE readings ADD COLUMN ") + column));
    }
  }
  // The QC score of late readings, added where missing.
  TRIB_ASSIGN_OR_RETURN(
      int64_t late_score,
      db.QueryInt("SELECT count(*) FROM pragma_table_info('late') WHERE name = 'qc_score'"));
  if (late_score == 0) TRIB_RETURN_IF_ERROR(db.Exec("ALTER TABLE late ADD COLUMN qc_score REAL"));
  return db.Exec("INSERT OR IGNORE INTO schema_version (version, applied_at, applied_by) VALUES (" +
                 std::to_string(kSqliteSchemaVersion) + ", '" + FormatTime(NowUs()) +
                 "', 'tributary')");
}

}  // namespace

Status CreateSqliteSchema(SqliteDb& db) {
  TRIB_ASSIGN_OR_RETURN(int64_t has_version_table,
                        db.QueryInt("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                                    "name = 'schema_version'"));
  if (has_version_table != 0) {
    TRIB_ASSIGN_OR_RETURN(int64_t version,
                          db.QueryInt("SELECT COALESCE(MAX(version), 0) FROM schema_version"));
    if (version > kSqliteSchemaVersion) {
      return Status::Invalid("sqlite " + db.path() + ": the store has schema version " +
                             std::to_string(version) + " but this tributary writes version " +
                             std::to_string(kSqliteSchemaVersion) +
                             "; use a newer tributary or another path");
    }
  }
  TRIB_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
  Status st = ApplySchema(db);
  if (st.ok()) st = db.Exec("COMMIT");
  if (!st.ok()) {
    if (!db.autocommit()) (void)db.Exec("ROLLBACK");
    return st;
  }
  return Status::Ok();
}

const SectionSpec& SqliteSinkSpec() {
  static const SectionSpec spec{
      "sinks[] (type: sqlite)",
      "A local SQLite store (WAL mode) with the tables readings, windows, quarantine and "
      "late and the view latest_windows, laid out as an OGC GeoPackage 1.3 that QGIS and "
      "GDAL open directly (point layers readings, windows and late); see docs/SCHEMA.md. "
      "Rows are inserted in "
      "transactions committed at every pipeline commit; duplicates of readings, windows "
      "and late rows are ignored, so replayed input is stored once.",
      {
          {"path", OptionType::kString, "",
           "Database file; a relative path is taken from the working directory. Empty: "
           "`<data-dir>/tributary.gpkg`. Missing folders are created."},
          {"tables", OptionType::kStringList, "readings, windows, quarantine, late",
           "Tables that receive rows (every table is created either way): any of "
           "`readings`, `windows`, `quarantine`, `late`."},
          {"synchronous", OptionType::kEnum, "normal",
           "SQLite `PRAGMA synchronous`: `normal` survives a process crash, `full` also a "
           "power loss, `off` neither (fastest).",
           "off|normal|full"},
          {"batch_rows", OptionType::kInt, "50000",
           "Commit a transaction once it holds this many rows, even between pipeline "
           "commits.",
           "1.."},
          {"busy_timeout", OptionType::kDuration, "5s",
           "How long a write waits for a database locked by another writer before failing "
           "(the runtime then retries).",
           "0s..1h"},
      }};
  return spec;
}

Result<SqliteSinkOptions> ReadSqliteSinkOptions(const SinkEntry& entry) {
  const OptionReader& o = entry.options;
  SqliteSinkOptions out;
  out.name = entry.name.empty() ? std::string("sqlite") : entry.name;
  TRIB_ASSIGN_OR_RETURN(out.path, o.GetString("path"));
  TRIB_ASSIGN_OR_RETURN(TableSelection tables, ReadTableSelection(o));
  out.readings = tables.readings;
  out.windows = tables.windows;
  out.quarantine = tables.quarantine;
  out.late = tables.late;
  TRIB_ASSIGN_OR_RETURN(std::string sync, o.GetString("synchronous"));
  out.synchronous = sync == "off"    ? SqliteSynchronous::kOff
                    : sync == "full" ? SqliteSynchronous::kFull
                                     : SqliteSynchronous::kNormal;
  TRIB_ASSIGN_OR_RETURN(out.batch_rows, o.GetInt("batch_rows"));
  TRIB_ASSIGN_OR_RETURN(out.busy_timeout, o.GetDuration("busy_timeout"));
  return out;
}

std::unique_ptr<Sink> MakeSqliteSink(SqliteSinkOptions options) {
  return std::make_unique<SqliteSink>(std::move(options));
}

void RegisterSqliteSink(Registry& registry) {
  registry.AddSink("sqlite", &SqliteSinkSpec(),
                   [](const SinkEntry& entry) -> Result<std::unique_ptr<Sink>> {
                     TRIB_ASSIGN_OR_RETURN(SqliteSinkOptions options, ReadSqliteSinkOptions(entry));
                     return MakeSqliteSink(std::move(options));
                   });
}

}  // namespace tributary
