#include "stream/qc/drift.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "ingest/device_registry.h"
#include "ingest/metrics.h"
#include "stream/checkpoint.h"

namespace tributary {

const SectionSpec& DriftSectionSpec() {
  static const SectionSpec spec{
      "anomaly.drift",
      "Calibration drift of low-cost sensors against the co-located reference stations "
      "named by `reference:` in the device registry (`processing.registry`). Bucket means "
      "of each pair over the trailing `window` are fitted as sensor = offset + slope · "
      "reference; the first fit is the baseline, and a drift of the slope (relative) or "
      "offset past its threshold raises a recalibration alert (kind `calibration_drift`, "
      "key the sensor) through the alert operator.",
      {
          {"enabled", OptionType::kBool, "false", "Run the drift checks."},
          {"metrics", OptionType::kStringList, "",
           "Canonical metrics checked (`[pm25, no2]`); empty: every metric both report."},
          {"window", OptionType::kDuration, "7d", "Trailing window of bucket means fitted.",
           "1h..365d"},
          {"bucket", OptionType::kDuration, "1h", "Bucket of the means that are paired.", "1m..1d"},
          {"min_pairs", OptionType::kInt, "72",
           "Bucket pairs needed before a fit (the first one is the baseline).", "3..100000"},
          {"min_bucket_samples", OptionType::kInt, "3",
           "Readings of each device a bucket needs to count.", "1..100000"},
          {"fit", OptionType::kEnum, "theil_sen",
           "`theil_sen` (median of pairwise slopes; robust) or `ols` (least squares).",
           "theil_sen|ols"},
          {"slope_threshold", OptionType::kDouble, "0.15",
           "Relative slope drift |slope / slope₀ − 1| at which the alert fires.", "0.001..10"},
          {"offset_threshold", OptionType::kDouble, "",
           "Offset drift |offset − offset₀| (canonical unit) at which the alert fires; empty: "
           "offset drift does not alert.",
           "0.."},
          {"close_after", OptionType::kDuration, "10m",
           "A bucket closes when the largest event time seen passes its end by this much.",
           "0s..1d"},
          {"apply_correction", OptionType::kBool, "false",
           "Map the sensor's readings onto the reference scale with the current fit, x' = (x "
           "− offset) / slope; such readings are flagged DRIFT_CORRECTED and the fit is "
           "recorded in their provenance (`drift_correction`)."},
          {"alert_rule", OptionType::kString, "recalibration",
           "Rule name carried by the drift alerts (for channel routing and the alerts table)."},
          {"severity", OptionType::kEnum, "warning", "Severity of the drift alerts.",
           "info|warning|critical"},
      }};
  return spec;
}

Result<DriftOptions> ReadDriftOptions(const PipelineConfig& config) {
  DriftOptions o;
  o.severity = Intern("warning");
  if (!config.anomaly.Has("drift")) return o;
  OptionReader r = config.anomaly.Child("drift", &DriftSectionSpec());
  TRIB_RETURN_IF_ERROR(r.CheckKeys());
  TRIB_ASSIGN_OR_RETURN(o.enabled, r.GetBool("enabled"));
  TRIB_ASSIGN_OR_RETURN(std::vector<std::string> metrics, r.GetStringList("metrics"));
  for (const std::string& m : metrics) {
    if (FindMetric(m) == nullptr) return r.Error("metrics", "unknown metric '" + m + "'");
    o.metrics.push_back(Intern(m));
  }
  TRIB_ASSIGN_OR_RETURN(o.window, r.GetDuration("window"));
  TRIB_ASSIGN_OR_RETURN(o.bucket, r.GetDuration("bucket"));
  TRIB_ASSIGN_OR_RETURN(int64_t min_pairs, r.GetInt("min_pairs"));
  TRIB_ASSIGN_OR_RETURN(int64_t min_samples, r.GetInt("min_bucket_samples"));
  o.min_pairs = static_cast<size_t>(min_pairs);
  o.min_bucket_samples = static_cast<size_t>(min_samples);
  TRIB_ASSIGN_OR_RETURN(std::string fit, r.GetString("fit"));
  o.fit = fit == "ols" ? DriftFitMethod::kOls : DriftFitMethod::kTheilSen;
  TRIB_ASSIGN_OR_RETURN(o.slope_threshold, r.GetDouble("slope_threshold"));
  if (r.Has("offset_threshold")) {
    TRIB_ASSIGN_OR_RETURN(o.offset_threshold, r.GetDouble("offset_threshold"));
  }
  TRIB_ASSIGN_OR_RETURN(o.close_after, r.GetDuration("close_after"));
  TRIB_ASSIGN_OR_RETURN(o.apply_correction, r.GetBool("apply_correction"));
  TRIB_ASSIGN_OR_RETURN(o.alert_rule, r.GetString("alert_rule"));
  TRIB_ASSIGN_OR_RETURN(std::string severity, r.GetString("severity"));
  o.severity = Intern(severity);
  if (o.alert_rule.empty()) return r.Error("alert_rule", "must not be empty");
  if (o.window < o.bucket * static_cast<DurationUs>(o.min_pairs)) {
    return r.Error("min_pairs",
                   fmt::format("{} buckets of {} do not fit in the window of {}", o.min_pairs,
                               FormatDuration(o.bucket), FormatDuration(o.window)));
  }
  return o;
}

namespace {

double Median(std::vector<double>& v) {
  if (v.empty()) return NAN;
  size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  double hi = v[mid];
  if (v.size() % 2 == 1) return hi;
  double lo = *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid));
  return 0.5 * (lo + hi);
}

}  // namespace

DriftFit FitDriftLine(const std::vector<double>& x, const std::vector<double>& y,
                      DriftFitMethod method) {
  DriftFit f;
  size_t n = std::min(x.size(), y.size());
  f.pairs = n;
  if (n < 2) return f;
  if (method == DriftFitMethod::kOls) {
    double mx = 0, my = 0;
    for (size_t i = 0; i < n; ++i) {
      mx += x[i];
      my += y[i];
    }
    mx /= static_cast<double>(n);
    my /= static_cast<double>(n);
    double sxx = 0, sxy = 0;
    for (size_t i = 0; i < n; ++i) {
      sxx += (x[i] - mx) * (x[i] - mx);
      sxy += (x[i] - mx) * (y[i] - my);
    }
    if (sxx <= 0) return f;
    f.slope = sxy / sxx;
    f.offset = my - f.slope * mx;
    return f;
  }
  std::vector<double> slopes;
  slopes.reserve(n * (n - 1) / 2);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n; ++j) {
      double dx = x[j] - x[i];
      if (dx != 0) slopes.push_back((y[j] - y[i]) / dx);
    }
  }
  if (slopes.empty()) return f;
  f.slope = Median(slopes);
  std::vector<double> intercepts(n);
  for (size_t i = 0; i < n; ++i) intercepts[i] = y[i] - f.slope * x[i];
  f.offset = Median(intercepts);
  return f;
}

DriftOperator::DriftOperator(DriftOptions options, ReferenceLookup lookup,
                             std::vector<std::pair<std::string, std::string>> known_pairs)
    : options_(std::move(options)),
      lookup_(std::move(lookup)),
      known_pairs_(std::move(known_pairs)) {
  rule_ = Intern(options_.alert_rule);
  kind_ = Intern("calibration_drift");
  if (!options_.severity) options_.severity = Intern("warning");
  // Symbols are interned while the pipeline is built, so a checkpoint restore sees them
  // with the same ids.
  for (const auto& [sensor, reference] : known_pairs_) {
    Symbol s = Intern(sensor), r = Intern(reference);
    reference_of_[s.id] = r;
    sensors_of_[r.id].push_back(s);
  }
}

Result<std::unique_ptr<DriftOperator>> DriftOperator::Make(
    const PipelineConfig& config, std::shared_ptr<DeviceRegistry> registry) {
  TRIB_ASSIGN_OR_RETURN(DriftOptions o, ReadDriftOptions(config));
  if (!o.enabled) return std::unique_ptr<DriftOperator>();
  if (registry == nullptr) {
    return config.anomaly.Error("drift",
                                "needs a device registry (processing.registry) whose "
                                "entries name their `reference` station");
  }
  std::vector<std::pair<std::string, std::string>> known;
  for (const DeviceEntry& e : registry->Snapshot()->entries()) {
    if (!e.pattern && !e.reference.empty()) known.emplace_back(e.key, e.reference);
  }
  ReferenceLookup lookup = [registry](std::string_view device) -> std::string {
    const DeviceEntry* e = registry->Snapshot()->Find(device);
    return e == nullptr ? std::string() : e->reference;
  };
  return std::make_unique<DriftOperator>(std::move(o), std::move(lookup), std::move(known));
}

Status DriftOperator::Open(RunContext& ctx) {
  (void)ctx;
  return Status::Ok();
}

bool DriftOperator::Watched(Symbol metric) const {
  return options_.metrics.empty() || std::find(options_.metrics.begin(), options_.metrics.end(),
                                               metric) != options_.metrics.end();
}

Symbol DriftOperator::ReferenceOf(Symbol device) {
  auto [it, inserted] = reference_of_.try_emplace(device.id);
  if (inserted && lookup_) {
    std::string ref = lookup_(device.view());
    if (!ref.empty() && ref != device.view()) {
      it->second = Intern(ref);
      sensors_of_[it->second.id].push_back(device);
    }
  }
  return it->second;
}

DriftOperator::PairState& DriftOperator::Pair(Symbol sensor, Symbol reference, Symbol metric) {
  auto [it, inserted] = pairs_.try_emplace(Key(sensor, metric));
  if (inserted) {
    it->second.sensor = sensor;
    it->second.reference = reference;
    it->second.metric = metric;
  }
  return it->second;
}

Status DriftOperator::Process(Batch& batch) {
  for (Reading& r : batch.readings) {
    if (!std::isfinite(r.value)) continue;
    max_time_ = std::max(max_time_, r.event_time);
    if (!Watched(r.metric)) continue;
    int64_t bucket = FloorDiv(r.event_time, options_.bucket);
    // As a reference station: one more sample for each sensor paired with it.
    if (auto it = sensors_of_.find(r.device.id); it != sensors_of_.end()) {
      for (Symbol sensor : it->second) {
        PairState& p = Pair(sensor, r.device, r.metric);
        if (bucket <= p.closed_through) continue;
        Acc& a = p.open[bucket];
        a.r_sum += r.value;
        ++a.r_n;
      }
    }
    Symbol ref = ReferenceOf(r.device);
    if (!ref) continue;
    PairState& p = Pair(r.device, ref, r.metric);
    if (bucket > p.closed_through) {
      Acc& a = p.open[bucket];
      a.s_sum += r.value;
      ++a.s_n;
    }
    if (options_.apply_correction && p.has_fit && p.fit.slope > 1e-3) {
      r.value = (r.value - p.fit.offset) / p.fit.slope;
      r.flags.Set(QcFlag::kDriftCorrected);
      r.prov.drift_correction = p.correction;
    }
  }
  for (auto& [key, p] : pairs_) CloseBuckets(p, batch.alerts);
  return Status::Ok();
}

void DriftOperator::CloseBuckets(PairState& p, std::vector<AlertEvent>& out) {
  bool changed = false;
  TimeUs last_end = 0;
  while (!p.open.empty()) {
    auto it = p.open.begin();
    TimeUs end = (it->first + 1) * options_.bucket;
    if (end + options_.close_after > max_time_) break;
    const Acc& a = it->second;
    if (a.s_n >= options_.min_bucket_samples && a.r_n >= options_.min_bucket_samples) {
      p.points.push_back(Point{it->first, a.r_sum / static_cast<double>(a.r_n),
                               a.s_sum / static_cast<double>(a.s_n)});
      changed = true;
    }
    p.closed_through = it->first;
    last_end = end;
    p.open.erase(it);
  }
  if (!changed) return;
  int64_t first_kept = p.closed_through + 1 - options_.window / options_.bucket;
  while (!p.points.empty() && p.points.front().bucket < first_kept) p.points.pop_front();
  Evaluate(p, last_end, out);
}

void DriftOperator::Evaluate(PairState& p, TimeUs t, std::vector<AlertEvent>& out) {
  if (p.points.size() < options_.min_pairs) return;
  xs_.clear();
  ys_.clear();
  for (const Point& pt : p.points) {
    xs_.push_back(pt.reference);
    ys_.push_back(pt.sensor);
  }
  DriftFit fit = FitDriftLine(xs_, ys_, options_.fit);
  if (!std::isfinite(fit.slope) || !std::isfinite(fit.offset)) return;
  p.fit = fit;
  p.has_fit = true;
  p.correction = Intern(fmt::format("slope={:.4f} offset={:.4f} fit_end={} ref={}", fit.slope,
                                    fit.offset, FormatTime(t), p.reference.view()));
  if (!p.has_baseline) {
    p.baseline = fit;
    p.has_baseline = true;
    spdlog::info("drift: baseline of {} {} against {}: slope {:.3f}, offset {:.3f} ({} buckets)",
                 p.sensor.view(), p.metric.view(), p.reference.view(), fit.slope, fit.offset,
                 fit.pairs);
    return;
  }
  p.slope_drift = std::fabs(p.baseline.slope) > 1e-9 ? fit.slope / p.baseline.slope - 1.0 : NAN;
  p.offset_drift = fit.offset - p.baseline.offset;
  bool has_offset = std::isfinite(options_.offset_threshold);
  double slope_ratio = std::fabs(p.slope_drift) / options_.slope_threshold;
  double offset_ratio = has_offset ? std::fabs(p.offset_drift) / options_.offset_threshold : 0;
  bool beyond = slope_ratio >= 1.0 || offset_ratio >= 1.0;
  bool back = slope_ratio < 0.8 && offset_ratio < 0.8;
  AlertEvent e;
  e.rule = rule_;
  e.kind = kind_;
  e.key = p.sensor;
  e.metric = p.metric;
  e.severity = options_.severity;
  e.event_time = t;
  e.source_arrival = 0;
  if (!p.firing && beyond) {
    p.firing = true;
    p.fired_at = t;
    e.state = AlertState::kFiring;
  } else if (p.firing && back) {
    p.firing = false;
    e.state = AlertState::kResolved;
  } else {
    return;
  }
  e.fired_at = p.fired_at;
  bool by_slope = slope_ratio >= offset_ratio;
  e.value = by_slope ? p.slope_drift : p.offset_drift;
  e.level = by_slope ? options_.slope_threshold : options_.offset_threshold;
  e.message = fmt::format(
      "{} of {} {} against reference {}: slope {:.3f} (baseline {:.3f}, drift {:+.1f} %), offset "
      "{:.2f} (baseline {:.2f}) over {} buckets{}",
      p.metric.view(), p.sensor.view(), e.state == AlertState::kFiring ? "drifted" : "back",
      p.reference.view(), fit.slope, p.baseline.slope, 100.0 * p.slope_drift, fit.offset,
      p.baseline.offset, fit.pairs, e.state == AlertState::kFiring ? "; recalibrate" : "");
  out.push_back(std::move(e));
}

Status DriftOperator::Finish(Batch& out) {
  (void)out;
  return Status::Ok();
}

std::vector<DriftPairStatus> DriftOperator::Pairs() const {
  std::vector<DriftPairStatus> v;
  for (const auto& [key, p] : pairs_) {
    DriftPairStatus s;
    s.sensor = p.sensor;
    s.reference = p.reference;
    s.metric = p.metric;
    s.has_baseline = p.has_baseline;
    s.has_fit = p.has_fit;
    s.firing = p.firing;
    s.baseline = p.baseline;
    s.fit = p.fit;
    s.slope_drift = p.slope_drift;
    s.offset_drift = p.offset_drift;
    s.fired_at = p.fired_at;
    v.push_back(s);
  }
  return v;
}

namespace {

void EncodeFit(CheckpointWriter& out, const DriftFit& f) {
  out.F64(f.slope);
  out.F64(f.offset);
  out.U64(f.pairs);
}

DriftFit DecodeFit(CheckpointReader& in) {
  DriftFit f;
  f.slope = in.F64();
  f.offset = in.F64();
  f.pairs = in.U64();
  return f;
}

}  // namespace

Status DriftOperator::Snapshot(CheckpointWriter& out) const {
  out.Section("drift");
  out.I64(max_time_);
  // Lookups already made, so a restored run pairs exactly as the first did.
  std::vector<std::pair<uint32_t, uint32_t>> refs;
  for (const auto& [sensor, ref] : reference_of_) refs.emplace_back(sensor, ref.id);
  std::sort(refs.begin(), refs.end());
  out.U64(refs.size());
  for (const auto& [sensor, ref] : refs) {
    out.U64(sensor);
    out.U64(ref);
  }
  out.U64(pairs_.size());
  for (const auto& [key, p] : pairs_) {
    out.U64(p.sensor.id);
    out.U64(p.reference.id);
    out.U64(p.metric.id);
    out.U64(p.open.size());
    for (const auto& [b, a] : p.open) {
      out.I64(b);
      out.F64(a.s_sum);
      out.F64(a.r_sum);
      out.U64(a.s_n);
      out.U64(a.r_n);
    }
    out.U64(p.points.size());
    for (const Point& pt : p.points) {
      out.I64(pt.bucket);
      out.F64(pt.reference);
      out.F64(pt.sensor);
    }
    out.I64(p.closed_through);
    out.Bool(p.has_baseline);
    out.Bool(p.has_fit);
    out.Bool(p.firing);
    EncodeFit(out, p.baseline);
    EncodeFit(out, p.fit);
    out.F64(p.slope_drift);
    out.F64(p.offset_drift);
    out.U64(p.correction.id);
    out.I64(p.fired_at);
  }
  return Status::Ok();
}

Status DriftOperator::Restore(CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("drift"));
  auto sym = [&in]() {
    Symbol s;
    s.id = static_cast<uint32_t>(in.U64());
    if (s.id >= InternedCount()) in.Fail("drift: symbol id out of range");
    return s;
  };
  max_time_ = in.I64();
  reference_of_.clear();
  sensors_of_.clear();
  uint64_t refs = in.Count();
  for (uint64_t i = 0; i < refs && in.ok(); ++i) {
    Symbol sensor = sym(), ref = sym();
    reference_of_[sensor.id] = ref;
    if (ref) sensors_of_[ref.id].push_back(sensor);
  }
  pairs_.clear();
  uint64_t n = in.Count();
  for (uint64_t i = 0; i < n && in.ok(); ++i) {
    Symbol sensor = sym(), ref = sym(), metric = sym();
    PairState& p = Pair(sensor, ref, metric);
    uint64_t open = in.Count();
    for (uint64_t k = 0; k < open && in.ok(); ++k) {
      Acc& a = p.open[in.I64()];
      a.s_sum = in.F64();
      a.r_sum = in.F64();
      a.s_n = in.U64();
      a.r_n = in.U64();
    }
    uint64_t points = in.Count();
    for (uint64_t k = 0; k < points && in.ok(); ++k) {
      Point pt;
      pt.bucket = in.I64();
      pt.reference = in.F64();
      pt.sensor = in.F64();
      p.points.push_back(pt);
    }
    p.closed_through = in.I64();
    p.has_baseline = in.Bool();
    p.has_fit = in.Bool();
    p.firing = in.Bool();
    p.baseline = DecodeFit(in);
    p.fit = DecodeFit(in);
    p.slope_drift = in.F64();
    p.offset_drift = in.F64();
    p.correction = sym();
    p.fired_at = in.I64();
  }
  return in.status();
}

}  // namespace tributary
