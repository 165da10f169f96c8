#include "io/sinks/parquet_sink.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/registry.h"
#include "io/sinks/table_selection.h"

#ifdef TRIBUTARY_HAVE_DUCKDB
#include <duckdb.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/json_writer.h"
#include "io/sinks/duck_util.h"
#include "io/sinks/gpkg.h"
#include "io/sinks/sink_text.h"
#include "spatial/enrich.h"
#include "spatial/s2cell.h"
#endif

namespace tributary {

namespace {

constexpr std::string_view kGeoMetadata =
    R"({"version":"1.0.0","primary_column":"geometry","columns":{"geometry":)"
    R"({"encoding":"WKB","geometry_types":["Point"]}}})";

}  // namespace

std::string_view GeoParquetMetadata() {
  return kGeoMetadata;
}

bool ParquetSinkAvailable() {
#ifdef TRIBUTARY_HAVE_DUCKDB
  return true;
#else
  return false;
#endif
}

#ifdef TRIBUTARY_HAVE_DUCKDB
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// Table layouts. Partition columns come first in the buffer tables and are left out of
// the files (their values are in the folder names, as Hive partitioning does).

enum TableIndex : int { kReadings = 0, kWindows, kQuarantine, kLate, kTableCount };
constexpr std::string_view kTableNames[kTableCount] = {"readings", "windows", "quarantine", "late"};

// Flattened provenance, shared by readings, quarantine and late.
const std::vector<DuckColumn> kProvenanceColumns = {
    {"source", DUCKDB_TYPE_VARCHAR},           {"topic", DUCKDB_TYPE_VARCHAR},
    {"partition", DUCKDB_TYPE_INTEGER},        {"offset", DUCKDB_TYPE_BIGINT},
    {"firmware_version", DUCKDB_TYPE_VARCHAR}, {"calibration_date", DUCKDB_TYPE_VARCHAR},
    {"crs_source", DUCKDB_TYPE_VARCHAR},       {"original_x", DUCKDB_TYPE_DOUBLE},
    {"original_y", DUCKDB_TYPE_DOUBLE},
};

std::vector<DuckColumn> Concat(std::initializer_list<std::vector<DuckColumn>> parts) {
  std::vector<DuckColumn> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

const std::vector<DuckColumn> kReadingColumns = Concat({{{"date", DUCKDB_TYPE_DATE},
                                                         {"metric", DUCKDB_TYPE_VARCHAR},
                                                         {"device_id", DUCKDB_TYPE_VARCHAR},
                                                         {"value", DUCKDB_TYPE_DOUBLE},
                                                         {"event_time", DUCKDB_TYPE_TIMESTAMP_TZ},
                                                         {"arrival_time", DUCKDB_TYPE_TIMESTAMP_TZ},
                                                         {"lat", DUCKDB_TYPE_DOUBLE},
                                                         {"lon", DUCKDB_TYPE_DOUBLE},
                                                         {"zone_id", DUCKDB_TYPE_VARCHAR},
                                                         {"h3", DUCKDB_TYPE_VARCHAR},
                                                         {"qc_flags", DUCKDB_TYPE_VARCHAR}},
                                                        kProvenanceColumns,
                                                        {{"geometry", DUCKDB_TYPE_BLOB},
                                                         {"zones", DUCKDB_TYPE_VARCHAR},
                                                         {"s2", DUCKDB_TYPE_VARCHAR},
                                                         {"qc_score", DUCKDB_TYPE_DOUBLE}}});

const std::vector<DuckColumn> kWindowColumns = {
    {"date", DUCKDB_TYPE_DATE},
    {"metric", DUCKDB_TYPE_VARCHAR},
    {"window", DUCKDB_TYPE_VARCHAR},
    {"group_by", DUCKDB_TYPE_VARCHAR},
    {"group_key", DUCKDB_TYPE_VARCHAR},
    {"window_start", DUCKDB_TYPE_TIMESTAMP_TZ},
    {"window_end", DUCKDB_TYPE_TIMESTAMP_TZ},
    {"sample_count", DUCKDB_TYPE_BIGINT},
    {"mean", DUCKDB_TYPE_DOUBLE},
    {"min", DUCKDB_TYPE_DOUBLE},
    {"max", DUCKDB_TYPE_DOUBLE},
    {"std", DUCKDB_TYPE_DOUBLE},
    {"median", DUCKDB_TYPE_DOUBLE},
    {"p95", DUCKDB_TYPE_DOUBLE},
    {"trimmed_mean", DUCKDB_TYPE_DOUBLE},
    {"first", DUCKDB_TYPE_DOUBLE},
    {"last", DUCKDB_TYPE_DOUBLE},
    {"centroid_lat", DUCKDB_TYPE_DOUBLE},
    {"centroid_lon", DUCKDB_TYPE_DOUBLE},
    {"distinct_sensors", DUCKDB_TYPE_INTEGER},
    {"late_arrival_count", DUCKDB_TYPE_BIGINT},
    {"aggregation_method", DUCKDB_TYPE_VARCHAR},
    {"quality_flags", DUCKDB_TYPE_VARCHAR},
    {"revision", DUCKDB_TYPE_INTEGER},
    {"emitted_at", DUCKDB_TYPE_TIMESTAMP_TZ},
    {"quantiles", DUCKDB_TYPE_VARCHAR},
    {"geometry", DUCKDB_TYPE_BLOB},
    {"interpolated_sample_fraction", DUCKDB_TYPE_DOUBLE},
    {"exceedance_count", DUCKDB_TYPE_BIGINT},
};

const std::vector<DuckColumn> kQuarantineColumns =
    Concat({{{"date", DUCKDB_TYPE_DATE},
             {"reason", DUCKDB_TYPE_VARCHAR},
             {"detail", DUCKDB_TYPE_VARCHAR},
             {"raw", DUCKDB_TYPE_BLOB},
             {"device_id", DUCKDB_TYPE_VARCHAR},
             {"metric", DUCKDB_TYPE_VARCHAR},
             {"arrival_time", DUCKDB_TYPE_TIMESTAMP_TZ}},
            kProvenanceColumns});

const std::vector<DuckColumn> kLateColumns =
    Concat({{{"date", DUCKDB_TYPE_DATE},
             {"metric", DUCKDB_TYPE_VARCHAR},
             {"window", DUCKDB_TYPE_VARCHAR},
             {"device_id", DUCKDB_TYPE_VARCHAR},
             {"value", DUCKDB_TYPE_DOUBLE},
             {"event_time", DUCKDB_TYPE_TIMESTAMP_TZ},
             {"arrival_time", DUCKDB_TYPE_TIMESTAMP_TZ},
             {"lateness_us", DUCKDB_TYPE_BIGINT},
             {"lateness_s", DUCKDB_TYPE_DOUBLE},
             {"watermark", DUCKDB_TYPE_TIMESTAMP_TZ},
             {"lat", DUCKDB_TYPE_DOUBLE},
             {"lon", DUCKDB_TYPE_DOUBLE},
             {"zone_id", DUCKDB_TYPE_VARCHAR},
             {"h3", DUCKDB_TYPE_VARCHAR},
             {"qc_flags", DUCKDB_TYPE_VARCHAR}},
            kProvenanceColumns,
            {{"geometry", DUCKDB_TYPE_BLOB}, {"qc_score", DUCKDB_TYPE_DOUBLE}}});

struct TableDef {
  const std::vector<DuckColumn>* columns;
  int partition_columns;         // leading columns that name the folders
  bool geometry;                 // has a `geometry` column (GeoParquet metadata)
  double initial_bytes_per_row;  // file size guess before the first file is written
};

const TableDef kTables[kTableCount] = {
    {&kReadingColumns, 2, true, 24},
    {&kWindowColumns, 2, true, 64},
    {&kQuarantineColumns, 1, false, 128},
    {&kLateColumns, 2, true, 48},
};

// A Hive partition value as a folder name: bytes outside [A-Za-z0-9._-] as %XX (which
// Hive-aware readers decode), the empty value as Hive's default partition.
std::string HiveValue(std::string_view v) {
  if (v.empty()) return "__HIVE_DEFAULT_PARTITION__";
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (char c : v) {
    auto b = static_cast<unsigned char>(c);
    if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '.' ||
        b == '_' || b == '-') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 15]);
    }
  }
  return out;
}

std::string SeqName(uint64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%06llu", static_cast<unsigned long long>(seq));
  return buf;
}

// The sequence number of "part-<digits>.parquet", or -1.
int64_t PartSeq(const std::string& file_name) {
  constexpr std::string_view kPrefix = "part-", kSuffix = ".parquet";
  if (file_name.size() <= kPrefix.size() + kSuffix.size()) return -1;
  if (file_name.compare(0, kPrefix.size(), kPrefix) != 0) return -1;
  if (file_name.compare(file_name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) {
    return -1;
  }
  int64_t seq = 0;
  const char* first = file_name.data() + kPrefix.size();
  const char* last = file_name.data() + file_name.size() - kSuffix.size();
  auto res = std::from_chars(first, last, seq);
  if (res.ec != std::errc() || res.ptr != last) return -1;
  return seq;
}

Status FsyncPath(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return Status::Io("parquet: cannot open " + path + ": " + std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    return Status::Io("parquet: fsync " + path + ": " + std::strerror(err), /*retryable=*/true);
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------

const char* CompressionName(ParquetCompression c) {
  switch (c) {
    case ParquetCompression::kZstd:
      return "ZSTD";
    case ParquetCompression::kSnappy:
      return "SNAPPY";
    case ParquetCompression::kUncompressed:
      return "UNCOMPRESSED";
  }
  return "ZSTD";
}

class ParquetSink final : public Sink {
 public:
  explicit ParquetSink(ParquetSinkOptions options) : options_(std::move(options)) {
    enabled_[kReadings] = options_.readings;
    enabled_[kWindows] = options_.windows;
    enabled_[kQuarantine] = options_.quarantine;
    enabled_[kLate] = options_.late;
    for (int i = 0; i < kTableCount; ++i) {
      tables_[i].ledger_key = options_.name + "/" + std::string(kTableNames[i]);
      tables_[i].bytes_per_row = kTables[i].initial_bytes_per_row;
    }
  }
  ~ParquetSink() override { Close(); }

  Status Open(RunContext& ctx) override;
  Status Write(const Batch& batch) override;
  Status Commit() override;
  Result<SinkCheckpointRecord> OpenCheckpoints() override;
  Status PrepareCheckpoint(uint64_t checkpoint) override;
  Status CommitCheckpoint(uint64_t checkpoint) override;
  void Close() override;

 private:
  // The rows of one partition (a day, and a metric for the tables partitioned by it),
  // as indexes into the table's buffered records, in the order they were written.
  struct PartitionRows {
    int32_t day = 0;
    Symbol metric;
    std::vector<uint32_t> rows;
  };
  struct Table {
    std::string ledger_key;
    uint64_t buffered = 0;  // rows written since the last commit
    double bytes_per_row = 0;
    std::vector<PartitionRows> parts;
    std::unordered_map<uint64_t, size_t> part_index;  // (day, metric id) -> parts[i]
  };
  struct Partition {
    std::string date;    // YYYY-MM-DD
    std::string metric;  // only for tables partitioned by metric
    uint64_t rows = 0;
    std::string folder;
    PartitionRows* source = nullptr;
  };
  // What the table function tributary_rows() gives DuckDB during one COPY: rows
  // [next, end) of `rows` of table `table`.
  struct Scan {
    int table = 0;
    const std::vector<uint32_t>* rows = nullptr;
    size_t next = 0;
    size_t end = 0;
  };

  Status ScanArchive();
  Status RegisterRowsFunction();
  static void BindRows(duckdb_bind_info info);
  static void InitRows(duckdb_init_info info);
  static void ProduceRows(duckdb_function_info info, duckdb_data_chunk output);
  void AddRow(int t, TimeUs day_time, Symbol metric, size_t index);
  void FillRow(int t, DuckChunkWriter& a, uint32_t index);
  void FillReading(DuckChunkWriter& a, const Reading& r);
  void FillWindow(DuckChunkWriter& a, const WindowResult& w);
  void FillQuarantine(DuckChunkWriter& a, const QuarantineRecord& q);
  void FillLate(DuckChunkWriter& a, const LateRecord& l);
  void AppendProvenance(DuckChunkWriter& a, int first_column, const Provenance& p);
  void AppendGeometry(DuckChunkWriter& a, int column, double lon, double lat);
  void AppendH3(DuckChunkWriter& a, int column, uint64_t cell);
  void ClearTable(int t);
  Status CommitTable(int t);
  Status WritePartition(int t, const Partition& p);
  // Checkpoints: finish the renames of a decided commit left by a crash.
  Status RollForwardManifest();
  Status WriteManifest(const std::string& path, uint64_t checkpoint, bool with_renames);

  ParquetSinkOptions options_;
  bool enabled_[kTableCount] = {};
  Table tables_[kTableCount];
  Ledger* ledger_ = nullptr;
  std::string root_;
  bool open_ = false;
  uint64_t next_seq_ = 1;
  std::string select_[kTableCount];  // file columns, quoted and comma-separated
  DuckDbConnection duck_;
  // Records buffered since the last commit. They go to DuckDB only at the commit, through
  // tributary_rows(), straight into the Parquet writer: no DuckDB table holds them, so
  // nothing is stored, scanned, filtered and grouped on the way.
  std::vector<Reading> readings_;
  std::vector<WindowResult> windows_;
  std::vector<QuarantineRecord> quarantine_;
  std::vector<LateRecord> late_;
  Scan scan_;
  // Checkpoints (Sink::OpenCheckpoints): files are written at PrepareCheckpoint under
  // their temporary names and renamed at CommitCheckpoint, after a manifest listing the
  // renames is durable (<root>/_checkpoint.pending); <root>/_checkpoint then records
  // the id and rows of the last commit.
  bool checkpointing_ = false;
  std::vector<std::pair<std::string, std::string>> deferred_;  // (temporary, final)
  uint64_t prepared_rows_[kTableCount] = {};

  SinkFlagsText flags_text_;
  std::string json_;
  std::vector<std::string> extra_zone_layers_;  // zones.layers after the first
  std::string zones_json_;
};

Status ParquetSink::Open(RunContext& ctx) {
  if (open_) return Status::Internal("parquet sink " + options_.name + " opened twice");
  ledger_ = ctx.ledger;
  if (ctx.config != nullptr) extra_zone_layers_ = ExtraZoneLayerNames(*ctx.config);
  if (options_.path.empty()) {
    std::string dir = ctx.data_dir.empty() ? std::string(".") : ctx.data_dir;
    root_ = dir + "/" + std::string(kParquetDefaultFolder);
  } else {
    root_ = options_.path;
  }
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec) return Status::Io("parquet " + root_ + ": cannot create the folder: " + ec.message());
  TRIB_RETURN_IF_ERROR(RollForwardManifest());
  TRIB_RETURN_IF_ERROR(ScanArchive());
  TRIB_RETURN_IF_ERROR(duck_.Open("", options_.threads));
  TRIB_RETURN_IF_ERROR(RegisterRowsFunction());
  for (int t = 0; t < kTableCount; ++t) {
    const TableDef& def = kTables[t];
    select_[t].clear();
    for (size_t c = static_cast<size_t>(def.partition_columns); c < def.columns->size(); ++c) {
      if (!select_[t].empty()) select_[t] += ", ";
      select_[t] += DuckQuoteIdent((*def.columns)[c].name);
    }
  }
  open_ = true;
  return Status::Ok();
}

// Continue numbering after the highest part-<seq>.parquet of the archive, and remove
// the temporary files of a commit that never finished.
Status ParquetSink::ScanArchive() {
  std::error_code ec;
  uint64_t max_seq = 0;
  std::vector<fs::path> stale;
  for (auto it = fs::recursive_directory_iterator(root_, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    std::string name = it->path().filename().string();
    int64_t seq = PartSeq(name);
    if (seq > 0) max_seq = std::max(max_seq, static_cast<uint64_t>(seq));
    if (name.size() > 5 && name.rfind(".part-", 0) == 0 &&
        name.compare(name.size() - 4, 4, ".tmp") == 0) {
      stale.push_back(it->path());
    }
  }
  if (ec) return Status::Io("parquet " + root_ + ": cannot list the archive: " + ec.message());
  for (const fs::path& p : stale) {
    spdlog::warn("parquet {}: removing {} left by an unfinished commit", root_, p.string());
    fs::remove(p, ec);
  }
  next_seq_ = max_seq + 1;
  return Status::Ok();
}

Status ParquetSink::RegisterRowsFunction() {
  duckdb_table_function f = duckdb_create_table_function();
  duckdb_table_function_set_name(f, "tributary_rows");
  duckdb_table_function_set_extra_info(f, this, nullptr);
  duckdb_table_function_set_bind(f, &ParquetSink::BindRows);
  duckdb_table_function_set_init(f, &ParquetSink::InitRows);
  duckdb_table_function_set_function(f, &ParquetSink::ProduceRows);
  duckdb_state st = duckdb_register_table_function(duck_.get(), f);
  duckdb_destroy_table_function(&f);
  if (st != DuckDBSuccess) return Status::Internal("parquet: cannot register tributary_rows");
  return Status::Ok();
}

void ParquetSink::BindRows(duckdb_bind_info info) {
  auto* self = static_cast<ParquetSink*>(duckdb_bind_get_extra_info(info));
  for (const DuckColumn& c : *kTables[self->scan_.table].columns) {
    duckdb_logical_type type = duckdb_create_logical_type(c.type);
    duckdb_bind_add_result_column(info, std::string(c.name).c_str(), type);
    duckdb_destroy_logical_type(&type);
  }
}

void ParquetSink::InitRows(duckdb_init_info info) {
  duckdb_init_set_max_threads(info, 1);  // one scan, rows in the order written
}

void ParquetSink::ProduceRows(duckdb_function_info info, duckdb_data_chunk output) {
  auto* self = static_cast<ParquetSink*>(duckdb_function_get_extra_info(info));
  Scan& scan = self->scan_;
  DuckChunkWriter a;
  a.Attach(output, kTables[scan.table].columns->size());
  while (scan.next < scan.end && a.row() < a.capacity()) {
    self->FillRow(scan.table, a, (*scan.rows)[scan.next++]);
    a.NextRow();
  }
  duckdb_data_chunk_set_size(output, a.row());
}

void ParquetSink::AddRow(int t, TimeUs day_time, Symbol metric, size_t index) {
  Table& table = tables_[t];
  const int32_t day = static_cast<int32_t>(FloorDiv(day_time, kMicrosPerDay));
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(day)) << 32) | metric.id;
  auto [it, added] = table.part_index.try_emplace(key, table.parts.size());
  if (added) table.parts.push_back(PartitionRows{day, metric, {}});
  table.parts[it->second].rows.push_back(static_cast<uint32_t>(index));
  ++table.buffered;
}

void ParquetSink::FillRow(int t, DuckChunkWriter& a, uint32_t index) {
  switch (t) {
    case kReadings:
      return FillReading(a, readings_[index]);
    case kWindows:
      return FillWindow(a, windows_[index]);
    case kQuarantine:
      return FillQuarantine(a, quarantine_[index]);
    default:
      return FillLate(a, late_[index]);
  }
}

void ParquetSink::ClearTable(int t) {
  Table& table = tables_[t];
  table.parts.clear();
  table.part_index.clear();
  table.buffered = 0;
  // swap, not clear: a large commit's memory goes back rather than staying reserved.
  switch (t) {
    case kReadings:
      std::vector<Reading>().swap(readings_);
      break;
    case kWindows:
      std::vector<WindowResult>().swap(windows_);
      break;
    case kQuarantine:
      std::vector<QuarantineRecord>().swap(quarantine_);
      break;
    default:
      std::vector<LateRecord>().swap(late_);
      break;
  }
}

Status ParquetSink::Write(const Batch& batch) {
  if (!open_) {
    return Status::Internal("parquet sink " + options_.name + ": Write before a successful Open");
  }
  if (enabled_[kReadings]) {
    for (const Reading& r : batch.readings) {
      AddRow(kReadings, r.event_time, r.metric, readings_.size());
      readings_.push_back(r);
    }
  }
  if (enabled_[kWindows]) {
    for (const WindowResult& w : batch.windows) {
      AddRow(kWindows, w.start, w.metric, windows_.size());
      windows_.push_back(w);
    }
  }
  if (enabled_[kQuarantine]) {
    for (const QuarantineRecord& q : batch.quarantine) {
      AddRow(kQuarantine, q.arrival_time, Symbol{}, quarantine_.size());
      quarantine_.push_back(q);
    }
  }
  if (enabled_[kLate]) {
    for (const LateRecord& l : batch.late) {
      AddRow(kLate, l.reading.event_time, l.reading.metric, late_.size());
      late_.push_back(l);
    }
  }
  return Status::Ok();
}

void ParquetSink::AppendProvenance(DuckChunkWriter& a, int c, const Provenance& p) {
  a.StrOrNull(c, p.source.view());
  a.StrOrNull(c + 1, p.topic.view());
  a.I32OrNull(c + 2, p.partition);
  a.I64OrNull(c + 3, p.offset);
  a.StrOrNull(c + 4, p.firmware.view());
  a.StrOrNull(c + 5, p.calibration_date.view());
  a.StrOrNull(c + 6, p.crs_source.view());
  a.F64(c + 7, p.orig_x);
  a.F64(c + 8, p.orig_y);
}

void ParquetSink::AppendGeometry(DuckChunkWriter& a, int c, double lon, double lat) {
  if (!HasPosition(lon, lat)) {
    a.Null(c);
    return;
  }
  uint8_t wkb[kWkbPointSize];
  EncodeWkbPoint(lon, lat, wkb);
  a.Str(c, std::string_view(reinterpret_cast<const char*>(wkb), sizeof wkb));
}

// H3 cells as lowercase hex without leading zeros (as h3-js writes them); NULL for 0.
void ParquetSink::AppendH3(DuckChunkWriter& a, int c, uint64_t cell) {
  char buf[24];
  a.StrOrNull(c, SinkH3Hex(cell, buf));
}

void ParquetSink::FillReading(DuckChunkWriter& a, const Reading& r) {
  a.Date(0, r.event_time);
  a.Str(1, r.metric.view());
  a.Str(2, r.device.view());
  a.F64(3, r.value);
  a.I64(4, r.event_time);
  a.I64(5, r.arrival_time);
  a.F64(6, r.lat);
  a.F64(7, r.lon);
  a.StrOrNull(8, r.zone.view());
  AppendH3(a, 9, r.h3);
  a.Str(10, flags_text_.Format(r.flags.bits, false));
  AppendProvenance(a, 11, r.prov);
  AppendGeometry(a, 20, r.lon, r.lat);
  zones_json_.clear();
  AppendExtraZonesJson(r, extra_zone_layers_, zones_json_);
  a.StrOrNull(21, zones_json_);
  a.StrOrNull(22, S2CellToken(r.s2));
  a.F64(23, r.qc_score);
}

void ParquetSink::FillWindow(DuckChunkWriter& a, const WindowResult& w) {
  a.Date(0, w.start);
  a.Str(1, w.metric.view());
  a.Str(2, w.window.view());
  a.Str(3, w.group_by.view());
  a.Str(4, w.group.view());
  a.I64(5, w.start);
  a.I64(6, w.end);
  a.I64(7, static_cast<int64_t>(w.count));
  a.F64(8, w.mean);
  a.F64(9, w.min);
  a.F64(10, w.max);
  a.F64(11, w.std);
  a.F64(12, w.median);
  a.F64(13, w.p95);
  a.F64(14, w.trimmed_mean);
  a.F64(15, w.first);
  a.F64(16, w.last);
  a.F64(17, w.centroid_lat);
  a.F64(18, w.centroid_lon);
  a.I32(19, static_cast<int32_t>(w.distinct_sensors));
  a.I64(20, static_cast<int64_t>(w.late_count));
  a.StrOrNull(21, w.aggregation_method.view());
  a.Str(22, flags_text_.Format(w.flags, true));
  a.I32(23, static_cast<int32_t>(w.revision));
  a.I64(24, w.emitted_at);
  if (w.quantiles.empty()) {
    a.Null(25);
  } else {
    SinkQuantilesJson(w.quantiles, json_);
    a.Str(25, json_);
  }
  AppendGeometry(a, 26, w.centroid_lon, w.centroid_lat);
  a.F64(27, w.interpolated_sample_fraction);
  if (w.exceedance_count < 0) {
    a.Null(28);
  } else {
    a.I64(28, w.exceedance_count);
  }
}

void ParquetSink::FillQuarantine(DuckChunkWriter& a, const QuarantineRecord& q) {
  a.Date(0, q.arrival_time);
  a.Str(1, q.reason.view());
  a.StrOrNull(2, q.detail);
  a.Str(3, q.raw);
  a.StrOrNull(4, q.device.view());
  a.StrOrNull(5, q.metric.view());
  a.I64(6, q.arrival_time);
  AppendProvenance(a, 7, q.prov);
}

void ParquetSink::FillLate(DuckChunkWriter& a, const LateRecord& l) {
  const Reading& r = l.reading;
  a.Date(0, r.event_time);
  a.Str(1, r.metric.view());
  a.Str(2, l.window.view());
  a.Str(3, r.device.view());
  a.F64(4, r.value);
  a.I64(5, r.event_time);
  a.I64(6, r.arrival_time);
  a.I64(7, l.lateness);
  a.F64(8, static_cast<double>(l.lateness) / static_cast<double>(kMicrosPerSecond));
  if (l.watermark <= kMinTime) {
    a.Null(9);
  } else {
    a.I64(9, l.watermark);
  }
  a.F64(10, r.lat);
  a.F64(11, r.lon);
  a.StrOrNull(12, r.zone.view());
  AppendH3(a, 13, r.h3);
  a.Str(14, flags_text_.Format(r.flags.bits, false));
  AppendProvenance(a, 15, r.prov);
  AppendGeometry(a, 24, r.lon, r.lat);
  a.F64(25, r.qc_score);
}

Status ParquetSink::Commit() {
  if (!open_ || checkpointing_) return Status::Ok();
  Status first_error;
  for (int t = 0; t < kTableCount; ++t) {
    if (!enabled_[t]) continue;
    Status st = CommitTable(t);
    if (!st.ok() && first_error.ok()) first_error = st;
  }
  return first_error;
}

Status ParquetSink::CommitTable(int t) {
  Table& table = tables_[t];
  if (table.buffered == 0) return Status::Ok();
  const bool by_metric = kTables[t].partition_columns == 2;
  std::vector<Partition> partitions;
  for (PartitionRows& rows : table.parts) {
    if (rows.rows.empty()) continue;  // written by an earlier, partly failed commit
    Partition p;
    p.date = FormatTime(static_cast<TimeUs>(rows.day) * kMicrosPerDay).substr(0, 10);
    p.rows = rows.rows.size();
    p.folder = root_ + "/" + std::string(kTableNames[t]) + "/date=" + p.date;
    if (by_metric) {
      p.metric = std::string(rows.metric.view());
      p.folder += "/metric=" + HiveValue(p.metric);
    }
    p.source = &rows;
    partitions.push_back(std::move(p));
  }
  std::sort(partitions.begin(), partitions.end(), [](const Partition& a, const Partition& b) {
    return std::tie(a.date, a.metric) < std::tie(b.date, b.metric);
  });
  uint64_t committed = 0;
  Status st;
  size_t done = 0;
  for (; done < partitions.size(); ++done) {
    st = WritePartition(t, partitions[done]);
    if (!st.ok()) break;
    committed += partitions[done].rows;
  }
  if (st.ok()) {
    ClearTable(t);
  } else {
    // Keep the rows of the partitions not written; the next Commit retries them.
    for (size_t i = 0; i < done; ++i) {
      partitions[i].source->rows.clear();
    }
    table.buffered -= std::min(table.buffered, committed);
  }
  if (checkpointing_) {
    prepared_rows_[t] += committed;  // counted when CommitCheckpoint renames them
  } else if (ledger_ != nullptr && committed > 0) {
    ledger_->AddSinkCommitted(table.ledger_key, committed);
  }
  return st;
}

// Write one partition's rows as one or more files: all as temporary files first, then
// each renamed into place, so a failure leaves no new visible file.
Status ParquetSink::WritePartition(int t, const Partition& p) {
  Table& table = tables_[t];
  std::error_code ec;
  fs::create_directories(p.folder, ec);
  if (ec) {
    return Status::Io("parquet: cannot create the folder " + p.folder + ": " + ec.message(),
                      /*retryable=*/true);
  }
  const double target = static_cast<double>(options_.target_file_bytes);
  uint64_t files = static_cast<uint64_t>(
      std::ceil(static_cast<double>(p.rows) * table.bytes_per_row / std::max(1.0, target)));
  files = std::clamp<uint64_t>(files, 1, p.rows);
  const uint64_t per_file = (p.rows + files - 1) / files;
  std::string options =
      std::string("FORMAT PARQUET, COMPRESSION ") + CompressionName(options_.compression);
  if (kTables[t].geometry) {
    options += ", KV_METADATA {geo: " + DuckQuoteLiteral(kGeoMetadata) + "}";
  }
  std::vector<std::pair<std::string, std::string>> written;  // (temporary, final)
  Status st;
  uint64_t bytes = 0;
  for (uint64_t offset = 0; offset < p.rows && st.ok(); offset += per_file) {
    std::string seq = SeqName(next_seq_++);
    std::string tmp = p.folder + "/.part-" + seq + ".parquet.tmp";
    std::string final_path = p.folder + "/part-" + seq + ".parquet";
    scan_.table = t;
    scan_.rows = &p.source->rows;
    scan_.next = offset;
    scan_.end = std::min<uint64_t>(p.rows, offset + per_file);
    std::string sql = "COPY (SELECT " + select_[t] + " FROM tributary_rows()) TO " +
                      DuckQuoteLiteral(tmp) + " (" + options + ")";
    written.emplace_back(tmp, final_path);
    st = duck_.Exec(sql);
    if (st.ok()) st = FsyncPath(tmp, /*directory=*/false);
    if (st.ok()) bytes += static_cast<uint64_t>(fs::file_size(tmp, ec));
  }
  if (checkpointing_ && st.ok()) {
    // Renamed by CommitCheckpoint once the checkpoint is decided.
    for (auto& w : written) deferred_.push_back(std::move(w));
    written.clear();
  }
  for (auto& [tmp, final_path] : written) {
    if (st.ok()) {
      fs::rename(tmp, final_path, ec);
      if (ec) {
        st = Status::Io("parquet: cannot rename " + tmp + " to " + final_path + ": " + ec.message(),
                        /*retryable=*/true);
      }
    }
    if (!st.ok()) fs::remove(tmp, ec);  // not yet visible: drop it
  }
  if (!st.ok()) return st;
  TRIB_RETURN_IF_ERROR(FsyncPath(p.folder, /*directory=*/true));
  // Learn the compressed size per row from large enough files for the next roll-over.
  if (p.rows >= 10000 && bytes > 0) {
    table.bytes_per_row = static_cast<double>(bytes) / static_cast<double>(p.rows);
  }
  return Status::Ok();
}

namespace {

constexpr std::string_view kManifestName = "_checkpoint";
constexpr std::string_view kPendingManifestName = "_checkpoint.pending";

Status WriteSyncedFile(const std::string& path, const std::string& text) {
  std::string tmp = path + ".new";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return Status::Io("parquet: cannot write " + tmp + ": " + std::strerror(errno));
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = std::fflush(f) == 0 && ok;
  ok = ::fsync(::fileno(f)) == 0 && ok;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) return Status::Io("parquet: cannot write " + tmp + ": " + std::strerror(errno));
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::Io("parquet: cannot rename " + tmp + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

// The manifest is text: "checkpoint <id>", "rows <table> <n>" per table, then
// "rename <temporary>\t<final>" per file (pending manifest only).
struct ParquetManifest {
  uint64_t checkpoint = 0;
  std::vector<std::pair<std::string, uint64_t>> rows;
  std::vector<std::pair<std::string, std::string>> renames;
};

Result<std::optional<ParquetManifest>> ReadManifest(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    if (errno == ENOENT) return std::optional<ParquetManifest>();
    return Status::Io("parquet: cannot read " + path + ": " + std::strerror(errno));
  }
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  std::fclose(f);
  ParquetManifest m;
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    auto bad = [&] {
      return Status::Corrupt("parquet: " + path + ":" + std::to_string(line_no) +
                             ": unreadable manifest line");
    };
    if (line.rfind("checkpoint ", 0) == 0) {
      m.checkpoint = std::strtoull(std::string(line.substr(11)).c_str(), nullptr, 10);
    } else if (line.rfind("rows ", 0) == 0) {
      size_t sp = line.find(' ', 5);
      if (sp == std::string_view::npos) return bad();
      m.rows.emplace_back(std::string(line.substr(5, sp - 5)),
                          std::strtoull(std::string(line.substr(sp + 1)).c_str(), nullptr, 10));
    } else if (line.rfind("rename ", 0) == 0) {
      size_t tab = line.find('\t', 7);
      if (tab == std::string_view::npos) return bad();
      m.renames.emplace_back(std::string(line.substr(7, tab - 7)),
                             std::string(line.substr(tab + 1)));
    } else if (!line.empty()) {
      return bad();
    }
  }
  return std::optional<ParquetManifest>(std::move(m));
}

}  // namespace

Status ParquetSink::WriteManifest(const std::string& path, uint64_t checkpoint, bool with_renames) {
  std::string text = "checkpoint " + std::to_string(checkpoint) + "\n";
  for (int t = 0; t < kTableCount; ++t) {
    if (enabled_[t]) {
      text +=
          "rows " + std::string(kTableNames[t]) + " " + std::to_string(prepared_rows_[t]) + "\n";
    }
  }
  if (with_renames) {
    for (const auto& [tmp, final_path] : deferred_)
      text += "rename " + tmp + "\t" + final_path + "\n";
  }
  TRIB_RETURN_IF_ERROR(WriteSyncedFile(path, text));
  return FsyncPath(root_, /*directory=*/true);
}

Status ParquetSink::RollForwardManifest() {
  const std::string pending = root_ + "/" + std::string(kPendingManifestName);
  TRIB_ASSIGN_OR_RETURN(std::optional<ParquetManifest> m, ReadManifest(pending));
  if (!m) return Status::Ok();
  std::error_code ec;
  for (const auto& [tmp, final_path] : m->renames) {
    if (fs::exists(tmp, ec)) {
      fs::rename(tmp, final_path, ec);
      if (ec) return Status::Io("parquet: cannot rename " + tmp + ": " + ec.message());
    } else if (!fs::exists(final_path, ec)) {
      return Status::Corrupt("parquet: " + pending + " lists " + tmp +
                             ", which is gone and was never renamed");
    }
    TRIB_RETURN_IF_ERROR(FsyncPath(fs::path(final_path).parent_path().string(), true));
  }
  spdlog::info("parquet {}: finished the commit of checkpoint {} ({} files)", root_, m->checkpoint,
               m->renames.size());
  const std::string done = root_ + "/" + std::string(kManifestName);
  std::string text = "checkpoint " + std::to_string(m->checkpoint) + "\n";
  for (const auto& [table, n] : m->rows) text += "rows " + table + " " + std::to_string(n) + "\n";
  TRIB_RETURN_IF_ERROR(WriteSyncedFile(done, text));
  fs::remove(pending, ec);
  return Status::Ok();
}

Result<SinkCheckpointRecord> ParquetSink::OpenCheckpoints() {
  if (!open_) return Status::Internal("parquet sink: OpenCheckpoints before Open");
  TRIB_ASSIGN_OR_RETURN(std::optional<ParquetManifest> m,
                        ReadManifest(root_ + "/" + std::string(kManifestName)));
  SinkCheckpointRecord rec;
  if (m) {
    rec.checkpoint = m->checkpoint;
    for (const auto& [table, n] : m->rows) rec.rows[options_.name + "/" + table] = n;
  }
  checkpointing_ = true;
  return rec;
}

Status ParquetSink::PrepareCheckpoint(uint64_t checkpoint) {
  (void)checkpoint;
  if (!checkpointing_)
    return Status::Internal("parquet sink: PrepareCheckpoint before OpenCheckpoints");
  for (int t = 0; t < kTableCount; ++t) {
    if (enabled_[t]) TRIB_RETURN_IF_ERROR(CommitTable(t));
  }
  return Status::Ok();
}

Status ParquetSink::CommitCheckpoint(uint64_t checkpoint) {
  if (!checkpointing_)
    return Status::Internal("parquet sink: CommitCheckpoint before OpenCheckpoints");
  // A Prepare that failed part-way left rows buffered: write them now.
  TRIB_RETURN_IF_ERROR(PrepareCheckpoint(checkpoint));
  const std::string pending = root_ + "/" + std::string(kPendingManifestName);
  TRIB_RETURN_IF_ERROR(WriteManifest(pending, checkpoint, /*with_renames=*/true));
  TRIB_RETURN_IF_ERROR(RollForwardManifest());
  if (ledger_ != nullptr) {
    for (int t = 0; t < kTableCount; ++t) {
      if (enabled_[t] && prepared_rows_[t] > 0) {
        ledger_->AddSinkCommitted(tables_[t].ledger_key, prepared_rows_[t]);
      }
    }
  }
  deferred_.clear();
  for (uint64_t& n : prepared_rows_) n = 0;
  return Status::Ok();
}

void ParquetSink::Close() {
  uint64_t pending = 0;
  for (Table& t : tables_) pending += t.buffered;
  if (open_ && pending > 0) {
    spdlog::warn("parquet {}: closed without a commit; {} buffered rows not written", root_,
                 pending);
  }
  for (int t = 0; t < kTableCount; ++t) ClearTable(t);
  duck_.Close();
  open_ = false;
}

}  // namespace
#endif  // TRIBUTARY_HAVE_DUCKDB

const SectionSpec& ParquetSinkSpec() {
  static const SectionSpec spec{
      "sinks[] (type: parquet)",
      "An archive of Hive-partitioned GeoParquet files written through DuckDB: "
      "`<path>/<table>/date=YYYY-MM-DD/metric=<metric>/part-<seq>.parquet` (quarantine by "
      "date only). Rows are buffered in memory and written as new files at every pipeline "
      "commit; a file becomes visible only when complete. See docs/SCHEMA.md. Needs a build "
      "with DuckDB (scripts/setup.sh --deps-only).",
      {
          {"path", OptionType::kString, "",
           "Archive folder; a relative path is taken from the working directory. Empty: "
           "`<data-dir>/archive`. Missing folders are created."},
          {"tables", OptionType::kStringList, "readings, windows, quarantine, late",
           "Tables archived: any of `readings`, `windows`, `quarantine`, `late`."},
          {"target_file_mb", OptionType::kInt, "128",
           "Size a file should not grow much past, in MiB: a partition holding more rows at "
           "a commit is split over several files (sizes are estimated from the files "
           "already written).",
           "1..65536"},
          {"compression", OptionType::kEnum, "zstd", "Parquet column compression.",
           "zstd|snappy|uncompressed"},
          {"threads", OptionType::kInt, "1", "DuckDB worker threads used to write files.", "1..64"},
      }};
  return spec;
}

Result<ParquetSinkOptions> ReadParquetSinkOptions(const SinkEntry& entry) {
  const OptionReader& o = entry.options;
  ParquetSinkOptions out;
  out.name = entry.name.empty() ? std::string("parquet") : entry.name;
  TRIB_ASSIGN_OR_RETURN(out.path, o.GetString("path"));
  TRIB_ASSIGN_OR_RETURN(TableSelection tables, ReadTableSelection(o));
  out.readings = tables.readings;
  out.windows = tables.windows;
  out.quarantine = tables.quarantine;
  out.late = tables.late;
  TRIB_ASSIGN_OR_RETURN(int64_t mb, o.GetInt("target_file_mb"));
  out.target_file_bytes = mb << 20;
  TRIB_ASSIGN_OR_RETURN(std::string compression, o.GetString("compression"));
  out.compression = compression == "snappy"         ? ParquetCompression::kSnappy
                    : compression == "uncompressed" ? ParquetCompression::kUncompressed
                                                    : ParquetCompression::kZstd;
  TRIB_ASSIGN_OR_RETURN(int64_t threads, o.GetInt("threads"));
  out.threads = static_cast<int>(threads);
  return out;
}

Result<std::unique_ptr<Sink>> MakeParquetSink(ParquetSinkOptions options) {
#ifdef TRIBUTARY_HAVE_DUCKDB
  return std::unique_ptr<Sink>(std::make_unique<ParquetSink>(std::move(options)));
#else
  return Status::Invalid("parquet sink " + options.name +
                         ": built without DuckDB; run scripts/setup.sh --deps-only and rebuild");
#endif
}

void RegisterParquetSink(Registry& registry) {
  registry.AddSink(
      "parquet", &ParquetSinkSpec(), [](const SinkEntry& entry) -> Result<std::unique_ptr<Sink>> {
        TRIB_ASSIGN_OR_RETURN(ParquetSinkOptions options, ReadParquetSinkOptions(entry));
        return MakeParquetSink(std::move(options));
      });
}

}  // namespace tributary
