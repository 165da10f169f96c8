#include "stream/qc/qc.h"

#include <algorithm>
#include <cmath>

namespace tributary {

namespace {
// MAD of a normal distribution is 0.6745 σ; 1.4826 = 1 / 0.6745 makes z comparable to σ.
constexpr double kMadToSigma = 1.4826;
// With fewer previous readings the median and MAD are too unstable to judge a spike.
constexpr size_t kMinSpikeHistory = 8;

double MedianInPlace(std::vector<double>& v) {
  size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  double m = v[mid];
  if (v.size() % 2 == 0) {
    double lower = *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid));
    m = (m + lower) / 2.0;
  }
  return m;
}
}  // namespace

const QcMetricLimits& QcOptions::For(Symbol metric) const {
  if (!per_metric.empty()) {
    auto it = per_metric.find(std::string(metric.view()));
    if (it != per_metric.end()) return it->second;
  }
  return defaults;
}

QcOptions DefaultQcOptions() {
  QcOptions o;
  // Physical limits per minute: beyond these a change is a sensor or transmission fault.
  const std::pair<const char*, double> limits[] = {
      {"temperature", 3.0},    // °C/min
      {"humidity", 20.0},      // % RH/min
      {"pressure", 2.0},       // hPa/min
      {"pm25", 300.0},         // µg/m³/min
      {"pm10", 500.0},         // µg/m³/min
      {"stage", 0.5},          // m/min
      {"soil_moisture", 10.0}  // % VWC/min
  };
  for (const auto& [metric, limit] : limits) {
    QcMetricLimits l = o.defaults;
    l.max_rate_per_min = limit;
    o.per_metric[metric] = l;
  }
  return o;
}

Status QcOperator::Open(RunContext& ctx) {
  (void)ctx;
  return Status::Ok();
}

float QcOperator::Check(Reading& r) {
  if (!std::isfinite(r.value)) return 0.0f;
  const QcMetricLimits& lim = options_.For(r.metric);
  KeyState& s = state_[(static_cast<uint64_t>(r.device.id) << 32) | r.metric.id];
  double score = 0.0;

  // Spike against the previous readings (the current one is not part of its baseline).
  if (s.recent.size() >= kMinSpikeHistory) {
    scratch_.assign(s.recent.begin(), s.recent.end());
    double median = MedianInPlace(scratch_);
    for (double& v : scratch_) v = std::fabs(v - median);
    double mad = MedianInPlace(scratch_);
    double dev = std::fabs(r.value - median);
    // A constant history has MAD 0: any departure then counts as infinitely far, which a
    // flatline ending is not; use a small floor relative to the level instead.
    double sigma = std::max(kMadToSigma * mad, 1e-6 * std::max(1.0, std::fabs(median)));
    double z = dev / sigma;
    if (z >= lim.spike_z) r.flags.Set(QcFlag::kSpike);
    score = std::max(score, z / lim.spike_z);
  }

  // Flatline: exact repeats of the previous value.
  if (s.run_length > 0 && r.value == s.last_value) {
    ++s.run_length;
  } else {
    s.run_length = 1;
  }
  if (lim.flatline_count > 1) {
    if (s.run_length >= lim.flatline_count) r.flags.Set(QcFlag::kFlatline);
    score = std::max(
        score, static_cast<double>(s.run_length - 1) / static_cast<double>(lim.flatline_count - 1));
  }

  // Rate of change in event time, only forward in time.
  if (std::isfinite(lim.max_rate_per_min) && s.last_time != 0 && r.event_time > s.last_time &&
      std::isfinite(s.last_value)) {
    double minutes =
        static_cast<double>(r.event_time - s.last_time) / static_cast<double>(kMicrosPerMinute);
    double rate = std::fabs(r.value - s.last_value) / minutes;
    if (rate > lim.max_rate_per_min) r.flags.Set(QcFlag::kRateOfChange);
    score = std::max(score, rate / lim.max_rate_per_min);
  }

  s.last_value = r.value;
  if (r.event_time > s.last_time) s.last_time = r.event_time;
  s.recent.push_back(r.value);
  while (s.recent.size() > lim.spike_window) s.recent.pop_front();
  return static_cast<float>(score);
}

Status QcOperator::Process(Batch& batch) {
  scores_.clear();
  scores_.reserve(batch.readings.size());
  for (Reading& r : batch.readings) scores_.push_back(Check(r));
  return Status::Ok();
}

Status QcOperator::Finish(Batch& out) {
  (void)out;
  return Status::Ok();
}

}  // namespace tributary
