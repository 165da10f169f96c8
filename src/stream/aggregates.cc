#include "stream/aggregates.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "stream/checkpoint.h"

namespace tributary {
namespace {

// Add x to the expansion p[0..n) in place (Shewchuk's grow-expansion with zero
// elimination, as in Python's msum). p must have room for n + 1 doubles. The
// expansion stays non-overlapping with increasing magnitudes; returns its new size.
// Each step is Knuth's TwoSum, which needs no ordering of the operands by magnitude:
// hi = fl(x + y) and lo is the exact rounding error, the same two doubles the
// order-then-Fast2Sum form gives, so the expansion (and its checkpoint) is unchanged.
// Without the data-dependent swap and with the zero test folded into the index, the
// loop has no branch to mispredict.
size_t GrowExpansion(double* p, size_t n, double x) {
  size_t i = 0;
  for (size_t j = 0; j < n; ++j) {
    const double y = p[j];
    const double hi = x + y;
    const double b = hi - x;
    const double lo = (x - (hi - b)) + (y - b);
    p[i] = lo;  // i <= j: p[j] was read already
    i += lo != 0.0 ? 1 : 0;
    x = hi;
  }
  p[i] = x;
  i += x != 0.0 ? 1 : 0;
  return i;
}

// a * b == p + e exactly (barring overflow/underflow).
inline void TwoProduct(double a, double b, double& p, double& e) {
  p = a * b;
#if defined(__FMA__) || defined(__aarch64__)
  e = std::fma(a, b, -p);
#else
  // Dekker's product with Veltkamp's split; exact for |a|, |b| < 2^996.
  constexpr double kSplit = 134217729.0;  // 2^27 + 1
  double ca = kSplit * a;
  double ah = ca - (ca - a);
  double al = a - ah;
  double cb = kSplit * b;
  double bh = cb - (cb - b);
  double bl = b - bh;
  e = ((ah * bh - p) + ah * bl + al * bh) + al * bl;
#endif
}

// A total order on finite doubles that puts -0.0 before +0.0, so min/max/first/last
// do not depend on the order of equal values of different sign. A function object, so
// std::sort and std::nth_element inline it (a function pointer is called per compare).
constexpr auto Before = [](double a, double b) {
  return a < b || (a == b && std::signbit(a) && !std::signbit(b));
};

constexpr AggregateInfo kAggregates[] = {
    {AggregateKind::kCount, "count", true, "number of readings (sample_count); always computed"},
    {AggregateKind::kMean, "mean", true, "arithmetic mean (exact sum, rounded once)"},
    {AggregateKind::kMin, "min", true, "smallest value"},
    {AggregateKind::kMax, "max", true, "largest value"},
    {AggregateKind::kStd, "std", true,
     "sample standard deviation (n − 1); NaN for fewer than 2 readings"},
    {AggregateKind::kFirst, "first", true, "value at the earliest event time; always computed"},
    {AggregateKind::kLast, "last", true, "value at the latest event time; always computed"},
    {AggregateKind::kDistinctSensors, "distinct_sensors", true,
     "number of distinct devices; always computed"},
    {AggregateKind::kCentroid, "centroid", true,
     "mean latitude/longitude of the readings with a position; always computed"},
    {AggregateKind::kMedian, "median", true, "exact median (type-7 quantile 0.5; also p50/q50)"},
    {AggregateKind::kP95, "p95", true, "exact 95th percentile (type-7; also q95)"},
    {AggregateKind::kQuantile, "q<NN>", true,
     "any other exact quantile, written q<NN> or p<NN> with NN in 0..100 (e.g. p90, q99.9); "
     "in the quantiles column as (q, value) pairs"},
    {AggregateKind::kTrimmedMean, "trimmed_mean", true,
     "exact mean of the values between the 10th and 90th percentiles (inclusive)"},
    {AggregateKind::kLateCount, "late_count", true,
     "readings taken after the watermark passed the window end (late_arrival_count); always "
     "computed"},
    {AggregateKind::kNowCast, "nowcast", true,
     "EPA NowCast of the key's last 12 hourly means (1 h tumbling windows only; PM weight "
     "floor 0.5; NaN unless 2 of the 3 most recent hours are present)"},
    {AggregateKind::kAqi, "aqi", true,
     "US EPA AQI (2024 breakpoints) of the NowCast for pm25 and pm10 (1 h tumbling windows "
     "only; NaN for other metrics)"},
};

std::string NameList(bool supported) {
  std::string out;
  for (const AggregateInfo& a : kAggregates) {
    if (a.supported != supported) continue;
    if (!out.empty()) out += ", ";
    out += a.name;
  }
  return out;
}

}  // namespace

double ParseQuantileName(std::string_view name) {
  if (name.size() < 2 || (name[0] != 'q' && name[0] != 'p')) return -1;
  const std::string_view digits = name.substr(1);
  const size_t dot = digits.find('.');
  const std::string_view whole = digits.substr(0, dot);
  const std::string_view frac =
      dot == std::string_view::npos ? std::string_view() : digits.substr(dot + 1);
  auto all_digits = [](std::string_view t) {
    return std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (whole.empty() || whole.size() > 3 || !all_digits(whole) || !all_digits(frac) ||
      (dot != std::string_view::npos && frac.empty())) {
    return -1;
  }
  if (whole.size() == 3) {
    const bool zero_frac = std::all_of(frac.begin(), frac.end(), [](char c) { return c == '0'; });
    return whole == "100" && zero_frac ? 1.0 : -1;
  }
  // Shift the decimal point two places as text, so p99.9 is the double nearest 0.999.
  std::string text = "0.";
  if (whole.size() == 1) text += '0';
  text += whole;
  text += frac;
  return std::strtod(text.c_str(), nullptr);
}

double SelectQuantile(std::vector<double>& values, double q) {
  const size_t n = values.size();
  if (n == 0) return NAN;
  const double h = static_cast<double>(n - 1) * q;
  const auto lo = static_cast<size_t>(std::floor(h));
  const double frac = h - static_cast<double>(lo);
  auto nth = values.begin() + static_cast<ptrdiff_t>(lo);
  std::nth_element(values.begin(), nth, values.end(), Before);
  const double a = *nth;
  if (frac == 0.0 || lo + 1 >= n) return a;
  const double b = *std::min_element(nth + 1, values.end(), Before);
  return a + frac * (b - a);
}

double SortedQuantile(std::span<const double> sorted, double q) {
  const size_t n = sorted.size();
  if (n == 0) return NAN;
  const double h = static_cast<double>(n - 1) * q;
  const auto lo = static_cast<size_t>(std::floor(h));
  const double frac = h - static_cast<double>(lo);
  const double a = sorted[lo];
  if (frac == 0.0 || lo + 1 >= n) return a;
  return a + frac * (sorted[lo + 1] - a);
}

// ---------------------------------------------------------------------------
// ExactSum

ExactSum::ExactSum(const ExactSum& other) : size_(other.size_) {
  std::copy(std::begin(other.inline_), std::end(other.inline_), inline_);
  if (other.spill_) spill_ = std::make_unique<std::vector<double>>(*other.spill_);
}

ExactSum& ExactSum::operator=(const ExactSum& other) {
  if (this != &other) {
    ExactSum copy(other);
    *this = std::move(copy);
  }
  return *this;
}

ExactSum::ExactSum(ExactSum&& other) noexcept
    : size_(other.size_), spill_(std::move(other.spill_)) {
  std::copy(std::begin(other.inline_), std::end(other.inline_), inline_);
  other.size_ = 0;
}

ExactSum& ExactSum::operator=(ExactSum&& other) noexcept {
  if (this != &other) {
    std::copy(std::begin(other.inline_), std::end(other.inline_), inline_);
    size_ = other.size_;
    spill_ = std::move(other.spill_);
    other.size_ = 0;
  }
  return *this;
}

void ExactSum::Add(double x) {
  // The common case, kept small so it inlines into WindowAccumulator::Add.
  if (!spill_ && size_ < kInline) {
    size_ = static_cast<uint32_t>(GrowExpansion(inline_, size_, x));
    return;
  }
  AddSlow(x);
}

void ExactSum::AddSlow(double x) {
  if (spill_) {
    spill_->push_back(0.0);  // room for one more partial
    size_ = static_cast<uint32_t>(GrowExpansion(spill_->data(), size_, x));
    spill_->resize(size_);
    return;
  }
  // Inline storage is full: grow in a buffer one longer (fixed-size copies).
  double tmp[kInline + 1] = {};
  std::memcpy(tmp, inline_, sizeof inline_);
  size_t n = GrowExpansion(tmp, size_, x);
  if (n <= kInline) {
    std::memcpy(inline_, tmp, sizeof inline_);
  } else {
    spill_ = std::make_unique<std::vector<double>>(tmp, tmp + n);
  }
  size_ = static_cast<uint32_t>(n);
}

void ExactSum::Add(const ExactSum& other) {
  if (&other == this) {
    ExactSum copy(other);
    Add(copy);
    return;
  }
  for (double p : other.partials()) Add(p);
}

std::span<const double> ExactSum::partials() const {
  if (spill_) return {spill_->data(), size_};
  return {inline_, size_};
}

double ExactSum::Value() const {
  return RoundExpansion(partials());
}

size_t ExactSum::HeapBytes() const {
  return spill_ ? sizeof(std::vector<double>) + spill_->capacity() * sizeof(double) : 0;
}

double RoundExpansion(std::span<const double> p) {
  // Python's fsum read-out: sum from the top while exact, then fix the half-even
  // case that spans several partials, which makes the result correctly rounded and
  // therefore independent of how the expansion was built.
  size_t n = p.size();
  if (n == 0) return 0.0;
  double hi = p[--n];
  double lo = 0.0;
  while (n > 0) {
    double x = hi;
    double y = p[--n];
    hi = x + y;
    double yr = hi - x;
    lo = y - yr;
    if (lo != 0.0) break;
  }
  if (n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0))) {
    double y = lo * 2.0;
    double x = hi + y;
    double yr = x - hi;
    if (y == yr) hi = x;
  }
  return hi;
}

void AddToExpansion(std::vector<double>& partials, double x) {
  size_t n = partials.size();
  partials.push_back(0.0);
  partials.resize(GrowExpansion(partials.data(), n, x));
}

// ---------------------------------------------------------------------------
// Aggregate names

std::span<const AggregateInfo> AggregateTable() {
  return kAggregates;
}

Result<AggregateSet> ParseAggregates(const std::vector<std::string>& names) {
  AggregateSet set;
  set.Add(AggregateKind::kCount);
  for (const std::string& name : names) {
    const AggregateInfo* found = nullptr;
    for (const AggregateInfo& a : kAggregates) {
      if (a.name == name) found = &a;
    }
    if (found == nullptr) {
      const double q = ParseQuantileName(name);
      if (q >= 0) {
        if (q == 0.5) {
          set.Add(AggregateKind::kMedian);
        } else if (q == 0.95) {
          set.Add(AggregateKind::kP95);
        } else {
          set.Add(AggregateKind::kQuantile);
          auto it = std::lower_bound(set.quantiles.begin(), set.quantiles.end(), q);
          if (it == set.quantiles.end() || *it != q) set.quantiles.insert(it, q);
        }
        continue;
      }
      return Status::Invalid("unknown aggregate '" + name + "' (supported: " + NameList(true) +
                             (NameList(false).empty() ? "" : "; planned: " + NameList(false)) +
                             ")");
    }
    if (!found->supported) {
      return Status::Invalid("aggregate '" + name +
                             "' is not supported yet (supported: " + NameList(true) + ")");
    }
    if (found->kind == AggregateKind::kQuantile) {
      return Status::Invalid("write a quantile as q<NN> or p<NN>, e.g. p90 (got '" + name + "')");
    }
    set.Add(found->kind);
  }
  return set;
}

std::string_view AggregationMethodName(const AggregateSet& set) {
  if (set.Has(AggregateKind::kNowCast)) return "nowcast";
  if (set.Has(AggregateKind::kMean)) return "mean";
  if (set.Has(AggregateKind::kTrimmedMean)) return "trimmed_mean_10_90";
  if (set.Has(AggregateKind::kMedian)) return "median";
  if (set.Has(AggregateKind::kP95)) return "p95";
  if (set.Has(AggregateKind::kStd)) return "std";
  if (set.Has(AggregateKind::kMin)) return "min";
  if (set.Has(AggregateKind::kMax)) return "max";
  return "count";
}

// ---------------------------------------------------------------------------
// WindowAccumulator

bool WindowAccumulator::Add(const Reading& r, bool keep_value, bool keep_sample) {
  const double v = r.value;
  if (!std::isfinite(v)) return false;
  if (keep_sample) {
    if (!samples_) samples_ = std::make_unique<std::vector<Sample>>();
    samples_->push_back(Sample{r.device.id, r.event_time, v, r.lat, r.lon});
  }
  if (keep_value) {
    if (!values_) values_ = std::make_unique<std::vector<double>>();
    values_->push_back(v);
  }
  if (count_ == 0) {
    min_ = max_ = first_ = last_ = v;
    first_time_ = last_time_ = r.event_time;
    device_ = r.device;
  } else {
    if (Before(v, min_)) min_ = v;
    if (Before(max_, v)) max_ = v;
    if (r.event_time < first_time_ || (r.event_time == first_time_ && Before(v, first_))) {
      first_time_ = r.event_time;
      first_ = v;
    }
    if (r.event_time > last_time_ || (r.event_time == last_time_ && Before(last_, v))) {
      last_time_ = r.event_time;
      last_ = v;
    }
    if (r.device != device_) AddDevice(r.device);
  }
  ++count_;
  sum_.Add(v);
  double sq = 0, sq_err = 0;
  TwoProduct(v, v, sq, sq_err);
  sum_sq_.Add(sq);
  if (sq_err != 0.0) sum_sq_.Add(sq_err);
  if (std::isfinite(r.lat) && std::isfinite(r.lon)) {
    ++positions_;
    // A fixed station repeats its position: count the run, add it once as x·k.
    if (run_ > 0 && r.lat == run_lat_ && r.lon == run_lon_) {
      ++run_;
    } else {
      FlushPositionRun();
      run_lat_ = r.lat;
      run_lon_ = r.lon;
      run_ = 1;
    }
  }
  return true;
}

void WindowAccumulator::AddMultiple(ExactSum& sum, double x, uint64_t k) {
  if (k == 1) {
    sum.Add(x);
    return;
  }
  // x·k is exactly hi + lo (k < 2^53 is exact as a double).
  double hi = 0, lo = 0;
  TwoProduct(x, static_cast<double>(k), hi, lo);
  sum.Add(hi);
  if (lo != 0.0) sum.Add(lo);
}

void WindowAccumulator::FlushPositionRun() {
  if (run_ == 0) return;
  AddMultiple(lat_, run_lat_, run_);
  AddMultiple(lon_, run_lon_, run_);
  run_ = 0;
}

double WindowAccumulator::PositionMean(const ExactSum& sum, double run_value) const {
  if (positions_ == 0) return NAN;
  if (run_ == 0) return sum.Value() / static_cast<double>(positions_);
  ExactSum total = sum;
  AddMultiple(total, run_value, run_);
  return total.Value() / static_cast<double>(positions_);
}

void WindowAccumulator::AddDevice(Symbol device) {
  if (device == device_) return;
  if (!more_devices_) more_devices_ = std::make_unique<std::vector<uint32_t>>();
  auto it = std::lower_bound(more_devices_->begin(), more_devices_->end(), device.id);
  if (it == more_devices_->end() || *it != device.id) more_devices_->insert(it, device.id);
}

void WindowAccumulator::Devices(std::vector<uint32_t>& out) const {
  out.clear();
  if (count_ == 0) return;
  out.push_back(device_.id);
  if (more_devices_) out.insert(out.end(), more_devices_->begin(), more_devices_->end());
}

void WindowAccumulator::Merge(const WindowAccumulator& other) {
  if (other.count_ == 0) return;
  if (count_ == 0) {
    min_ = other.min_;
    max_ = other.max_;
    first_time_ = other.first_time_;
    first_ = other.first_;
    last_time_ = other.last_time_;
    last_ = other.last_;
    device_ = other.device_;
  } else {
    if (Before(other.min_, min_)) min_ = other.min_;
    if (Before(max_, other.max_)) max_ = other.max_;
    if (other.first_time_ < first_time_ ||
        (other.first_time_ == first_time_ && Before(other.first_, first_))) {
      first_time_ = other.first_time_;
      first_ = other.first_;
    }
    if (other.last_time_ > last_time_ ||
        (other.last_time_ == last_time_ && Before(last_, other.last_))) {
      last_time_ = other.last_time_;
      last_ = other.last_;
    }
    AddDevice(other.device_);
  }
  if (other.more_devices_) {
    for (uint32_t id : *other.more_devices_) AddDevice(Symbol{id});
  }
  if (other.values_) {
    if (!values_) values_ = std::make_unique<std::vector<double>>();
    values_->insert(values_->end(), other.values_->begin(), other.values_->end());
  }
  if (other.samples_) {
    if (!samples_) samples_ = std::make_unique<std::vector<Sample>>();
    samples_->insert(samples_->end(), other.samples_->begin(), other.samples_->end());
  }
  count_ += other.count_;
  positions_ += other.positions_;
  FlushPositionRun();
  if (other.run_ > 0) {
    AddMultiple(lat_, other.run_lat_, other.run_);
    AddMultiple(lon_, other.run_lon_, other.run_);
  }
  sum_.Add(other.sum_);
  sum_sq_.Add(other.sum_sq_);
  lat_.Add(other.lat_);
  lon_.Add(other.lon_);
}

void WindowAccumulator::Fill(const AggregateSet& set, WindowResult& out) const {
  out.count = count_;
  if (count_ == 0) return;
  const double n = static_cast<double>(count_);
  const double mean = sum_.Value() / n;
  if (set.Has(AggregateKind::kMean)) out.mean = mean;
  if (set.Has(AggregateKind::kMin)) out.min = min_;
  if (set.Has(AggregateKind::kMax)) out.max = max_;
  if (set.Has(AggregateKind::kStd) && count_ >= 2) {
    // Σ(x − mean)² = Σx² − 2·mean·Σx + n·mean², every term exact, rounded once.
    std::vector<double> m2(sum_sq_.partials().begin(), sum_sq_.partials().end());
    double hi = 0, lo = 0;
    for (double s : sum_.partials()) {
      TwoProduct(-2.0 * mean, s, hi, lo);
      AddToExpansion(m2, hi);
      AddToExpansion(m2, lo);
    }
    double mm = 0, mm_err = 0;
    TwoProduct(mean, mean, mm, mm_err);
    TwoProduct(n, mm, hi, lo);
    AddToExpansion(m2, hi);
    AddToExpansion(m2, lo);
    TwoProduct(n, mm_err, hi, lo);
    AddToExpansion(m2, hi);
    AddToExpansion(m2, lo);
    double sum_sq_dev = std::max(0.0, RoundExpansion(m2));
    out.std = std::sqrt(sum_sq_dev / (n - 1.0));
  }
  out.first = first_;
  out.last = last_;
  if (positions_ > 0) {
    out.centroid_lat = centroid_lat();
    out.centroid_lon = centroid_lon();
  }
  out.distinct_sensors =
      1 + (more_devices_ ? static_cast<uint32_t>(more_devices_->size()) : uint32_t{0});
  if (values_ && !values_->empty()) {
    std::vector<double>& v = *values_;
    // One selection per quantile costs a pass over the values each (two for
    // trimmed_mean); with more than two asked for, one sort is cheaper and every
    // quantile is then read off by rank. Both give the same type-7 values.
    const size_t selections = set.Has(AggregateKind::kMedian) + set.Has(AggregateKind::kP95) +
                              set.quantiles.size() + 2 * set.Has(AggregateKind::kTrimmedMean);
    if (selections > 2) std::sort(v.begin(), v.end(), Before);
    auto quantile = [&](double q) {
      return selections > 2 ? SortedQuantile(v, q) : SelectQuantile(v, q);
    };
    if (set.Has(AggregateKind::kMedian)) out.median = quantile(0.5);
    if (set.Has(AggregateKind::kP95)) out.p95 = quantile(0.95);
    out.quantiles.clear();
    for (double q : set.quantiles) out.quantiles.emplace_back(q, quantile(q));
    if (set.Has(AggregateKind::kTrimmedMean)) {
      const double lo = quantile(0.10);
      const double hi = quantile(0.90);
      // The values kept are about 80 % of them: when the stored values are exactly
      // the ones summed (always, unless a restored state says otherwise), subtracting
      // the trimmed ones from the exact total gives the same exact sum for a quarter
      // of the additions. Both sums are exact, so the rounded mean is identical.
      const bool from_total = v.size() == count_;
      ExactSum kept;
      uint64_t m = 0;
      for (double x : v) {
        const bool in = x >= lo && x <= hi;
        m += in;
        if (in != from_total) kept.Add(from_total ? -x : x);
      }
      if (from_total) kept.Add(sum_);
      out.trimmed_mean = m > 0 ? kept.Value() / static_cast<double>(m) : NAN;
    }
  }
}

WindowAccumulator WindowAccumulator::Resample(TimeUs start, TimeUs end, DurationUs interval,
                                              ResampleMode mode, bool keep_values,
                                              uint64_t& interpolated) const {
  WindowAccumulator grid;
  interpolated = 0;
  if (!samples_ || samples_->empty() || interval <= 0 || end <= start) return grid;
  // Sorted by (device, time, value) the samples give the same grid in any arrival
  // order; each point's mean is an exact sum rounded once.
  std::vector<Sample> s = *samples_;
  std::sort(s.begin(), s.end(), [](const Sample& a, const Sample& b) {
    if (a.device != b.device) return a.device < b.device;
    if (a.time != b.time) return a.time < b.time;
    return Before(a.value, b.value);
  });
  const auto points = static_cast<size_t>((end - start + interval - 1) / interval);
  std::vector<ExactSum> sums(points);
  std::vector<uint32_t> counts(points);
  std::vector<double> value(points);
  for (size_t begin = 0; begin < s.size();) {
    size_t stop = begin;
    while (stop < s.size() && s[stop].device == s[begin].device) ++stop;
    std::fill(counts.begin(), counts.end(), 0);
    for (ExactSum& x : sums) x = ExactSum();
    for (size_t i = begin; i < stop; ++i) {
      const int64_t k = std::clamp<int64_t>(FloorDiv(s[i].time - start, interval), 0,
                                            static_cast<int64_t>(points) - 1);
      sums[static_cast<size_t>(k)].Add(s[i].value);
      ++counts[static_cast<size_t>(k)];
    }
    Reading r;
    r.device = Symbol{s[begin].device};
    r.lat = s[begin].lat;  // the sensor's earliest position in the window
    r.lon = s[begin].lon;
    size_t prev = points;  // the latest observed point so far; `points`: none yet
    for (size_t k = 0; k < points; ++k) {
      if (counts[k] > 0) {
        value[k] = sums[k].Value() / counts[k];
      } else if (prev == points) {
        continue;  // before the sensor's first observation: stays empty
      } else {
        size_t next = k + 1;
        if (mode == ResampleMode::kLinear) {
          while (next < points && counts[next] == 0) ++next;
        }
        if (mode == ResampleMode::kLinear && next < points) {
          if (counts[next] > 0 && next > k) {
            const double b = sums[next].Value() / counts[next];
            const double f = static_cast<double>(k - prev) / static_cast<double>(next - prev);
            value[k] = value[prev] + f * (b - value[prev]);
          }
        } else {
          value[k] = value[prev];
        }
        ++interpolated;
        r.event_time = start + static_cast<TimeUs>(k) * interval;
        r.value = value[k];
        grid.Add(r, keep_values);
        continue;  // a filled point is not an observation: `prev` stays
      }
      prev = k;
      r.event_time = start + static_cast<TimeUs>(k) * interval;
      r.value = value[k];
      grid.Add(r, keep_values);
    }
    begin = stop;
  }
  return grid;
}

double WindowAccumulator::mean() const {
  return count_ > 0 ? sum_.Value() / static_cast<double>(count_) : NAN;
}

double WindowAccumulator::centroid_lat() const {
  return PositionMean(lat_, run_lat_);
}

double WindowAccumulator::centroid_lon() const {
  return PositionMean(lon_, run_lon_);
}

size_t WindowAccumulator::HeapBytes() const {
  size_t bytes = sum_.HeapBytes() + sum_sq_.HeapBytes() + lat_.HeapBytes() + lon_.HeapBytes();
  if (more_devices_) {
    bytes += sizeof(std::vector<uint32_t>) + more_devices_->capacity() * sizeof(uint32_t);
  }
  if (values_) bytes += sizeof(std::vector<double>) + values_->capacity() * sizeof(double);
  if (samples_) bytes += sizeof(std::vector<Sample>) + samples_->capacity() * sizeof(Sample);
  return bytes;
}

// ---------------------------------------------------------------------------
// Checkpoints

void ExactSum::Encode(CheckpointWriter& out) const {
  std::span<const double> p = partials();
  out.U64(p.size());
  for (double x : p) out.F64(x);
}

void ExactSum::Decode(CheckpointReader& in) {
  const uint64_t n = in.Count();
  spill_.reset();
  size_ = 0;
  if (n <= kInline) {
    for (uint64_t i = 0; i < n; ++i) inline_[i] = in.F64();
  } else {
    spill_ = std::make_unique<std::vector<double>>(n);
    for (double& x : *spill_) x = in.F64();
  }
  size_ = static_cast<uint32_t>(n);
}

void WindowAccumulator::Encode(CheckpointWriter& out) const {
  out.U64(count_);
  out.U64(positions_);
  out.F64(min_);
  out.F64(max_);
  out.I64(first_time_);
  out.I64(last_time_);
  out.F64(first_);
  out.F64(last_);
  sum_.Encode(out);
  sum_sq_.Encode(out);
  lat_.Encode(out);
  lon_.Encode(out);
  out.F64(run_lat_);
  out.F64(run_lon_);
  out.U64(run_);
  out.U64(device_.id);
  out.U64(more_devices_ ? more_devices_->size() + 1 : 0);
  if (more_devices_) {
    for (uint32_t id : *more_devices_) out.U64(id);
  }
  out.U64(values_ ? values_->size() + 1 : 0);
  if (values_) {
    out.F64s(values_->data(), values_->size());
  }
  out.U64(samples_ ? samples_->size() + 1 : 0);
  if (samples_) {
    for (const Sample& x : *samples_) {
      out.U64(x.device);
      out.I64(x.time);
      out.F64(x.value);
      out.F64(x.lat);
      out.F64(x.lon);
    }
  }
}

void WindowAccumulator::Decode(CheckpointReader& in) {
  count_ = in.U64();
  positions_ = in.U64();
  min_ = in.F64();
  max_ = in.F64();
  first_time_ = in.I64();
  last_time_ = in.I64();
  first_ = in.F64();
  last_ = in.F64();
  sum_.Decode(in);
  sum_sq_.Decode(in);
  lat_.Decode(in);
  lon_.Decode(in);
  run_lat_ = in.F64();
  run_lon_ = in.F64();
  run_ = in.U64();
  device_ = in.Sym();
  // Vectors are written as size + 1, so 0 tells "absent" from "empty".
  uint64_t n = in.Count();
  more_devices_.reset();
  if (n > 0) {
    more_devices_ = std::make_unique<std::vector<uint32_t>>(n - 1);
    for (uint32_t& id : *more_devices_) id = in.SymId(in.U64());
    // Kept sorted by id; ids of another process come in another order.
    if (in.remaps_symbols()) std::sort(more_devices_->begin(), more_devices_->end());
  }
  n = in.Count();
  values_.reset();
  if (n > 0) {
    values_ = std::make_unique<std::vector<double>>(n - 1);
    in.F64s(values_->data(), values_->size());
  }
  n = in.Count();
  samples_.reset();
  if (n > 0) {
    samples_ = std::make_unique<std::vector<Sample>>(n - 1);
    for (Sample& x : *samples_) {
      x.device = in.SymId(in.U64());
      x.time = in.I64();
      x.value = in.F64();
      x.lat = in.F64();
      x.lon = in.F64();
    }
  }
}

}  // namespace tributary
