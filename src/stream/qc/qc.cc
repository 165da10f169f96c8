#include "stream/qc/qc.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "core/pipeline_config.h"
#include "ingest/device_registry.h"
#include "ingest/time_zone.h"
#include "stream/checkpoint.h"

namespace tributary {

namespace {
// MAD of a normal distribution is 0.6745 σ; 1.4826 = 1 / 0.6745 makes z comparable to σ.
constexpr double kMadToSigma = 1.4826;
// With fewer previous readings the median and MAD are too unstable to judge a spike.
constexpr size_t kMinSpikeHistory = 8;
// The median and MAD of the spike ring are recomputed every this many readings; between,
// a reading below kExactFraction of the threshold on the cached statistics is judged on
// them, and any other on freshly computed ones. The ring moves by one value a reading,
// so the cached statistics differ little from the exact ones; a flag is never raised on
// stale statistics.
constexpr uint32_t kSpikeRefresh = 8;
// Likewise for the neighbours' statistics, refreshed every this many readings of a
// sensor (a few minutes at one reading a minute, while neighbours drift slowly).
constexpr uint32_t kNeighborRefresh = 4;
// Readings at or above this share of a threshold on cached statistics are judged again
// on exact ones.
constexpr double kExactFraction = 0.75;
constexpr int64_t kHoursPerDay = 24;
constexpr double kEarthRadiusM = 6371008.8;
constexpr double kDegToRad = M_PI / 180.0;
// A cached baseline percentile is recomputed after this many readings of its hour when
// its kept values changed (and always when the day changes).
constexpr uint32_t kBaselineRefresh = 16;
// Readings these checks flag stay out of baselines and neighbour values.
constexpr uint32_t kExcludedFromHistory =
    static_cast<uint32_t>(QcFlag::kSpike) | static_cast<uint32_t>(QcFlag::kRateOfChange);

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

uint64_t PairKey(uint32_t a, uint32_t b) {
  return (static_cast<uint64_t>(a) << 32) | b;
}
}  // namespace

double SortedMedian(const std::vector<double>& sorted) {
  const size_t mid = sorted.size() / 2;
  double m = sorted[mid];
  if (sorted.size() % 2 == 0) m = (m + sorted[mid - 1]) / 2.0;
  return m;
}

// The deviations of the values at or above m increase to the right, those below m to
// the left (rounding is monotonic), so merging the two runs outwards from m yields them
// in ascending order.
double SortedMedianDeviation(const std::vector<double>& sorted, double m) {
  const size_t n = sorted.size();
  const size_t mid = n / 2;
  size_t right =
      static_cast<size_t>(std::lower_bound(sorted.begin(), sorted.end(), m) - sorted.begin());
  size_t left = right;  // the next value below m is sorted[left - 1]
  double previous = 0, current = 0;
  for (size_t k = 0; k <= mid; ++k) {
    previous = current;
    if (left == 0) {
      current = std::fabs(sorted[right++] - m);
    } else if (right == n) {
      current = std::fabs(sorted[--left] - m);
    } else {
      const double below = std::fabs(sorted[left - 1] - m);
      const double above = std::fabs(sorted[right] - m);
      if (above <= below) {
        current = above;
        ++right;
      } else {
        current = below;
        --left;
      }
    }
  }
  return n % 2 == 0 ? (current + previous) / 2.0 : current;
}

void SortedInsert(std::vector<double>& sorted, double v) {
  sorted.insert(std::upper_bound(sorted.begin(), sorted.end(), v), v);
}

void SortedErase(std::vector<double>& sorted, double v) {
  // 0.0 and -0.0 compare equal: remove the one with v's sign.
  for (auto it = std::lower_bound(sorted.begin(), sorted.end(), v); it != sorted.end() && *it == v;
       ++it) {
    if (std::signbit(*it) == std::signbit(v)) {
      sorted.erase(it);
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Baselines: per hour of day, a ring of day buckets with the largest values of each day.

struct QcOperator::Baseline {
  struct Day {
    int64_t day = INT64_MIN;  // local day number (local time / 1 d)
    uint32_t count = 0;
    uint32_t size = 0;  // values held in the day's slice of Hour::tops
  };
  struct Hour {
    std::vector<Day> days;    // ring indexed by day % baseline_days
    std::vector<float> tops;  // per day `keep` slots: a min-heap of the day's largest values
    double threshold = NAN;
    int64_t computed_day = INT64_MIN;
    uint32_t added_since = 0;
    bool changed = true;
  };

  explicit Baseline(size_t keep_per_day) : keep(keep_per_day) {}

  Hour& HourOf(const QcOptions& o, int hour) {
    std::unique_ptr<Hour>& h = hours[static_cast<size_t>(hour)];
    if (!h) {
      h = std::make_unique<Hour>();
      h->days.resize(static_cast<size_t>(o.baseline_days));
      h->tops.resize(h->days.size() * keep);
    }
    return *h;
  }

  void Add(const QcOptions& o, int64_t day, int hour, double value) {
    Hour& h = HourOf(o, hour);
    const auto slot = static_cast<size_t>(FloorMod(day, o.baseline_days));
    Day& d = h.days[slot];
    // The day's values sit in one array with every other day's of this hour: one cache
    // line or two rather than a heap block per day.
    float* top = h.tops.data() + slot * keep;
    if (d.day != day) {
      d.day = day;
      d.count = 0;
      d.size = 0;
    }
    ++d.count;
    ++h.added_since;
    auto v = static_cast<float>(value);
    if (d.size < keep) {
      top[d.size++] = v;
      std::push_heap(top, top + d.size, std::greater<>());
      h.changed = true;
    } else if (keep > 0 && v > top[0]) {
      std::pop_heap(top, top + d.size, std::greater<>());
      top[d.size - 1] = v;
      std::push_heap(top, top + d.size, std::greater<>());
      h.changed = true;
    }
  }

  // The trailing percentile at (day, hour); NaN until min_days days hold data.
  double Threshold(const QcOptions& o, int64_t day, int hour, double percentile,
                   std::vector<double>& scratch) {
    Hour* h = hours[static_cast<size_t>(hour)].get();
    if (h == nullptr) return NAN;
    // A zone keeps more values a day: refresh it after as many readings.
    const uint32_t refresh = std::max<uint32_t>(kBaselineRefresh, static_cast<uint32_t>(keep));
    if (h->computed_day == day && !(h->changed && h->added_since >= refresh)) {
      return h->threshold;
    }
    auto in_window = [&](const Day& d) {
      return d.day > day - o.baseline_days && d.day <= day && d.count > 0;
    };
    h->computed_day = day;
    h->added_since = 0;
    h->changed = false;
    h->threshold = NAN;
    int64_t days_with_data = 0;
    for (const Day& d : h->days) days_with_data += in_window(d);
    if (days_with_data < o.baseline_min_days) return NAN;
    scratch.clear();
    uint64_t n = 0;
    for (size_t i = 0; i < h->days.size(); ++i) {
      const Day& d = h->days[i];
      if (!in_window(d)) continue;
      n += d.count;
      const float* top = h->tops.data() + i * keep;
      scratch.insert(scratch.end(), top, top + d.size);
    }
    if (scratch.empty()) return NAN;
    auto r = static_cast<size_t>(std::ceil((1.0 - percentile) * static_cast<double>(n)));
    r = std::clamp<size_t>(r, 1, scratch.size());
    std::nth_element(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(r - 1),
                     scratch.end(), std::greater<>());
    h->threshold = scratch[r - 1];
    return h->threshold;
  }

  void Encode(CheckpointWriter& out) const {
    out.U64(keep);
    for (const auto& h : hours) {
      out.Bool(h != nullptr);
      if (!h) continue;
      out.F64(h->threshold);
      out.I64(h->computed_day == INT64_MIN ? 0 : h->computed_day);
      out.Bool(h->computed_day != INT64_MIN);
      out.U64(h->added_since);
      out.Bool(h->changed);
      out.U64(h->days.size());
      for (size_t i = 0; i < h->days.size(); ++i) {
        const Day& d = h->days[i];
        out.I64(d.day == INT64_MIN ? 0 : d.day);
        out.Bool(d.day != INT64_MIN);
        out.U64(d.count);
        out.U64(d.size);
        for (uint32_t k = 0; k < d.size; ++k) out.F64(h->tops[i * keep + k]);
      }
    }
  }

  static std::unique_ptr<Baseline> Decode(CheckpointReader& in) {
    auto b = std::make_unique<Baseline>(static_cast<size_t>(in.U64()));
    if (b->keep > 10000) {
      in.Fail("qc: baseline keep out of range");
      return b;
    }
    for (auto& h : b->hours) {
      if (!in.Bool() || !in.ok()) continue;
      h = std::make_unique<Hour>();
      h->threshold = in.F64();
      int64_t computed = in.I64();
      h->computed_day = in.Bool() ? computed : INT64_MIN;
      h->added_since = static_cast<uint32_t>(in.U64());
      h->changed = in.Bool();
      h->days.resize(static_cast<size_t>(in.Count()));
      h->tops.resize(h->days.size() * b->keep);
      for (size_t i = 0; i < h->days.size() && in.ok(); ++i) {
        Day& d = h->days[i];
        int64_t day = in.I64();
        d.day = in.Bool() ? day : INT64_MIN;
        d.count = static_cast<uint32_t>(in.U64());
        uint64_t size = in.Count();
        if (size > b->keep) {
          in.Fail("qc: baseline day holds more values than it keeps");
          break;
        }
        d.size = static_cast<uint32_t>(size);
        for (uint32_t k = 0; k < d.size; ++k)
          h->tops[i * b->keep + k] = static_cast<float>(in.F64());
      }
    }
    return b;
  }

  static int64_t FloorMod(int64_t a, int64_t b) { return a - FloorDiv(a, b) * b; }

  size_t keep;
  std::array<std::unique_ptr<Hour>, kHoursPerDay> hours;
};

// ---------------------------------------------------------------------------------------
// Neighbours: the latest value of every sensor of one metric in a uniform grid.

struct QcOperator::NeighborGrid {
  struct Entry {
    uint32_t device = 0;
    double x = 0, y = 0;  // metres on the grid's projection
    double value = NAN;
    TimeUs time = 0;
    uint64_t cell = 0;
  };

  NeighborGrid(double cell_m, double ref_lat)
      : cell(cell_m), cos_lat0(std::max(0.01, std::cos(ref_lat * kDegToRad))), lat0(ref_lat) {}

  void Project(double lat, double lon, double& x, double& y) const {
    x = kEarthRadiusM * lon * kDegToRad * cos_lat0;
    y = kEarthRadiusM * lat * kDegToRad;
  }
  uint64_t CellOf(double x, double y) const {
    auto cx = static_cast<int32_t>(std::floor(x / cell));
    auto cy = static_cast<int32_t>(std::floor(y / cell));
    return PairKey(static_cast<uint32_t>(cx), static_cast<uint32_t>(cy));
  }

  // Indices of the other sensors within `radius` of (x, y), whatever their times,
  // nearest first (equal distances by device id text, so the order depends on the
  // positions and names only, not on the order sensors first appeared).
  void Within(uint32_t device, double x, double y, double radius,
              std::vector<uint32_t>& out) const {
    out.clear();
    std::vector<std::pair<double, uint32_t>> found;
    auto cx = static_cast<int32_t>(std::floor(x / cell));
    auto cy = static_cast<int32_t>(std::floor(y / cell));
    const double r2 = radius * radius;
    for (int dx = -1; dx <= 1; ++dx) {
      for (int dy = -1; dy <= 1; ++dy) {
        auto it =
            cells.find(PairKey(static_cast<uint32_t>(cx + dx), static_cast<uint32_t>(cy + dy)));
        if (it == cells.end()) continue;
        for (uint32_t idx : it->second) {
          const Entry& e = entries[idx];
          if (e.device == device) continue;
          double ex = e.x - x, ey = e.y - y;
          double d2 = ex * ex + ey * ey;
          if (d2 <= r2) found.emplace_back(d2, idx);
        }
      }
    }
    std::sort(found.begin(), found.end(), [this](const auto& a, const auto& b) {
      if (a.first != b.first) return a.first < b.first;
      return Symbol{entries[a.second].device}.view() < Symbol{entries[b.second].device}.view();
    });
    out.reserve(found.size());
    for (const auto& f : found) out.push_back(f.second);
  }

  // True when `device` is new to the grid.
  bool Update(uint32_t device, double x, double y, double value, TimeUs t) {
    auto [it, inserted] = index.try_emplace(device, static_cast<uint32_t>(entries.size()));
    uint64_t c = CellOf(x, y);
    if (inserted) {
      entries.push_back(Entry{device, x, y, value, t, c});
      cells[c].push_back(it->second);
      ++generation;
      return true;
    }
    UpdateAt(it->second, x, y, value, t);
    return false;
  }

  void UpdateAt(uint32_t idx, double x, double y, double value, TimeUs t) {
    Entry& e = entries[idx];
    if (t < e.time) return;  // an older reading does not replace the latest
    if (e.x != x || e.y != y) {
      ++generation;
      uint64_t c = CellOf(x, y);
      if (e.cell != c) {
        std::vector<uint32_t>& old = cells[e.cell];
        auto pos = std::find(old.begin(), old.end(), idx);
        if (pos != old.end()) {
          *pos = old.back();
          old.pop_back();
        }
        cells[c].push_back(idx);
        e.cell = c;
      }
    }
    e.x = x;
    e.y = y;
    e.value = value;
    e.time = t;
  }

  double cell;
  double cos_lat0;
  double lat0;
  uint64_t generation = 0;  // changes whenever a sensor appears or moves
  std::vector<Entry> entries;
  std::unordered_map<uint32_t, uint32_t> index;  // device id → entries
  std::unordered_map<uint64_t, std::vector<uint32_t>> cells;
};

// ---------------------------------------------------------------------------------------
// Options.

QcMetricLimits QcOptions::Resolve(std::string_view metric, std::string_view device,
                                  std::string_view model) const {
  QcMetricLimits l = defaults;
  if (auto it = per_metric.find(std::string(metric)); it != per_metric.end()) l = it->second;
  for (const QcRule& rule : rules) {
    if (!rule.metric.empty() && rule.metric != metric) continue;
    if (!rule.devices.empty() && !GlobMatch(rule.devices, device)) continue;
    if (!rule.model.empty() && rule.model != model) continue;
    if (rule.checks) l.checks = *rule.checks;
    if (rule.spike_window) l.spike_window = *rule.spike_window;
    if (rule.spike_z) l.spike_z = *rule.spike_z;
    if (rule.flatline_count) l.flatline_count = *rule.flatline_count;
    if (rule.max_rate_per_min) l.max_rate_per_min = *rule.max_rate_per_min;
    if (rule.baseline_percentile) l.baseline_percentile = *rule.baseline_percentile;
    if (rule.neighbor_z) l.neighbor_z = *rule.neighbor_z;
    if (rule.neighbor_min_sigma) l.neighbor_min_sigma = *rule.neighbor_min_sigma;
  }
  return l;
}

QcOptions DefaultQcOptions() {
  QcOptions o;
  // Physical limits per minute (beyond these a change is a sensor or transmission fault)
  // and the σ floor of the neighbour check (typical differences between sound sensors a
  // couple of kilometres apart). River gauges and soil probes measure their own site
  // (another reach, another soil), so neighbours do not judge them. Weather metrics skip
  // the percentile baselines: a warm or wet spell lifts every sensor above last month's
  // p99 at once (in the simulator's May, 42 % of one warm day's temperatures), which is
  // weather, not a sensor fault; the neighbour check catches a single sensor that is off.
  struct Builtin {
    const char* metric;
    double rate;
    double neighbor_sigma;
    bool neighbors;
    bool baseline;
  };
  const Builtin builtins[] = {
      {"temperature", 3.0, 1.0, true, false},     // °C
      {"humidity", 20.0, 5.0, true, false},       // % RH
      {"pressure", 2.0, 1.0, true, false},        // hPa
      {"wind_speed", NAN, 2.0, true, false},      // m/s: gusts make any rate plausible
      {"pm25", 300.0, 5.0, true, true},           // µg/m³
      {"pm10", 500.0, 8.0, true, true},           // µg/m³
      {"no2", NAN, 8.0, true, true},              // ppb
      {"o3", NAN, 8.0, true, true},               // ppb
      {"stage", 0.5, 0.5, false, true},           // m
      {"flow", NAN, 5.0, false, true},            // m³/s
      {"soil_moisture", 10.0, 5.0, false, true},  // % VWC
  };
  for (const Builtin& b : builtins) {
    QcMetricLimits l = o.defaults;
    l.max_rate_per_min = b.rate;
    l.neighbor_min_sigma = b.neighbor_sigma;
    if (!b.neighbors) l.checks &= ~static_cast<uint32_t>(QcCheck::kNeighbors);
    if (!b.baseline) l.checks &= ~static_cast<uint32_t>(QcCheck::kBaseline);
    o.per_metric[b.metric] = l;
  }
  return o;
}

namespace {
constexpr std::string_view kCheckNames[] = {"spike", "flatline", "rate", "baseline", "neighbors"};

Result<uint32_t> ParseChecks(const OptionReader& r) {
  TRIB_ASSIGN_OR_RETURN(std::vector<std::string> names, r.GetStringList("checks"));
  uint32_t bits = 0;
  for (const std::string& n : names) {
    auto it = std::find(std::begin(kCheckNames), std::end(kCheckNames), n);
    if (it == std::end(kCheckNames)) {
      return r.Error("checks", "unknown check '" + n +
                                   "' (known: spike, flatline, rate, baseline, neighbors)");
    }
    bits |= 1u << (it - std::begin(kCheckNames));
  }
  return bits;
}
}  // namespace

const SectionSpec& QcSectionSpec() {
  static const SectionSpec spec{
      "qc",
      "Per-sensor quality control after zone enrichment and before the windows. Every check "
      "adds a flag (SPIKE, FLATLINE, RATE_OF_CHANGE, BASELINE_EXCEEDED, NEIGHBOR_DISAGREEMENT) "
      "and raises the reading's `qc_score` (≥ 1 when flagged); no reading is dropped or "
      "changed. The keys below are the defaults of every metric; built-in per-metric limits "
      "(rates of change, neighbour σ floors, no neighbour check for river and soil sensors, "
      "no baselines for weather metrics) come next, then `rules`. See README.md, Quality "
      "control.",
      {
          {"enabled", OptionType::kBool, "true", "Run the QC checks."},
          {"checks", OptionType::kStringList, "spike, flatline, rate, baseline, neighbors",
           "Checks that run (a rule may narrow them per metric or sensor type)."},
          {"spike_window", OptionType::kInt, "30", "Previous readings in the rolling median/MAD.",
           "8..1000"},
          {"spike_z", OptionType::kDouble, "6", "Robust z at or above which a reading is SPIKE.",
           "0.5.."},
          {"flatline_count", OptionType::kInt, "10",
           "Identical consecutive readings that make a FLATLINE.", "2..100000"},
          {"max_rate_per_min", OptionType::kDouble, "",
           "Limit of |Δvalue| per minute for metrics without a built-in one (empty: none)."},
          {"baseline_days", OptionType::kInt, "30",
           "Trailing days of the percentile baselines (seed 001: 30 days).", "1..366"},
          {"baseline_min_days", OptionType::kInt, "7",
           "Days with data at an hour of day before its baseline judges.", "1..366"},
          {"baseline_percentile", OptionType::kDouble, "0.99",
           "BASELINE_EXCEEDED above this trailing percentile of the same hour of day.",
           "0.5..0.9999"},
          {"baseline_time_zone", OptionType::kString, "UTC",
           "IANA time zone (`Europe/Berlin`) whose local hours of day and days the baselines "
           "are kept by, so that a rush hour keeps its baseline across daylight-saving "
           "changes."},
          {"baseline_keep", OptionType::kInt, "4",
           "Largest values kept per sensor, hour of day and day; exact while no day holds more "
           "of the window's top (1 − percentile) share.",
           "1..1000"},
          {"baseline_zone_keep", OptionType::kInt, "64",
           "Largest values kept per zone, metric, hour of day and day.", "1..10000"},
          {"baseline_zones", OptionType::kBool, "true",
           "Also judge readings against the baseline of their zone (first zone layer)."},
          {"neighbor_radius", OptionType::kDouble, "2000",
           "Radius in metres of the sensors a reading is compared with.", "10..100000"},
          {"neighbor_min", OptionType::kInt, "3",
           "Neighbours needed before NEIGHBOR_DISAGREEMENT can judge.", "2..1000"},
          {"neighbor_z", OptionType::kDouble, "6",
           "Robust z against the neighbours' median at or above which a reading disagrees.",
           "0.5.."},
          {"neighbor_min_sigma", OptionType::kDouble, "1",
           "Floor of the neighbours' robust σ (metric unit) for metrics without a built-in one.",
           "0.."},
          {"neighbor_max", OptionType::kInt, "32",
           "Most neighbours a reading is compared with: the nearest ones with a recent value "
           "(equal distances by device id). Bounds the cost in dense networks.",
           "2..100000"},
          {"neighbor_max_age", OptionType::kDuration, "15m",
           "Neighbours' latest values older (or newer) than this, in event time, do not count."},
          {"rules", OptionType::kSection, "",
           "List of overrides per metric and sensor type (`qc.rules[]`); every matching rule "
           "applies its keys in order."},
      }};
  return spec;
}

const SectionSpec& QcRuleSectionSpec() {
  static const SectionSpec spec{
      "qc.rules[]",
      "Limits for the readings a rule matches: by `metric`, by device id glob (`devices: "
      "\"ws-*\"`) and by the registry's `model`. Keys left out keep the value before the rule.",
      {
          {"metric", OptionType::kString, "", "Canonical metric (empty: every metric)."},
          {"devices", OptionType::kString, "", "Glob over device ids (empty: every device)."},
          {"model", OptionType::kString, "", "Device model from the registry (empty: any)."},
          {"checks", OptionType::kStringList, "", "Checks that run for the matched readings."},
          {"spike_window", OptionType::kInt, "", "See `qc`.", "8..1000"},
          {"spike_z", OptionType::kDouble, "", "See `qc`.", "0.5.."},
          {"flatline_count", OptionType::kInt, "", "See `qc`.", "2..100000"},
          {"max_rate_per_min", OptionType::kDouble, "", "Limit of |Δvalue| per minute.", "0.."},
          {"baseline_percentile", OptionType::kDouble, "", "See `qc`.", "0.5..0.9999"},
          {"neighbor_z", OptionType::kDouble, "", "See `qc`.", "0.5.."},
          {"neighbor_min_sigma", OptionType::kDouble, "", "See `qc`.", "0.."},
      }};
  return spec;
}

Result<QcOptions> ParseQcOptions(const PipelineConfig& config) {
  QcOptions o = DefaultQcOptions();
  const OptionReader& r = config.qc;
  TRIB_ASSIGN_OR_RETURN(o.enabled, r.GetBool("enabled"));
  TRIB_ASSIGN_OR_RETURN(uint32_t checks, ParseChecks(r));
  TRIB_ASSIGN_OR_RETURN(int64_t spike_window, r.GetInt("spike_window"));
  TRIB_ASSIGN_OR_RETURN(double spike_z, r.GetDouble("spike_z"));
  TRIB_ASSIGN_OR_RETURN(int64_t flatline, r.GetInt("flatline_count"));
  TRIB_ASSIGN_OR_RETURN(double percentile, r.GetDouble("baseline_percentile"));
  TRIB_ASSIGN_OR_RETURN(double neighbor_z, r.GetDouble("neighbor_z"));
  TRIB_ASSIGN_OR_RETURN(double neighbor_sigma, r.GetDouble("neighbor_min_sigma"));
  double rate = NAN;
  if (r.Has("max_rate_per_min")) {
    TRIB_ASSIGN_OR_RETURN(rate, r.GetDouble("max_rate_per_min"));
  }
  // The section's keys apply to every metric; the built-in metric limits keep their own
  // rates and σ floors, and drop the checks the section turns off.
  auto apply = [&](QcMetricLimits& l, bool builtin) {
    l.checks = builtin ? (l.checks & checks) : checks;
    l.spike_window = static_cast<size_t>(spike_window);
    l.spike_z = spike_z;
    l.flatline_count = static_cast<size_t>(flatline);
    l.baseline_percentile = percentile;
    l.neighbor_z = neighbor_z;
    if (!builtin) {
      l.max_rate_per_min = rate;
      l.neighbor_min_sigma = neighbor_sigma;
    }
  };
  apply(o.defaults, false);
  for (auto& [metric, l] : o.per_metric) apply(l, true);
  TRIB_ASSIGN_OR_RETURN(o.baseline_days, r.GetInt("baseline_days"));
  TRIB_ASSIGN_OR_RETURN(o.baseline_min_days, r.GetInt("baseline_min_days"));
  if (o.baseline_min_days > o.baseline_days) {
    return r.Error("baseline_min_days", "must not exceed baseline_days");
  }
  TRIB_ASSIGN_OR_RETURN(int64_t keep, r.GetInt("baseline_keep"));
  TRIB_ASSIGN_OR_RETURN(int64_t zone_keep, r.GetInt("baseline_zone_keep"));
  o.baseline_keep = static_cast<size_t>(keep);
  o.baseline_zone_keep = static_cast<size_t>(zone_keep);
  TRIB_ASSIGN_OR_RETURN(o.baseline_zones, r.GetBool("baseline_zones"));
  TRIB_ASSIGN_OR_RETURN(std::string tz, r.GetString("baseline_time_zone"));
  if (!tz.empty() && tz != "UTC") {
    Result<std::shared_ptr<const TimeZone>> zone = TimeZone::Load(tz);
    if (!zone.ok()) return r.Error("baseline_time_zone", zone.status().message());
    o.baseline_time_zone = std::move(zone).value();
  }
  TRIB_ASSIGN_OR_RETURN(o.neighbor_radius_m, r.GetDouble("neighbor_radius"));
  TRIB_ASSIGN_OR_RETURN(int64_t nmin, r.GetInt("neighbor_min"));
  o.neighbor_min = static_cast<size_t>(nmin);
  TRIB_ASSIGN_OR_RETURN(int64_t nmax, r.GetInt("neighbor_max"));
  if (nmax < nmin) return r.Error("neighbor_max", "must not be below neighbor_min");
  o.neighbor_max = static_cast<size_t>(nmax);
  TRIB_ASSIGN_OR_RETURN(o.neighbor_max_age, r.GetDuration("neighbor_max_age"));

  YAML::Node list = r.Node("rules");
  if (!list.IsDefined() || list.IsNull()) return o;
  if (!list.IsSequence()) return r.Error("rules", "expected a list (entries start with '- ')");
  size_t i = 0;
  for (const YAML::Node& item : list) {
    std::string path = "qc.rules[" + std::to_string(i++) + "]";
    OptionReader e(item, r.file(), path, {&QcRuleSectionSpec()});
    if (!item.IsMap()) return e.Error("", "expected a mapping");
    TRIB_RETURN_IF_ERROR(e.CheckKeys());
    QcRule rule;
    TRIB_ASSIGN_OR_RETURN(rule.metric, e.GetString("metric"));
    TRIB_ASSIGN_OR_RETURN(rule.devices, e.GetString("devices"));
    TRIB_ASSIGN_OR_RETURN(rule.model, e.GetString("model"));
    if (e.Has("checks")) {
      TRIB_ASSIGN_OR_RETURN(rule.checks, ParseChecks(e));
    }
    if (e.Has("spike_window")) {
      TRIB_ASSIGN_OR_RETURN(int64_t v, e.GetInt("spike_window"));
      rule.spike_window = static_cast<size_t>(v);
    }
    if (e.Has("spike_z")) {
      TRIB_ASSIGN_OR_RETURN(rule.spike_z, e.GetDouble("spike_z"));
    }
    if (e.Has("flatline_count")) {
      TRIB_ASSIGN_OR_RETURN(int64_t v, e.GetInt("flatline_count"));
      rule.flatline_count = static_cast<size_t>(v);
    }
    if (e.Has("max_rate_per_min")) {
      TRIB_ASSIGN_OR_RETURN(rule.max_rate_per_min, e.GetDouble("max_rate_per_min"));
    }
    if (e.Has("baseline_percentile")) {
      TRIB_ASSIGN_OR_RETURN(rule.baseline_percentile, e.GetDouble("baseline_percentile"));
    }
    if (e.Has("neighbor_z")) {
      TRIB_ASSIGN_OR_RETURN(rule.neighbor_z, e.GetDouble("neighbor_z"));
    }
    if (e.Has("neighbor_min_sigma")) {
      TRIB_ASSIGN_OR_RETURN(rule.neighbor_min_sigma, e.GetDouble("neighbor_min_sigma"));
    }
    o.rules.push_back(std::move(rule));
  }
  return o;
}

Result<std::unique_ptr<QcOperator>> MakeQcOperator(const PipelineConfig& config) {
  TRIB_ASSIGN_OR_RETURN(QcOptions options, ParseQcOptions(config));
  if (!options.enabled) return std::unique_ptr<QcOperator>();
  return std::make_unique<QcOperator>(std::move(options));
}

// ---------------------------------------------------------------------------------------
// The operator.

QcOperator::QcOperator(QcOptions options) : options_(std::move(options)) {}
QcOperator::~QcOperator() = default;

Status QcOperator::Open(RunContext& ctx) {
  (void)ctx;
  return Status::Ok();
}

QcOperator::KeyState& QcOperator::StateOf(const Reading& r) {
  if (r.metric.id >= sensor_index_.size()) sensor_index_.resize(r.metric.id + 1);
  std::vector<uint32_t>& by_device = sensor_index_[r.metric.id];
  if (r.device.id >= by_device.size()) by_device.resize(r.device.id + 1, 0);
  uint32_t& slot = by_device[r.device.id];
  if (slot != 0) return sensors_[slot - 1];
  KeyState& s = sensors_.emplace_back();
  slot = static_cast<uint32_t>(sensors_.size());
  s.key = PairKey(r.device.id, r.metric.id);
  std::string model = model_lookup_ ? model_lookup_(r.device) : std::string();
  s.limits = options_.Resolve(r.metric.view(), r.device.view(), model);
  s.recent.reserve(s.limits.spike_window);
  s.recent_sorted.reserve(s.limits.spike_window);
  return s;
}

float QcOperator::Check(Reading& r) {
  if (!std::isfinite(r.value)) return 0.0f;
  KeyState& s = StateOf(r);
  const QcMetricLimits& lim = s.limits;
  double score = 0.0;

  // Spike against the previous readings (the current one is not part of its baseline).
  if (lim.Has(QcCheck::kSpike) && s.recent.size() >= kMinSpikeHistory) {
    auto refresh = [&] {
      const std::vector<double>& sorted = s.recent_sorted;
      // A constant history has MAD 0: any departure then counts as infinitely far, which
      // a flatline ending is not; use a small floor relative to the level instead.
      const double level = std::max(std::fabs(sorted.front()), std::fabs(sorted.back()));
      s.spike_median = SortedMedian(sorted);
      s.spike_sigma = std::max(kMadToSigma * SortedMedianDeviation(sorted, s.spike_median),
                               1e-6 * std::max(1.0, level));
      s.spike_age = 0;
    };
    if (s.spike_age >= kSpikeRefresh || !std::isfinite(s.spike_sigma)) refresh();
    double z = std::fabs(r.value - s.spike_median) / s.spike_sigma;
    if (z >= kExactFraction * lim.spike_z && s.spike_age > 0) {
      refresh();
      z = std::fabs(r.value - s.spike_median) / s.spike_sigma;
    }
    ++s.spike_age;
    if (z >= lim.spike_z) r.flags.Set(QcFlag::kSpike);
    score = std::max(score, z / lim.spike_z);
  }

  // Flatline: exact repeats of the previous value.
  if (s.run_length > 0 && r.value == s.last_value) {
    ++s.run_length;
  } else {
    s.run_length = 1;
  }
  if (lim.Has(QcCheck::kFlatline) && lim.flatline_count > 1) {
    if (s.run_length >= lim.flatline_count) r.flags.Set(QcFlag::kFlatline);
    score = std::max(
        score, static_cast<double>(s.run_length - 1) / static_cast<double>(lim.flatline_count - 1));
  }

  // Rate of change in event time, only forward in time.
  if (lim.Has(QcCheck::kRate) && std::isfinite(lim.max_rate_per_min) && s.last_time != 0 &&
      r.event_time > s.last_time && std::isfinite(s.last_value)) {
    double minutes =
        static_cast<double>(r.event_time - s.last_time) / static_cast<double>(kMicrosPerMinute);
    double rate = std::fabs(r.value - s.last_value) / minutes;
    if (rate > lim.max_rate_per_min) r.flags.Set(QcFlag::kRateOfChange);
    score = std::max(score, rate / lim.max_rate_per_min);
  }

  const bool keep_history = (r.flags.bits & kExcludedFromHistory) == 0;
  // Local day and hour of the baselines' time zone (UTC: none to add).
  const TimeUs local = r.event_time + BaselineOffset(r.event_time);
  const int64_t day = FloorDiv(local, kMicrosPerDay);
  const int hour = static_cast<int>(FloorDiv(local, kMicrosPerHour) - day * kHoursPerDay);

  // Trailing percentile baselines of the sensor and of its zone at this hour of day.
  if (lim.Has(QcCheck::kBaseline)) {
    auto judge = [&](Baseline& b) {
      double threshold = b.Threshold(options_, day, hour, lim.baseline_percentile, scratch2_);
      if (std::isfinite(threshold) && r.value > threshold) {
        r.flags.Set(QcFlag::kBaselineExceeded);
        score = std::max(score, 1.0 + (r.value - threshold) / std::max(std::fabs(threshold), 1e-9));
      }
      if (keep_history) b.Add(options_, day, hour, r.value);
    };
    if (!s.baseline) s.baseline = std::make_unique<Baseline>(options_.baseline_keep);
    judge(*s.baseline);
    if (options_.baseline_zones && r.zone) {
      if (s.zone_baseline == nullptr || s.zone_id != r.zone.id) {
        std::unique_ptr<Baseline>& z = zones_[PairKey(r.zone.id, r.metric.id)];
        if (!z) z = std::make_unique<Baseline>(options_.baseline_zone_keep);
        s.zone_baseline = z.get();
        s.zone_id = r.zone.id;
      }
      judge(*s.zone_baseline);
    }
  }

  // Disagreement with the latest values of the neighbours.
  if (lim.Has(QcCheck::kNeighbors) && std::isfinite(r.lat) && std::isfinite(r.lon)) {
    if (s.grid == nullptr) {
      std::unique_ptr<NeighborGrid>& g = grids_[r.metric.id];
      if (!g) g = std::make_unique<NeighborGrid>(options_.neighbor_radius_m, r.lat);
      s.grid = g.get();
    }
    NeighborGrid* g = s.grid;
    double x = 0, y = 0;
    g->Project(r.lat, r.lon, x, y);
    // The sensors within the radius change only when one appears or moves.
    if (s.neighbors_gen != g->generation) {
      g->Within(r.device.id, x, y, options_.neighbor_radius_m, s.neighbors);
      s.neighbors_gen = g->generation;
    }
    auto refresh = [&] {
      scratch_.clear();
      const TimeUs lo = r.event_time - options_.neighbor_max_age;
      const TimeUs hi = r.event_time + options_.neighbor_max_age;
      // The nearest neighbours with a recent value, at most neighbor_max of them.
      for (uint32_t idx : s.neighbors) {
        const NeighborGrid::Entry& e = g->entries[idx];
        if (e.time < lo || e.time > hi) continue;
        scratch_.push_back(e.value);
        if (scratch_.size() >= options_.neighbor_max) break;
      }
      s.nb_count = static_cast<uint32_t>(scratch_.size());
      s.nb_age = 0;
      if (scratch_.size() < options_.neighbor_min) return;
      s.nb_median = MedianInPlace(scratch_);
      for (double& e : scratch_) e = std::fabs(e - s.nb_median);
      s.nb_sigma = std::max(kMadToSigma * MedianInPlace(scratch_), lim.neighbor_min_sigma);
    };
    if (s.nb_age >= kNeighborRefresh || s.nb_count == 0) refresh();
    if (s.nb_count >= options_.neighbor_min) {
      double z = std::fabs(r.value - s.nb_median) / s.nb_sigma;
      if (z >= kExactFraction * lim.neighbor_z && s.nb_age > 0) {
        refresh();
        z = s.nb_count >= options_.neighbor_min ? std::fabs(r.value - s.nb_median) / s.nb_sigma
                                                : 0.0;
      }
      if (z >= lim.neighbor_z) r.flags.Set(QcFlag::kNeighborDisagreement);
      score = std::max(score, z / lim.neighbor_z);
    }
    ++s.nb_age;
    if (keep_history) {
      uint64_t before = g->generation;
      // This sensor's own arrival changes no list of its own neighbours (a move does).
      if (s.grid_entry != UINT32_MAX) {
        g->UpdateAt(s.grid_entry, x, y, r.value, r.event_time);
      } else {
        if (g->Update(r.device.id, x, y, r.value, r.event_time) && s.neighbors_gen == before) {
          s.neighbors_gen = g->generation;
        }
        s.grid_entry = g->index.at(r.device.id);
      }
    }
  }

  s.last_value = r.value;
  if (r.event_time > s.last_time) s.last_time = r.event_time;
  if (lim.Has(QcCheck::kSpike)) {
    if (s.recent.size() < lim.spike_window) {
      s.recent.push_back(r.value);
      SortedInsert(s.recent_sorted, r.value);
    } else if (!s.recent.empty()) {
      SortedErase(s.recent_sorted, s.recent[s.recent_next]);
      SortedInsert(s.recent_sorted, r.value);
      s.recent[s.recent_next] = r.value;
      s.recent_next = (s.recent_next + 1) % s.recent.size();
    }
  }
  return static_cast<float>(score);
}

int64_t QcOperator::BaselineOffset(TimeUs t) {
  if (!options_.baseline_time_zone) return 0;
  const int64_t slot = FloorDiv(t, 15 * kMicrosPerMinute);
  if (slot != offset_slot_) {
    offset_slot_ = slot;
    const int64_t slot_start_s = slot * 15 * 60;
    offset_us_ = int64_t{options_.baseline_time_zone->OffsetAt(slot_start_s)} * kMicrosPerSecond;
  }
  return offset_us_;
}

Status QcOperator::Process(Batch& batch) {
  for (Reading& r : batch.readings) r.qc_score = std::max(r.qc_score, Check(r));
  return Status::Ok();
}

Status QcOperator::Finish(Batch& out) {
  (void)out;
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------
// Checkpoints. Limits are not stored: they are resolved again from the configuration,
// which a restore requires to be the one the checkpoint was taken with.

Status QcOperator::Snapshot(CheckpointWriter& out) const {
  out.Section("qc");
  out.U64(sensors_.size());
  for (const KeyState& s : sensors_) {
    out.U64(s.key);
    out.U64(s.recent.size());
    for (double v : s.recent) out.F64(v);
    out.U64(s.recent_next);
    out.F64(s.last_value);
    out.I64(s.last_time);
    out.U64(s.run_length);
    out.F64(s.spike_median);
    out.F64(s.spike_sigma);
    out.U64(s.spike_age);
    out.F64(s.nb_median);
    out.F64(s.nb_sigma);
    out.U64(s.nb_count);
    out.U64(s.nb_age);
    out.Bool(s.baseline != nullptr);
    if (s.baseline) s.baseline->Encode(out);
  }
  out.U64(zones_.size());
  for (const auto& [key, b] : zones_) {
    out.U64(key);
    b->Encode(out);
  }
  out.U64(grids_.size());
  for (const auto& [metric, g] : grids_) {
    out.U64(metric);
    out.F64(g->lat0);
    out.U64(g->entries.size());
    for (const NeighborGrid::Entry& e : g->entries) {
      out.U64(e.device);
      out.F64(e.x);
      out.F64(e.y);
      out.F64(e.value);
      out.I64(e.time);
    }
  }
  return Status::Ok();
}

Status QcOperator::Restore(CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("qc"));
  sensors_.clear();
  sensor_index_.clear();
  zones_.clear();
  grids_.clear();
  uint64_t n = in.Count();
  for (uint64_t i = 0; i < n && in.ok(); ++i) {
    uint64_t key = in.U64();
    // Symbol ids through the reader's map: the state may come from another process.
    Reading probe;
    probe.device = Symbol{in.SymId(key >> 32)};
    probe.metric = Symbol{in.SymId(key & 0xffffffffu)};
    if (!in.ok()) break;
    KeyState& s = StateOf(probe);
    s.recent.resize(static_cast<size_t>(in.Count()));
    for (double& v : s.recent) v = in.F64();
    s.recent_sorted = s.recent;
    std::sort(s.recent_sorted.begin(), s.recent_sorted.end());
    s.recent_next = static_cast<size_t>(in.U64());
    if (!s.recent.empty()) s.recent_next %= s.recent.size();
    s.last_value = in.F64();
    s.last_time = in.I64();
    s.run_length = static_cast<size_t>(in.U64());
    s.spike_median = in.F64();
    s.spike_sigma = in.F64();
    s.spike_age = static_cast<uint32_t>(in.U64());
    s.nb_median = in.F64();
    s.nb_sigma = in.F64();
    s.nb_count = static_cast<uint32_t>(in.U64());
    s.nb_age = static_cast<uint32_t>(in.U64());
    if (in.Bool()) s.baseline = Baseline::Decode(in);
  }
  n = in.Count();
  for (uint64_t i = 0; i < n && in.ok(); ++i) {
    const uint64_t stored = in.U64();
    const uint64_t key =
        (static_cast<uint64_t>(in.SymId(stored >> 32)) << 32) | in.SymId(stored & 0xffffffffu);
    zones_[key] = Baseline::Decode(in);
  }
  n = in.Count();
  for (uint64_t i = 0; i < n && in.ok(); ++i) {
    const uint32_t metric = in.SymId(in.U64());
    double lat0 = in.F64();
    auto g = std::make_unique<NeighborGrid>(options_.neighbor_radius_m, lat0);
    uint64_t entries = in.Count();
    for (uint64_t k = 0; k < entries && in.ok(); ++k) {
      const uint32_t device = in.SymId(in.U64());
      double x = in.F64();
      double y = in.F64();
      double value = in.F64();
      TimeUs t = in.I64();
      g->Update(device, x, y, value, t);
    }
    grids_[metric] = std::move(g);
  }
  return in.status();
}

}  // namespace tributary
