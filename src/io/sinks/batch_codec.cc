#include "io/sinks/batch_codec.h"

#include <cstring>

#include "core/intern.h"

namespace tributary {

namespace {

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  template <typename T>
  void Pod(T v) {
    char buf[sizeof(T)];
    std::memcpy(buf, &v, sizeof(T));
    out_.append(buf, sizeof(T));
  }
  void Str(std::string_view s) {
    Pod(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  void Prov(const Provenance& p) {
    Str(p.source.view());
    Str(p.topic.view());
    Pod(p.partition);
    Pod(p.offset);
    Str(p.firmware.view());
    Str(p.calibration_date.view());
    Str(p.crs_source.view());
    Pod(p.orig_x);
    Pod(p.orig_y);
    Str(p.drift_correction.view());
    Pod(p.anomaly_score);
  }
  void Read(const Reading& r) {
    Pod(r.event_time);
    Pod(r.arrival_time);
    Str(r.device.view());
    Str(r.metric.view());
    Pod(r.value);
    Pod(r.lat);
    Pod(r.lon);
    Pod(r.h3);
    Str(r.zone.view());
    Pod(r.flags.bits);
    Pod(r.qc_score);
    Prov(r.prov);
    for (Symbol z : r.extra_zones) Str(z.view());  // version 4
    Pod(r.s2);
  }

 private:
  std::string& out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  template <typename T>
  T Pod() {
    T v{};
    if (!Need(sizeof(T))) return v;
    std::memcpy(&v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view Str() {
    auto n = Pod<uint32_t>();
    if (!Need(n)) return {};
    std::string_view s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  Symbol Sym() {
    std::string_view s = Str();
    return s.empty() ? Symbol{} : Intern(s);
  }
  void Prov(Provenance& p) {
    p.source = Sym();
    p.topic = Sym();
    p.partition = Pod<int32_t>();
    p.offset = Pod<int64_t>();
    p.firmware = Sym();
    p.calibration_date = Sym();
    p.crs_source = Sym();
    p.orig_x = Pod<double>();
    p.orig_y = Pod<double>();
    p.drift_correction = Sym();
    p.anomaly_score = Pod<float>();
  }
  void Read(Reading& r, uint8_t version) {
    r.event_time = Pod<TimeUs>();
    r.arrival_time = Pod<TimeUs>();
    r.device = Sym();
    r.metric = Sym();
    r.value = Pod<double>();
    r.lat = Pod<double>();
    r.lon = Pod<double>();
    r.h3 = Pod<uint64_t>();
    r.zone = Sym();
    r.flags.bits = Pod<uint32_t>();
    r.qc_score = Pod<float>();
    Prov(r.prov);
    if (version >= 4) {
      for (Symbol& z : r.extra_zones) z = Sym();
      r.s2 = Pod<uint64_t>();
    }
  }
  // A count that cannot exceed the bytes left (each element takes at least one byte).
  uint32_t Count() {
    auto n = Pod<uint32_t>();
    if (n > in_.size() - pos_) ok_ = false;
    return ok_ ? n : 0;
  }
  bool at_end() const { return pos_ == in_.size(); }
  /// The next `n` bytes, or nullptr (and failed) when fewer remain.
  const char* Take(size_t n) {
    if (!Need(n)) return nullptr;
    const char* p = in_.data() + pos_;
    pos_ += n;
    return p;
  }
  void Fail() { ok_ = false; }

 private:
  bool Need(size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    return true;
  }
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace

namespace {

// Quarantine, late, alert and spatial stats records, as rows (the same in both formats).
void EncodeTail(Writer& w, const Batch& batch) {
  w.Pod(static_cast<uint32_t>(batch.quarantine.size()));
  for (const QuarantineRecord& q : batch.quarantine) {
    w.Str(q.reason.view());
    w.Str(q.detail);
    w.Str(q.raw);
    w.Pod(q.arrival_time);
    w.Str(q.device.view());
    w.Str(q.metric.view());
    w.Prov(q.prov);
  }
  w.Pod(static_cast<uint32_t>(batch.late.size()));
  for (const LateRecord& l : batch.late) {
    w.Read(l.reading);
    w.Str(l.window.view());
    w.Pod(l.lateness);
    w.Pod(l.watermark);
  }
  // Alerts and spatial stats go to the sinks' tables too: an epoch log replayed after a
  // crash must carry them, or those rows of the interval are lost.
  w.Pod(static_cast<uint32_t>(batch.alerts.size()));
  for (const AlertEvent& a : batch.alerts) {
    for (Symbol s : {a.rule, a.kind, a.key, a.metric, a.severity}) w.Str(s.view());
    w.Pod(static_cast<uint8_t>(a.state));
    w.Pod(a.fired_at);
    w.Pod(a.event_time);
    w.Pod(a.value);
    w.Pod(a.level);
    w.Str(a.message);
    w.Pod(a.source_arrival);
    w.Pod(a.emitted_at);
  }
  w.Pod(static_cast<uint32_t>(batch.spatial_stats.size()));
  for (const SpatialStats& x : batch.spatial_stats) {
    for (Symbol s : {x.surface, x.window, x.metric}) w.Str(s.view());
    w.Pod(x.start);
    w.Pod(x.end);
    w.Str(x.zone_layer.view());
    w.Str(x.zone.view());
    w.Pod(x.sensors);
    w.Str(x.weights.view());
    for (double v : {x.morans_i, x.morans_expected, x.morans_z}) w.Pod(v);
    w.Str(x.variogram_model.view());
    for (double v : {x.nugget, x.sill, x.range_m, x.nugget_sill}) w.Pod(v);
    w.Str(x.method.view());
    w.Pod(x.revision);
    w.Pod(x.emitted_at);
  }
}

}  // namespace

void EncodeBatchRecords(const Batch& batch, std::string& out) {
  Writer w(out);
  w.Pod(kBatchCodecVersion);
  w.Pod(static_cast<uint32_t>(batch.readings.size()));
  for (const Reading& r : batch.readings) w.Read(r);
  w.Pod(static_cast<uint32_t>(batch.windows.size()));
  for (const WindowResult& x : batch.windows) {
    w.Str(x.window.view());
    w.Str(x.group_by.view());
    w.Str(x.group.view());
    w.Str(x.metric.view());
    w.Pod(x.start);
    w.Pod(x.end);
    w.Pod(x.count);
    for (double v : {x.mean, x.min, x.max, x.std, x.median, x.p95, x.trimmed_mean, x.first, x.last,
                     x.centroid_lat, x.centroid_lon, x.nowcast, x.aqi}) {
      w.Pod(v);
    }
    w.Pod(x.distinct_sensors);
    w.Pod(x.late_count);
    w.Pod(static_cast<uint32_t>(x.quantiles.size()));
    for (const auto& [q, v] : x.quantiles) {
      w.Pod(q);
      w.Pod(v);
    }
    w.Str(x.aggregation_method.view());
    w.Pod(x.flags);
    w.Pod(x.revision);
    w.Pod(x.emitted_at);
    w.Pod(x.interpolated_sample_fraction);  // version 4
    w.Pod(x.exceedance_count);
  }
  EncodeTail(w, batch);
}

namespace {

void DecodeTail(Reader& r, Batch& b, uint8_t version) {
  b.quarantine.resize(r.Count());
  for (QuarantineRecord& q : b.quarantine) {
    q.reason = r.Sym();
    q.detail = std::string(r.Str());
    q.raw = std::string(r.Str());
    q.arrival_time = r.Pod<TimeUs>();
    q.device = r.Sym();
    q.metric = r.Sym();
    r.Prov(q.prov);
  }
  b.late.resize(r.Count());
  for (LateRecord& l : b.late) {
    r.Read(l.reading, version);
    l.window = r.Sym();
    l.lateness = r.Pod<DurationUs>();
    l.watermark = r.Pod<TimeUs>();
  }
  if (version >= 3) {
    b.alerts.resize(r.Count());
    for (AlertEvent& a : b.alerts) {
      for (Symbol* s : {&a.rule, &a.kind, &a.key, &a.metric, &a.severity}) *s = r.Sym();
      a.state = static_cast<AlertState>(r.Pod<uint8_t>());
      a.fired_at = r.Pod<TimeUs>();
      a.event_time = r.Pod<TimeUs>();
      a.value = r.Pod<double>();
      a.level = r.Pod<double>();
      a.message = std::string(r.Str());
      a.source_arrival = r.Pod<TimeUs>();
      a.emitted_at = r.Pod<TimeUs>();
    }
    b.spatial_stats.resize(r.Count());
    for (SpatialStats& x : b.spatial_stats) {
      for (Symbol* s : {&x.surface, &x.window, &x.metric}) *s = r.Sym();
      x.start = r.Pod<TimeUs>();
      x.end = r.Pod<TimeUs>();
      x.zone_layer = r.Sym();
      x.zone = r.Sym();
      x.sensors = r.Pod<uint32_t>();
      x.weights = r.Sym();
      for (double* v : {&x.morans_i, &x.morans_expected, &x.morans_z}) *v = r.Pod<double>();
      x.variogram_model = r.Sym();
      for (double* v : {&x.nugget, &x.sill, &x.range_m, &x.nugget_sill}) *v = r.Pod<double>();
      x.method = r.Sym();
      x.revision = r.Pod<uint32_t>();
      x.emitted_at = r.Pod<TimeUs>();
    }
  }
}

}  // namespace

Result<Batch> DecodeBatchRecords(std::string_view bytes) {
  Reader r(bytes);
  auto version = r.Pod<uint8_t>();
  if (!r.ok() || version < 2 || version > kBatchCodecVersion) {
    return Status::Corrupt("buffered batch: unknown format version " + std::to_string(version));
  }
  Batch b;
  b.readings.resize(r.Count());
  for (Reading& x : b.readings) r.Read(x, version);
  b.windows.resize(r.Count());
  for (WindowResult& x : b.windows) {
    x.window = r.Sym();
    x.group_by = r.Sym();
    x.group = r.Sym();
    x.metric = r.Sym();
    x.start = r.Pod<TimeUs>();
    x.end = r.Pod<TimeUs>();
    x.count = r.Pod<uint64_t>();
    for (double* v : {&x.mean, &x.min, &x.max, &x.std, &x.median, &x.p95, &x.trimmed_mean, &x.first,
                      &x.last, &x.centroid_lat, &x.centroid_lon, &x.nowcast, &x.aqi}) {
      *v = r.Pod<double>();
    }
    x.distinct_sensors = r.Pod<uint32_t>();
    x.late_count = r.Pod<uint64_t>();
    x.quantiles.resize(r.Count());
    for (auto& [q, v] : x.quantiles) {
      q = r.Pod<double>();
      v = r.Pod<double>();
    }
    x.aggregation_method = r.Sym();
    x.flags = r.Pod<uint32_t>();
    x.revision = r.Pod<uint32_t>();
    x.emitted_at = r.Pod<TimeUs>();
    if (version >= 4) {
      x.interpolated_sample_fraction = r.Pod<double>();
      x.exceedance_count = r.Pod<int64_t>();
    }
  }
  DecodeTail(r, b, version);
  if (!r.ok() || !r.at_end()) return Status::Corrupt("buffered batch: truncated or malformed");
  return b;
}

}  // namespace tributary

// ---------------------------------------------------------------------------
// Columns

namespace tributary {

namespace {

constexpr uint8_t kColumnRaw = 0;
constexpr uint8_t kColumnConstant = 1;
constexpr uint8_t kColumnRuns = 2;

// One field of every row: a tag byte, then the one value every row has, or runs of
// equal values (u32 runs, then u32 length and value of each) when that is at most half
// the size, or the values of all rows, fixed width. Bits are compared, so NaN and -0
// stay exact.
template <typename T, typename Row, typename Get>
void PutColumn(std::string& out, const std::vector<Row>& rows, Get get) {
  const size_t n = rows.size();
  if (n == 0) return;
  T prev = get(rows[0]);
  size_t runs = 1;
  for (size_t i = 1; i < n; ++i) {
    const T v = get(rows[i]);
    runs += std::memcmp(&v, &prev, sizeof(T)) != 0;
    prev = v;
  }
  const size_t at = out.size();
  if (runs == 1) {
    out.resize(at + 1 + sizeof(T));
    out[at] = static_cast<char>(kColumnConstant);
    std::memcpy(out.data() + at + 1, &prev, sizeof(T));
    return;
  }
  if (runs * (4 + sizeof(T)) * 2 <= n * sizeof(T)) {
    out.resize(at + 1 + 4 + runs * (4 + sizeof(T)));
    out[at] = static_cast<char>(kColumnRuns);
    char* p = out.data() + at + 1;
    const auto count = static_cast<uint32_t>(runs);
    std::memcpy(p, &count, 4);
    p += 4;
    size_t begin = 0;
    T run = get(rows[0]);
    for (size_t i = 1; i <= n; ++i) {
      T v{};
      if (i < n) v = get(rows[i]);
      if (i < n && std::memcmp(&v, &run, sizeof(T)) == 0) continue;
      const auto length = static_cast<uint32_t>(i - begin);
      std::memcpy(p, &length, 4);
      std::memcpy(p + 4, &run, sizeof(T));
      p += 4 + sizeof(T);
      begin = i;
      run = v;
    }
    return;
  }
  out.resize(at + 1 + n * sizeof(T));
  out[at] = static_cast<char>(kColumnRaw);
  char* p = out.data() + at + 1;
  for (size_t i = 0; i < n; ++i) {
    const T v = get(rows[i]);
    std::memcpy(p + i * sizeof(T), &v, sizeof(T));
  }
}

template <typename T, typename Row, typename Set>
void GetColumn(Reader& r, std::vector<Row>& rows, Set set) {
  const size_t n = rows.size();
  if (n == 0 || !r.ok()) return;
  const auto tag = r.Pod<uint8_t>();
  if (tag == kColumnConstant) {
    const T v = r.Pod<T>();
    if (!r.ok()) return;
    for (Row& row : rows) set(row, v);
  } else if (tag == kColumnRuns) {
    const auto runs = r.Pod<uint32_t>();
    if (!r.ok() || runs > n) {
      r.Fail();
      return;
    }
    size_t i = 0;
    for (uint32_t k = 0; k < runs && r.ok(); ++k) {
      const auto length = r.Pod<uint32_t>();
      const T v = r.Pod<T>();
      if (!r.ok() || length > n - i) {
        r.Fail();
        return;
      }
      for (size_t e = i + length; i < e; ++i) set(rows[i], v);
    }
    if (i != n) r.Fail();
  } else if (tag == kColumnRaw) {
    const char* p = r.Take(n * sizeof(T));
    if (p == nullptr) return;
    for (size_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, p + i * sizeof(T), sizeof(T));
      set(rows[i], v);
    }
  } else {
    r.Fail();
  }
}

// Field lists, shared by the encoder and the decoder so both always agree.
template <typename F>
void ReadingFields(F&& f) {
  f.template Pod<TimeUs>([](auto& x) -> auto& { return x.event_time; });
  f.template Pod<TimeUs>([](auto& x) -> auto& { return x.arrival_time; });
  f.Sym([](auto& x) -> auto& { return x.device; });
  f.Sym([](auto& x) -> auto& { return x.metric; });
  f.template Pod<double>([](auto& x) -> auto& { return x.value; });
  f.template Pod<double>([](auto& x) -> auto& { return x.lat; });
  f.template Pod<double>([](auto& x) -> auto& { return x.lon; });
  f.template Pod<uint64_t>([](auto& x) -> auto& { return x.h3; });
  f.Sym([](auto& x) -> auto& { return x.zone; });
  for (size_t z = 0; z + 1 < kMaxZoneLayers; ++z) {
    f.Sym([z](auto& x) -> auto& { return x.extra_zones[z]; });
  }
  f.template Pod<uint64_t>([](auto& x) -> auto& { return x.s2; });
  f.template Pod<uint32_t>([](auto& x) -> auto& { return x.flags.bits; });
  f.template Pod<float>([](auto& x) -> auto& { return x.qc_score; });
  f.Sym([](auto& x) -> auto& { return x.prov.source; });
  f.Sym([](auto& x) -> auto& { return x.prov.topic; });
  f.template Pod<int32_t>([](auto& x) -> auto& { return x.prov.partition; });
  f.template Pod<int64_t>([](auto& x) -> auto& { return x.prov.offset; });
  f.Sym([](auto& x) -> auto& { return x.prov.firmware; });
  f.Sym([](auto& x) -> auto& { return x.prov.calibration_date; });
  f.Sym([](auto& x) -> auto& { return x.prov.crs_source; });
  f.template Pod<double>([](auto& x) -> auto& { return x.prov.orig_x; });
  f.template Pod<double>([](auto& x) -> auto& { return x.prov.orig_y; });
  f.Sym([](auto& x) -> auto& { return x.prov.drift_correction; });
  f.template Pod<float>([](auto& x) -> auto& { return x.prov.anomaly_score; });
}

template <typename F>
void WindowFields(F&& f) {
  f.Sym([](auto& x) -> auto& { return x.window; });
  f.Sym([](auto& x) -> auto& { return x.group_by; });
  f.Sym([](auto& x) -> auto& { return x.group; });
  f.Sym([](auto& x) -> auto& { return x.metric; });
  f.template Pod<TimeUs>([](auto& x) -> auto& { return x.start; });
  f.template Pod<TimeUs>([](auto& x) -> auto& { return x.end; });
  f.template Pod<uint64_t>([](auto& x) -> auto& { return x.count; });
  f.template Pod<double>([](auto& x) -> auto& { return x.mean; });
  f.template Pod<double>([](auto& x) -> auto& { return x.min; });
  f.template Pod<double>([](auto& x) -> auto& { return x.max; });
  f.template Pod<double>([](auto& x) -> auto& { return x.std; });
  f.template Pod<double>([](auto& x) -> auto& { return x.median; });
  f.template Pod<double>([](auto& x) -> auto& { return x.p95; });
  f.template Pod<double>([](auto& x) -> auto& { return x.trimmed_mean; });
  f.template Pod<double>([](auto& x) -> auto& { return x.first; });
  f.template Pod<double>([](auto& x) -> auto& { return x.last; });
  f.template Pod<double>([](auto& x) -> auto& { return x.centroid_lat; });
  f.template Pod<double>([](auto& x) -> auto& { return x.centroid_lon; });
  f.template Pod<double>([](auto& x) -> auto& { return x.nowcast; });
  f.template Pod<double>([](auto& x) -> auto& { return x.aqi; });
  f.template Pod<uint32_t>([](auto& x) -> auto& { return x.distinct_sensors; });
  f.template Pod<double>([](auto& x) -> auto& { return x.interpolated_sample_fraction; });
  f.template Pod<int64_t>([](auto& x) -> auto& { return x.exceedance_count; });
  f.template Pod<uint64_t>([](auto& x) -> auto& { return x.late_count; });
  f.Sym([](auto& x) -> auto& { return x.aggregation_method; });
  f.template Pod<uint32_t>([](auto& x) -> auto& { return x.flags; });
  f.template Pod<uint32_t>([](auto& x) -> auto& { return x.revision; });
  f.template Pod<TimeUs>([](auto& x) -> auto& { return x.emitted_at; });
}

template <typename Row>
struct ColumnEncoder {
  std::string& out;
  const std::vector<Row>& rows;
  template <typename T, typename Field>
  void Pod(Field field) {
    PutColumn<T>(out, rows, [&](const Row& x) { return field(x); });
  }
  template <typename Field>
  void Sym(Field field) {
    PutColumn<uint32_t>(out, rows, [&](const Row& x) { return field(x).id; });
  }
};

template <typename Row>
struct ColumnDecoder {
  Reader& r;
  std::vector<Row>& rows;
  uint32_t symbols;  // ids below this are interned
  template <typename T, typename Field>
  void Pod(Field field) {
    GetColumn<T>(r, rows, [&](Row& x, T v) { field(x) = v; });
  }
  template <typename Field>
  void Sym(Field field) {
    bool bad = false;
    GetColumn<uint32_t>(r, rows, [&](Row& x, uint32_t id) {
      bad |= id >= symbols;
      field(x) = Symbol{id};
    });
    if (bad) r.Fail();
  }
};

}  // namespace

void EncodeBatchColumns(const Batch& batch, std::string& out) {
  Writer w(out);
  w.Pod(kBatchColumnsVersion);
  w.Pod(static_cast<uint32_t>(batch.readings.size()));
  ReadingFields(ColumnEncoder<Reading>{out, batch.readings});
  w.Pod(static_cast<uint32_t>(batch.windows.size()));
  WindowFields(ColumnEncoder<WindowResult>{out, batch.windows});
  PutColumn<uint32_t>(out, batch.windows, [](const WindowResult& x) {
    return static_cast<uint32_t>(x.quantiles.size());
  });
  for (const WindowResult& x : batch.windows) {
    for (const auto& [q, v] : x.quantiles) {
      w.Pod(q);
      w.Pod(v);
    }
  }
  EncodeTail(w, batch);
}

Result<Batch> DecodeBatchColumns(std::string_view bytes) {
  Reader r(bytes);
  const auto version = r.Pod<uint8_t>();
  if (!r.ok() || (version != kBatchColumnsVersion && version != kBatchColumnsVersion3)) {
    return Status::Corrupt("epoch log batch: unknown format version " + std::to_string(version));
  }
  const auto symbols = static_cast<uint32_t>(InternedCount());
  Batch b;
  b.readings.resize(r.Count());
  ReadingFields(ColumnDecoder<Reading>{r, b.readings, symbols});
  b.windows.resize(r.Count());
  WindowFields(ColumnDecoder<WindowResult>{r, b.windows, symbols});
  GetColumn<uint32_t>(r, b.windows, [&](WindowResult& x, uint32_t n) {
    if (n > bytes.size()) {
      r.Fail();
      return;
    }
    x.quantiles.resize(n);
  });
  for (WindowResult& x : b.windows) {
    for (auto& [q, v] : x.quantiles) {
      q = r.Pod<double>();
      v = r.Pod<double>();
    }
  }
  // The late, quarantine, alert and spatial stats rows: those of record version 4, or 3
  // in an epoch log of an older build.
  DecodeTail(r, b, version == kBatchColumnsVersion ? kBatchCodecVersion : 3);
  if (!r.ok() || !r.at_end()) return Status::Corrupt("epoch log batch: truncated or malformed");
  return b;
}

}  // namespace tributary
