#include "io/sinks/duckdb_sink.h"

#include <filesystem>
#include <utility>
#include <vector>

#include "core/registry.h"
#include "io/sinks/table_selection.h"

#ifdef TRIBUTARY_HAVE_DUCKDB
#include <spdlog/spdlog.h>

#include <cmath>

#include "core/ledger.h"
#include "io/sinks/duck_util.h"
#include "io/sinks/gpkg.h"
#include "io/sinks/sink_text.h"
#include "spatial/enrich.h"
#include "spatial/s2cell.h"
#endif

namespace tributary {

#ifdef TRIBUTARY_HAVE_DUCKDB
namespace {

enum TableIndex : int { kReadings = 0, kWindows, kQuarantine, kLate, kTableCount };
constexpr std::string_view kTableNames[kTableCount] = {"readings", "windows", "quarantine", "late"};

constexpr duckdb_type kText = DUCKDB_TYPE_VARCHAR;
constexpr duckdb_type kF64 = DUCKDB_TYPE_DOUBLE;
constexpr duckdb_type kI64 = DUCKDB_TYPE_BIGINT;
constexpr duckdb_type kI32 = DUCKDB_TYPE_INTEGER;
constexpr duckdb_type kTime = DUCKDB_TYPE_TIMESTAMP_TZ;
constexpr duckdb_type kBlob = DUCKDB_TYPE_BLOB;

// The columns of the SQLite store's tables (without its rowid `id`), in append order.

// What readings and late share after their own columns (see AppendPlace).
const std::vector<DuckColumn> kPlaceColumns = {
    {"lat", kF64},       {"lon", kF64},         {"zone_id", kText}, {"h3", kText},
    {"qc_flags", kText}, {"provenance", kText}, {"geom", kBlob},
};

std::vector<DuckColumn> WithPlace(std::vector<DuckColumn> own) {
  own.insert(own.end(), kPlaceColumns.begin(), kPlaceColumns.end());
  return own;
}

// The QC score (stream/qc/qc.h) came after the place columns; older files gain it.
const std::vector<DuckColumn> kReadingColumns = [] {
  std::vector<DuckColumn> c = WithPlace({
      {"device_id", kText},
      {"metric", kText},
      {"value", kF64},
      {"unit", kText},
      {"event_time_us", kI64},
      {"event_time", kTime},
      {"arrival_time_us", kI64},
      {"arrival_time", kTime},
  });
  c.push_back({"qc_score", kF64});
  // The ids of the extra zone layers (JSON {"layer": "id"}) and the S2 cell token.
  c.push_back({"zones", kText});
  c.push_back({"s2", kText});
  return c;
}();

const std::vector<DuckColumn> kWindowColumns = {
    {"window", kText},
    {"group_by", kText},
    {"group_key", kText},
    {"metric", kText},
    {"window_start_us", kI64},
    {"window_end_us", kI64},
    {"window_start", kTime},
    {"window_end", kTime},
    {"sample_count", kI64},
    {"mean", kF64},
    {"min", kF64},
    {"max", kF64},
    {"std", kF64},
    {"median", kF64},
    {"p95", kF64},
    {"trimmed_mean", kF64},
    {"first", kF64},
    {"last", kF64},
    {"centroid_lat", kF64},
    {"centroid_lon", kF64},
    {"nowcast", kF64},
    {"aqi", kF64},
    {"distinct_sensors", kI32},
    {"late_arrival_count", kI64},
    {"aggregation_method", kText},
    {"quality_flags", kText},
    {"revision", kI32},
    {"emitted_at_us", kI64},
    {"emitted_at", kTime},
    {"quantiles", kText},
    {"geom", kBlob},
    {"interpolated_sample_fraction", kF64},
    {"exceedance_count", kI64},
};

const std::vector<DuckColumn> kQuarantineColumns = {
    {"reason", kText}, {"detail", kText},         {"raw", kBlob},          {"device_id", kText},
    {"metric", kText}, {"arrival_time_us", kI64}, {"arrival_time", kTime}, {"source", kText},
    {"topic", kText},  {"partition", kI32},       {"offset", kI64},        {"provenance", kText},
};

// The QC score came after the place columns; older files gain it.
const std::vector<DuckColumn> kLateColumns = [] {
  std::vector<DuckColumn> c = WithPlace({
      {"window", kText},
      {"device_id", kText},
      {"metric", kText},
      {"value", kF64},
      {"event_time_us", kI64},
      {"event_time", kTime},
      {"arrival_time_us", kI64},
      {"arrival_time", kTime},
      {"lateness_us", kI64},
      {"lateness_s", kF64},
      {"watermark_us", kI64},
      {"watermark", kTime},
  });
  c.push_back({"qc_score", kF64});
  return c;
}();

struct DuckTableDef {
  const std::vector<DuckColumn>* columns;
  const char* key;  // PRIMARY KEY columns, or nullptr
};

const DuckTableDef kTables[kTableCount] = {
    {&kReadingColumns, "event_time_us, device_id, metric"},
    {&kWindowColumns, "window_start_us, \"window\", group_by, group_key, metric, revision"},
    {&kQuarantineColumns, nullptr},
    {&kLateColumns, "event_time_us, device_id, metric, \"window\""},
};

constexpr const char* kAlertsSql =
    "CREATE TABLE IF NOT EXISTS alerts (alert_id VARCHAR PRIMARY KEY, rule VARCHAR NOT NULL, "
    "kind VARCHAR NOT NULL, \"key\" VARCHAR NOT NULL, metric VARCHAR, severity VARCHAR NOT NULL, "
    "state VARCHAR NOT NULL, fired_at_us BIGINT NOT NULL, fired_at TIMESTAMPTZ NOT NULL, "
    "resolved_at_us BIGINT, resolved_at TIMESTAMPTZ, first_value DOUBLE, last_value DOUBLE, "
    "level DOUBLE, notifications INTEGER NOT NULL, last_event_us BIGINT NOT NULL, "
    "message VARCHAR)";

constexpr const char* kLatestWindowsSql =
    "CREATE VIEW IF NOT EXISTS latest_windows AS SELECT w.* FROM windows AS w "
    "WHERE w.revision = (SELECT max(x.revision) FROM windows AS x "
    "WHERE x.\"window\" = w.\"window\" AND x.group_by = w.group_by "
    "AND x.group_key = w.group_key AND x.metric = w.metric "
    "AND x.window_start_us = w.window_start_us)";

std::string DoubleLiteral(double v) {
  if (!std::isfinite(v)) return "NULL";
  std::string out;
  AppendJsonNumber(out, v);
  return out;
}

class DuckDbSink final : public Sink {
 public:
  explicit DuckDbSink(DuckDbSinkOptions options) : options_(std::move(options)) {
    enabled_[kReadings] = options_.readings;
    enabled_[kWindows] = options_.windows;
    enabled_[kQuarantine] = options_.quarantine;
    enabled_[kLate] = options_.late;
    for (int i = 0; i < kTableCount; ++i) {
      ledger_keys_[i] = options_.name + "/" + std::string(kTableNames[i]);
      stage_[i] = "tributary_stage_" + std::string(kTableNames[i]);
    }
  }
  ~DuckDbSink() override { Close(); }

  Status Open(RunContext& ctx) override;
  Status Write(const Batch& batch) override;
  Status Commit() override;
  void Close() override;

 private:
  Status CreateSchema();
  Status AppendReading(const Reading& r);
  Status AppendWindow(const WindowResult& w);
  Status AppendQuarantine(const QuarantineRecord& q);
  Status AppendLate(const LateRecord& l);
  // The columns readings and late share after their times: lat .. geom.
  void AppendPlace(DuckChunkAppender& a, int c, const Reading& r);
  void AppendGeometry(DuckChunkAppender& a, int c, double lon, double lat);
  std::string AlertSql(const AlertEvent& a) const;
  Status CommitOnce(uint64_t (&inserted)[kTableCount]);

  DuckDbSinkOptions options_;
  bool enabled_[kTableCount] = {};
  std::string ledger_keys_[kTableCount];
  std::string stage_[kTableCount];
  DuckChunkAppender appenders_[kTableCount];
  uint64_t staged_[kTableCount] = {};
  std::vector<std::string> alerts_;  // upserts waiting for the next commit
  Ledger* ledger_ = nullptr;
  std::string path_;
  DuckDbConnection duck_;
  SinkFlagsText flags_text_;
  std::string json_;
  std::vector<std::string> extra_zone_layers_;  // zones.layers after the first
  std::string zones_json_;
};

Status DuckDbSink::Open(RunContext& ctx) {
  if (duck_.is_open()) return Status::Internal("duckdb sink " + options_.name + " opened twice");
  ledger_ = ctx.ledger;
  if (ctx.config != nullptr) extra_zone_layers_ = ExtraZoneLayerNames(*ctx.config);
  if (options_.path.empty()) {
    std::string dir = ctx.data_dir.empty() ? std::string(".") : ctx.data_dir;
    path_ = dir + "/" + std::string(kDuckDbDefaultFileName);
  } else {
    path_ = options_.path;
  }
  std::filesystem::path parent = std::filesystem::path(path_).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) {
    return Status::Io("duckdb sink " + options_.name + ": cannot create the folder " +
                      parent.string() + ": " + ec.message());
  }
  Status st = duck_.Open(path_, options_.threads);
  if (st.ok()) st = CreateSchema();
  if (!st.ok()) {
    duck_.Close();
    return st.WithContext("duckdb sink " + options_.name);
  }
  return Status::Ok();
}

Status DuckDbSink::CreateSchema() {
  std::string sql = "BEGIN TRANSACTION;\n";
  for (int t = 0; t < kTableCount; ++t) {
    const DuckTableDef& def = kTables[t];
    std::string key = def.key != nullptr ? std::string(", PRIMARY KEY (") + def.key + ")" : "";
    sql +=
        DuckCreateTableSql("CREATE TABLE IF NOT EXISTS", kTableNames[t], *def.columns, key) + ";\n";
  }
  sql += "ALTER TABLE readings ADD COLUMN IF NOT EXISTS qc_score DOUBLE;\n";
  sql += "ALTER TABLE readings ADD COLUMN IF NOT EXISTS zones VARCHAR;\n";
  sql += "ALTER TABLE readings ADD COLUMN IF NOT EXISTS s2 VARCHAR;\n";
  sql += "ALTER TABLE late ADD COLUMN IF NOT EXISTS qc_score DOUBLE;\n";
  sql += std::string(kAlertsSql) + ";\n" + kLatestWindowsSql + ";\nCOMMIT;";
  Status st = duck_.Exec(sql);
  if (!st.ok()) {
    (void)duck_.Exec("ROLLBACK");
    return st;
  }
  for (int t = 0; t < kTableCount; ++t) {
    if (!enabled_[t]) continue;
    TRIB_RETURN_IF_ERROR(duck_.Exec(
        DuckCreateTableSql("CREATE OR REPLACE TEMP TABLE", stage_[t], *kTables[t].columns)));
    TRIB_RETURN_IF_ERROR(appenders_[t].Create(duck_, stage_[t], *kTables[t].columns));
  }
  return Status::Ok();
}

Status DuckDbSink::Write(const Batch& batch) {
  if (!duck_.is_open()) {
    return Status::Internal("duckdb sink " + options_.name + ": Write before a successful Open");
  }
  if (enabled_[kReadings]) {
    for (const Reading& r : batch.readings) TRIB_RETURN_IF_ERROR(AppendReading(r));
    staged_[kReadings] += batch.readings.size();
  }
  if (enabled_[kWindows]) {
    for (const WindowResult& w : batch.windows) TRIB_RETURN_IF_ERROR(AppendWindow(w));
    staged_[kWindows] += batch.windows.size();
  }
  if (enabled_[kQuarantine]) {
    for (const QuarantineRecord& q : batch.quarantine) TRIB_RETURN_IF_ERROR(AppendQuarantine(q));
    staged_[kQuarantine] += batch.quarantine.size();
  }
  if (enabled_[kLate]) {
    for (const LateRecord& l : batch.late) TRIB_RETURN_IF_ERROR(AppendLate(l));
    staged_[kLate] += batch.late.size();
  }
  for (const AlertEvent& a : batch.alerts) alerts_.push_back(AlertSql(a));
  return Status::Ok();
}

void DuckDbSink::AppendGeometry(DuckChunkAppender& a, int c, double lon, double lat) {
  if (!HasPosition(lon, lat)) {
    a.Null(c);
    return;
  }
  uint8_t wkb[kWkbPointSize];
  EncodeWkbPoint(lon, lat, wkb);
  a.Str(c, std::string_view(reinterpret_cast<const char*>(wkb), sizeof wkb));
}

void DuckDbSink::AppendPlace(DuckChunkAppender& a, int c, const Reading& r) {
  char h3[24];
  a.F64(c, r.lat);
  a.F64(c + 1, r.lon);
  a.StrOrNull(c + 2, r.zone.view());
  a.StrOrNull(c + 3, SinkH3Hex(r.h3, h3));
  a.Str(c + 4, flags_text_.Format(r.flags.bits, false));
  json_ = ProvenanceToJson(r.prov, r.device, r.flags);
  a.Str(c + 5, json_);
  AppendGeometry(a, c + 6, r.lon, r.lat);
}

Status DuckDbSink::AppendReading(const Reading& r) {
  DuckChunkAppender& a = appenders_[kReadings];
  a.Str(0, r.device.view());
  a.Str(1, r.metric.view());
  a.F64(2, r.value);
  a.Null(3);  // unit: as in the SQLite store, filled once metrics expose canonical units
  a.I64(4, r.event_time);
  a.I64(5, r.event_time);
  a.I64(6, r.arrival_time);
  a.I64(7, r.arrival_time);
  AppendPlace(a, 8, r);
  a.F64(15, r.qc_score);
  zones_json_.clear();
  AppendExtraZonesJson(r, extra_zone_layers_, zones_json_);
  a.StrOrNull(16, zones_json_);
  a.StrOrNull(17, S2CellToken(r.s2));
  return a.EndRow();
}

Status DuckDbSink::AppendWindow(const WindowResult& w) {
  DuckChunkAppender& a = appenders_[kWindows];
  a.Str(0, w.window.view());
  a.Str(1, w.group_by.view());
  a.Str(2, w.group.view());
  a.Str(3, w.metric.view());
  a.I64(4, w.start);
  a.I64(5, w.end);
  a.I64(6, w.start);
  a.I64(7, w.end);
  a.I64(8, static_cast<int64_t>(w.count));
  int c = 9;
  for (double v : {w.mean, w.min, w.max, w.std, w.median, w.p95, w.trimmed_mean, w.first, w.last,
                   w.centroid_lat, w.centroid_lon, w.nowcast, w.aqi}) {
    a.F64(c++, v);
  }
  a.I32(22, static_cast<int32_t>(w.distinct_sensors));
  a.I64(23, static_cast<int64_t>(w.late_count));
  a.StrOrNull(24, w.aggregation_method.view());
  a.Str(25, flags_text_.Format(w.flags, true));
  a.I32(26, static_cast<int32_t>(w.revision));
  a.I64(27, w.emitted_at);
  a.I64(28, w.emitted_at);
  if (w.quantiles.empty()) {
    a.Null(29);
  } else {
    SinkQuantilesJson(w.quantiles, json_);
    a.Str(29, json_);
  }
  AppendGeometry(a, 30, w.centroid_lon, w.centroid_lat);
  a.F64(31, w.interpolated_sample_fraction);
  a.I64OrNull(32, w.exceedance_count);
  return a.EndRow();
}

Status DuckDbSink::AppendQuarantine(const QuarantineRecord& q) {
  DuckChunkAppender& a = appenders_[kQuarantine];
  a.Str(0, q.reason.view());
  a.StrOrNull(1, q.detail);
  a.Str(2, q.raw);
  a.StrOrNull(3, q.device.view());
  a.StrOrNull(4, q.metric.view());
  a.I64(5, q.arrival_time);
  a.I64(6, q.arrival_time);
  a.StrOrNull(7, q.prov.source.view());
  a.StrOrNull(8, q.prov.topic.view());
  a.I32OrNull(9, q.prov.partition);
  a.I64OrNull(10, q.prov.offset);
  json_ = ProvenanceToJson(q.prov, q.device, QcFlags{});
  a.Str(11, json_);
  return a.EndRow();
}

Status DuckDbSink::AppendLate(const LateRecord& l) {
  DuckChunkAppender& a = appenders_[kLate];
  const Reading& r = l.reading;
  a.Str(0, l.window.view());
  a.Str(1, r.device.view());
  a.Str(2, r.metric.view());
  a.F64(3, r.value);
  a.I64(4, r.event_time);
  a.I64(5, r.event_time);
  a.I64(6, r.arrival_time);
  a.I64(7, r.arrival_time);
  a.I64(8, l.lateness);
  a.F64(9, static_cast<double>(l.lateness) / static_cast<double>(kMicrosPerSecond));
  if (l.watermark <= kMinTime) {
    a.Null(10);
    a.Null(11);
  } else {
    a.I64(10, l.watermark);
    a.I64(11, l.watermark);
  }
  AppendPlace(a, 12, r);
  a.F64(19, r.qc_score);
  return a.EndRow();
}

// One alert event as an upsert of its alert life, as the SQLite store keeps it.
std::string DuckDbSink::AlertSql(const AlertEvent& a) const {
  const bool resolved = a.state == AlertState::kResolved;
  auto time = [](TimeUs t) { return "make_timestamptz(" + std::to_string(t) + "::BIGINT)"; };
  std::string id = a.rule.str() + "|" + a.key.str() + "|" + std::to_string(a.fired_at);
  std::string metric = a.metric.empty() ? "NULL" : DuckQuoteLiteral(a.metric.view());
  std::string value = DoubleLiteral(a.value);
  return "INSERT INTO alerts VALUES (" + DuckQuoteLiteral(id) + ", " +
         DuckQuoteLiteral(a.rule.view()) + ", " + DuckQuoteLiteral(a.kind.view()) + ", " +
         DuckQuoteLiteral(a.key.view()) + ", " + metric + ", " +
         DuckQuoteLiteral(a.severity.view()) + ", '" + (resolved ? "resolved" : "firing") + "', " +
         std::to_string(a.fired_at) + ", " + time(a.fired_at) + ", " +
         (resolved ? std::to_string(a.event_time) : "NULL") + ", " +
         (resolved ? time(a.event_time) : "NULL") + ", " + value + ", " + value + ", " +
         DoubleLiteral(a.level) + ", 1, " + std::to_string(a.event_time) + ", " +
         DuckQuoteLiteral(a.message) +
         ") ON CONFLICT (alert_id) DO UPDATE SET state = excluded.state, "
         "resolved_at_us = excluded.resolved_at_us, resolved_at = excluded.resolved_at, "
         "last_value = excluded.last_value, notifications = notifications + "
         "CASE WHEN excluded.state = 'firing' THEN 1 ELSE 0 END, "
         "last_event_us = excluded.last_event_us, message = excluded.message";
}

Status DuckDbSink::Commit() {
  if (!duck_.is_open()) return Status::Ok();
  uint64_t staged = alerts_.size();
  for (uint64_t n : staged_) staged += n;
  if (staged == 0) return Status::Ok();
  uint64_t inserted[kTableCount] = {};
  Status st = CommitOnce(inserted);
  if (!st.ok()) {
    (void)duck_.Exec("ROLLBACK");
    return st.WithContext("duckdb sink " + options_.name + " (" + path_ + ")");
  }
  for (int t = 0; t < kTableCount; ++t) {
    if (!enabled_[t]) continue;
    if (staged_[t] > 0) {
      // Emptied only now: a failed commit keeps them for the next one.
      Status cleared = duck_.Exec("DELETE FROM " + stage_[t]);
      if (!cleared.ok()) return cleared.WithContext("duckdb sink " + options_.name);
      staged_[t] = 0;
    }
    if (ledger_ != nullptr) ledger_->AddSinkCommitted(ledger_keys_[t], inserted[t]);
  }
  alerts_.clear();
  return Status::Ok();
}

Status DuckDbSink::CommitOnce(uint64_t (&inserted)[kTableCount]) {
  for (int t = 0; t < kTableCount; ++t) {
    if (enabled_[t]) TRIB_RETURN_IF_ERROR(appenders_[t].FlushAll());
  }
  TRIB_RETURN_IF_ERROR(duck_.Exec("BEGIN TRANSACTION"));
  for (int t = 0; t < kTableCount; ++t) {
    if (!enabled_[t] || staged_[t] == 0) continue;
    // Duplicates inside one commit are dropped first, so OR IGNORE only meets rows that
    // earlier commits stored.
    std::string from =
        kTables[t].key != nullptr
            ? "SELECT DISTINCT ON (" + std::string(kTables[t].key) + ") * FROM " + stage_[t]
            : "SELECT * FROM " + stage_[t];
    DuckDbResult r;
    TRIB_RETURN_IF_ERROR(duck_.Exec(std::string("INSERT ") +
                                        (kTables[t].key != nullptr ? "OR IGNORE " : "") + "INTO " +
                                        std::string(kTableNames[t]) + " " + from,
                                    &r));
    inserted[t] = r.changed();
  }
  for (const std::string& sql : alerts_) TRIB_RETURN_IF_ERROR(duck_.Exec(sql));
  return duck_.Exec("COMMIT");
}

void DuckDbSink::Close() {
  uint64_t staged = 0;
  for (uint64_t& n : staged_) {
    staged += n;
    n = 0;
  }
  if (duck_.is_open() && staged > 0) {
    spdlog::warn("duckdb sink {}: closed with {} rows not committed", options_.name, staged);
  }
  alerts_.clear();
  for (DuckChunkAppender& a : appenders_) a.Destroy();  // before their database
  duck_.Close();
}

}  // namespace
#endif  // TRIBUTARY_HAVE_DUCKDB

const SectionSpec& DuckDbSinkSpec() {
  static const SectionSpec spec{
      "sinks[] (type: duckdb)",
      "The local store as a DuckDB database file, an alternative to the `sqlite` sink: the "
      "same tables (readings, windows, quarantine, late, alerts, view latest_windows) with "
      "native timestamps and WKB point geometries, written in one transaction per pipeline "
      "commit with INSERT OR IGNORE on their keys. Needs a build with DuckDB "
      "(scripts/setup.sh --deps-only).",
      {
          {"path", OptionType::kString, "",
           "Database file; a relative path is taken from the working directory. Empty: "
           "`<data-dir>/tributary.duckdb`. Missing folders are created."},
          {"tables", OptionType::kStringList, "readings, windows, quarantine, late",
           "Tables that receive rows (every table is created either way): any of "
           "`readings`, `windows`, `quarantine`, `late`."},
          {"threads", OptionType::kInt, "1", "DuckDB worker threads.", "1..64"},
      }};
  return spec;
}

Result<DuckDbSinkOptions> ReadDuckDbSinkOptions(const SinkEntry& entry) {
  const OptionReader& o = entry.options;
  DuckDbSinkOptions out;
  out.name = entry.name.empty() ? std::string("duckdb") : entry.name;
  TRIB_ASSIGN_OR_RETURN(out.path, o.GetString("path"));
  TRIB_ASSIGN_OR_RETURN(TableSelection tables, ReadTableSelection(o));
  out.readings = tables.readings;
  out.windows = tables.windows;
  out.quarantine = tables.quarantine;
  out.late = tables.late;
  TRIB_ASSIGN_OR_RETURN(int64_t threads, o.GetInt("threads"));
  out.threads = static_cast<int>(threads);
  return out;
}

Result<std::unique_ptr<Sink>> MakeDuckDbSink(DuckDbSinkOptions options) {
#ifdef TRIBUTARY_HAVE_DUCKDB
  return std::unique_ptr<Sink>(std::make_unique<DuckDbSink>(std::move(options)));
#else
  return Status::Invalid("duckdb sink " + options.name +
                         ": built without DuckDB; run scripts/setup.sh --deps-only and rebuild");
#endif
}

void RegisterDuckDbSink(Registry& registry) {
  registry.AddSink("duckdb", &DuckDbSinkSpec(),
                   [](const SinkEntry& entry) -> Result<std::unique_ptr<Sink>> {
                     TRIB_ASSIGN_OR_RETURN(DuckDbSinkOptions options, ReadDuckDbSinkOptions(entry));
                     return MakeDuckDbSink(std::move(options));
                   });
}

}  // namespace tributary
