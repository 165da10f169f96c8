#include "server/live_state.h"

#include <algorithm>

#include "alert/rules.h"
#include "server/sse.h"

namespace tributary {

namespace {
constexpr DurationUs kRateWindow = 10 * kMicrosPerSecond;

void NumberOrNull(JsonWriter& w, std::string_view key, double v) {
  w.Key(key);
  if (std::isnan(v)) {
    w.Null();
  } else {
    w.Number(v);
  }
}
}  // namespace

const char* SensorStatusName(SensorStatus s) {
  switch (s) {
    case SensorStatus::kOk:
      return "ok";
    case SensorStatus::kStale:
      return "stale";
    case SensorStatus::kQuarantining:
      return "quarantining";
  }
  return "ok";
}

void WriteWindowJson(JsonWriter& w, const WindowResult& r) {
  w.BeginObject();
  w.Key("window").String(r.window.view());
  w.Key("group_by").String(r.group_by.view());
  w.Key("group").String(r.group.view());
  w.Key("metric").String(r.metric.view());
  w.Key("start").String(FormatTime(r.start));
  w.Key("end").String(FormatTime(r.end));
  w.Key("count").UInt(r.count);
  NumberOrNull(w, "mean", r.mean);
  NumberOrNull(w, "min", r.min);
  NumberOrNull(w, "max", r.max);
  NumberOrNull(w, "std", r.std);
  NumberOrNull(w, "median", r.median);
  NumberOrNull(w, "p95", r.p95);
  NumberOrNull(w, "nowcast", r.nowcast);
  NumberOrNull(w, "aqi", r.aqi);
  NumberOrNull(w, "centroid_lat", r.centroid_lat);
  NumberOrNull(w, "centroid_lon", r.centroid_lon);
  w.Key("distinct_sensors").UInt(r.distinct_sensors);
  w.Key("late_count").UInt(r.late_count);
  w.Key("flags").String(WindowFlagsToString(r.flags));
  w.Key("revision").UInt(r.revision);
  w.EndObject();
}

void WriteSensorJson(JsonWriter& w, const SensorView& s, bool compact) {
  auto time_or_null = [&](std::string_view key, TimeUs t) {
    w.Key(key);
    if (t == kMinTime || t == 0) {
      w.Null();
    } else {
      w.String(FormatTime(t));
    }
  };
  w.BeginObject();
  w.Key("device").String(s.device.view());
  NumberOrNull(w, "lat", s.lat);
  NumberOrNull(w, "lon", s.lon);
  w.Key("status").String(SensorStatusName(s.status));
  if (!compact) time_or_null("last_event_time", s.last_event_time);
  time_or_null("last_arrival_time", s.last_arrival_time);
  if (compact) {
    w.Key("values").BeginObject();
    for (const MetricLatest& m : s.metrics) NumberOrNull(w, m.metric.view(), m.value);
    w.EndObject();
    // QC scores of the latest values, only for metrics a QC check flagged.
    w.Key("qc").BeginObject();
    for (const MetricLatest& m : s.metrics) {
      if (m.qc_score < 1.0f) continue;
      w.Key(m.metric.view()).BeginObject();
      w.Key("score").Number(m.qc_score);
      w.Key("flags").Raw(QcFlagsToJson(m.qc_flags));
      w.EndObject();
    }
    w.EndObject();
    w.EndObject();
    return;
  }
  w.Key("readings").UInt(s.readings);
  w.Key("quarantined").UInt(s.quarantined);
  w.Key("qc_flagged").UInt(s.qc_flagged);
  w.Key("metrics").BeginObject();
  for (const MetricLatest& m : s.metrics) {
    w.Key(m.metric.view()).BeginObject();
    NumberOrNull(w, "value", m.value);
    time_or_null("event_time", m.event_time);
    w.Key("qc_score").Number(m.qc_score);
    w.Key("qc_flags").Raw(QcFlagsToJson(m.qc_flags));
    w.EndObject();
  }
  w.EndObject();
  w.EndObject();
}

void WriteQuarantineJson(JsonWriter& w, const QuarantineView& q) {
  w.BeginObject();
  w.Key("reason").String(q.reason.view());
  w.Key("detail").String(q.detail);
  w.Key("arrival_time").String(FormatTime(q.arrival_time));
  w.Key("device").String(q.device.view());
  w.Key("metric").String(q.metric.view());
  w.Key("source").String(q.source.view());
  w.EndObject();
}

LiveState::LiveState(LiveStateOptions options, EventLog* events)
    : options_(options), events_(events) {}

LiveState::Sensor& LiveState::SensorOf(Symbol device) {
  Sensor& s = sensors_[device.id];
  s.device = device;
  return s;
}

void LiveState::OnBatch(const Batch& batch) {
  TimeUs now = NowUs();
  std::string summary;
  {
    std::lock_guard lock(mu_);
    auto changed = [&](Symbol device) {
      if (summary_.seen.insert(device.id).second) summary_.changed.push_back(device.id);
    };
    for (const Reading& r : batch.readings) {
      changed(r.device);
      Sensor& s = SensorOf(r.device);
      s.last_seen = now;
      if (!std::isnan(r.lat) && !std::isnan(r.lon)) {
        s.lat = r.lat;
        s.lon = r.lon;
      }
      s.last_event_time = std::max(s.last_event_time, r.event_time);
      s.last_arrival_time = std::max(s.last_arrival_time, r.arrival_time);
      ++s.readings;
      if (r.qc_score >= 1.0f) ++s.qc_flagged;
      MetricLatest& m = s.metrics[r.metric.id];
      if (r.event_time >= m.event_time)
        m = MetricLatest{r.metric, r.value, r.event_time, r.arrival_time, r.qc_score, r.flags};
    }
    for (const QuarantineRecord& q : batch.quarantine) {
      if (q.device) {
        changed(q.device);
        Sensor& s = SensorOf(q.device);
        s.last_seen = now;
        s.last_quarantine_time = std::max(s.last_quarantine_time, q.arrival_time);
        ++s.quarantined;
      }
      quarantine_.push_back(
          QuarantineView{q.reason, q.detail, q.arrival_time, q.device, q.metric, q.prov.source});
    }
    while (quarantine_.size() > options_.max_quarantine) quarantine_.pop_front();
    for (const WindowResult& r : batch.windows) windows_.push_back(r);
    while (windows_.size() > options_.max_windows) windows_.pop_front();
    for (const AlertEvent& a : batch.alerts) {
      // Replace the earlier event of the same life (few lives are open at once).
      auto same = std::find_if(alerts_.begin(), alerts_.end(), [&](const AlertEvent& x) {
        return x.rule == a.rule && x.key == a.key && x.fired_at == a.fired_at;
      });
      if (same != alerts_.end()) alerts_.erase(same);
      alerts_.push_back(a);
    }
    while (alerts_.size() > options_.max_alerts) alerts_.pop_front();
    rate_samples_.emplace_back(now, batch.readings.size());
    while (!rate_samples_.empty() && rate_samples_.front().first < now - kRateWindow) {
      rate_samples_.pop_front();
    }
    ++totals_.batches;
    totals_.readings += batch.readings.size();
    totals_.quarantined += batch.quarantine.size();
    totals_.late += batch.late.size();
    totals_.windows += batch.windows.size();
    totals_.duplicates += batch.duplicates;
    totals_.watermark = std::max(totals_.watermark, batch.watermark);
    if (summary_.from == 0) summary_.from = now;
    summary_.readings += batch.readings.size();
    summary_.quarantined += batch.quarantine.size();
    summary_.late += batch.late.size();
    summary_.duplicates += batch.duplicates;
    summary_.windows += batch.windows.size();
    summary_.alerts += batch.alerts.size();
    if (events_ != nullptr && now - summary_.from >= options_.summary_interval) {
      summary = TakeSummaryLocked(now);
    }
  }
  if (events_ == nullptr) return;
  // Events are rendered outside the state mutex; the event log has its own.
  for (const WindowResult& r : batch.windows) {
    JsonWriter w;
    WriteWindowJson(w, r);
    events_->Publish("window", w.Take(), r.group_by.view(), r.group.view());
  }
  for (const AlertEvent& a : batch.alerts) events_->Publish("alert", AlertEventJson(a));
  for (const QuarantineRecord& q : batch.quarantine) {
    JsonWriter w;
    WriteQuarantineJson(
        w, QuarantineView{q.reason, q.detail, q.arrival_time, q.device, q.metric, q.prov.source});
    events_->Publish("quarantine", w.Take());
  }
  JsonWriter w;
  w.BeginObject();
  w.Key("readings").UInt(batch.readings.size());
  w.Key("quarantined").UInt(batch.quarantine.size());
  w.Key("late").UInt(batch.late.size());
  w.Key("duplicates").UInt(batch.duplicates);
  w.Key("windows").UInt(batch.windows.size());
  w.Key("watermark");
  if (batch.watermark == kMinTime) {
    w.Null();
  } else {
    w.String(FormatTime(batch.watermark));
  }
  w.EndObject();
  events_->Publish("reading_summary", w.Take());
  if (!summary.empty()) events_->Publish("summary", std::move(summary));
}

std::string LiveState::TakeSummaryLocked(TimeUs now) {
  uint64_t in_rate = 0;
  for (const auto& [t, count] : rate_samples_) {
    if (t >= now - kRateWindow) in_rate += count;
  }
  JsonWriter w;
  w.BeginObject();
  w.Key("from").String(FormatTime(summary_.from));
  w.Key("to").String(FormatTime(now));
  w.Key("readings").UInt(summary_.readings);
  w.Key("quarantined").UInt(summary_.quarantined);
  w.Key("late").UInt(summary_.late);
  w.Key("duplicates").UInt(summary_.duplicates);
  w.Key("windows").UInt(summary_.windows);
  w.Key("alerts").UInt(summary_.alerts);
  w.Key("events_per_second")
      .Number(static_cast<double>(in_rate) / (static_cast<double>(kRateWindow) / kMicrosPerSecond));
  w.Key("watermark");
  if (totals_.watermark == kMinTime) {
    w.Null();
  } else {
    w.String(FormatTime(totals_.watermark));
  }
  w.Key("sensor_count").UInt(sensors_.size());
  w.Key("sensors").BeginArray();
  for (uint32_t id : summary_.changed) {
    auto it = sensors_.find(id);
    if (it == sensors_.end()) continue;
    SensorView v = ViewOf(it->second, now);
    std::sort(v.metrics.begin(), v.metrics.end(), [](const MetricLatest& a, const MetricLatest& b) {
      return a.metric.view() < b.metric.view();
    });
    WriteSensorJson(w, v, /*compact=*/true);
  }
  w.EndArray();
  w.EndObject();
  summary_ = SummaryInterval{};
  return w.Take();
}

SensorView LiveState::ViewOf(const Sensor& s, TimeUs now) const {
  const DurationUs horizon = 3 * options_.expected_interval;
  SensorView v;
  v.device = s.device;
  v.lat = s.lat;
  v.lon = s.lon;
  v.last_event_time = s.last_event_time;
  v.last_arrival_time = s.last_arrival_time;
  v.readings = s.readings;
  v.quarantined = s.quarantined;
  v.qc_flagged = s.qc_flagged;
  // Arrival times are the source's (a simulator's run ahead of the wall clock), so
  // staleness is judged by when the batch was observed, and quarantining by comparing
  // the device's own arrival times.
  if (s.last_seen < now - horizon) {
    v.status = SensorStatus::kStale;
  } else if (s.last_quarantine_time != kMinTime && s.last_quarantine_time >= s.last_arrival_time) {
    v.status = SensorStatus::kQuarantining;
  }
  v.metrics.reserve(s.metrics.size());
  for (const auto& [mid, m] : s.metrics) v.metrics.push_back(m);
  return v;
}

std::vector<SensorView> LiveState::Sensors(TimeUs now) const {
  std::vector<SensorView> out;
  {
    std::lock_guard lock(mu_);
    out.reserve(sensors_.size());
    for (const auto& [id, s] : sensors_) out.push_back(ViewOf(s, now));
  }
  for (SensorView& v : out) {
    std::sort(v.metrics.begin(), v.metrics.end(), [](const MetricLatest& a, const MetricLatest& b) {
      return a.metric.view() < b.metric.view();
    });
  }
  std::sort(out.begin(), out.end(), [](const SensorView& a, const SensorView& b) {
    return a.device.view() < b.device.view();
  });
  return out;
}

std::vector<WindowResult> LiveState::Windows(const WindowQuery& query) const {
  std::vector<WindowResult> out;
  std::lock_guard lock(mu_);
  for (auto it = windows_.rbegin(); it != windows_.rend() && out.size() < query.limit; ++it) {
    const WindowResult& r = *it;
    if (!query.window.empty() && r.window.view() != query.window) continue;
    if (!query.group.empty() && r.group.view() != query.group) continue;
    if (!query.metric.empty() && r.metric.view() != query.metric) continue;
    if (r.start < query.from || r.start >= query.to) continue;
    out.push_back(r);
  }
  return out;
}

std::vector<QuarantineView> LiveState::Quarantine(size_t limit) const {
  std::vector<QuarantineView> out;
  std::lock_guard lock(mu_);
  for (auto it = quarantine_.rbegin(); it != quarantine_.rend() && out.size() < limit; ++it) {
    out.push_back(*it);
  }
  return out;
}

LiveTotals LiveState::Totals() const {
  std::lock_guard lock(mu_);
  return totals_;
}

double LiveState::ReadingsPerSecond(TimeUs now) const {
  std::lock_guard lock(mu_);
  uint64_t n = 0;
  for (const auto& [t, count] : rate_samples_) {
    if (t >= now - kRateWindow) n += count;
  }
  return static_cast<double>(n) / (static_cast<double>(kRateWindow) / kMicrosPerSecond);
}

}  // namespace tributary

namespace tributary {

std::vector<AlertEvent> LiveState::Alerts(bool firing_only, size_t limit) const {
  std::vector<AlertEvent> out;
  std::lock_guard lock(mu_);
  for (auto it = alerts_.rbegin(); it != alerts_.rend() && out.size() < limit; ++it) {
    if (firing_only && it->state == AlertState::kResolved) continue;
    out.push_back(*it);
  }
  return out;
}

}  // namespace tributary
