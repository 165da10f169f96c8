#include "stream/window.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

#include "alert/aqi.h"
#include "core/json_writer.h"
#include "ingest/metrics.h"
#include "spatial/s2cell.h"
#include "spatial/zones.h"
#include "stream/checkpoint.h"

namespace tributary {
namespace {

// Sliding windows put each reading into size/step windows; beyond this the state and
// the cost grow out of proportion (pre-aggregate with a shorter tumbling window).
constexpr int64_t kMaxWindowsPerReading = 1000;

const std::string& AggregatesDescription() {
  static const std::string text = [] {
    std::string supported, planned;
    for (const AggregateInfo& a : AggregateTable()) {
      std::string& list = a.supported ? supported : planned;
      if (!list.empty()) list += ", ";
      list += a.name;
    }
    return "aggregates to compute, from: " + supported +
           " (count, first, last, distinct_sensors, centroid and late_count are always computed; "
           "aggregates not listed are NaN in the results)" +
           (planned.empty() ? std::string(".") : ". Planned, rejected for now: " + planned + ".");
  }();
  return text;
}

// (group, metric) inside one slice. `group` is a device or zone symbol id, an H3
// cell, or 0 for "all".
struct CellKey {
  uint64_t group = 0;
  uint32_t metric = 0;
  friend bool operator==(const CellKey& a, const CellKey& b) {
    return a.group == b.group && a.metric == b.metric;
  }
};

struct CellKeyHash {
  size_t operator()(const CellKey& k) const noexcept {
    uint64_t x = k.group ^ (static_cast<uint64_t>(k.metric) << 40) ^ k.metric;
    x ^= x >> 33;  // murmur3 finaliser
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return static_cast<size_t>(x);
  }
};

// One (definition, group, metric, start) window.
struct Cell {
  WindowAccumulator acc;
  uint32_t revision = 0;    // of the last emission
  uint32_t late_count = 0;  // readings added after the watermark passed the end
  bool emitted = false;
  bool dirty = false;  // updated since its last emission (emitted slices only)
};

// The windows of one slice (or the partials of one pane) by key, for the hot path:
// every reading looks its key up once. A node-based std::unordered_map costs two or
// three dependent cache misses per lookup (bucket, the node before, the node); here
// the index is a flat array of 32-bit entry numbers probed linearly (load at most
// one half), and the entries sit in insertion order in chunks of 64, so readings that
// arrive in a stable device order walk memory forwards. A chunk holds 8 to 64 entries,
// sized from reserve() before the first insertion (slices reserve the key count of
// the previous one), so a slice of a few keys stays small. Entries never move (chunks
// are never reallocated): dirty lists and emission refs keep pointers into them.
// There is no erase; a table is dropped with its slice or pane. Iteration is in
// insertion order, which also makes checkpoints round-trip byte for byte.
template <typename V>
class KeyTable {
 public:
  struct Entry {
    CellKey first;
    V second;
  };

  template <typename E>
  class Iter {
   public:
    Iter(const KeyTable* table, size_t i) : table_(table), i_(i) {}
    E& operator*() const { return table_->At(i_); }
    E* operator->() const { return &**this; }
    Iter& operator++() {
      ++i_;
      return *this;
    }
    bool operator==(const Iter& o) const { return i_ == o.i_; }

   private:
    const KeyTable* table_;
    size_t i_;
  };

  KeyTable() = default;
  KeyTable(KeyTable&&) noexcept = default;
  KeyTable& operator=(KeyTable&&) noexcept = default;

  /// The entry of `key`, added (value-initialised) when absent; true when added.
  std::pair<Entry*, bool> try_emplace(const CellKey& key) {
    if ((size_ + 1) * 2 > slots_.size()) Rehash(std::max<size_t>(16, slots_.size() * 2));
    const size_t mask = slots_.size() - 1;
    for (size_t i = CellKeyHash{}(key)&mask;; i = (i + 1) & mask) {
      const uint32_t slot = slots_[i];
      if (slot == 0) {
        slots_[i] = static_cast<uint32_t>(size_ + 1);
        Entry& e = Append();
        e.first = key;
        return {&e, true};
      }
      Entry& e = At(slot - 1);
      if (e.first == key) return {&e, false};
    }
  }
  V& operator[](const CellKey& key) { return try_emplace(key).first->second; }
  size_t count(const CellKey& key) const {
    if (size_ == 0) return 0;
    const size_t mask = slots_.size() - 1;
    for (size_t i = CellKeyHash{}(key)&mask;; i = (i + 1) & mask) {
      const uint32_t slot = slots_[i];
      if (slot == 0) return 0;
      if (At(slot - 1).first == key) return 1;
    }
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void reserve(size_t n) {
    if (chunks_.empty()) {
      while (shift_ < kMaxShift && (size_t{1} << shift_) < n) ++shift_;
    }
    size_t want = 16;
    while (want < n * 2) want *= 2;
    if (want > slots_.size()) Rehash(want);
  }
  /// Heap bytes of the index and the chunks (the entries' own heap not included).
  size_t TableBytes() const {
    return slots_.capacity() * sizeof(uint32_t) +
           chunks_.capacity() * sizeof(std::unique_ptr<Entry[]>) +
           (chunks_.size() << shift_) * sizeof(Entry);
  }

  Iter<Entry> begin() { return {this, 0}; }
  Iter<Entry> end() { return {this, size_}; }
  Iter<const Entry> begin() const { return {this, 0}; }
  Iter<const Entry> end() const { return {this, size_}; }

 private:
  static constexpr unsigned kMaxShift = 6;  // 64 entries per chunk at most

  Entry& At(size_t i) const { return chunks_[i >> shift_][i & ((size_t{1} << shift_) - 1)]; }
  Entry& Append() {
    if ((size_ & ((size_t{1} << shift_) - 1)) == 0) {
      chunks_.push_back(std::make_unique<Entry[]>(size_t{1} << shift_));
    }
    return At(size_++);
  }
  void Rehash(size_t slots) {
    slots_.assign(slots, 0);
    const size_t mask = slots - 1;
    for (size_t n = 0; n < size_; ++n) {
      size_t i = CellKeyHash{}(At(n).first) & mask;
      while (slots_[i] != 0) i = (i + 1) & mask;
      slots_[i] = static_cast<uint32_t>(n + 1);
    }
  }

  std::vector<uint32_t> slots_;  // entry number + 1; 0 is empty; size a power of two
  std::vector<std::unique_ptr<Entry[]>> chunks_;
  size_t size_ = 0;
  unsigned shift_ = 3;  // log2 of the entries per chunk
};

using CellMap = KeyTable<Cell>;
// The partial aggregates of one pane of a sliding definition, by (group, metric).
using PaneMap = KeyTable<WindowAccumulator>;

Status BadOption(const OptionReader& o, std::string_view key, const std::string& msg) {
  return o.Error(key, msg);
}

std::string H3ToString(uint64_t cell) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%" PRIx64, cell);
  return buf;
}

}  // namespace

struct WindowOperator::Slice {
  uint16_t def = 0;
  TimeUs start = 0;
  TimeUs end = 0;
  bool emitted = false;  // the on-time emission happened
  // Pane definitions: the slice was created while open, so its panes are merged into
  // `cells` when it is emitted (cells may already hold next_window additions).
  bool merge_panes = false;
  CellMap cells;
};

// Two-tier pre-aggregation of sliding definitions: a reading is added once, to the
// pane (a short tumbling partial) of its event time; a window merges its size / pane
// panes when it is emitted. Readings for windows already emitted (within grace) are
// added to those windows' merged cells directly, which makes the revision.
struct WindowOperator::Panes {
  std::vector<std::map<TimeUs, PaneMap>> by_def;  // pane start -> partials
  std::vector<std::pair<TimeUs, PaneMap*>> last;  // per definition: the pane used last
  std::vector<size_t> size_hint;                  // per definition: keys of the last pane
  size_t open = 0;                                // pane partials held, all definitions
};

struct WindowOperator::DirtyRef {
  Slice* slice;
  const CellKey* key;
  Cell* cell;
};

namespace {

// One session window of one key.
struct Session {
  TimeUs first = 0;     // earliest event time
  TimeUs last = 0;      // latest event time; the session is [first, last + gap)
  bool queued = false;  // has a timeline entry under its current `first`
  Cell cell;
};
using KeySessions = std::map<TimeUs, Session>;  // by first; disjoint, ordered
// (due time, definition, group, metric, first)
using SessionDue = std::tuple<TimeUs, uint16_t, uint64_t, uint32_t, TimeUs>;

struct SessionRef {
  uint16_t def;
  CellKey key;
  TimeUs first;
};

constexpr size_t kNowCastHours = 12;

// Start of the UTC calendar period holding t (kMinTime for "all").
TimeUs PeriodStart(ExceedancePeriod period, TimeUs t) {
  using namespace std::chrono;
  if (period == ExceedancePeriod::kAll) return kMinTime;
  const sys_days day = floor<days>(sys_time<microseconds>(microseconds(t)));
  const year_month_day ymd(day);
  const sys_days first = period == ExceedancePeriod::kYear ? sys_days(ymd.year() / January / 1)
                                                           : sys_days(ymd.year() / ymd.month() / 1);
  return duration_cast<microseconds>(first.time_since_epoch()).count();
}

// Windows of a key remembered for GAP_BEFORE and CENTROID_JUMP (enough for a
// revision of a window a few windows back to find its own predecessor).
constexpr size_t kHistoryWindows = 4;

// What a key remembers across windows: its latest emitted windows (start and
// centroid, ascending by start) and (NowCast only) its last 12 hourly means by slot.
struct KeyHistory {
  struct Window {
    TimeUs start;
    double lat, lon;
  };
  std::vector<Window> windows;
  std::unique_ptr<std::set<TimeUs>> exceedances;  // starts of exceeding windows
  struct Hours {
    std::array<TimeUs, kNowCastHours> start;
    std::array<double, kNowCastHours> mean;
  };
  std::unique_ptr<Hours> hours;
};
using HistoryMap = std::unordered_map<CellKey, KeyHistory, CellKeyHash>;

// Emit one session's row (defined with the other emission helpers below).
size_t EmitSession(const WindowDefinition& def, const CellKey& key, Session& session, TimeUs now,
                   HistoryMap& history, const WindowOperator::ExpectedInterval& expected,
                   std::vector<WindowResult>& out);

}  // namespace

struct WindowOperator::Sessions {
  std::vector<std::unordered_map<CellKey, KeySessions, CellKeyHash>> by_def;
  std::set<SessionDue> timeline;
  std::vector<SessionRef> dirty;
  size_t open = 0;

  Session* Find(uint16_t d, const CellKey& key, TimeUs first) {
    auto k = by_def[d].find(key);
    if (k == by_def[d].end()) return nullptr;
    auto it = k->second.find(first);
    return it == k->second.end() ? nullptr : &it->second;
  }
  void Erase(uint16_t d, const CellKey& key, TimeUs first) {
    auto k = by_def[d].find(key);
    if (k == by_def[d].end()) return;
    if (k->second.erase(first) > 0) --open;
    if (k->second.empty()) by_def[d].erase(k);
  }
};

struct WindowOperator::Histories {
  std::vector<HistoryMap> by_def;
};

struct WindowOperator::KnownKeys {
  std::vector<std::unordered_set<CellKey, CellKeyHash>> by_def;
};

// ---------------------------------------------------------------------------
// Configuration

const std::vector<WindowPreset>& WindowPresets() {
  static const std::vector<WindowPreset> presets = {
      {"pm25_regulatory",
       "tumbling",
       "1h",
       "",
       "",
       "10m",
       45,
       {"mean", "nowcast", "aqi"},
       {"pm25"},
       0,
       NAN},
      {"pm25_realtime", "sliding", "15m", "5m", "", "3m", 8, {"p95", "median"}, {"pm25"}, 0, NAN},
      {"temp_regulatory",
       "tumbling",
       "1h",
       "",
       "",
       "5m",
       50,
       {"mean", "std"},
       {"temperature"},
       0,
       NAN},
      {"temp_realtime",
       "sliding",
       "5m",
       "1m",
       "",
       "1m",
       3,
       {"mean", "std"},
       {"temperature"},
       0,
       NAN},
      {"soil_regulatory",
       "tumbling",
       "30m",
       "",
       "",
       "8m",
       12,
       {"trimmed_mean"},
       {"soil_moisture"},
       0,
       NAN},
      {"soil_realtime",
       "sliding",
       "30m",
       "10m",
       "",
       "8m",
       12,
       {"trimmed_mean"},
       {"soil_moisture"},
       0,
       NAN},
      {"soil_burst", "session", "", "", "12m", "15m", 3, {"median"}, {"soil_moisture"}, 0, NAN},
      {"flow_regulatory", "tumbling", "15m", "", "", "5m", 10, {"mean", "max"}, {"flow"}, 0, NAN},
      {"flow_realtime", "sliding", "15m", "5m", "", "5m", 10, {"mean", "max"}, {"flow"}, 0, NAN},
      {"do_regulatory",
       "tumbling",
       "30m",
       "",
       "",
       "5m",
       20,
       {"mean", "min"},
       {"dissolved_oxygen"},
       0,
       NAN},
      {"conductivity_regulatory",
       "tumbling",
       "1h",
       "",
       "",
       "10m",
       40,
       {"median"},
       {"conductivity"},
       0,
       NAN},
      {"pm10_daily", "tumbling", "1d", "", "", "1h", 1, {"mean", "max"}, {"pm10"}, 0.75, 50},
      {"pm25_daily", "tumbling", "1d", "", "", "1h", 1, {"mean", "max"}, {"pm25"}, 0.75, NAN},
      {"no2_hourly", "tumbling", "1h", "", "", "10m", 1, {"mean", "max"}, {"no2"}, 0.75, 200},
  };
  return presets;
}

namespace {

const WindowPreset* FindPreset(std::string_view name) {
  for (const WindowPreset& p : WindowPresets()) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& x : v) out += (out.empty() ? "" : " ") + x;
  return out;
}

std::string FormatNumber(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

const std::string& SectionDescription() {
  static const std::string text = [] {
    std::string t =
        "Window definitions: each turns readings into windowed statistics per (group, "
        "metric). A window is emitted when the watermark passes its end, re-emitted as a "
        "revision when a reading arrives within `grace` after that, and readings past the "
        "grace go to the late sink with their lateness (or, with `late_policy: next_window`, "
        "into the next open window, flagged LATE_ARRIVAL). Rows carry the quality flags "
        "SPARSE, RANGE_VIOLATION, LATENCY_DEGRADED, LOW_COVERAGE, GAP_BEFORE, CENTROID_JUMP, "
        "BELOW_MIN_SAMPLES and REVISION (see src/stream/window.h).\n\n"
        "Presets (`preset: <name>`, from seed 001's tuning table; keys set explicitly "
        "override the preset's):\n\n"
        "| preset | type | size | step | gap | grace | min_samples | aggregates | metrics | "
        "data_capture | exceedance_threshold |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n";
    auto cell = [](std::string_view v) { return v.empty() ? std::string("—") : std::string(v); };
    for (const WindowPreset& p : WindowPresets()) {
      t += "| " + std::string(p.name) + " | " + std::string(p.type) + " | " + cell(p.size) + " | " +
           cell(p.step) + " | " + cell(p.gap) + " | " + std::string(p.grace) + " | " +
           std::to_string(p.min_samples) + " | " + Join(p.aggregates) + " | " + Join(p.metrics) +
           " | " + (p.data_capture > 0 ? FormatNumber(p.data_capture) : std::string("—")) + " | " +
           (std::isnan(p.exceedance_threshold) ? std::string("—")
                                               : FormatNumber(p.exceedance_threshold)) +
           " |\n";
    }
    t.pop_back();
    return t;
  }();
  return text;
}

const std::string& PresetRange() {
  static const std::string text = [] {
    std::string t;
    for (const WindowPreset& p : WindowPresets()) t += (t.empty() ? "" : "|") + std::string(p.name);
    return t;
  }();
  return text;
}

}  // namespace

const SectionSpec& WindowSectionSpec() {
  static const SectionSpec spec{
      "windows[]",
      SectionDescription(),
      {
          {"name", OptionType::kString, "",
           "unique name of the definition (the `window` column of results)", "", true},
          {"preset", OptionType::kEnum, "",
           "start from a built-in preset (see the table above); other keys override it",
           PresetRange()},
          {"type", OptionType::kEnum, "tumbling",
           "tumbling: back-to-back windows; sliding: windows of `size` every `step`; "
           "session: per key, readings less than `gap` apart form one window",
           "tumbling|sliding|session"},
          {"size", OptionType::kDuration, "",
           "window length (tumbling, sliding); required unless a preset gives it", "1ms.."},
          {"step", OptionType::kDuration, "",
           "sliding only: distance between window starts, at most `size` (a tumbling "
           "window's step is its size)",
           "1ms.."},
          {"gap", OptionType::kDuration, "",
           "session only (and required there): inactivity that ends a session; a session "
           "is [first reading, last reading + gap)",
           "1ms.."},
          {"pane", OptionType::kDuration, "",
           "sliding only: pane of the two-tier pre-aggregation. Each reading is added once, to "
           "the pane of its event time, and a window merges its panes when it closes, so the "
           "cost does not grow with size / step; results are identical to adding each "
           "reading to every window. Must divide size and step; default gcd(size, step); 0s "
           "adds readings to every window directly",
           "0s.."},
          {"resample", OptionType::kEnum, "none",
           "tumbling and sliding: put each sensor's readings on a common grid of "
           "`resample_interval` before aggregating (for sensors reporting at different "
           "rates): a grid point with readings takes their mean; ffill fills later empty "
           "points with the last observed value, linear interpolates between observed "
           "points (and holds the last one); points before a sensor's first reading in the "
           "window stay empty. count and every aggregate are then over the grid points, and "
           "interpolated_sample_fraction is the share of filled ones",
           "none|ffill|linear"},
          {"resample_interval", OptionType::kDuration, "1m",
           "grid of `resample`; must divide the window size", "1ms.."},
          {"data_capture", OptionType::kDouble, "0",
           "EU data-capture rule: a window is valid only when its readings are at least this "
           "fraction of the expected ones (0.75 for hourly and daily means; expected as for "
           "SPARSE, from each device's reporting interval when the registry knows it, else "
           "expected_interval). Invalid windows are still emitted with their values, flagged "
           "INSUFFICIENT_CAPTURE, and never count as exceedances. 0: off",
           "0..1"},
          {"exceedance_threshold", OptionType::kDouble, "",
           "count exceedances: a valid window whose mean is above this value (in the metric's "
           "canonical unit) is flagged EXCEEDANCE, and every row carries exceedance_count, the "
           "key's exceeding windows in the current exceedance_period up to this one (e.g. "
           "days with a daily PM10 mean > 50 µg/m³ per year). Needs the mean"},
          {"exceedance_period", OptionType::kEnum, "year",
           "the calendar period (UTC) over which exceedance_count counts", "year|month|all"},
          {"offset", OptionType::kDuration, "0s",
           "shifts window boundaries: start = floor((t − offset) / step)·step + offset "
           "(e.g. 30m on 1h windows gives half-past boundaries)"},
          {"grace", OptionType::kDuration, "",
           "how long after its end a window still takes readings (each one re-emits it as a "
           "revision); later readings are late. Default: processing.grace"},
          {"late_policy", OptionType::kEnum, "late_sink",
           "readings past grace: late_sink routes them to the late sink; next_window adds "
           "them to the next open window of their key (counted in late_count, flagged "
           "LATE_ARRIVAL, accepted in the ledger)",
           "late_sink|next_window"},
          {"group_by", OptionType::kString, "device",
           "what one row summarises: `device`, `zone` (the first zone layer's zone, after "
           "enrichment), `zone:<layer>` (the zone of the named `zones.layers` entry), `h3` "
           "(the cell at `zones.h3_resolution`), `s2:<level>` (the S2 cell of level 0-30, "
           "keyed by its token), or `all` readings",
           "device|zone|zone:<layer>|h3|s2:<level>|all"},
          {"metrics", OptionType::kStringList, "",
           "canonical metrics this definition takes (e.g. [pm25, pm10]); empty: all"},
          {"aggregates", OptionType::kStringList, "count, mean, min, max", AggregatesDescription()},
          {"min_samples", OptionType::kInt, "1",
           "windows with fewer readings are still emitted, flagged BELOW_MIN_SAMPLES", "1.."},
          {"expected_interval", OptionType::kDuration, "60s",
           "reporting interval of one sensor, for the SPARSE flag: expected readings = window "
           "length / expected_interval × distinct sensors",
           "1ms.."},
      }};
  return spec;
}

bool WindowDefinition::Accepts(Symbol metric) const {
  if (metrics.empty()) return true;
  return std::find(metrics.begin(), metrics.end(), metric) != metrics.end();
}

Result<WindowDefinition> ParseWindowDefinition(const OptionReader& options,
                                               const ProcessingOptions& processing,
                                               const std::vector<std::string>& zone_layers) {
  // Read against this module's spec whatever specs the caller's reader carries.
  const OptionReader o(options.node(), options.file(), options.path(), {&WindowSectionSpec()});
  TRIB_RETURN_IF_ERROR(o.CheckKeys());
  WindowDefinition def;
  TRIB_ASSIGN_OR_RETURN(def.name, o.GetString("name"));
  if (def.name.empty()) return BadOption(o, "name", "must not be empty");
  def.name_symbol = Intern(def.name);

  const WindowPreset* preset = nullptr;
  if (o.Has("preset")) {
    TRIB_ASSIGN_OR_RETURN(def.preset, o.GetString("preset"));
    preset = FindPreset(def.preset);
    if (preset == nullptr) return BadOption(o, "preset", "unknown preset '" + def.preset + "'");
  }
  // A duration from the file, else from the preset ("" there: absent).
  auto duration = [&](std::string_view key, std::string_view from_preset,
                      DurationUs& out) -> Result<bool> {
    if (o.Has(key)) {
      TRIB_ASSIGN_OR_RETURN(out, o.GetDuration(key));
      return true;
    }
    if (!from_preset.empty()) {
      TRIB_ASSIGN_OR_RETURN(out, ParseDuration(from_preset));
      return true;
    }
    return false;
  };

  std::string type;
  if (preset != nullptr && !o.Has("type")) {
    type = std::string(preset->type);
  } else {
    TRIB_ASSIGN_OR_RETURN(type, o.GetString("type"));
  }
  if (type == "tumbling") {
    def.type = WindowType::kTumbling;
  } else if (type == "sliding") {
    def.type = WindowType::kSliding;
  } else {
    def.type = WindowType::kSession;
  }

  if (def.type == WindowType::kSession) {
    for (std::string_view key : {"size", "step", "offset"}) {
      if (o.Has(key)) {
        return BadOption(o, key,
                         "does not apply to session windows (their length follows the "
                         "readings; set `gap`)");
      }
    }
    TRIB_ASSIGN_OR_RETURN(bool has_gap, duration("gap", preset ? preset->gap : "", def.gap));
    if (!has_gap) return BadOption(o, "gap", "is required for session windows");
    def.size = def.step = def.gap;
  } else {
    if (o.Has("gap")) return BadOption(o, "gap", "applies to session windows only");
    TRIB_ASSIGN_OR_RETURN(bool has_size, duration("size", preset ? preset->size : "", def.size));
    if (!has_size) return BadOption(o, "size", "is required");
    def.step = def.size;
    // A preset's step applies only while the type is the preset's.
    std::string_view preset_step =
        preset != nullptr && preset->type == type ? preset->step : std::string_view();
    TRIB_ASSIGN_OR_RETURN(bool has_step, duration("step", preset_step, def.step));
    if (has_step) {
      if (def.type == WindowType::kTumbling && def.step != def.size) {
        return BadOption(o, "step",
                         "applies to sliding windows only (a tumbling window's step is its size)");
      }
      if (def.step > def.size) {
        return BadOption(o, "step",
                         FormatDuration(def.step) + " is longer than the window size " +
                             FormatDuration(def.size) +
                             " (readings between windows would be lost)");
      }
    } else if (def.type == WindowType::kSliding) {
      return BadOption(o, "step", "is required for sliding windows");
    }
    if ((def.size + def.step - 1) / def.step > kMaxWindowsPerReading) {
      return BadOption(o, "step",
                       "size / step is above " + std::to_string(kMaxWindowsPerReading) +
                           " windows per reading; pre-aggregate with a shorter tumbling window");
    }
    TRIB_ASSIGN_OR_RETURN(def.offset, o.GetDuration("offset"));
    if (def.type == WindowType::kSliding) {
      def.pane = def.step == def.size ? 0 : std::gcd(def.size, def.step);
      if (o.Has("pane")) {
        TRIB_ASSIGN_OR_RETURN(def.pane, o.GetDuration("pane"));
        if (def.pane != 0 && (def.size % def.pane != 0 || def.step % def.pane != 0)) {
          return BadOption(o, "pane",
                           FormatDuration(def.pane) + " does not divide the size " +
                               FormatDuration(def.size) + " and the step " +
                               FormatDuration(def.step));
        }
      }
    } else if (o.Has("pane")) {
      return BadOption(o, "pane", "applies to sliding windows only");
    }
  }
  TRIB_ASSIGN_OR_RETURN(std::string resample, o.GetString("resample"));
  def.resample = resample == "ffill"    ? ResampleMode::kForwardFill
                 : resample == "linear" ? ResampleMode::kLinear
                                        : ResampleMode::kNone;
  TRIB_ASSIGN_OR_RETURN(def.resample_interval, o.GetDuration("resample_interval"));
  if (def.resample != ResampleMode::kNone) {
    if (def.type == WindowType::kSession) {
      return BadOption(o, "resample", "applies to tumbling and sliding windows only");
    }
    if (def.size % def.resample_interval != 0) {
      return BadOption(o, "resample_interval",
                       FormatDuration(def.resample_interval) + " does not divide the size " +
                           FormatDuration(def.size));
    }
  }

  TRIB_ASSIGN_OR_RETURN(bool has_grace, duration("grace", preset ? preset->grace : "", def.grace));
  if (!has_grace) def.grace = processing.grace;

  TRIB_ASSIGN_OR_RETURN(std::string late_policy, o.GetString("late_policy"));
  def.late_policy = late_policy == "next_window" ? LatePolicy::kNextWindow : LatePolicy::kLateSink;
  TRIB_ASSIGN_OR_RETURN(def.expected_interval, o.GetDuration("expected_interval"));

  TRIB_ASSIGN_OR_RETURN(std::string group_by, o.GetString("group_by"));
  if (group_by == "device") {
    def.group_by = GroupBy::kDevice;
  } else if (group_by == "zone") {
    def.group_by = GroupBy::kZone;
  } else if (group_by.rfind("zone:", 0) == 0) {
    def.group_by = GroupBy::kZone;
    std::string layer = group_by.substr(5);
    auto it = std::find(zone_layers.begin(), zone_layers.end(), layer);
    if (it == zone_layers.end()) {
      std::string known;
      for (const std::string& l : zone_layers) known += (known.empty() ? "" : ", ") + l;
      return BadOption(o, "group_by",
                       "no zone layer named '" + layer +
                           "' (zones.layers: " + (known.empty() ? "none" : known) + ")");
    }
    def.zone_layer = static_cast<size_t>(it - zone_layers.begin());
    if (def.zone_layer >= kMaxZoneLayers) {
      return BadOption(o, "group_by",
                       "only the first " + std::to_string(kMaxZoneLayers) +
                           " zone layers are attached to readings");
    }
  } else if (group_by == "h3") {
    def.group_by = GroupBy::kH3;
  } else if (group_by.rfind("s2:", 0) == 0) {
    def.group_by = GroupBy::kS2;
    std::string level = group_by.substr(3);
    char* end = nullptr;
    long v = std::strtol(level.c_str(), &end, 10);
    if (level.empty() || *end != '\0' || v < 0 || v > 30) {
      return BadOption(o, "group_by", "'" + group_by + "': the S2 level must be 0-30");
    }
    def.s2_level = static_cast<int>(v);
  } else if (group_by == "all") {
    def.group_by = GroupBy::kAll;
  } else {
    return BadOption(o, "group_by",
                     "'" + group_by + "' is not one of device|zone|zone:<layer>|h3|s2:<level>|all");
  }
  def.group_by_symbol = Intern(group_by);

  std::vector<std::string> metrics;
  if (preset != nullptr && !o.Has("metrics")) {
    metrics = preset->metrics;
  } else {
    TRIB_ASSIGN_OR_RETURN(metrics, o.GetStringList("metrics"));
  }
  for (const std::string& m : metrics) {
    if (m.empty()) return BadOption(o, "metrics", "metric names must not be empty");
    Symbol sym = Intern(m);
    if (std::find(def.metrics.begin(), def.metrics.end(), sym) == def.metrics.end()) {
      def.metrics.push_back(sym);
    }
  }

  std::vector<std::string> aggregates;
  if (preset != nullptr && !o.Has("aggregates")) {
    aggregates = preset->aggregates;
  } else {
    TRIB_ASSIGN_OR_RETURN(aggregates, o.GetStringList("aggregates"));
  }
  Result<AggregateSet> set = ParseAggregates(aggregates);
  if (!set.ok()) return BadOption(o, "aggregates", set.status().message());
  def.aggregates = *set;
  def.aggregation_method = Intern(AggregationMethodName(def.aggregates));
  if ((def.aggregates.Has(AggregateKind::kNowCast) || def.aggregates.Has(AggregateKind::kAqi)) &&
      (def.type != WindowType::kTumbling || def.size != kMicrosPerHour)) {
    return BadOption(o, "aggregates", "nowcast and aqi need 1h tumbling windows (hourly means)");
  }

  def.data_capture = preset != nullptr ? preset->data_capture : 0;
  if (o.Has("data_capture")) {
    TRIB_ASSIGN_OR_RETURN(def.data_capture, o.GetDouble("data_capture"));
  }
  def.exceedance_threshold = preset != nullptr ? preset->exceedance_threshold : NAN;
  if (o.Has("exceedance_threshold")) {
    TRIB_ASSIGN_OR_RETURN(def.exceedance_threshold, o.GetDouble("exceedance_threshold"));
  }
  TRIB_ASSIGN_OR_RETURN(std::string period, o.GetString("exceedance_period"));
  def.exceedance_period = period == "month" ? ExceedancePeriod::kMonth
                          : period == "all" ? ExceedancePeriod::kAll
                                            : ExceedancePeriod::kYear;
  if (!std::isnan(def.exceedance_threshold) && !def.aggregates.Has(AggregateKind::kMean)) {
    return BadOption(o, "exceedance_threshold", "needs the mean in `aggregates`");
  }

  if (preset != nullptr && !o.Has("min_samples")) {
    def.min_samples = preset->min_samples;
  } else {
    TRIB_ASSIGN_OR_RETURN(def.min_samples, o.GetInt("min_samples"));
  }
  return def;
}

Result<std::vector<WindowDefinition>> ParseWindowDefinitions(const PipelineConfig& config) {
  std::vector<WindowDefinition> defs;
  if (config.windows.size() > UINT16_MAX) {
    return Status::Invalid(config.file + ": too many window definitions");
  }
  for (const OptionReader& o : config.windows) {
    TRIB_ASSIGN_OR_RETURN(
        WindowDefinition def,
        ParseWindowDefinition(o, config.processing, ZoneLayerNames(config.zones)));
    for (const WindowDefinition& other : defs) {
      if (other.name == def.name) {
        return o.Error("name", "duplicate window name '" + def.name + "'");
      }
    }
    defs.push_back(std::move(def));
  }
  return defs;
}

// ---------------------------------------------------------------------------
// Operator

WindowOperator::WindowOperator(std::vector<WindowDefinition> definitions,
                               const ProcessingOptions& processing, Clock clock)
    : definitions_(std::move(definitions)),
      clock_(std::move(clock)),
      tracker_(processing.out_of_orderness, processing.idle_timeout, processing.clock_outliers),
      last_slice_(definitions_.size(), nullptr),
      size_hint_(definitions_.size(), 0),
      sessions_(std::make_unique<Sessions>()),
      histories_(std::make_unique<Histories>()),
      panes_(std::make_unique<Panes>()),
      known_(std::make_unique<KnownKeys>()) {
  known_->by_def.resize(definitions_.size());
  sessions_->by_def.resize(definitions_.size());
  histories_->by_def.resize(definitions_.size());
  panes_->by_def.resize(definitions_.size());
  panes_->last.assign(definitions_.size(), {kMinTime, nullptr});
  panes_->size_hint.assign(definitions_.size(), 0);
}

WindowOperator::~WindowOperator() = default;

Status WindowOperator::Open(RunContext& ctx) {
  ledger_ = ctx.ledger;
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Checkpoints. Symbols are written as ids (checkpoint.h restores the table first).

namespace {

void EncodeKey(CheckpointWriter& out, const CellKey& k) {
  out.U64(k.group);
  out.U64(k.metric);
}

// A group is a symbol id when grouped by device or zone; a cell or 0 otherwise.
uint64_t DecodeGroup(CheckpointReader& in, GroupBy group_by) {
  const uint64_t group = in.U64();
  return group_by == GroupBy::kDevice || group_by == GroupBy::kZone ? in.SymId(group) : group;
}

CellKey DecodeKey(CheckpointReader& in, GroupBy group_by) {
  CellKey k;
  k.group = DecodeGroup(in, group_by);
  k.metric = in.SymId(in.U64());
  return k;
}

void EncodeCell(CheckpointWriter& out, const Cell& c) {
  c.acc.Encode(out);
  out.U64(c.revision);
  out.U64(c.late_count);
  out.Bool(c.emitted);
  out.Bool(c.dirty);
}

void DecodeCell(CheckpointReader& in, Cell& c) {
  c.acc.Decode(in);
  c.revision = static_cast<uint32_t>(in.U64());
  c.late_count = static_cast<uint32_t>(in.U64());
  c.emitted = in.Bool();
  c.dirty = in.Bool();
}

}  // namespace

Status WindowOperator::Snapshot(CheckpointWriter& out) const {
  if (!dirty_.empty() || !sessions_->dirty.empty()) {
    return Status::Internal("window: snapshot taken in the middle of a batch");
  }
  out.Section("window");
  out.U64(definitions_.size());
  for (const WindowDefinition& d : definitions_) out.Str(d.name);
  tracker_.Snapshot(out);
  // Slices.
  out.U64(slices_.size());
  for (const auto& [id, slice] : slices_) {
    out.U64(slice->def);
    out.I64(slice->start);
    out.I64(slice->end);
    out.Bool(slice->emitted);
    out.Bool(slice->merge_panes);
    out.U64(slice->cells.size());
    for (const auto& [key, cell] : slice->cells) {
      EncodeKey(out, key);
      EncodeCell(out, cell);
    }
  }
  out.U64(timeline_.size());
  for (const auto& [due, d, start] : timeline_) {
    out.I64(due);
    out.U64(d);
    out.I64(start);
  }
  for (size_t n : size_hint_) out.U64(n);
  // Panes.
  for (const auto& panes : panes_->by_def) {
    out.U64(panes.size());
    for (const auto& [start, map] : panes) {
      out.I64(start);
      out.U64(map.size());
      for (const auto& [key, acc] : map) {
        EncodeKey(out, key);
        acc.Encode(out);
      }
    }
  }
  for (size_t n : panes_->size_hint) out.U64(n);
  out.U64(panes_->open);
  // Sessions.
  for (const auto& by_key : sessions_->by_def) {
    out.U64(by_key.size());
    for (const auto& [key, sessions] : by_key) {
      EncodeKey(out, key);
      out.U64(sessions.size());
      for (const auto& [first, session] : sessions) {
        out.I64(session.first);
        out.I64(session.last);
        out.Bool(session.queued);
        EncodeCell(out, session.cell);
      }
    }
  }
  out.U64(sessions_->timeline.size());
  for (const auto& [due, d, group, metric, first] : sessions_->timeline) {
    out.I64(due);
    out.U64(d);
    out.U64(group);
    out.U64(metric);
    out.I64(first);
  }
  out.U64(sessions_->open);
  // Key histories.
  for (const HistoryMap& map : histories_->by_def) {
    out.U64(map.size());
    for (const auto& [key, h] : map) {
      EncodeKey(out, key);
      out.U64(h.windows.size());
      for (const KeyHistory::Window& w : h.windows) {
        out.I64(w.start);
        out.F64(w.lat);
        out.F64(w.lon);
      }
      out.U64(h.exceedances ? h.exceedances->size() + 1 : 0);
      if (h.exceedances) {
        for (TimeUs t : *h.exceedances) out.I64(t);
      }
      out.Bool(h.hours != nullptr);
      if (h.hours) {
        for (size_t i = 0; i < kNowCastHours; ++i) {
          out.I64(h.hours->start[i]);
          out.F64(h.hours->mean[i]);
        }
      }
    }
  }
  return Status::Ok();
}

Status WindowOperator::Restore(CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("window"));
  const uint64_t defs = in.Count();
  if (in.ok() && defs != definitions_.size()) {
    return Status::Invalid("checkpoint: " + std::to_string(defs) +
                           " window definitions when it was taken, " +
                           std::to_string(definitions_.size()) + " now");
  }
  for (const WindowDefinition& d : definitions_) {
    std::string_view name = in.Str();
    if (in.ok() && name != d.name) {
      return Status::Invalid("checkpoint: window definition '" + std::string(name) +
                             "' when it was taken, '" + d.name + "' now");
    }
  }
  TRIB_RETURN_IF_ERROR(tracker_.Restore(in));
  const size_t n_defs = definitions_.size();
  auto def_index = [&](uint64_t d) -> uint16_t {
    if (d >= n_defs) {
      in.Fail("window definition index out of range");
      return 0;
    }
    return static_cast<uint16_t>(d);
  };
  slices_.clear();
  std::fill(last_slice_.begin(), last_slice_.end(), nullptr);
  for (uint64_t n = in.Count(), i = 0; i < n && in.ok(); ++i) {
    auto slice = std::make_unique<Slice>();
    slice->def = def_index(in.U64());
    slice->start = in.I64();
    slice->end = in.I64();
    slice->emitted = in.Bool();
    slice->merge_panes = in.Bool();
    const uint64_t cells = in.Count();
    slice->cells.reserve(cells);
    const GroupBy group_by = definitions_[slice->def].group_by;
    for (uint64_t c = 0; c < cells && in.ok(); ++c) {
      CellKey key = DecodeKey(in, group_by);
      DecodeCell(in, slice->cells[key]);
    }
    SliceId id{slice->def, slice->start};
    slices_[id] = std::move(slice);
  }
  timeline_.clear();
  for (uint64_t n = in.Count(), i = 0; i < n && in.ok(); ++i) {
    TimeUs due = in.I64();
    uint16_t d = def_index(in.U64());
    TimeUs start = in.I64();
    timeline_.insert(Due{due, d, start});
  }
  for (size_t& n : size_hint_) n = static_cast<size_t>(in.U64());
  panes_->open = 0;
  for (size_t d = 0; d < n_defs; ++d) {
    auto& panes = panes_->by_def[d];
    panes.clear();
    for (uint64_t n = in.Count(), i = 0; i < n && in.ok(); ++i) {
      PaneMap& map = panes[in.I64()];
      const uint64_t keys = in.Count();
      map.reserve(keys);
      for (uint64_t k = 0; k < keys && in.ok(); ++k) {
        CellKey key = DecodeKey(in, definitions_[d].group_by);
        map[key].Decode(in);
      }
    }
  }
  panes_->last.assign(n_defs, {kMinTime, nullptr});
  for (size_t& n : panes_->size_hint) n = static_cast<size_t>(in.U64());
  panes_->open = static_cast<size_t>(in.U64());
  for (size_t d = 0; d < n_defs; ++d) {
    auto& by_key = sessions_->by_def[d];
    by_key.clear();
    for (uint64_t n = in.Count(), i = 0; i < n && in.ok(); ++i) {
      CellKey key = DecodeKey(in, definitions_[d].group_by);
      KeySessions& sessions = by_key[key];
      for (uint64_t m = in.Count(), j = 0; j < m && in.ok(); ++j) {
        Session s;
        s.first = in.I64();
        s.last = in.I64();
        s.queued = in.Bool();
        DecodeCell(in, s.cell);
        sessions[s.first] = std::move(s);
      }
    }
  }
  sessions_->timeline.clear();
  for (uint64_t n = in.Count(), i = 0; i < n && in.ok(); ++i) {
    TimeUs due = in.I64();
    uint16_t d = def_index(in.U64());
    uint64_t group = DecodeGroup(in, definitions_[d].group_by);
    uint32_t metric = in.SymId(in.U64());
    TimeUs first = in.I64();
    sessions_->timeline.insert(SessionDue{due, d, group, metric, first});
  }
  sessions_->dirty.clear();
  sessions_->open = static_cast<size_t>(in.U64());
  for (size_t d = 0; d < n_defs; ++d) {
    HistoryMap& map = histories_->by_def[d];
    map.clear();
    for (uint64_t n = in.Count(), i = 0; i < n && in.ok(); ++i) {
      CellKey key = DecodeKey(in, definitions_[d].group_by);
      KeyHistory& h = map[key];
      h.windows.resize(in.Count());
      for (KeyHistory::Window& w : h.windows) {
        w.start = in.I64();
        w.lat = in.F64();
        w.lon = in.F64();
      }
      const uint64_t ex = in.Count();
      if (ex > 0) {
        h.exceedances = std::make_unique<std::set<TimeUs>>();
        for (uint64_t e = 1; e < ex; ++e) h.exceedances->insert(in.I64());
      }
      if (in.Bool()) {
        h.hours = std::make_unique<KeyHistory::Hours>();
        for (size_t k = 0; k < kNowCastHours; ++k) {
          h.hours->start[k] = in.I64();
          h.hours->mean[k] = in.F64();
        }
      }
    }
  }
  dirty_.clear();
  wall_at_last_input_ = kMinTime;  // idle time counts from the next input
  return in.status();
}

WindowOperator::Slice& WindowOperator::GetSlice(uint16_t d, TimeUs start, TimeUs watermark) {
  Slice* cached = last_slice_[d];
  if (cached != nullptr && cached->start == start) return *cached;
  auto [it, added] = slices_.try_emplace(SliceId{d, start});
  if (added) {
    it->second = std::make_unique<Slice>();
    Slice& s = *it->second;
    s.def = d;
    s.start = start;
    s.end = start + definitions_[d].size;
    s.merge_panes = definitions_[d].pane > 0 && s.end > watermark;
    if (!s.merge_panes) s.cells.reserve(size_hint_[d]);
    timeline_.insert(Due{s.end, d, start});
  }
  last_slice_[d] = it->second.get();
  return *it->second;
}

namespace {

CellKey KeyOf(const WindowDefinition& def, const Reading& r) {
  CellKey key;
  key.metric = r.metric.id;
  switch (def.group_by) {
    case GroupBy::kDevice:
      key.group = r.device.id;
      break;
    case GroupBy::kZone:
      key.group = def.zone_layer == 0 ? r.zone.id : r.extra_zones[def.zone_layer - 1].id;
      break;
    case GroupBy::kH3:
      key.group = r.h3;
      break;
    case GroupBy::kS2:
      key.group = S2CellIdAt(r.lat, r.lon, def.s2_level);
      break;
    case GroupBy::kAll:
      key.group = 0;
      break;
  }
  return key;
}

}  // namespace

DurationUs WindowOperator::Assign(uint16_t d, const Reading& r, TimeUs watermark,
                                  bool& late_arrival) {
  const WindowDefinition& def = definitions_[d];
  if (def.type == WindowType::kSession) return AssignSession(d, r, watermark, late_arrival);
  const TimeUs last_start = def.LastStart(r.event_time);
  const TimeUs last_closes = last_start + def.size + def.grace;
  const bool late = last_closes <= watermark;
  if (late && def.late_policy == LatePolicy::kLateSink) return watermark - last_closes;
  if (!std::isfinite(r.value)) return -1;

  const CellKey key = KeyOf(def, r);
  const bool keep = def.aggregates.NeedsValues();
  auto add = [&](TimeUs start, bool count_late) {
    Slice& slice = GetSlice(d, start, watermark);
    auto [it, added] = slice.cells.try_emplace(key);
    if (added) known_->by_def[d].insert(key);
    Cell& cell = it->second;
    cell.acc.Add(r, keep, def.resample != ResampleMode::kNone);
    if (count_late) ++cell.late_count;
    if (slice.emitted && !cell.dirty) {
      cell.dirty = true;
      dirty_.push_back(DirtyRef{&slice, &it->first, &cell});
    }
  };
  if (late) {
    // next_window: the earliest window still held, i.e. the smallest start s with
    // s + size + grace > watermark.
    add(def.LastStart(watermark - def.size - def.grace) + def.step, true);
    late_arrival = true;
    return -1;
  }
  TimeUs first_direct = last_start;  // the latest window the reading goes to directly
  if (def.pane > 0) {
    // Windows still open (end > watermark) take the reading through its pane; the
    // emitted ones still within grace take it directly (below).
    if (last_start + def.size > watermark) {
      AddToPane(d, r, watermark);
      // Every window containing t ends after t: when t >= watermark all are open.
      if (r.event_time >= watermark) return -1;
      first_direct = def.LastStart(watermark - def.size);  // the latest with end <= watermark
    }
  }
  for (TimeUs start = first_direct; start > r.event_time - def.size; start -= def.step) {
    const TimeUs end = start + def.size;
    if (end + def.grace <= watermark) break;  // this and every earlier window are past grace
    add(start, watermark >= end);
  }
  return -1;
}

void WindowOperator::AddToPane(uint16_t d, const Reading& r, TimeUs watermark) {
  const WindowDefinition& def = definitions_[d];
  const TimeUs pane_start = FloorDiv(r.event_time - def.offset, def.pane) * def.pane + def.offset;
  Panes& ps = *panes_;
  PaneMap* pane = ps.last[d].second;
  if (pane == nullptr || ps.last[d].first != pane_start) {
    auto [it, added] = ps.by_def[d].try_emplace(pane_start);
    pane = &it->second;
    ps.last[d] = {pane_start, pane};
    if (added) {
      pane->reserve(ps.size_hint[d]);
      // The open windows containing the pane exist from now on, so they merge it.
      for (TimeUs start = def.LastStart(pane_start);
           start > pane_start - def.size && start + def.size > watermark; start -= def.step) {
        GetSlice(d, start, watermark);
      }
    }
  }
  const CellKey key = KeyOf(def, r);
  auto [it, added] = pane->try_emplace(key);
  if (added) {
    ++ps.open;
    known_->by_def[d].insert(key);
  }
  it->second.Add(r, def.aggregates.NeedsValues(), def.resample != ResampleMode::kNone);
}

DurationUs WindowOperator::AssignSession(uint16_t d, const Reading& r, TimeUs watermark,
                                         bool& late_arrival) {
  const WindowDefinition& def = definitions_[d];
  Sessions& ss = *sessions_;
  const TimeUs t = r.event_time;
  const CellKey key = KeyOf(def, r);
  const bool finite = std::isfinite(r.value);
  const bool keep = def.aggregates.NeedsValues();
  auto& per_key = ss.by_def[d];
  auto found = per_key.find(key);
  KeySessions* list = found == per_key.end() ? nullptr : &found->second;

  auto mark_dirty = [&](Session& s) {
    if (s.cell.emitted && !s.cell.dirty) {
      s.cell.dirty = true;
      ss.dirty.push_back(SessionRef{d, key, s.first});
    }
  };
  // Timeline entries are lazy: an extended session keeps its entry, which then fires
  // early (due times only grow) and is put back at the real time (EmitDue).
  auto schedule = [&](Session& s) {
    if (s.queued) return;
    s.queued = true;
    const TimeUs due = s.last + def.gap + (s.cell.emitted ? def.grace : 0);
    ss.timeline.insert(SessionDue{due, d, key.group, key.metric, s.first});
  };

  // Held sessions the reading's own [t, t + gap) overlaps: first < t + gap and
  // t < last + gap. Sessions are disjoint, so they are adjacent in the map.
  std::vector<KeySessions::iterator> hits;  // latest first
  if (list != nullptr) {
    auto it = list->lower_bound(t + def.gap);
    while (it != list->begin()) {
      --it;
      if (it->second.last + def.gap <= t) break;
      hits.push_back(it);
    }
  }

  if (hits.empty()) {
    const TimeUs closes = t + def.gap + def.grace;
    if (closes <= watermark) {
      if (def.late_policy == LatePolicy::kNextWindow && list != nullptr && !list->empty()) {
        if (!finite) return -1;
        Session& s = std::prev(list->end())->second;  // the key's latest held session
        s.cell.acc.Add(r, keep);
        ++s.cell.late_count;
        mark_dirty(s);
        late_arrival = true;
        return -1;
      }
      return watermark - closes;
    }
    if (!finite) return -1;
    if (list == nullptr) {
      list = &per_key[key];
      known_->by_def[d].insert(key);
    }
    Session& s = (*list)[t];
    ++ss.open;
    s.first = s.last = t;
    s.cell.acc.Add(r, keep);
    if (watermark >= t + def.gap) ++s.cell.late_count;  // first seen within grace
    schedule(s);
    return -1;
  }
  if (!finite) return -1;

  // Merge every hit into the earliest one, then add the reading.
  auto target_it = hits.back();
  Session& target = target_it->second;
  bool revises = target.cell.emitted;
  for (size_t i = 0; i + 1 < hits.size(); ++i) {
    Session& other = hits[i]->second;
    revises = revises || other.cell.emitted;
    target.cell.acc.Merge(other.cell.acc);
    target.cell.late_count += other.cell.late_count;
    target.cell.revision = std::max(target.cell.revision, other.cell.revision);
    target.cell.emitted = target.cell.emitted || other.cell.emitted;
    target.last = std::max(target.last, other.last);
    list->erase(hits[i]);
    --ss.open;
  }
  target.cell.acc.Add(r, keep);
  if (revises) ++target.cell.late_count;
  target.last = std::max(target.last, t);
  Session* s = &target;
  if (t < target.first) {
    // The start moves: re-key the session; its old entry goes stale.
    auto node = list->extract(target_it);
    node.key() = t;
    node.mapped().first = t;
    s = &list->insert(std::move(node)).position->second;
    s->queued = false;
    s->cell.dirty = false;  // refs to the old start are stale; mark again below
  }
  schedule(*s);
  mark_dirty(*s);
  return -1;
}

Status WindowOperator::Process(Batch& batch) {
  const TimeUs watermark = tracker_.watermark();
  std::vector<Reading>& readings = batch.readings;
  const bool had_input = !readings.empty();
  uint64_t accepted = 0;
  uint64_t late = 0;
  size_t keep = 0;
  const auto num_defs = static_cast<uint16_t>(definitions_.size());
  std::vector<std::pair<uint16_t, DurationUs>> misses;
  const bool shed = memory_shed_ != nullptr && memory_shed_->load(std::memory_order_relaxed);
  uint64_t shed_now = 0;
  for (size_t i = 0; i < readings.size(); ++i) {
    Reading& r = readings[i];
    tracker_.Observe(PartitionOf(r), r.event_time, r.arrival_time, r.device.id);
    if (shed && OpensNewKey(r)) {
      Shed(r, batch);
      ++shed_now;
      continue;
    }
    misses.clear();
    size_t belongs = 0;
    bool late_arrival = false;
    for (uint16_t d = 0; d < num_defs; ++d) {
      if (!definitions_[d].Accepts(r.metric)) continue;
      ++belongs;
      DurationUs lateness = Assign(d, r, watermark, late_arrival);
      if (lateness >= 0) misses.emplace_back(d, lateness);
    }
    if (late_arrival) r.flags.Set(QcFlag::kLateArrival);
    for (const auto& [d, lateness] : misses) {
      LateRecord rec;
      rec.reading = r;
      rec.reading.flags.Set(QcFlag::kLate);
      rec.window = definitions_[d].name_symbol;
      rec.lateness = lateness;
      rec.watermark = watermark;
      batch.late.push_back(std::move(rec));
    }
    if (belongs > 0 && misses.size() == belongs) {
      ++late;
      continue;
    }
    ++accepted;
    if (keep != i) readings[keep] = std::move(r);
    ++keep;
  }
  readings.resize(keep);
  if (ledger_ != nullptr) {
    if (accepted > 0) ledger_->AddAccepted(accepted);
    if (late > 0) ledger_->AddLate(late);
    if (shed_now > 0) ledger_->AddQuarantined("memory_shed", shed_now);
  }
  if (shed_now > 0) {
    shed_total_ += shed_now;
    shed_since_log_ += shed_now;
    const TimeUs now = NowUs();
    if (last_shed_log_ == kMinTime || now - last_shed_log_ >= 10 * kMicrosPerSecond) {
      spdlog::warn(
          "window: memory ceiling: refused {} readings of new window keys (quarantined "
          "as memory_shed; {} since the start)",
          shed_since_log_, shed_total_);
      last_shed_log_ = now;
      shed_since_log_ = 0;
    }
  } else if (!shed && last_shed_log_ != kMinTime && shed_since_log_ > 0) {
    spdlog::warn(
        "window: memory ceiling: refused {} more readings of new window keys before "
        "shedding ended ({} since the start)",
        shed_since_log_, shed_total_);
    shed_since_log_ = 0;
  }
  if (had_input) wall_at_last_input_ = clock_();
  tracker_.Advance(tracker_.max_arrival());
  EmitDue(batch.windows);
  batch.watermark = tracker_.watermark();
  return Status::Ok();
}

bool WindowOperator::OpensNewKey(const Reading& r) const {
  if (!std::isfinite(r.value)) return false;  // aggregated nowhere: opens nothing
  for (uint16_t d = 0; d < definitions_.size(); ++d) {
    const WindowDefinition& def = definitions_[d];
    if (def.Accepts(r.metric) && !known_->by_def[d].contains(KeyOf(def, r))) return true;
  }
  return false;
}

void WindowOperator::Shed(const Reading& r, Batch& batch) {
  QuarantineRecord q;
  q.reason = Intern("memory_shed");
  std::string key;
  for (uint16_t d = 0; d < definitions_.size(); ++d) {
    const WindowDefinition& def = definitions_[d];
    if (def.Accepts(r.metric) && !known_->by_def[d].contains(KeyOf(def, r))) {
      key = def.name;
      break;
    }
  }
  q.detail = "memory above the shed level of processing.memory_limit: window " + key +
             " holds no state for this reading's " + std::string(r.metric.view()) +
             " key; refused instead of opening one";
  // The reading in the long shape the json decoder reads, for replay-quarantine.
  JsonWriter w;
  w.BeginObject();
  w.Key("device_id").String(r.device.view());
  w.Key("timestamp").String(FormatTime(r.event_time));
  w.Key("metric").String(r.metric.view());
  w.Key("value").Number(r.value);
  if (std::isfinite(r.lat) && std::isfinite(r.lon)) {
    w.Key("lat").Number(r.lat);
    w.Key("lon").Number(r.lon);
  }
  w.EndObject();
  q.raw = w.Take();
  q.arrival_time = r.arrival_time;
  q.device = r.device;
  q.metric = r.metric;
  q.prov = r.prov;
  batch.quarantine.push_back(std::move(q));
}

Status WindowOperator::OnIdle(TimeUs wall_now, Batch& out) {
  if (tracker_.partitions() > 0 && wall_at_last_input_ != kMinTime) {
    const DurationUs quiet = wall_now - wall_at_last_input_;
    if (quiet > 0) tracker_.Advance(tracker_.max_arrival() + quiet);
    EmitDue(out.windows);
  }
  out.watermark = tracker_.watermark();
  return Status::Ok();
}

Status WindowOperator::Finish(Batch& out) {
  EmitRevisions(out.windows);
  for (const Due& due : timeline_) {
    Slice& slice = *slices_.at(SliceId{std::get<1>(due), std::get<2>(due)});
    if (!slice.emitted) EmitSlice(slice, out.windows);
  }
  for (const auto& [id, slice] : slices_) size_hint_[id.first] = slice->cells.size();
  timeline_.clear();
  slices_.clear();
  std::fill(last_slice_.begin(), last_slice_.end(), nullptr);
  Sessions& ss = *sessions_;
  // Sessions not emitted yet, in (end, definition, key, start) order.
  std::vector<std::tuple<TimeUs, uint16_t, uint64_t, uint32_t, Session*>> pending;
  for (uint16_t d = 0; d < ss.by_def.size(); ++d) {
    for (auto& [key, list] : ss.by_def[d]) {
      for (auto& [first, session] : list) {
        if (!session.cell.emitted) {
          pending.emplace_back(session.last + definitions_[d].gap, d, key.group, key.metric,
                               &session);
        }
      }
    }
  }
  std::sort(pending.begin(), pending.end(), [](const auto& a, const auto& b) {
    return std::make_tuple(std::get<0>(a), std::get<1>(a), std::get<2>(a), std::get<3>(a),
                           std::get<4>(a)->first) < std::make_tuple(std::get<0>(b), std::get<1>(b),
                                                                    std::get<2>(b), std::get<3>(b),
                                                                    std::get<4>(b)->first);
  });
  for (const auto& [end, d, group, metric, session] : pending) {
    const CellKey key{group, metric};
    CountEmitted(EmitSession(definitions_[d], key, *session, clock_(), histories_->by_def[d],
                             expected_interval_, out.windows));
  }
  ss.timeline.clear();
  for (auto& per_key : ss.by_def) per_key.clear();
  ss.open = 0;
  for (auto& panes : panes_->by_def) panes.clear();
  panes_->last.assign(definitions_.size(), {kMinTime, nullptr});
  panes_->open = 0;
  out.watermark = tracker_.watermark();
  return Status::Ok();
}

void WindowOperator::EmitDue(std::vector<WindowResult>& out) {
  EmitRevisions(out);
  const TimeUs watermark = tracker_.watermark();
  while (!timeline_.empty()) {
    const Due due = *timeline_.begin();
    const auto& [time, d, start] = due;
    if (time > watermark) break;
    timeline_.erase(timeline_.begin());
    Slice& slice = *slices_.at(SliceId{d, start});
    if (!slice.emitted) {
      EmitSlice(slice, out);
      const TimeUs free_at = slice.end + definitions_[d].grace;
      if (free_at > watermark) {
        timeline_.insert(Due{free_at, d, start});
        continue;
      }
    }
    FreeSlice(SliceId{d, start});
  }
  Sessions& ss = *sessions_;
  while (!ss.timeline.empty()) {
    const SessionDue due = *ss.timeline.begin();
    const auto& [time, d, group, metric, first] = due;
    if (time > watermark) break;
    ss.timeline.erase(ss.timeline.begin());
    const CellKey key{group, metric};
    Session* session = ss.Find(d, key, first);
    if (session == nullptr) continue;  // a stale entry: merged away, re-keyed or freed
    const WindowDefinition& def = definitions_[d];
    const TimeUs end = session->last + def.gap;
    if (!session->cell.emitted) {
      if (end > watermark) {  // extended since the entry was made
        ss.timeline.insert(SessionDue{end, d, group, metric, first});
        continue;
      }
      CountEmitted(EmitSession(def, key, *session, clock_(), histories_->by_def[d],
                               expected_interval_, out));
    }
    if (end + def.grace > watermark) {
      ss.timeline.insert(SessionDue{end + def.grace, d, group, metric, first});
      continue;
    }
    ss.Erase(d, key, first);
  }
}

namespace {

Symbol GroupSymbol(GroupBy group_by, uint64_t group) {
  static const Symbol kAll = Intern("all");
  switch (group_by) {
    case GroupBy::kDevice:
    case GroupBy::kZone:
      return Symbol{static_cast<uint32_t>(group)};
    case GroupBy::kH3:
      return group == 0 ? Symbol{} : Intern(H3ToString(group));
    case GroupBy::kS2:
      return group == 0 ? Symbol{} : Intern(S2CellToken(group));
    case GroupBy::kAll:
      return kAll;
  }
  return {};
}

using CellRef = std::pair<const CellKey*, Cell*>;

void SetFlag(WindowResult& w, WindowFlag f) {
  w.flags |= static_cast<uint32_t>(f);
}

// The flags a window's own values decide (see window.h).
// `observed` is the number of readings the sensors sent: on a resampled window w.count
// counts grid points, and filled points must not make a sparse window look complete.
void OwnQualityFlags(const WindowDefinition& def, const WindowAccumulator& acc, uint64_t observed,
                     const WindowOperator::ExpectedInterval& interval_of, WindowResult& w) {
  if (static_cast<int64_t>(w.count) < def.min_samples) SetFlag(w, WindowFlag::kBelowMinSamples);
  if (w.count == 0) {
    if (def.data_capture > 0) SetFlag(w, WindowFlag::kInsufficientCapture);
    return;
  }
  const double n = static_cast<double>(w.count);
  const double n_observed = static_cast<double>(observed);
  const auto length = static_cast<double>(w.end - w.start);
  double expected = 0;
  if (interval_of) {
    // Per sensor: its own reporting interval, else the definition's.
    std::vector<uint32_t> devices;
    acc.Devices(devices);
    for (uint32_t id : devices) {
      DurationUs interval = interval_of(Symbol{id}, w.metric);
      if (interval <= 0) interval = def.expected_interval;
      expected += length / static_cast<double>(interval);
    }
  } else {
    expected = length / static_cast<double>(def.expected_interval) * w.distinct_sensors;
  }
  if (n_observed / expected < 0.7) SetFlag(w, WindowFlag::kSparse);
  if (def.data_capture > 0 && n_observed / expected < def.data_capture) {
    SetFlag(w, WindowFlag::kInsufficientCapture);
  }
  if (const MetricInfo* m = MetricBySymbol(w.metric)) {
    const double v = std::isnan(w.p95) ? acc.max() : w.p95;
    if (v < m->min || v > m->max) SetFlag(w, WindowFlag::kRangeViolation);
  }
  if (static_cast<double>(w.late_count) / n > 0.2) SetFlag(w, WindowFlag::kLatencyDegraded);
  if (def.group_by != GroupBy::kDevice && w.distinct_sensors < 2) {
    SetFlag(w, WindowFlag::kLowCoverage);
  }
}

// GAP_BEFORE, CENTROID_JUMP and the NowCast/AQI, from the key's history; records
// this window in it.
void HistoryFlags(const WindowDefinition& def, const WindowAccumulator& acc, KeyHistory& h,
                  WindowResult& w) {
  const double lat = acc.centroid_lat();
  const double lon = acc.centroid_lon();
  // The latest earlier window of the key, then record (or update) this one.
  auto pos =
      std::lower_bound(h.windows.begin(), h.windows.end(), w.start,
                       [](const KeyHistory::Window& x, TimeUs start) { return x.start < start; });
  TimeUs prev_start = kMinTime;
  double prev_lat = NAN, prev_lon = NAN;
  if (pos != h.windows.begin()) {
    prev_start = std::prev(pos)->start;
    prev_lat = std::prev(pos)->lat;
    prev_lon = std::prev(pos)->lon;
  }
  if (pos != h.windows.end() && pos->start == w.start) {
    pos->lat = lat;
    pos->lon = lon;
  } else if (pos != h.windows.begin() || h.windows.size() < kHistoryWindows) {
    h.windows.insert(pos, KeyHistory::Window{w.start, lat, lon});
    if (h.windows.size() > kHistoryWindows) h.windows.erase(h.windows.begin());
  }
  if (prev_start != kMinTime) {
    if (def.type != WindowType::kSession && (w.start - prev_start) / def.step - 1 > 2) {
      SetFlag(w, WindowFlag::kGapBefore);
    }
    if (def.group_by != GroupBy::kDevice &&
        (std::fabs(lat - prev_lat) > 0.5 || std::fabs(lon - prev_lon) > 0.5)) {
      SetFlag(w, WindowFlag::kCentroidJump);
    }
  }

  if (!std::isnan(def.exceedance_threshold)) {
    // Valid windows of the key whose mean is above the threshold, by start; a
    // revision that changes the answer replaces its entry.
    if (!h.exceedances) h.exceedances = std::make_unique<std::set<TimeUs>>();
    const bool valid =
        w.count > 0 && (w.flags & static_cast<uint32_t>(WindowFlag::kInsufficientCapture)) == 0;
    const bool exceeds = valid && acc.mean() > def.exceedance_threshold;
    if (exceeds) {
      h.exceedances->insert(w.start);
      SetFlag(w, WindowFlag::kExceedance);
    } else {
      h.exceedances->erase(w.start);
    }
    const TimeUs period = PeriodStart(def.exceedance_period, w.start);
    if (period != kMinTime) {  // forget what is before the previous period
      h.exceedances->erase(h.exceedances->begin(), h.exceedances->lower_bound(PeriodStart(
                                                       def.exceedance_period, period - 1)));
    }
    w.exceedance_count = static_cast<int64_t>(
        std::distance(h.exceedances->lower_bound(period), h.exceedances->upper_bound(w.start)));
  }

  if (!def.aggregates.Has(AggregateKind::kNowCast) && !def.aggregates.Has(AggregateKind::kAqi)) {
    return;
  }
  AqiPollutant pollutant;
  if (!AqiPollutantOf(w.metric, pollutant)) return;
  if (!h.hours) {
    h.hours = std::make_unique<KeyHistory::Hours>();
    h.hours->start.fill(kMinTime);
    h.hours->mean.fill(NAN);
  }
  auto slot = [&](TimeUs start) {
    const int64_t k = FloorDiv(start, def.size) % static_cast<int64_t>(kNowCastHours);
    return static_cast<size_t>(k < 0 ? k + static_cast<int64_t>(kNowCastHours) : k);
  };
  const bool present = static_cast<int64_t>(w.count) >= def.min_samples;
  const size_t own = slot(w.start);
  if (h.hours->start[own] <= w.start) {
    h.hours->start[own] = w.start;
    h.hours->mean[own] = present ? acc.mean() : NAN;
  }
  std::array<double, kNowCastHours> hourly;
  for (size_t i = 0; i < kNowCastHours; ++i) {
    const TimeUs start = w.start - static_cast<TimeUs>(i) * def.size;
    const size_t k = slot(start);
    hourly[i] = h.hours->start[k] == start ? h.hours->mean[k] : NAN;
  }
  const double nowcast = TruncateConcentration(pollutant, PmNowCast(hourly));
  if (def.aggregates.Has(AggregateKind::kNowCast)) w.nowcast = nowcast;
  if (def.aggregates.Has(AggregateKind::kAqi)) w.aqi = AqiFromConcentration(pollutant, nowcast);
}

// Emit the given cells of one window, ordered by metric then group name; each cell's
// first emission is revision 0, later ones are revisions. Returns the rows added.
size_t EmitCells(const WindowDefinition& def, TimeUs start, TimeUs end,
                 const std::vector<CellRef>& cells, TimeUs now, HistoryMap& history,
                 const WindowOperator::ExpectedInterval& expected, std::vector<WindowResult>& out) {
  struct Pending {
    CellRef ref;
    Symbol group;
    std::string_view metric_name;
    std::string_view group_name;
  };
  std::vector<Pending> pending;
  pending.reserve(cells.size());
  for (const CellRef& ref : cells) {
    Symbol group = GroupSymbol(def.group_by, ref.first->group);
    pending.push_back(Pending{ref, group, Symbol{ref.first->metric}.view(), group.view()});
  }
  std::sort(pending.begin(), pending.end(), [](const Pending& a, const Pending& b) {
    return std::tie(a.metric_name, a.group_name) < std::tie(b.metric_name, b.group_name);
  });
  out.reserve(out.size() + pending.size());
  for (const Pending& p : pending) {
    Cell& cell = *p.ref.second;
    WindowResult w;
    w.window = def.name_symbol;
    w.group_by = def.group_by_symbol;
    w.group = p.group;
    w.metric = Symbol{p.ref.first->metric};
    w.start = start;
    w.end = end;
    const WindowAccumulator* acc = &cell.acc;
    WindowAccumulator grid;
    if (def.resample != ResampleMode::kNone) {
      uint64_t filled = 0;
      grid = cell.acc.Resample(start, end, def.resample_interval, def.resample,
                               def.aggregates.NeedsValues(), filled);
      acc = &grid;
      if (grid.count() > 0) {
        w.interpolated_sample_fraction =
            static_cast<double>(filled) / static_cast<double>(grid.count());
      }
    }
    acc->Fill(def.aggregates, w);
    w.late_count = cell.late_count;
    w.aggregation_method = def.aggregation_method;
    OwnQualityFlags(def, *acc, cell.acc.count(), expected, w);
    HistoryFlags(def, *acc, history[*p.ref.first], w);
    if (cell.emitted) {
      ++cell.revision;
      SetFlag(w, WindowFlag::kRevision);
    }
    w.revision = cell.revision;
    w.emitted_at = now;
    cell.emitted = true;
    cell.dirty = false;
    out.push_back(std::move(w));
  }
  return pending.size();
}

size_t EmitSession(const WindowDefinition& def, const CellKey& key, Session& session, TimeUs now,
                   HistoryMap& history, const WindowOperator::ExpectedInterval& expected,
                   std::vector<WindowResult>& out) {
  const std::vector<CellRef> cells{CellRef{&key, &session.cell}};
  return EmitCells(def, session.first, session.last + def.gap, cells, now, history, expected, out);
}

}  // namespace

void WindowOperator::EmitSlice(Slice& slice, std::vector<WindowResult>& out) {
  const WindowDefinition& def = definitions_[slice.def];
  if (def.pane > 0) {
    Panes& ps = *panes_;
    std::map<TimeUs, PaneMap>& panes = ps.by_def[slice.def];
    if (slice.merge_panes) {
      slice.merge_panes = false;
      slice.cells.reserve(size_hint_[slice.def]);
      for (auto it = panes.lower_bound(slice.start); it != panes.end() && it->first < slice.end;
           ++it) {
        for (const auto& [key, acc] : it->second) slice.cells[key].acc.Merge(acc);
      }
    }
    // Windows are emitted in order of their starts, so no later window contains the
    // panes before the next start.
    const TimeUs next_start = slice.start + def.step;
    for (auto it = panes.begin(); it != panes.end() && it->first < next_start;) {
      ps.size_hint[slice.def] = it->second.size();
      ps.open -= it->second.size();
      if (ps.last[slice.def].second == &it->second) ps.last[slice.def] = {kMinTime, nullptr};
      it = panes.erase(it);
    }
  }
  std::vector<CellRef> cells;
  cells.reserve(slice.cells.size());
  for (auto& [key, cell] : slice.cells) cells.emplace_back(&key, &cell);
  slice.emitted = true;
  CountEmitted(EmitCells(definitions_[slice.def], slice.start, slice.end, cells, clock_(),
                         histories_->by_def[slice.def], expected_interval_, out));
}

void WindowOperator::EmitRevisions(std::vector<WindowResult>& out) {
  const TimeUs now = clock_();
  if (!dirty_.empty()) {
    // Emit per slice, slices in (end, definition, start) order, like on-time rows.
    std::sort(dirty_.begin(), dirty_.end(), [](const DirtyRef& a, const DirtyRef& b) {
      return std::tie(a.slice->end, a.slice->def, a.slice->start) <
             std::tie(b.slice->end, b.slice->def, b.slice->start);
    });
    std::vector<CellRef> cells;
    for (size_t i = 0; i < dirty_.size();) {
      const Slice& slice = *dirty_[i].slice;
      cells.clear();
      for (; i < dirty_.size() && dirty_[i].slice == &slice; ++i) {
        cells.emplace_back(dirty_[i].key, dirty_[i].cell);
      }
      CountEmitted(EmitCells(definitions_[slice.def], slice.start, slice.end, cells, now,
                             histories_->by_def[slice.def], expected_interval_, out));
    }
    dirty_.clear();
  }
  Sessions& ss = *sessions_;
  if (ss.dirty.empty()) return;
  struct Pending {
    TimeUs end;
    uint16_t def;
    uint64_t group;
    uint32_t metric;
    TimeUs first;
    Session* session;
  };
  std::vector<Pending> due;
  for (const SessionRef& ref : ss.dirty) {
    Session* session = ss.Find(ref.def, ref.key, ref.first);
    if (session == nullptr || !session->cell.dirty) continue;  // merged away, or listed twice
    session->cell.dirty = false;
    due.push_back(Pending{session->last + definitions_[ref.def].gap, ref.def, ref.key.group,
                          ref.key.metric, ref.first, session});
  }
  ss.dirty.clear();
  std::sort(due.begin(), due.end(), [](const Pending& a, const Pending& b) {
    return std::tie(a.end, a.def, a.group, a.metric, a.first) <
           std::tie(b.end, b.def, b.group, b.metric, b.first);
  });
  for (const Pending& x : due) {
    const CellKey key{x.group, x.metric};
    CountEmitted(EmitSession(definitions_[x.def], key, *x.session, now, histories_->by_def[x.def],
                             expected_interval_, out));
  }
}

void WindowOperator::FreeSlice(const SliceId& id) {
  auto it = slices_.find(id);
  if (it == slices_.end()) return;
  size_hint_[id.first] = it->second->cells.size();
  if (last_slice_[id.first] == it->second.get()) last_slice_[id.first] = nullptr;
  slices_.erase(it);
}

void WindowOperator::CountEmitted(size_t n) {
  if (ledger_ != nullptr && n > 0) ledger_->AddWindowsEmitted(n);
}

WindowStats WindowOperator::Stats() const {
  // Heap estimate: glibc rounds each allocation up to 16 bytes plus an 8-byte header.
  auto alloc = [](size_t bytes) { return (bytes + 8 + 15) / 16 * 16; };
  WindowStats stats;
  stats.open_slices = slices_.size();
  stats.shed = shed_total_;
  for (const auto& keys : known_->by_def) {
    stats.known_keys += keys.size();
    stats.state_bytes += alloc(keys.bucket_count() * sizeof(void*)) +
                         keys.size() * alloc(sizeof(void*) + sizeof(CellKey) + sizeof(size_t));
  }
  for (const auto& [id, slice] : slices_) {
    stats.open_windows += slice->cells.size();
    stats.state_bytes += alloc(sizeof(Slice)) + alloc(sizeof(void*) * 4 + sizeof(SliceId) +
                                                      sizeof(std::unique_ptr<Slice>));
    stats.state_bytes += alloc(slice->cells.TableBytes());
    for (const auto& [key, cell] : slice->cells) stats.state_bytes += cell.acc.HeapBytes();
  }
  stats.state_bytes += timeline_.size() * alloc(sizeof(void*) * 4 + sizeof(Due));
  // Pane definitions: a window not emitted yet holds no cells of its own; it counts
  // once per key of its panes.
  for (uint16_t d = 0; d < definitions_.size(); ++d) {
    const std::map<TimeUs, PaneMap>& panes = panes_->by_def[d];
    for (const auto& [start, pane] : panes) {
      stats.open_panes += pane.size();
      stats.state_bytes += alloc(sizeof(void*) * 4 + sizeof(std::pair<const TimeUs, PaneMap>));
      stats.state_bytes += alloc(pane.TableBytes());
      for (const auto& [key, acc] : pane) stats.state_bytes += acc.HeapBytes();
    }
    if (panes.empty()) continue;
    for (const auto& [id, slice] : slices_) {
      if (id.first != d || !slice->merge_panes) continue;
      std::unordered_map<CellKey, bool, CellKeyHash> keys;
      for (auto it = panes.lower_bound(slice->start); it != panes.end() && it->first < slice->end;
           ++it) {
        for (const auto& [key, acc] : it->second) {
          if (slice->cells.count(key) == 0) keys.emplace(key, true);
        }
      }
      stats.open_windows += keys.size();
    }
  }
  stats.open_windows += sessions_->open;
  for (const auto& per_key : sessions_->by_def) {
    stats.state_bytes += alloc(per_key.bucket_count() * sizeof(void*));
    for (const auto& [key, list] : per_key) {
      stats.state_bytes += alloc(sizeof(void*) + sizeof(std::pair<const CellKey, KeySessions>));
      for (const auto& [first, session] : list) {
        stats.state_bytes += alloc(sizeof(void*) * 4 + sizeof(std::pair<const TimeUs, Session>));
        stats.state_bytes += session.cell.acc.HeapBytes();
      }
    }
  }
  stats.state_bytes += sessions_->timeline.size() * alloc(sizeof(void*) * 4 + sizeof(SessionDue));
  for (const HistoryMap& h : histories_->by_def) {
    stats.state_bytes += alloc(h.bucket_count() * sizeof(void*));
    for (const auto& [key, entry] : h) {
      stats.state_bytes += alloc(sizeof(void*) + sizeof(std::pair<const CellKey, KeyHistory>));
      stats.state_bytes += alloc(entry.windows.capacity() * sizeof(KeyHistory::Window));
      if (entry.hours) stats.state_bytes += alloc(sizeof(KeyHistory::Hours));
    }
  }
  return stats;
}

// ---------------------------------------------------------------------------
// Factory

Result<std::unique_ptr<WindowOperator>> MakeWindowOperator(const PipelineConfig& config,
                                                           WindowOperator::Clock clock) {
  TRIB_ASSIGN_OR_RETURN(std::vector<WindowDefinition> defs, ParseWindowDefinitions(config));
  return std::make_unique<WindowOperator>(std::move(defs), config.processing, std::move(clock));
}

Result<std::unique_ptr<Operator>> MakeWindowOperator(const PipelineConfig& config) {
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<WindowOperator> op, MakeWindowOperator(config, NowUs));
  return std::unique_ptr<Operator>(std::move(op));
}

}  // namespace tributary
