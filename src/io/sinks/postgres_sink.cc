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

// `table_gist`: readings gets one GiST index over the whole table (a hypertable always
// does); otherwise each closed partition gets its own (IndexClosedPartitions).
std::string SchemaSql(const std::string& s, bool hypertable, bool table_gist) {
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
  if (hypertable || table_gist) {
    sql +=
        "CREATE INDEX IF NOT EXISTS readings_geom_gist ON " + s + ".readings USING gist (geom);\n";
  }
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

// The readings partitions: one per UTC day (`readings_YYYYMMDD`), or one per month
// (`readings_YYYYMM`) in stores created before daily partitions. A partition is named by
// the day number of its first day.
enum class PartitionPeriod { kDay, kMonth };

struct PartitionBounds {
  int64_t first_day = 0;
  int64_t end_day = 0;  // first day of the next partition
};

PartitionBounds PartitionBoundsOf(int64_t day, PartitionPeriod period) {
  if (period == PartitionPeriod::kDay) return {day, day + 1};
  std::string d = FormatTime(day * kMicrosPerDay);  // "YYYY-MM-DDT..."
  int64_t y = 0;
  unsigned m = 0;
  std::from_chars(d.data(), d.data() + 4, y);
  std::from_chars(d.data() + 5, d.data() + 7, m);
  return {DaysFromCivil(y, m, 1),
          m == 12 ? DaysFromCivil(y + 1, 1, 1) : DaysFromCivil(y, m + 1, 1)};
}

std::string PartitionName(int64_t first_day, PartitionPeriod period) {
  std::string d = FormatTime(first_day * kMicrosPerDay);
  std::string name = "readings_" + d.substr(0, 4) + d.substr(5, 2);
  if (period == PartitionPeriod::kDay) name += d.substr(8, 2);
  return name;
}

std::string DayText(int64_t day) {
  return FormatTime(day * kMicrosPerDay).substr(0, 10);
}

// ---- the sink --------------------------------------------------------------------------

// One connection and the rows it sends at the next flush, in a transaction of its own.
// Lane 0 carries every table and, with checkpoints, all rows and the checkpoint's row;
// without checkpoints further lanes (option `connections`) take a share of the readings,
// split by device so that every key stays in one lane, and commit in parallel.
struct Lane {
  explicit Lane(int i) : index(i) {}
  const int index;
  PgConnection conn;
  std::string copy[kTableCount];  // binary COPY data per table
  uint64_t buffered[kTableCount] = {};
  uint64_t inserted[kTableCount] = {};  // what the flush that just committed inserted
  uint64_t commit_seq = 0;
  bool outcome_unknown = false;  // the last flush broke off; it may have committed
  bool committed = false;        // the current flush's transaction committed

  uint64_t rows() const {
    uint64_t n = 0;
    for (uint64_t b : buffered) n += b;
    return n;
  }
  void Clear() {
    for (std::string& b : copy) b.clear();
    for (uint64_t& n : buffered) n = 0;
  }
};

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
    for (int i = 0; i < std::max(options_.connections, 1); ++i) {
      lanes_.push_back(std::make_unique<Lane>(i));
    }
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
  // Connect a lane (with backoff) and prepare its session; schema on the first connection.
  Status EnsureConnected(Lane& lane);
  Status PrepareSession(PgConnection& conn);
  Status CreateSchema();
  PgConnection& main_conn() { return lanes_[0]->conn; }
  // Send the buffered rows, one transaction per lane, retrying for up to retry_for.
  Status Flush();
  Status FlushLanes();
  Status FlushOnce(Lane& lane);
  Status EnsurePartitions();
  // Read the partitions' layout and which of them still lack their GiST index.
  Status ReadPartitions();
  // Build the GiST index of every partition closed by `closed_before` (event time).
  void IndexClosedPartitions(TimeUs closed_before);
  Result<uint64_t> CopyTable(Lane& lane, int table);
  bool AnyOutcomeUnknown() const {
    for (const auto& lane : lanes_) {
      if (lane->outcome_unknown) return true;
    }
    return false;
  }
  void ClearBuffers() {
    for (auto& lane : lanes_) lane->Clear();
    partitions_.clear();
    last_part_ = {1, 0};
    buffered_max_time_ = kMinTime;
    buffered_rows_ = 0;
  }
  void SleepBackoff();

  void EncodeReading(const Reading& r, std::string& out);
  void EncodeReadingPlace(const Reading& r, CopyRow& row);
  void EncodeWindow(const WindowResult& w, std::string& out);
  void EncodeQuarantine(const QuarantineRecord& q, std::string& out);
  void EncodeLate(const LateRecord& l, std::string& out);
  void NotePartition(TimeUs t) {
    buffered_max_time_ = std::max(buffered_max_time_, t);
    int64_t day = FloorDiv(t, kMicrosPerDay);
    if (day < last_part_.first_day || day >= last_part_.end_day) {
      last_part_ = PartitionBoundsOf(day, period_);
      partitions_.insert(last_part_.first_day);
    }
  }

  PostgresSinkOptions options_;
  std::string schema_;  // quoted identifier
  bool enabled_[kTableCount] = {};
  std::string ledger_keys_[kTableCount];
  Ledger* ledger_ = nullptr;
  bool opened_ = false;

  std::vector<std::unique_ptr<Lane>> lanes_;
  bool schema_ready_ = false;
  bool partitioned_ = false;  // readings is partitioned by time (no TimescaleDB)
  bool table_gist_ = false;   // readings has one GiST index over the whole table
  PartitionPeriod period_ = PartitionPeriod::kDay;
  std::set<int64_t> created_partitions_;  // first days of partitions known to exist
  std::set<int64_t> unindexed_;           // ... of those without their GiST index
  TimeUs committed_max_time_ = kMinTime;  // latest reading event time committed

  // Rows waiting for the next flush (in the lanes).
  uint64_t buffered_rows_ = 0;
  std::set<int64_t> partitions_;     // partitions (first days) of the buffered readings
  PartitionBounds last_part_{1, 0};  // the partition of the last reading encoded (none yet)
  TimeUs buffered_max_time_ = kMinTime;

  std::string commit_prefix_;
  bool checkpointing_ = false;  // rows become visible only in CommitCheckpoint
  uint64_t checkpoint_ = 0;     // the checkpoint being committed by the current flush

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
  return EnsureConnected(*lanes_[0]);
}

void PostgresSink::SleepBackoff() {
  if (backoff_ <= 0) backoff_ = options_.reconnect_backoff;
  std::uniform_int_distribution<int64_t> jitter(backoff_ / 2, std::max<int64_t>(backoff_, 1));
  std::this_thread::sleep_for(std::chrono::microseconds(jitter(rng_)));
  backoff_ = std::min(backoff_ * 2, options_.reconnect_backoff_max);
}

Status PostgresSink::EnsureConnected(Lane& lane) {
  if (lane.conn.connected()) return Status::Ok();
  // The first connection creates the schema the others' staging tables copy.
  if (!schema_ready_ && lane.index != 0) TRIB_RETURN_IF_ERROR(EnsureConnected(*lanes_[0]));
  TimeUs deadline = NowUs() + options_.retry_for;
  int timeout_s = static_cast<int>(std::max<DurationUs>(options_.connect_timeout / 1000000, 1));
  while (true) {
    Status st = lane.conn.Connect(options_.conninfo, "tributary/" + options_.name, timeout_s);
    if (st.ok()) st = PrepareSession(lane.conn);
    if (st.ok()) {
      if (backoff_ > 0) spdlog::info("postgres sink {}: connected again", options_.name);
      backoff_ = 0;
      return Status::Ok();
    }
    lane.conn.Close();
    if (!st.retryable() || NowUs() >= deadline) {
      return st.WithContext("postgres sink " + options_.name);
    }
    spdlog::warn("postgres sink {}: {}; reconnecting", options_.name, st.message());
    SleepBackoff();
  }
}

Status PostgresSink::PrepareSession(PgConnection& conn) {
  // temp_buffers (8 MB by default) must hold a commit's staging rows: beyond it the
  // server writes and reads them back through temporary files. It can only be set
  // before the session first touches a temporary table.
  TRIB_RETURN_IF_ERROR(conn.Exec(
      "SET client_min_messages = warning; SET TIME ZONE 'UTC'; SET temp_buffers = '256MB'; "
      "SET maintenance_work_mem = '256MB'"));
  if (!schema_ready_) TRIB_RETURN_IF_ERROR(CreateSchema());
  // Staging tables for the fallback after a unique violation: the columns of the target,
  // with their types, so the same binary COPY data fits both.
  for (int i = 0; i < kTableCount; ++i) {
    TRIB_RETURN_IF_ERROR(conn.Exec("CREATE TEMP TABLE IF NOT EXISTS tributary_stage_" +
                                   std::string(kTableNames[i]) +
                                   " ON COMMIT DELETE ROWS AS SELECT " + kColumns[i] + " FROM " +
                                   schema_ + "." + kTableNames[i] + " WITH NO DATA"));
  }
  return Status::Ok();
}

Status PostgresSink::CreateSchema() {
  TRIB_ASSIGN_OR_RETURN(
      int64_t has_postgis,
      main_conn().QueryInt("SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis'"));
  if (has_postgis == 0) {
    return Status::Invalid("postgres sink " + options_.name +
                           ": the server has no PostGIS extension (install postgis for "
                           "PostgreSQL " +
                           std::to_string(main_conn().server_major()) + ")");
  }
  // TimescaleDB (untested here: Debian 12 does not package it). Its extension loads only
  // when preloaded (shared_preload_libraries), so being installed is not enough; and an
  // existing readings table keeps its layout: a table partitioned by month stays so, as
  // create_hypertable refuses partitioned or non-empty tables.
  const std::string readings = PgQuoteLiteral(schema_ + ".readings");
  TRIB_ASSIGN_OR_RETURN(
      int64_t has_timescale,
      main_conn().QueryInt(
          "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb' "
          "AND (installed_version IS NOT NULL OR "
          "current_setting('shared_preload_libraries') LIKE '%timescaledb%')"));
  TRIB_ASSIGN_OR_RETURN(
      int64_t existing,
      main_conn().QueryInt("SELECT count(*) FROM pg_class WHERE oid = to_regclass(" + readings +
                           ")"));
  auto count_partitioned = [&] {
    return main_conn().QueryInt(
        "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = "
        "to_regclass(" +
        readings + ")");
  };
  TRIB_ASSIGN_OR_RETURN(int64_t existing_partitioned, count_partitioned());
  const bool hypertable = has_timescale > 0 && (existing == 0 || existing_partitioned == 0);
  // A table-wide GiST index stays: every partition has it, so none can wait for its close.
  TRIB_ASSIGN_OR_RETURN(
      int64_t table_gist,
      main_conn().QueryInt("SELECT count(*) FROM pg_class WHERE oid = to_regclass(" +
                           PgQuoteLiteral(schema_ + ".readings_geom_gist") + ")"));
  if (table_gist > 0 && options_.geom_index_on_close) {
    spdlog::info(
        "postgres sink {}: {}.readings has a GiST index over the whole table (geom_index: "
        "on_insert when it was created); rows are indexed as they are inserted",
        options_.name, schema_);
  }
  table_gist_ = hypertable || table_gist > 0 || !options_.geom_index_on_close;
  // One transaction, and an advisory lock so two sinks starting at once do not race
  // on CREATE ... IF NOT EXISTS.
  std::string sql = "BEGIN; SELECT pg_advisory_xact_lock(7236051);\n";
  sql += "CREATE EXTENSION IF NOT EXISTS postgis;\n";
  if (hypertable) sql += "CREATE EXTENSION IF NOT EXISTS timescaledb;\n";
  sql += SchemaSql(schema_, hypertable, table_gist_);
  if (hypertable) {
    // A no-op (with a notice) when readings already is a hypertable.
    sql += "SELECT create_hypertable(" + readings +
           "::regclass, 'event_time', if_not_exists => TRUE);\n";
  }
  sql += "COMMIT;";
  Status st = main_conn().Exec(sql);
  if (!st.ok()) {
    (void)main_conn().Exec("ROLLBACK");
    return st;
  }
  TRIB_ASSIGN_OR_RETURN(int64_t partitioned, count_partitioned());
  partitioned_ = partitioned > 0;
  if (partitioned_) TRIB_RETURN_IF_ERROR(ReadPartitions());
  schema_ready_ = true;
  return Status::Ok();
}

Status PostgresSink::ReadPartitions() {
  TRIB_ASSIGN_OR_RETURN(
      PgResult r,
      main_conn().Query(
          "SELECT c.relname, EXISTS (SELECT 1 FROM pg_index x JOIN pg_class ic ON ic.oid = "
          "x.indexrelid JOIN pg_am a ON a.oid = ic.relam WHERE x.indrelid = c.oid AND "
          "a.amname = 'gist') FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
          "WHERE i.inhparent = to_regclass(" +
          PgQuoteLiteral(schema_ + ".readings") + ")"));
  created_partitions_.clear();
  unindexed_.clear();
  period_ = PartitionPeriod::kDay;
  for (int i = 0; i < r.rows(); ++i) {
    // readings_YYYYMM or readings_YYYYMMDD; partitions named otherwise are not the sink's.
    std::string name = r.Value(i, 0);
    constexpr std::string_view kPrefix = "readings_";
    std::string_view digits = std::string_view(name).substr(std::min(name.size(), kPrefix.size()));
    if (name.compare(0, kPrefix.size(), kPrefix) != 0 ||
        (digits.size() != 6 && digits.size() != 8) ||
        digits.find_first_not_of("0123456789") != std::string_view::npos) {
      continue;
    }
    auto number = [&](size_t at, size_t n) {
      unsigned v = 0;
      std::from_chars(digits.data() + at, digits.data() + at + n, v);
      return v;
    };
    if (digits.size() == 6) period_ = PartitionPeriod::kMonth;
    int64_t first_day =
        DaysFromCivil(number(0, 4), number(4, 2), digits.size() == 8 ? number(6, 2) : 1);
    created_partitions_.insert(first_day);
    if (r.Value(i, 1) != "t") unindexed_.insert(first_day);
  }
  if (table_gist_) unindexed_.clear();  // the table-wide index covers them
  return Status::Ok();
}

void PostgresSink::IndexClosedPartitions(TimeUs closed_before) {
  if (table_gist_ || !partitioned_ || !main_conn().connected()) return;
  while (!unindexed_.empty()) {
    const int64_t first_day = *unindexed_.begin();
    const PartitionBounds b = PartitionBoundsOf(first_day, period_);
    if (b.end_day * kMicrosPerDay + kMicrosPerHour > closed_before) return;
    const std::string name = PartitionName(first_day, period_);
    const TimeUs started = NowUs();
    Status st =
        main_conn().Exec("CREATE INDEX IF NOT EXISTS " + PgQuoteIdent(name + "_geom_gist") +
                         " ON " + schema_ + "." + PgQuoteIdent(name) + " USING gist (geom)");
    if (!st.ok()) {
      spdlog::warn("postgres sink {}: indexing {}: {} (tried again after the next commit)",
                   options_.name, name, st.message());
      return;
    }
    spdlog::info("postgres sink {}: partition {} is closed; its GiST index took {}", options_.name,
                 name, FormatDuration(NowUs() - started));
    unindexed_.erase(unindexed_.begin());
  }
}

Status PostgresSink::EnsurePartitions() {
  if (!partitioned_) return Status::Ok();
  for (int64_t first_day : partitions_) {
    if (created_partitions_.count(first_day) != 0) continue;
    const PartitionBounds b = PartitionBoundsOf(first_day, period_);
    TRIB_RETURN_IF_ERROR(
        main_conn().Exec("CREATE TABLE IF NOT EXISTS " + schema_ + "." +
                         PgQuoteIdent(PartitionName(first_day, period_)) + " PARTITION OF " +
                         schema_ + ".readings FOR VALUES FROM ('" + DayText(b.first_day) +
                         " 00:00:00+00') TO ('" + DayText(b.end_day) + " 00:00:00+00')"));
    created_partitions_.insert(first_day);
    if (!table_gist_) unindexed_.insert(first_day);  // until it is closed
  }
  return Status::Ok();
}

Status PostgresSink::Write(const Batch& batch) {
  if (!opened_) {
    return Status::Internal("postgres sink " + options_.name + ": Write before Open");
  }
  // Encode the rows of one table of the batch into lane 0, when that table is enabled.
  Lane& main = *lanes_[0];
  auto encode = [&](int table, const auto& rows, auto&& one) {
    if (!enabled_[table]) return;
    for (const auto& row : rows) (this->*one)(row, main.copy[table]);
    main.buffered[table] += rows.size();
    buffered_rows_ += rows.size();
  };
  // Readings are shared out by device (with checkpoints all stay in lane 0: one
  // transaction per checkpoint).
  const size_t lanes = checkpointing_ ? 1 : lanes_.size();
  if (enabled_[kReadings] && lanes > 1) {
    for (const Reading& r : batch.readings) {
      Lane& lane = *lanes_[r.device.id % lanes];
      EncodeReading(r, lane.copy[kReadings]);
      ++lane.buffered[kReadings];
    }
    buffered_rows_ += batch.readings.size();
  } else {
    encode(kReadings, batch.readings, &PostgresSink::EncodeReading);
  }
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
  if (buffered_rows_ == 0 && !AnyOutcomeUnknown()) return Status::Ok();
  return Flush();
}

Result<SinkCheckpointRecord> PostgresSink::OpenCheckpoints() {
  if (!opened_) {
    return Status::Internal("postgres sink " + options_.name + ": OpenCheckpoints before Open");
  }
  const TimeUs deadline = NowUs() + options_.retry_for;
  Result<PgResult> r = Status::Internal("not queried");
  while (true) {
    Status st = EnsureConnected(*lanes_[0]);
    if (st.ok()) {
      r = main_conn().Query("SELECT checkpoint_id, readings, windows, quarantine, late FROM " +
                            schema_ +
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
    Status st = FlushLanes();
    if (st.ok()) return st;
    if (!st.retryable() || NowUs() >= deadline) {
      return st.WithContext("postgres sink " + options_.name);
    }
    spdlog::warn("postgres sink {}: {}; retrying", options_.name, st.message());
    SleepBackoff();
  }
}

// The lanes with something to commit, in parallel: lane 0 on this thread, the others on
// threads of their own. A lane that committed is done even when another failed; the
// retry sends only what is left.
Status PostgresSink::FlushLanes() {
  std::vector<Lane*> pending;
  for (auto& lane : lanes_) {
    if (lane->rows() > 0 || lane->outcome_unknown || (lane->index == 0 && checkpoint_ != 0)) {
      pending.push_back(lane.get());
    }
  }
  TRIB_RETURN_IF_ERROR(EnsureConnected(*lanes_[0]));
  for (Lane* lane : pending) TRIB_RETURN_IF_ERROR(EnsureConnected(*lane));
  // Partitions first, in a transaction of their own: two lanes creating one would race.
  TRIB_RETURN_IF_ERROR(EnsurePartitions());
  std::vector<Status> results(pending.size());
  std::vector<std::thread> threads;
  for (size_t i = 1; i < pending.size(); ++i) {
    threads.emplace_back([this, &results, &pending, i] { results[i] = FlushOnce(*pending[i]); });
  }
  if (!pending.empty()) results[0] = FlushOnce(*pending[0]);
  for (std::thread& t : threads) t.join();
  Status first_error;
  for (size_t i = 0; i < pending.size(); ++i) {
    Lane& lane = *pending[i];
    if (lane.committed) {
      if (ledger_ != nullptr) {
        for (int t = 0; t < kTableCount; ++t) {
          if (enabled_[t]) ledger_->AddSinkCommitted(ledger_keys_[t], lane.inserted[t]);
        }
      }
      buffered_rows_ -= lane.rows();
      lane.Clear();
      lane.committed = false;
      ++lane.commit_seq;
    }
    if (!results[i].ok() && first_error.ok()) first_error = results[i];
  }
  if (!first_error.ok()) return first_error;
  committed_max_time_ = std::max(committed_max_time_, buffered_max_time_);
  ClearBuffers();
  IndexClosedPartitions(committed_max_time_);
  return Status::Ok();
}

// COPY straight into the table, inside a savepoint. A unique violation means some rows
// are stored already (a replay after a crash or a lost acknowledgement, or a row twice
// in the batch): back to the savepoint, and the batch goes through the staging table and
// INSERT ... ON CONFLICT DO NOTHING instead. Returns the rows inserted.
Result<uint64_t> PostgresSink::CopyTable(Lane& lane, int table) {
  PgConnection& conn = lane.conn;
  const std::string copy_tail = " FROM STDIN (FORMAT binary)";
  TRIB_RETURN_IF_ERROR(conn.Exec("SAVEPOINT tributary_copy"));
  Result<uint64_t> copied = conn.CopyIn(
      "COPY " + schema_ + "." + kTableNames[table] + " (" + kColumns[table] + ")" + copy_tail,
      lane.copy[table], kCopyTrailer);
  if (copied.ok()) {
    TRIB_RETURN_IF_ERROR(conn.Exec("RELEASE SAVEPOINT tributary_copy"));
    return copied;
  }
  if (!conn.connected() || conn.last_sqlstate() != "23505") return copied.status();
  TRIB_RETURN_IF_ERROR(conn.Exec("ROLLBACK TO SAVEPOINT tributary_copy"));
  spdlog::info("postgres sink {}: some {} rows are stored already; inserting the rest",
               options_.name, kTableNames[table]);
  TRIB_RETURN_IF_ERROR(
      conn.CopyIn("COPY pg_temp.tributary_stage_" + std::string(kTableNames[table]) + copy_tail,
                  lane.copy[table], kCopyTrailer)
          .status());
  TRIB_ASSIGN_OR_RETURN(PgResult ins, conn.Query(InsertStagedSql(schema_, table)));
  return ins.Affected();
}

// One lane's transaction: its rows, its sink_commits row and (lane 0, with checkpoints)
// the checkpoint's row. Runs on a thread of its own for lanes other than 0, so it
// touches nothing but `lane` and what stays constant during a flush.
Status PostgresSink::FlushOnce(Lane& lane) {
  PgConnection& conn = lane.conn;
  const bool checkpoint_row = lane.index == 0 && checkpoint_ != 0;
  const std::string commit_id = commit_prefix_ +
                                (lane.index == 0 ? "" : "l" + std::to_string(lane.index) + "-") +
                                std::to_string(lane.commit_seq);
  if (lane.outcome_unknown) {
    // The previous attempt broke off, perhaps after its COMMIT reached the server.
    const std::string probe =
        checkpoint_row ? "SELECT readings, windows, quarantine, late FROM " + schema_ +
                             ".sink_checkpoints WHERE sink = " + PgQuoteLiteral(options_.name) +
                             " AND checkpoint_id = " + std::to_string(checkpoint_)
                       : "SELECT readings, windows, quarantine, late FROM " + schema_ +
                             ".sink_commits WHERE commit_id = " + PgQuoteLiteral(commit_id);
    TRIB_ASSIGN_OR_RETURN(PgResult r, conn.Query(probe));
    lane.outcome_unknown = false;
    if (r.rows() == 1) {
      spdlog::info("postgres sink {}: commit {} had reached the server", options_.name, commit_id);
      for (int i = 0; i < kTableCount; ++i) {
        lane.inserted[i] = std::strtoull(r.Value(0, i).c_str(), nullptr, 10);
      }
      lane.committed = true;
      return Status::Ok();
    }
    if (lane.rows() == 0 && !checkpoint_row) return Status::Ok();
  }
  uint64_t inserted[kTableCount] = {};
  lane.outcome_unknown = true;  // until the server has answered COMMIT or ROLLBACK
  Status st = conn.Exec("BEGIN");
  for (int i = 0; i < kTableCount && st.ok(); ++i) {
    if (lane.buffered[i] == 0) continue;
    Result<uint64_t> rows = CopyTable(lane, i);
    if (!rows.ok()) {
      st = rows.status();
      break;
    }
    inserted[i] = *rows;
  }
  if (st.ok()) {
    st = conn.Exec("INSERT INTO " + schema_ +
                   ".sink_commits (commit_id, sink, readings, windows, quarantine, late) "
                   "VALUES (" +
                   PgQuoteLiteral(commit_id) + ", " + PgQuoteLiteral(options_.name) + ", " +
                   std::to_string(inserted[kReadings]) + ", " + std::to_string(inserted[kWindows]) +
                   ", " + std::to_string(inserted[kQuarantine]) + ", " +
                   std::to_string(inserted[kLate]) + ")");
  }
  if (st.ok() && checkpoint_row) {
    std::string counts;
    for (int i = 0; i < kTableCount; ++i) counts += ", " + std::to_string(inserted[i]);
    st = conn.Exec("INSERT INTO " + schema_ +
                   ".sink_checkpoints (sink, checkpoint_id, readings, windows, quarantine, "
                   "late) VALUES (" +
                   PgQuoteLiteral(options_.name) + ", " + std::to_string(checkpoint_) + counts +
                   ") ON CONFLICT (sink) DO UPDATE SET checkpoint_id = EXCLUDED.checkpoint_id, "
                   "readings = EXCLUDED.readings, windows = EXCLUDED.windows, "
                   "quarantine = EXCLUDED.quarantine, late = EXCLUDED.late, "
                   "committed_at = now()");
  }
  if (st.ok()) st = conn.Exec("COMMIT");
  if (!st.ok()) {
    if (conn.connected()) {
      // The server answered with an error: nothing of this transaction is stored.
      (void)conn.Exec("ROLLBACK");
      lane.outcome_unknown = false;
    } else {
      conn.Close();
    }
    return st;
  }
  lane.outcome_unknown = false;
  for (int i = 0; i < kTableCount; ++i) lane.inserted[i] = inserted[i];
  lane.committed = true;
  return Status::Ok();
}

void PostgresSink::Close() {
  // A partition that ended more than an hour ago by the clock gets no live readings any
  // more (a backfill of past days ends here).
  if (opened_) IndexClosedPartitions(std::max(committed_max_time_, NowUs()));
  if (buffered_rows_ > 0) {
    spdlog::warn("postgres sink {}: closed with {} rows not committed", options_.name,
                 buffered_rows_);
    ClearBuffers();
  }
  for (auto& lane : lanes_) lane->conn.Close();
}

void PostgresSink::EncodeReading(const Reading& r, std::string& out) {
  NotePartition(r.event_time);
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
        "PostgreSQL with PostGIS: the tables readings (partitioned by day, or a TimescaleDB "
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
            {"connections", OptionType::kInt, "2",
             "Connections that commit readings in parallel, each in a transaction of its own "
             "with its own sink_commits row (a device's readings always take the same one). "
             "With checkpoints one connection carries each checkpoint in one transaction.",
             "1..16"},
            {"geom_index", OptionType::kEnum, "on_close",
             "When readings.geom is indexed. `on_close`: each daily partition gets its GiST "
             "index once it is closed, when readings from an hour after its end are committed "
             "(or at shutdown for days that ended earlier); spatial queries on the open day "
             "scan it. `on_insert`: one index over the whole table, every row indexed as it "
             "is inserted (spatial queries indexed everywhere, about half the write rate). "
             "An existing table keeps a table-wide index it has.",
             "on_close|on_insert"},
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
  TRIB_ASSIGN_OR_RETURN(out.connections, o.GetInt("connections"));
  TRIB_ASSIGN_OR_RETURN(std::string geom_index, o.GetString("geom_index"));
  out.geom_index_on_close = geom_index == "on_close";
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
