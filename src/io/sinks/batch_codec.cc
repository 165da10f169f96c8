#include "io/sinks/batch_codec.h"

#include <cstring>

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
  void Read(Reading& r) {
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
  }
  // A count that cannot exceed the bytes left (each element takes at least one byte).
  uint32_t Count() {
    auto n = Pod<uint32_t>();
    if (n > in_.size() - pos_) ok_ = false;
    return ok_ ? n : 0;
  }
  bool at_end() const { return pos_ == in_.size(); }

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
  }
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

Result<Batch> DecodeBatchRecords(std::string_view bytes) {
  Reader r(bytes);
  auto version = r.Pod<uint8_t>();
  if (!r.ok() || (version != kBatchCodecVersion && version != 2)) {
    return Status::Corrupt("buffered batch: unknown format version " + std::to_string(version));
  }
  Batch b;
  b.readings.resize(r.Count());
  for (Reading& x : b.readings) r.Read(x);
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
  }
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
    r.Read(l.reading);
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
  if (!r.ok() || !r.at_end()) return Status::Corrupt("buffered batch: truncated or malformed");
  return b;
}

}  // namespace tributary
