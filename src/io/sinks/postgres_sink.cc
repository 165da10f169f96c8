#include "io/sinks/postgres_sink.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include "core/registry.h"
#include "io/sinks/breaker_sink.h"
#include "io/sinks/pg_conn.h"
#include "io/sinks/sink_text.h"
#include "io/sinks/table_selection.h"
#include "spatial/enrich.h"
#include "spatial/s2cell.h"

namespace tributary {

namespace {

enum TableIndex : int { kReadings = 0, kWindows, kQuarantine, kLate, kTableCount };
constexpr const char* kTableNames[kTableCount] = {"readings", "windows", "quarantine", "late"};

// ---- COPY binary encoding ----------------------------------------------------------
// PostgreSQL's binary COPY format: a header, then per row a 16-bit field count and per
// field a 32-bit length (-1 for NULL) and the value in the type's binary form (network
// byte order): int8/int4, float8, timestamptz as microseconds since 2000-01-01, text and
// bytea as their bytes, jsonb as version byte 1 and the JSON text, geometry as EWKB.
// Text must be valid UTF-8 without NUL: invalid bytes and NUL become U+FFFD so a bad
// device string cannot make the whole batch fail forever.

constexpr char kCopyHeader[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";  // signature, flags, ext
constexpr size_t kCopyHeaderSize = 19;
constexpr char kCopyTrailer[] = "\xff\xff";                    // field count -1
constexpr TimeUs kPgEpochUs = 946684800LL * kMicrosPerSecond;  // 2000-01-01T00:00:00Z
constexpr uint32_t kSrid = 4326;

// Length of the valid UTF-8 sequence starting at s[i], 0 when invalid.
size_t Utf8SeqLen(std::string_view s, size_t i) {
  auto b = static_cast<unsigned char>(s[i]);
  auto cont = [&](size_t k) {
    return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
  };
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return cont(1) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    auto b1 = static_cast<unsigned char>(s[i + 1]);
    if (b == 0xE0 && b1 < 0xA0) return 0;   // overlong
    if (b == 0xED && b1 >= 0xA0) return 0;  // surrogates
    return 3;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    auto b1 = static_cast<unsigned char>(s[i + 1]);
    if (b == 0xF0 && b1 < 0x90) return 0;
    if (b == 0xF4 && b1 >= 0x90) return 0;
    return 4;
  }
  return 0;
}

// `s` as valid UTF-8 without NUL; plain ASCII (the usual case) is appended as it is.
void AppendUtf8(std::string& out, std::string_view s) {
  size_t i = 0;
  while (i < s.size() && static_cast<unsigned char>(s[i]) < 0x80 && s[i] != '\0') ++i;
  out.append(s.data(), i);
  while (i < s.size()) {
    size_t n = s[i] == '\0' ? 0 : Utf8SeqLen(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
}

void AppendBe16(std::string& out, uint16_t v) {
  char b[2] = {static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 2);
}
void AppendBe32(std::string& out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (24 - 8 * i));
  out.append(b, 4);
}
void AppendBe64(std::string& out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (56 - 8 * i));
  out.append(b, 8);
}
void AppendLe32(std::string& out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 4);
}
void AppendLe64(std::string& out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 8);
}

// JSON text for jsonb: as AppendUtf8, and the escape \u0000 (a NUL in a device string),
// which jsonb refuses, becomes \ufffd.
void AppendJsonbText(std::string& out, std::string_view json) {
  size_t from = 0;
  for (size_t i = json.find('\\'); i != std::string_view::npos; i = json.find('\\', i)) {
    if (json.substr(i, 6) == "\\u0000") {
      AppendUtf8(out, json.substr(from, i - from));
      out += "\\ufffd";
      from = i + 6;
      i += 6;
    } else {
      i += 2;  // the whole escape: in \\ the second backslash starts none
    }
  }
  AppendUtf8(out, json.substr(from));
}

// A double as JSON text (shortest round-trip form).
void AppendJsonDouble(std::string& out, double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// One row of binary COPY; `fields` must match the number of column calls.
class CopyRow {
 public:
  CopyRow(std::string& out, int fields) : out_(out) {
    if (out_.empty()) out_.append(kCopyHeader, kCopyHeaderSize);
    AppendBe16(out_, static_cast<uint16_t>(fields));
  }
  CopyRow& Null() {
    AppendBe32(out_, 0xFFFFFFFFu);
    return *this;
  }
  CopyRow& Text(std::string_view s) {
    size_t at = Open();
    AppendUtf8(out_, s);
    return Close(at);
  }
  /// NULL for the empty string.
  CopyRow& TextOrNull(std::string_view s) { return s.empty() ? Null() : Text(s); }
  CopyRow& Bytea(std::string_view raw) {
    AppendBe32(out_, static_cast<uint32_t>(raw.size()));
    out_.append(raw);
    return *this;
  }
  CopyRow& Jsonb(std::string_view json) {
    size_t at = Open();
    out_.push_back('\1');
    AppendJsonbText(out_, json);
    return Close(at);
  }
  CopyRow& JsonbOrNull(std::string_view json) { return json.empty() ? Null() : Jsonb(json); }
  CopyRow& Int8(int64_t v) {
    AppendBe32(out_, 8);
    AppendBe64(out_, static_cast<uint64_t>(v));
    return *this;
  }
  CopyRow& Int4(int64_t v) {
    AppendBe32(out_, 4);
    AppendBe32(out_, static_cast<uint32_t>(static_cast<int32_t>(v)));
    return *this;
  }
  /// `v`, or NULL when it is not `present`.
  CopyRow& Int8OrNull(int64_t v, bool present) { return present ? Int8(v) : Null(); }
  CopyRow& Int4OrNull(int64_t v, bool present) { return present ? Int4(v) : Null(); }
  /// NULL for NaN (the sinks' "no value").
  CopyRow& Float8(double v) {
    if (std::isnan(v)) return Null();
    AppendBe32(out_, 8);
    AppendBe64(out_, std::bit_cast<uint64_t>(v));
    return *this;
  }
  CopyRow& Timestamp(TimeUs t) { return Int8(t - kPgEpochUs); }
  CopyRow& TimestampOrNull(TimeUs t, bool present) { return present ? Timestamp(t) : Null(); }
  /// A geometry(Point, 4326) as EWKB (little endian, with SRID); NULL when either
  /// coordinate is missing.
  CopyRow& Point(double lon, double lat) {
    if (std::isnan(lon) || std::isnan(lat)) return Null();
    AppendBe32(out_, 25);
    out_.push_back('\1');                // little endian
    AppendLe32(out_, 1u | 0x20000000u);  // point, with SRID
    AppendLe32(out_, kSrid);
    AppendLe64(out_, std::bit_cast<uint64_t>(lon));
    AppendLe64(out_, std::bit_cast<uint64_t>(lat));
    return *this;
  }
  CopyRow& H3(uint64_t cell) {
    char buf[24];
    return TextOrNull(SinkH3Hex(cell, buf));
  }

 private:
  // A length word to fill in once the value is appended.
  size_t Open() {
    size_t at = out_.size();
    out_.append(4, '\0');
    return at;
  }
  CopyRow& Close(size_t at) {
    auto n = static_cast<uint32_t>(out_.size() - at - 4);
    for (int i = 0; i < 4; ++i) out_[at + i] = static_cast<char>(n >> (24 - 8 * i));
    return *this;
  }
  std::string& out_;
};

// ---- SQL -------------------------------------------------------------------------------

// The columns each table receives, in the order Write encodes them.
constexpr const char* kColumns[kTableCount] = {
    // readings
    "event_time, device_id, metric, value, arrival_time, lat, lon, geom, zone_id, h3, "
    "qc_flags, provenance, zones, s2, qc_score",
    // windows
    "\"window\", group_by, group_key, metric, window_start, window_end, sample_count, mean, "
    "min, max, std, median, p95, trimmed_mean, first, last, centroid_lat, centroid_lon, geom, "
    "nowcast, aqi, distinct_sensors, late_arrival_count, aggregation_method, quality_flags, "
    "revision, emitted_at, quantiles",
    // quarantine
    "reason, detail, raw, device_id, metric, arrival_time, source, topic, kafka_partition, "
    "source_offset, provenance",
    // late
    "event_time, device_id, metric, \"window\", value, arrival_time, lateness_s, watermark, "
    "lat, lon, geom, zone_id, h3, qc_flags, provenance, qc_score",
};
constexpr int kColumnCount[kTableCount] = {15, 28, 11, 16};

// The columns readings and late share after their own (see EncodeReadingPlace).
constexpr const char* kPlaceColumnsSql =
    "  lat double precision,\n"
    "  lon double precision,\n"
    "  geom geometry(Point, 4326),\n"
    "  zone_id text,\n"
    "  h3 text,\n"
    "  qc_flags text NOT NULL DEFAULT '',\n"
    "  provenance jsonb,\n";

std::string SchemaSql(const std::string& s, bool hypertable) {
  std::string sql;
  sql += "CREATE SCHEMA IF NOT EXISTS " + s + ";\n";
  sql += "CREATE TABLE IF NOT EXISTS " + s +
         ".readings (\n"
         "  event_time timestamptz NOT NULL,\n"
         "  device_id text NOT NULL,\n"
         "  metric text NOT NULL,\n"
         "  value double precision,\n"
         "  arrival_time timestamptz NOT NULL,\n" +
         kPlaceColumnsSql +
         "  PRIMARY KEY (event_time, device_id, metric)\n"
         ")" +
         std::string(hypertable ? "" : " PARTITION BY RANGE (event_time)") + ";\n";
  sql += "CREATE INDEX IF NOT EXISTS readings_geom_gist ON " + s + ".readings USING gist (geom);\n";
  // The extra zone layers' ids, the S2 cell token and the QC score (added to older stores
  // too).
  sql += "ALTER TABLE " + s +
         ".readings ADD COLUMN IF NOT EXISTS zones jsonb, ADD COLUMN IF NOT EXISTS s2 text, "
         "ADD COLUMN IF NOT EXISTS qc_score double precision;\n";
  sql += "CREATE TABLE IF NOT EXISTS " + s +
         ".windows (\n"
         "  \"window\" text NOT NULL,\n"
         "  group_by text NOT NULL,\n"
         "  group_key text NOT NULL,\n"
         "  metric text NOT NULL,\n"
         "  window_start timestamptz NOT NULL,\n"
         "  window_end timestamptz NOT NULL,\n"
         "  sample_count bigint NOT NULL,\n"
         "  mean double precision, min double precision, max double precision,\n"
         "  std double precision, median double precision, p95 double precision,\n"
         "  trimmed_mean double precision, first double precision, last double precision,\n"
         "  centroid_lat double precision, centroid_lon double precision,\n"
         "  geom geometry(Point, 4326),\n"
         "  nowcast double precision, aqi double precision,\n"
         "  distinct_sensors integer NOT NULL,\n"
         "  late_arrival_count bigint NOT NULL,\n"
         "  aggregation_method text,\n"
         "  quality_flags text NOT NULL DEFAULT '',\n"
         "  revision integer NOT NULL,\n"
         "  emitted_at timestamptz NOT NULL,\n"
         "  quantiles jsonb,\n"
         "  PRIMARY KEY (window_start, \"window\", group_by, group_key, metric, revision)\n"
         ");\n";
  sql += "CREATE INDEX IF NOT EXISTS windows_geom_gist ON " + s + ".windows USING gist (geom);\n";
  sql += "CREATE TABLE IF NOT EXISTS " + s +
         ".quarantine (\n"
         "  id bigserial PRIMARY KEY,\n"
         "  reason text NOT NULL,\n"
         "  detail text,\n"
         "  raw bytea NOT NULL,\n"
         "  device_id text,\n"
         "  metric text,\n"
         "  arrival_time timestamptz NOT NULL,\n"
         "  source text,\n"
         "  topic text,\n"
         "  kafka_partition integer,\n"
         "  source_offset bigint,\n"
         "  provenance jsonb\n"
         ");\n";
  // Quarantine rows have no natural key; one payload at one arrival instant failing
  // for the same reason on the same device and metric is one record, delivered again.
  sql += "CREATE UNIQUE INDEX IF NOT EXISTS quarantine_key ON " + s +
         ".quarantine (arrival_time, reason, coalesce(device_id, ''), coalesce(metric, ''), "
         "md5(coalesce(detail, '')), md5(raw));\n";
  sql += "CREATE TABLE IF NOT EXISTS " + s +
         ".late (\n"
         "  event_time timestamptz NOT NULL,\n"
         "  device_id text NOT NULL,\n"
         "  metric text NOT NULL,\n"
         "  \"window\" text NOT NULL,\n"
         "  value double precision,\n"
         "  arrival_time timestamptz NOT NULL,\n"
         "  lateness_s double precision NOT NULL,\n"
         "  watermark timestamptz,\n" +
         kPlaceColumnsSql +
         "  PRIMARY KEY (event_time, device_id, metric, \"window\")\n"
         ");\n";
  sql += "CREATE INDEX IF NOT EXISTS late_geom_gist ON " + s + ".late USING gist (geom);\n";
  sql += "ALTER TABLE " + s + ".late ADD COLUMN IF NOT EXISTS qc_score double precision;\n";
  // Alerts: the table is part of the schema for the alert stage; rules write to it.
  sql += "CREATE TABLE IF NOT EXISTS " + s +
         ".alerts (\n"
         "  triggered_at timestamptz NOT NULL,\n"
         "  rule text NOT NULL,\n"
         "  group_key text NOT NULL,\n"
         "  metric text NOT NULL,\n"
         "  severity text,\n"
         "  value double precision,\n"
         "  threshold double precision,\n"
         "  message text,\n"
         "  geom geometry(Point, 4326),\n"
         "  provenance jsonb,\n"
         "  PRIMARY KEY (triggered_at, rule, group_key, metric)\n"
         ");\n";
  sql += "CREATE INDEX IF NOT EXISTS alerts_geom_gist ON " + s + ".alerts USING gist (geom);\n";
  sql += "CREATE TABLE IF NOT EXISTS " + s +
         ".sink_commits (\n"
         "  commit_id text PRIMARY KEY,\n"
         "  sink text NOT NULL,\n"
         "  committed_at timestamptz NOT NULL DEFAULT now(),\n"
         "  readings bigint NOT NULL, windows bigint NOT NULL,\n"
         "  quarantine bigint NOT NULL, late bigint NOT NULL\n"
         ");\n";
  // With checkpoints: per sink, the last checkpoint committed and the rows it stored,
  // written in the transaction of those rows.
  sql += "CREATE TABLE IF NOT EXISTS " + s +
         ".sink_checkpoints (\n"
         "  sink text PRIMARY KEY,\n"
         "  checkpoint_id bigint NOT NULL,\n"
         "  readings bigint NOT NULL, windows bigint NOT NULL,\n"
         "  quarantine bigint NOT NULL, late bigint NOT NULL,\n"
         "  committed_at timestamptz NOT NULL DEFAULT now()\n"
         ");\n";
  return sql;
}

// The fallback after a unique violation: the batch, COPYed into the session's staging
// table of the same columns, inserted without the rows already stored.
std::string InsertStagedSql(const std::string& s, int table) {
  return "INSERT INTO " + s + "." + kTableNames[table] + " (" + kColumns[table] + ") SELECT " +
         kColumns[table] + " FROM pg_temp.tributary_stage_" + kTableNames[table] +
         " ON CONFLICT DO NOTHING";
}

// Month number since year 0 (year * 12 + month - 1) of a UTC day number.
int64_t MonthOfDay(int64_t days) {
  std::string d = FormatTime(days * kMicrosPerDay);  // "YYYY-MM-DDT..."
  int64_t y = 0;
  int64_t m = 0;
  std::from_chars(d.data(), d.data() + 4, y);
  std::from_chars(d.data() + 5, d.data() + 7, m);
  return y * 12 + m - 1;
}

std::string MonthText(int64_t month) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04lld-%02lld-01", static_cast<long long>(month / 12),
                static_cast<long long>(month % 12 + 1));
  return buf;
}

// ---- the sink --------------------------------------------------------------------------

class PostgresSink final : public Sink {
 public:
  explicit PostgresSink(PostgresSinkOptions options)
      : options_(std::move(options)), schema_(PgQuoteIdent(options_.schema)) {
    enabled_[kReadings] = options_.readings;
    enabled_[kWindows] = options_.windows;
    enabled_[kQuarantine] = options_.quarantine;
    enabled_[kLate] = options_.late;
    for (int i = 0; i < kTableCount; ++i) {
      ledger_keys_[i] = options_.name + "/" + kTableNames[i];
    }
    std::random_device rd;
    rng_.seed(rd());
    // Unique across processes and restarts: host pid, start time and a random word.
    char buf[64];
    std::snprintf(buf, sizeof buf, "%lld-%d-%08x", static_cast<long long>(NowUs()),
                  static_cast<int>(::getpid()), static_cast<unsigned>(rng_()));
    commit_prefix_ = options_.name + "-" + buf + "-";
  }
  ~PostgresSink() override { Close(); }

  Status Open(RunContext& ctx) override;
  Status Write(const Batch& batch) override;
  Status Commit() override;
  // Checkpoints: rows stay buffered until CommitCheckpoint sends them in one transaction
  // with the checkpoint's row in sink_checkpoints.
  Result<SinkCheckpointRecord> OpenCheckpoints() override;
  Status CommitCheckpoint(uint64_t checkpoint) override;
  void Close() override;

 private:
  // Connect (with backoff) and prepare the session; schema on the first connection.
  Status EnsureConnected();
  Status PrepareSession();
  Status CreateSchema();
  // Send the buffered rows in one transaction, retrying for up to retry_for.
  Status Flush();
  Status FlushOnce();
  Status EnsurePartitions();
  Result<uint64_t> CopyTable(int table);
  void ClearBuffers() {
    for (std::string& b : copy_) b.clear();
    for (uint64_t& n : buffered_) n = 0;
    months_.clear();
    buffered_rows_ = 0;
  }
  void SleepBackoff();

  void EncodeReading(const Reading& r, std::string& out);
  void EncodeReadingPlace(const Reading& r, CopyRow& row);
  void EncodeWindow(const WindowResult& w, std::string& out);
  void EncodeQuarantine(const QuarantineRecord& q, std::string& out);
  void EncodeLate(const LateRecord& l, std::string& out);
  void NoteMonth(TimeUs t) {
    int64_t days = FloorDiv(t, kMicrosPerDay);
    if (days != last_day_) {
      last_day_ = days;
      last_month_ = MonthOfDay(days);
    }
    months_.insert(last_month_);
  }

  PostgresSinkOptions options_;
  std::string schema_;  // quoted identifier
  bool enabled_[kTableCount] = {};
  std::string ledger_keys_[kTableCount];
  Ledger* ledger_ = nullptr;
  bool opened_ = false;

  PgConnection conn_;
  bool schema_ready_ = false;
  bool partitioned_ = false;  // readings is partitioned by month (no TimescaleDB)
  std::set<int64_t> created_months_;

  // Rows waiting for the next flush, as COPY text per table.
  std::string copy_[kTableCount];
  uint64_t buffered_[kTableCount] = {};
  uint64_t buffered_rows_ = 0;
  std::set<int64_t> months_;  // months of the buffered readings
  int64_t last_day_ = INT64_MIN;
  int64_t last_month_ = 0;

  std::string commit_prefix_;
  uint64_t commit_seq_ = 0;
  bool checkpointing_ = false;    // rows become visible only in CommitCheckpoint
  uint64_t checkpoint_ = 0;       // the checkpoint being committed by the current flush
  bool outcome_unknown_ = false;  // the last flush broke off; it may have committed

  std::mt19937 rng_;
  DurationUs backoff_ = 0;
  SinkFlagsText flags_text_;
  std::vector<std::string> extra_zone_layers_;  // zones.layers after the first
  std::string zones_json_;
};

Status PostgresSink::Open(RunContext& ctx) {
  if (opened_) return Status::Internal("postgres sink " + options_.name + " opened twice");
  ledger_ = ctx.ledger;
  if (ctx.config != nullptr) extra_zone_layers_ = ExtraZoneLayerNames(*ctx.config);
  opened_ = true;
  return EnsureConnected();
}

void PostgresSink::SleepBackoff() {
  if (backoff_ <= 0) backoff_ = options_.reconnect_backoff;
  std::uniform_int_distribution<int64_t> jitter(backoff_ / 2, std::max<int64_t>(backoff_, 1));
  std::this_thread::sleep_for(std::chrono::microseconds(jitter(rng_)));
  backoff_ = std::min(backoff_ * 2, options_.reconnect_backoff_max);
}

Status PostgresSink::EnsureConnected() {
  if (conn_.connected()) return Status::Ok();
  TimeUs deadline = NowUs() + options_.retry_for;
  int timeout_s = static_cast<int>(std::max<DurationUs>(options_.connect_timeout / 1000000, 1));
  while (true) {
    Status st = conn_.Connect(options_.conninfo, "tributary/" + options_.name, timeout_s);
    if (st.ok()) st = PrepareSession();
    if (st.ok()) {
      if (backoff_ > 0) spdlog::info("postgres sink {}: connected again", options_.name);
      backoff_ = 0;
      return Status::Ok();
    }
    conn_.Close();
    if (!st.retryable() || NowUs() >= deadline) {
      return st.WithContext("postgres sink " + options_.name);
    }
    spdlog::warn("postgres sink {}: {}; reconnecting", options_.name, st.message());
    SleepBackoff();
  }
}

Status PostgresSink::PrepareSession() {
  // temp_buffers (8 MB by default) must hold a commit's staging rows: beyond it the
  // server writes and reads them back through temporary files. It can only be set
  // before the session first touches a temporary table.
  TRIB_RETURN_IF_ERROR(conn_.Exec(
      "SET client_min_messages = warning; SET TIME ZONE 'UTC'; SET temp_buffers = '256MB'"));
  if (!schema_ready_) TRIB_RETURN_IF_ERROR(CreateSchema());
  // Staging tables for the fallback after a unique violation: the columns of the target,
  // with their types, so the same binary COPY data fits both.
  for (int i = 0; i < kTableCount; ++i) {
    TRIB_RETURN_IF_ERROR(conn_.Exec("CREATE TEMP TABLE IF NOT EXISTS tributary_stage_" +
                                    std::string(kTableNames[i]) +
                                    " ON COMMIT DELETE ROWS AS SELECT " + kColumns[i] + " FROM " +
                                    schema_ + "." + kTableNames[i] + " WITH NO DATA"));
  }
  return Status::Ok();
}

Status PostgresSink::CreateSchema() {
  TRIB_ASSIGN_OR_RETURN(
      int64_t has_postgis,
      conn_.QueryInt("SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis'"));
  if (has_postgis == 0) {
    return Status::Invalid("postgres sink " + options_.name +
                           ": the server has no PostGIS extension (install postgis for "
                           "PostgreSQL " +
                           std::to_string(conn_.server_major()) + ")");
  }
  // TimescaleDB (untested here: Debian 12 does not package it). Its extension loads only
  // when preloaded (shared_preload_libraries), so being installed is not enough; and an
  // existing readings table keeps its layout: a table partitioned by month stays so, as
  // create_hypertable refuses partitioned or non-empty tables.
  const std::string readings = PgQuoteLiteral(schema_ + ".readings");
  TRIB_ASSIGN_OR_RETURN(
      int64_t has_timescale,
      conn_.QueryInt("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb' "
                     "AND (installed_version IS NOT NULL OR "
                     "current_setting('shared_preload_libraries') LIKE '%timescaledb%')"));
  TRIB_ASSIGN_OR_RETURN(
      int64_t existing,
      conn_.QueryInt("SELECT count(*) FROM pg_class WHERE oid = to_regclass(" + readings + ")"));
  auto count_partitioned = [&] {
    return conn_.QueryInt(
        "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = "
        "to_regclass(" +
        readings + ")");
  };
  TRIB_ASSIGN_OR_RETURN(int64_t existing_partitioned, count_partitioned());
  const bool hypertable = has_timescale > 0 && (existing == 0 || existing_partitioned == 0);
  // One transaction, and an advisory lock so two sinks starting at once do not race
  // on CREATE ... IF NOT EXISTS.
  std::string sql = "BEGIN; SELECT pg_advisory_xact_lock(7236051);\n";
  sql += "CREATE EXTENSION IF NOT EXISTS postgis;\n";
  if (hypertable) sql += "CREATE EXTENSION IF NOT EXISTS timescaledb;\n";
  sql += SchemaSql(schema_, hypertable);
  if (hypertable) {
    // A no-op (with a notice) when readings already is a hypertable.
    sql += "SELECT create_hypertable(" + readings +
           "::regclass, 'event_time', if_not_exists => TRUE);\n";
  }
  sql += "COMMIT;";
  Status st = conn_.Exec(sql);
  if (!st.ok()) {
    (void)conn_.Exec("ROLLBACK");
    return st;
  }
  TRIB_ASSIGN_OR_RETURN(int64_t partitioned, count_partitioned());
  partitioned_ = partitioned > 0;
  schema_ready_ = true;
  return Status::Ok();
}

Status PostgresSink::EnsurePartitions() {
  if (!partitioned_) return Status::Ok();
  for (int64_t m : months_) {
    if (created_months_.count(m) != 0) continue;
    std::string from = MonthText(m);
    std::string to = MonthText(m + 1);
    std::string name = "readings_" + from.substr(0, 4) + from.substr(5, 2);
    TRIB_RETURN_IF_ERROR(conn_.Exec("CREATE TABLE IF NOT EXISTS " + schema_ + "." +
                                    PgQuoteIdent(name) + " PARTITION OF " + schema_ +
                                    ".readings FOR VALUES FROM ('" + from + " 00:00:00+00') TO ('" +
                                    to + " 00:00:00+00')"));
  }
  return Status::Ok();
}

Status PostgresSink::Write(const Batch& batch) {
  if (!opened_) {
    return Status::Internal("postgres sink " + options_.name + ": Write before Open");
  }
  // Encode the rows of one table of the batch, when that table is enabled.
  auto encode = [this](int table, const auto& rows, auto&& one) {
    if (!enabled_[table]) return;
    for (const auto& row : rows) (this->*one)(row, copy_[table]);
    buffered_[table] += rows.size();
    buffered_rows_ += rows.size();
  };
  encode(kReadings, batch.readings, &PostgresSink::EncodeReading);
  encode(kWindows, batch.windows, &PostgresSink::EncodeWindow);
  encode(kQuarantine, batch.quarantine, &PostgresSink::EncodeQuarantine);
  encode(kLate, batch.late, &PostgresSink::EncodeLate);
  if (!checkpointing_ && buffered_rows_ >= static_cast<uint64_t>(options_.batch_rows)) {
    Status st = Flush();
    // This batch is already encoded and stays buffered; a retried Write would encode it
    // twice, so a retryable failure is only logged and the next Commit sends every row.
    if (!st.ok()) {
      spdlog::warn("postgres sink {}: {} (retried at the next commit)", options_.name,
                   st.message());
      if (!st.retryable()) return st;
    }
  }
  return Status::Ok();
}

Status PostgresSink::Commit() {
  if (!opened_) return Status::Internal("postgres sink " + options_.name + ": Commit before Open");
  if (checkpointing_) return Status::Ok();
  if (buffered_rows_ == 0 && !outcome_unknown_) return Status::Ok();
  return Flush();
}

Result<SinkCheckpointRecord> PostgresSink::OpenCheckpoints() {
  if (!opened_) {
    return Status::Internal("postgres sink " + options_.name + ": OpenCheckpoints before Open");
  }
  const TimeUs deadline = NowUs() + options_.retry_for;
  Result<PgResult> r = Status::Internal("not queried");
  while (true) {
    Status st = EnsureConnected();
    if (st.ok()) {
      r = conn_.Query("SELECT checkpoint_id, readings, windows, quarantine, late FROM " + schema_ +
                      ".sink_checkpoints WHERE sink = " + PgQuoteLiteral(options_.name));
      st = r.status();
    }
    if (st.ok()) break;
    if (!st.retryable() || NowUs() >= deadline) {
      return st.WithContext("postgres sink " + options_.name + ": checkpoints");
    }
    SleepBackoff();
  }
  SinkCheckpointRecord rec;
  if (r->rows() == 1) {
    rec.checkpoint = std::strtoull(r->Value(0, 0).c_str(), nullptr, 10);
    for (int i = 0; i < kTableCount; ++i) {
      if (enabled_[i])
        rec.rows[ledger_keys_[i]] = std::strtoull(r->Value(0, 1 + i).c_str(), nullptr, 10);
    }
  }
  checkpointing_ = true;
  return rec;
}

Status PostgresSink::CommitCheckpoint(uint64_t checkpoint) {
  if (!checkpointing_) {
    return Status::Internal("postgres sink " + options_.name +
                            ": CommitCheckpoint before OpenCheckpoints");
  }
  checkpoint_ = checkpoint;
  Status st = Flush();
  checkpoint_ = 0;
  return st;
}

Status PostgresSink::Flush() {
  TimeUs deadline = NowUs() + options_.retry_for;
  while (true) {
    Status st = EnsureConnected();
    if (st.ok()) st = FlushOnce();
    if (st.ok()) return st;
    if (!st.retryable() || NowUs() >= deadline) {
      return st.WithContext("postgres sink " + options_.name);
    }
    spdlog::warn("postgres sink {}: {}; retrying", options_.name, st.message());
    SleepBackoff();
  }
}

// COPY straight into the table, inside a savepoint. A unique violation means some rows
// are stored already (a replay after a crash or a lost acknowledgement, or a row twice
// in the batch): back to the savepoint, and the batch goes through the staging table and
// INSERT ... ON CONFLICT DO NOTHING instead. Returns the rows inserted.
Result<uint64_t> PostgresSink::CopyTable(int table) {
  const std::string copy_tail = " FROM STDIN (FORMAT binary)";
  TRIB_RETURN_IF_ERROR(conn_.Exec("SAVEPOINT tributary_copy"));
  Result<uint64_t> copied = conn_.CopyIn(
      "COPY " + schema_ + "." + kTableNames[table] + " (" + kColumns[table] + ")" + copy_tail,
      copy_[table], kCopyTrailer);
  if (copied.ok()) {
    TRIB_RETURN_IF_ERROR(conn_.Exec("RELEASE SAVEPOINT tributary_copy"));
    return copied;
  }
  if (!conn_.connected() || conn_.last_sqlstate() != "23505") return copied.status();
  TRIB_RETURN_IF_ERROR(conn_.Exec("ROLLBACK TO SAVEPOINT tributary_copy"));
  spdlog::info("postgres sink {}: some {} rows are stored already; inserting the rest",
               options_.name, kTableNames[table]);
  TRIB_RETURN_IF_ERROR(
      conn_
          .CopyIn("COPY pg_temp.tributary_stage_" + std::string(kTableNames[table]) + copy_tail,
                  copy_[table], kCopyTrailer)
          .status());
  TRIB_ASSIGN_OR_RETURN(PgResult ins, conn_.Query(InsertStagedSql(schema_, table)));
  return ins.Affected();
}

Status PostgresSink::FlushOnce() {
  const std::string commit_id = commit_prefix_ + std::to_string(commit_seq_);
  if (outcome_unknown_) {
    // The previous attempt broke off, perhaps after its COMMIT reached the server.
    const std::string probe =
        checkpoint_ != 0 ? "SELECT readings, windows, quarantine, late FROM " + schema_ +
                               ".sink_checkpoints WHERE sink = " + PgQuoteLiteral(options_.name) +
                               " AND checkpoint_id = " + std::to_string(checkpoint_)
                         : "SELECT readings, windows, quarantine, late FROM " + schema_ +
                               ".sink_commits WHERE commit_id = " + PgQuoteLiteral(commit_id);
    TRIB_ASSIGN_OR_RETURN(PgResult r, conn_.Query(probe));
    outcome_unknown_ = false;
    if (r.rows() == 1) {
      spdlog::info("postgres sink {}: commit {} had reached the server", options_.name, commit_id);
      if (ledger_ != nullptr) {
        for (int i = 0; i < kTableCount; ++i) {
          if (enabled_[i]) {
            ledger_->AddSinkCommitted(ledger_keys_[i],
                                      std::strtoull(r.Value(0, i).c_str(), nullptr, 10));
          }
        }
      }
      ++commit_seq_;
      ClearBuffers();
      return Status::Ok();
    }
    if (buffered_rows_ == 0 && checkpoint_ == 0) return Status::Ok();
  }
  uint64_t inserted[kTableCount] = {};
  outcome_unknown_ = true;  // until the server has answered COMMIT or ROLLBACK
  Status st = conn_.Exec("BEGIN");
  if (st.ok()) st = EnsurePartitions();
  for (int i = 0; i < kTableCount && st.ok(); ++i) {
    if (buffered_[i] == 0) continue;
    Result<uint64_t> rows = CopyTable(i);
    if (!rows.ok()) {
      st = rows.status();
      break;
    }
    inserted[i] = *rows;
  }
  if (st.ok()) {
    st = conn_.Exec(
        "INSERT INTO " + schema_ +
        ".sink_commits (commit_id, sink, readings, windows, quarantine, late) "
        "VALUES (" +
        PgQuoteLiteral(commit_id) + ", " + PgQuoteLiteral(options_.name) + ", " +
        std::to_string(inserted[kReadings]) + ", " + std::to_string(inserted[kWindows]) + ", " +
        std::to_string(inserted[kQuarantine]) + ", " + std::to_string(inserted[kLate]) + ")");
  }
  if (st.ok() && checkpoint_ != 0) {
    std::string counts;
    for (int i = 0; i < kTableCount; ++i) counts += ", " + std::to_string(inserted[i]);
    st = conn_.Exec("INSERT INTO " + schema_ +
                    ".sink_checkpoints (sink, checkpoint_id, readings, windows, quarantine, "
                    "late) VALUES (" +
                    PgQuoteLiteral(options_.name) + ", " + std::to_string(checkpoint_) + counts +
                    ") ON CONFLICT (sink) DO UPDATE SET checkpoint_id = EXCLUDED.checkpoint_id, "
                    "readings = EXCLUDED.readings, windows = EXCLUDED.windows, "
                    "quarantine = EXCLUDED.quarantine, late = EXCLUDED.late, "
                    "committed_at = now()");
  }
  if (st.ok()) st = conn_.Exec("COMMIT");
  if (!st.ok()) {
    if (conn_.connected()) {
      // The server answered with an error: nothing of this transaction is stored.
      (void)conn_.Exec("ROLLBACK");
      outcome_unknown_ = false;
      created_months_.clear();  // partitions created in the transaction were rolled back
    } else {
      conn_.Close();
    }
    return st;
  }
  outcome_unknown_ = false;
  for (int64_t m : months_) created_months_.insert(m);
  if (ledger_ != nullptr) {
    for (int i = 0; i < kTableCount; ++i) {
      if (enabled_[i]) ledger_->AddSinkCommitted(ledger_keys_[i], inserted[i]);
    }
  }
  ++commit_seq_;
  ClearBuffers();
  return Status::Ok();
}

void PostgresSink::Close() {
  if (buffered_rows_ > 0) {
    spdlog::warn("postgres sink {}: closed with {} rows not committed", options_.name,
                 buffered_rows_);
    ClearBuffers();
  }
  conn_.Close();
}

void PostgresSink::EncodeReading(const Reading& r, std::string& out) {
  NoteMonth(r.event_time);
  CopyRow row(out, kColumnCount[kReadings]);
  row.Timestamp(r.event_time)
      .Text(r.device.view())
      .Text(r.metric.view())
      .Float8(r.value)
      .Timestamp(r.arrival_time);
  EncodeReadingPlace(r, row);
  // readings only: the extra zone layers' ids and the S2 cell.
  zones_json_.clear();
  AppendExtraZonesJson(r, extra_zone_layers_, zones_json_);
  row.JsonbOrNull(zones_json_).TextOrNull(S2CellToken(r.s2));
  row.Float8(r.qc_score);
}

// The columns readings and late share: lat, lon, geom, zone_id, h3, qc_flags and
// provenance.
void PostgresSink::EncodeReadingPlace(const Reading& r, CopyRow& row) {
  row.Float8(r.lat)
      .Float8(r.lon)
      .Point(r.lon, r.lat)
      .TextOrNull(r.zone.view())
      .H3(r.h3)
      .Text(flags_text_.Format(r.flags.bits, false))
      .Jsonb(ProvenanceToJson(r.prov, r.device, r.flags));
}

void PostgresSink::EncodeWindow(const WindowResult& w, std::string& out) {
  CopyRow row(out, kColumnCount[kWindows]);
  row.Text(w.window.view())
      .Text(w.group_by.view())
      .Text(w.group.view())
      .Text(w.metric.view())
      .Timestamp(w.start)
      .Timestamp(w.end)
      .Int8(static_cast<int64_t>(w.count));
  for (double v : {w.mean, w.min, w.max, w.std, w.median, w.p95, w.trimmed_mean, w.first, w.last,
                   w.centroid_lat, w.centroid_lon}) {
    row.Float8(v);
  }
  row.Point(w.centroid_lon, w.centroid_lat).Float8(w.nowcast).Float8(w.aqi);
  row.Int4(w.distinct_sensors)
      .Int8(static_cast<int64_t>(w.late_count))
      .TextOrNull(w.aggregation_method.view())
      .Text(flags_text_.Format(w.flags, true))
      .Int4(w.revision)
      .Timestamp(w.emitted_at);
  if (w.quantiles.empty()) {
    row.Null();
  } else {
    std::string json = "{";
    for (size_t i = 0; i < w.quantiles.size(); ++i) {
      if (i > 0) json += ',';
      json += '"';
      AppendJsonDouble(json, w.quantiles[i].first);
      json += "\":";
      if (std::isfinite(w.quantiles[i].second)) {
        AppendJsonDouble(json, w.quantiles[i].second);
      } else {
        json += "null";
      }
    }
    json += '}';
    row.Jsonb(json);
  }
}

void PostgresSink::EncodeQuarantine(const QuarantineRecord& q, std::string& out) {
  CopyRow row(out, kColumnCount[kQuarantine]);
  row.Text(q.reason.view())
      .TextOrNull(q.detail)
      .Bytea(q.raw)
      .TextOrNull(q.device.view())
      .TextOrNull(q.metric.view())
      .Timestamp(q.arrival_time)
      .TextOrNull(q.prov.source.view())
      .TextOrNull(q.prov.topic.view())
      .Int4OrNull(q.prov.partition, q.prov.partition >= 0)
      .Int8OrNull(q.prov.offset, q.prov.offset >= 0)
      .Jsonb(ProvenanceToJson(q.prov, q.device, QcFlags{}));
}

void PostgresSink::EncodeLate(const LateRecord& l, std::string& out) {
  const Reading& r = l.reading;
  CopyRow row(out, kColumnCount[kLate]);
  row.Timestamp(r.event_time)
      .Text(r.device.view())
      .Text(r.metric.view())
      .Text(l.window.view())
      .Float8(r.value)
      .Timestamp(r.arrival_time)
      .Float8(static_cast<double>(l.lateness) / 1e6)
      .TimestampOrNull(l.watermark, l.watermark > kMinTime);
  EncodeReadingPlace(r, row);
  row.Float8(r.qc_score);
}

}  // namespace

const SectionSpec& PostgresSinkSpec() {
  static const SectionSpec spec = [] {
    SectionSpec s{
        "sinks[] (type: postgres)",
        "PostgreSQL with PostGIS: the tables readings (partitioned by month, or a TimescaleDB "
        "hypertable where that extension is available), windows, quarantine, late and alerts, "
        "created on start with geometry(Point, 4326) columns, GiST indexes and provenance as "
        "jsonb. Rows are sent with binary COPY at every pipeline commit, straight into the "
        "tables; a batch that meets rows already stored (replayed input) is inserted with ON "
        "CONFLICT DO NOTHING instead, so each row is stored once. A lost connection is "
        "re-established with exponential backoff and jitter.",
        {
            {"conninfo", OptionType::kString, "",
             "libpq connection string (`host=127.0.0.1 port=5432 dbname=air user=tributary`) or "
             "URI (`postgresql://user@host/db`); use `${PGPASSWORD}`-style substitution or "
             "libpq's environment variables and ~/.pgpass for secrets. Required."},
            {"schema", OptionType::kString, "public",
             "Schema that holds the tables; created if missing."},
            {"tables", OptionType::kStringList, "readings, windows, quarantine, late",
             "Tables that receive rows (every table is created either way): any of "
             "`readings`, `windows`, `quarantine`, `late`."},
            {"batch_rows", OptionType::kInt, "100000",
             "Send buffered rows once this many are waiting, even between pipeline commits.",
             "1.."},
            {"connect_timeout", OptionType::kDuration, "5s",
             "How long one connection attempt may take.", "1s..10m"},
            {"reconnect_backoff", OptionType::kDuration, "200ms",
             "First wait before reconnecting after a lost connection; it doubles at every "
             "failed attempt (each wait drawn at random between half and all of it).",
             "1ms..1min"},
            {"reconnect_backoff_max", OptionType::kDuration, "10s",
             "Longest wait between reconnection attempts.", "1ms..1h"},
            {"retry_for", OptionType::kDuration, "60s",
             "How long one write or commit keeps reconnecting and retrying before it reports "
             "the failure to the pipeline (which retries again, or diverts to the local buffer "
             "when the circuit breaker is on).",
             "0s..1h"},
        }};
    for (OptionSpec& o : BreakerOptionSpecs()) s.options.push_back(o);
    return s;
  }();
  return spec;
}

Result<PostgresSinkOptions> ReadPostgresSinkOptions(const SinkEntry& entry) {
  const OptionReader& o = entry.options;
  PostgresSinkOptions out;
  out.name = entry.name.empty() ? std::string("postgres") : entry.name;
  TRIB_ASSIGN_OR_RETURN(out.conninfo, o.GetString("conninfo"));
  if (out.conninfo.empty()) {
    return o.Error("conninfo", "is required (a libpq connection string or postgresql:// URI)");
  }
  TRIB_ASSIGN_OR_RETURN(out.schema, o.GetString("schema"));
  if (out.schema.empty()) return o.Error("schema", "must not be empty");
  TRIB_ASSIGN_OR_RETURN(TableSelection tables, ReadTableSelection(o));
  out.readings = tables.readings;
  out.windows = tables.windows;
  out.quarantine = tables.quarantine;
  out.late = tables.late;
  TRIB_ASSIGN_OR_RETURN(out.batch_rows, o.GetInt("batch_rows"));
  TRIB_ASSIGN_OR_RETURN(out.connect_timeout, o.GetDuration("connect_timeout"));
  TRIB_ASSIGN_OR_RETURN(out.reconnect_backoff, o.GetDuration("reconnect_backoff"));
  TRIB_ASSIGN_OR_RETURN(out.reconnect_backoff_max, o.GetDuration("reconnect_backoff_max"));
  if (out.reconnect_backoff_max < out.reconnect_backoff) {
    return o.Error("reconnect_backoff_max", "must not be shorter than reconnect_backoff");
  }
  TRIB_ASSIGN_OR_RETURN(out.retry_for, o.GetDuration("retry_for"));
  return out;
}

std::unique_ptr<Sink> MakePostgresSink(PostgresSinkOptions options) {
  return std::make_unique<PostgresSink>(std::move(options));
}

void RegisterPostgresSink(Registry& registry) {
  registry.AddSink(
      "postgres", &PostgresSinkSpec(), [](const SinkEntry& entry) -> Result<std::unique_ptr<Sink>> {
        TRIB_ASSIGN_OR_RETURN(PostgresSinkOptions options, ReadPostgresSinkOptions(entry));
        TRIB_ASSIGN_OR_RETURN(BreakerOptions breaker, ReadBreakerOptions(entry.options));
        if (!breaker.enabled) return MakePostgresSink(std::move(options));
        // Behind the breaker one attempt per call is enough: the breaker buffers locally
        // and probes with its own backoff.
        options.retry_for = 0;
        breaker.remote_checkpoints = true;
        std::string name = options.name;
        return MakeBreakerSink(name, std::move(breaker),
                               [options] { return MakePostgresSink(options); });
      });
}

}  // namespace tributary
