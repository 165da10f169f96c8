#include "stream/window.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <unordered_map>

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
           " (count, first, last, distinct_sensors and centroid are always computed; "
           "aggregates not listed are NaN in the results). Planned, rejected for now: " +
           planned + ".";
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

using CellMap = std::unordered_map<CellKey, Cell, CellKeyHash>;

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
  CellMap cells;
};

struct WindowOperator::DirtyRef {
  Slice* slice;
  const CellKey* key;
  Cell* cell;
};

// ---------------------------------------------------------------------------
// Configuration

const SectionSpec& WindowSectionSpec() {
  static const SectionSpec spec{
      "windows[]",
      "Window definitions: each turns readings into windowed statistics per (group, "
      "metric). A window is emitted when the watermark passes its end, re-emitted as a "
      "revision when a reading arrives within `grace` after that, and readings past the "
      "grace go to the late sink with their lateness.",
      {
          {"name", OptionType::kString, "",
           "unique name of the definition (the `window` column of results)", "", true},
          {"type", OptionType::kEnum, "tumbling",
           "tumbling: back-to-back windows; sliding: windows of `size` every `step`; "
           "session: not supported yet",
           "tumbling|sliding|session"},
          {"size", OptionType::kDuration, "", "window length", "1ms..", true},
          {"step", OptionType::kDuration, "",
           "sliding only: distance between window starts, at most `size` (a tumbling "
           "window's step is its size)",
           "1ms.."},
          {"offset", OptionType::kDuration, "0s",
           "shifts window boundaries: start = floor((t − offset) / step)·step + offset "
           "(e.g. 30m on 1h windows gives half-past boundaries)"},
          {"grace", OptionType::kDuration, "",
           "how long after its end a window still takes readings (each one re-emits it as a "
           "revision); later readings are late. Default: processing.grace"},
          {"group_by", OptionType::kEnum, "device",
           "what one row summarises: a device, a zone (after enrichment), an H3 cell, or all "
           "readings",
           "device|zone|h3|all"},
          {"metrics", OptionType::kStringList, "",
           "canonical metrics this definition takes (e.g. [pm25, pm10]); empty: all"},
          {"aggregates", OptionType::kStringList, "count, mean, min, max", AggregatesDescription()},
          {"min_samples", OptionType::kInt, "1",
           "windows with fewer readings are still emitted, flagged BELOW_MIN_SAMPLES", "1.."},
      }};
  return spec;
}

bool WindowDefinition::Accepts(Symbol metric) const {
  if (metrics.empty()) return true;
  return std::find(metrics.begin(), metrics.end(), metric) != metrics.end();
}

Result<WindowDefinition> ParseWindowDefinition(const OptionReader& options,
                                               const ProcessingOptions& processing) {
  // Read against this module's spec whatever specs the caller's reader carries.
  const OptionReader o(options.node(), options.file(), options.path(), {&WindowSectionSpec()});
  TRIB_RETURN_IF_ERROR(o.CheckKeys());
  WindowDefinition def;
  TRIB_ASSIGN_OR_RETURN(def.name, o.GetString("name"));
  if (def.name.empty()) return BadOption(o, "name", "must not be empty");
  def.name_symbol = Intern(def.name);

  TRIB_ASSIGN_OR_RETURN(std::string type, o.GetString("type"));
  if (type == "tumbling") {
    def.type = WindowType::kTumbling;
  } else if (type == "sliding") {
    def.type = WindowType::kSliding;
  } else {
    return BadOption(o, "type",
                     "'" + type + "' windows are not supported yet (supported: tumbling, sliding)");
  }

  TRIB_ASSIGN_OR_RETURN(def.size, o.GetDuration("size"));
  def.step = def.size;
  if (o.Has("step")) {
    TRIB_ASSIGN_OR_RETURN(def.step, o.GetDuration("step"));
    if (def.type == WindowType::kTumbling && def.step != def.size) {
      return BadOption(o, "step",
                       "applies to sliding windows only (a tumbling window's step is its size)");
    }
    if (def.step > def.size) {
      return BadOption(o, "step",
                       FormatDuration(def.step) + " is longer than the window size " +
                           FormatDuration(def.size) + " (readings between windows would be lost)");
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
  if (o.Has("grace")) {
    TRIB_ASSIGN_OR_RETURN(def.grace, o.GetDuration("grace"));
  } else {
    def.grace = processing.grace;
  }

  TRIB_ASSIGN_OR_RETURN(std::string group_by, o.GetString("group_by"));
  if (group_by == "device") {
    def.group_by = GroupBy::kDevice;
  } else if (group_by == "zone") {
    def.group_by = GroupBy::kZone;
  } else if (group_by == "h3") {
    def.group_by = GroupBy::kH3;
  } else {
    def.group_by = GroupBy::kAll;
  }
  def.group_by_symbol = Intern(group_by);

  TRIB_ASSIGN_OR_RETURN(std::vector<std::string> metrics, o.GetStringList("metrics"));
  for (const std::string& m : metrics) {
    if (m.empty()) return BadOption(o, "metrics", "metric names must not be empty");
    Symbol s = Intern(m);
    if (std::find(def.metrics.begin(), def.metrics.end(), s) == def.metrics.end()) {
      def.metrics.push_back(s);
    }
  }

  TRIB_ASSIGN_OR_RETURN(std::vector<std::string> aggregates, o.GetStringList("aggregates"));
  Result<AggregateSet> set = ParseAggregates(aggregates);
  if (!set.ok()) return BadOption(o, "aggregates", set.status().message());
  def.aggregates = *set;
  def.aggregation_method = Intern(AggregationMethodName(def.aggregates));

  TRIB_ASSIGN_OR_RETURN(def.min_samples, o.GetInt("min_samples"));
  return def;
}

Result<std::vector<WindowDefinition>> ParseWindowDefinitions(const PipelineConfig& config) {
  std::vector<WindowDefinition> defs;
  if (config.windows.size() > UINT16_MAX) {
    return Status::Invalid(config.file + ": too many window definitions");
  }
  for (const OptionReader& o : config.windows) {
    TRIB_ASSIGN_OR_RETURN(WindowDefinition def, ParseWindowDefinition(o, config.processing));
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
      tracker_(processing.out_of_orderness, processing.idle_timeout),
      last_slice_(definitions_.size(), nullptr),
      size_hint_(definitions_.size(), 0) {}

WindowOperator::~WindowOperator() = default;

Status WindowOperator::Open(RunContext& ctx) {
  ledger_ = ctx.ledger;
  return Status::Ok();
}

WindowOperator::Slice& WindowOperator::GetSlice(uint16_t d, TimeUs start) {
  Slice* cached = last_slice_[d];
  if (cached != nullptr && cached->start == start) return *cached;
  auto [it, added] = slices_.try_emplace(SliceId{d, start});
  if (added) {
    it->second = std::make_unique<Slice>();
    Slice& s = *it->second;
    s.def = d;
    s.start = start;
    s.end = start + definitions_[d].size;
    s.cells.reserve(size_hint_[d]);
    timeline_.insert(Due{s.end, d, start});
  }
  last_slice_[d] = it->second.get();
  return *it->second;
}

DurationUs WindowOperator::Assign(uint16_t d, const Reading& r, TimeUs watermark) {
  const WindowDefinition& def = definitions_[d];
  const TimeUs last_start = def.LastStart(r.event_time);
  const TimeUs last_closes = last_start + def.size + def.grace;
  if (last_closes <= watermark) return watermark - last_closes;
  if (!std::isfinite(r.value)) return -1;

  CellKey key;
  key.metric = r.metric.id;
  switch (def.group_by) {
    case GroupBy::kDevice:
      key.group = r.device.id;
      break;
    case GroupBy::kZone:
      key.group = r.zone.id;
      break;
    case GroupBy::kH3:
      key.group = r.h3;
      break;
    case GroupBy::kAll:
      key.group = 0;
      break;
  }
  for (TimeUs start = last_start; start > r.event_time - def.size; start -= def.step) {
    const TimeUs end = start + def.size;
    if (end + def.grace <= watermark) break;  // this and every earlier window are past grace
    Slice& slice = GetSlice(d, start);
    auto [it, added] = slice.cells.try_emplace(key);
    Cell& cell = it->second;
    cell.acc.Add(r);
    if (watermark >= end) ++cell.late_count;
    if (slice.emitted && !cell.dirty) {
      cell.dirty = true;
      dirty_.push_back(DirtyRef{&slice, &it->first, &cell});
    }
  }
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
  for (size_t i = 0; i < readings.size(); ++i) {
    Reading& r = readings[i];
    tracker_.Observe(PartitionOf(r), r.event_time, r.arrival_time);
    misses.clear();
    size_t belongs = 0;
    for (uint16_t d = 0; d < num_defs; ++d) {
      if (!definitions_[d].Accepts(r.metric)) continue;
      ++belongs;
      DurationUs lateness = Assign(d, r, watermark);
      if (lateness >= 0) misses.emplace_back(d, lateness);
    }
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
  }
  if (had_input) wall_at_last_input_ = clock_();
  tracker_.Advance(tracker_.max_arrival());
  EmitDue(batch.windows);
  batch.watermark = tracker_.watermark();
  return Status::Ok();
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
    case GroupBy::kAll:
      return kAll;
  }
  return {};
}

using CellRef = std::pair<const CellKey*, Cell*>;

// Emit the given cells of one slice, ordered by metric then group name; each cell's
// first emission is revision 0, later ones are revisions. Returns the rows added.
size_t EmitCells(const WindowDefinition& def, TimeUs start, TimeUs end,
                 const std::vector<CellRef>& cells, TimeUs now, std::vector<WindowResult>& out) {
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
    cell.acc.Fill(def.aggregates, w);
    w.late_count = cell.late_count;
    w.aggregation_method = def.aggregation_method;
    if (static_cast<int64_t>(w.count) < def.min_samples) {
      w.flags |= static_cast<uint32_t>(WindowFlag::kBelowMinSamples);
    }
    if (cell.emitted) {
      ++cell.revision;
      w.flags |= static_cast<uint32_t>(WindowFlag::kRevision);
    }
    w.revision = cell.revision;
    w.emitted_at = now;
    cell.emitted = true;
    cell.dirty = false;
    out.push_back(std::move(w));
  }
  return pending.size();
}

}  // namespace

void WindowOperator::EmitSlice(Slice& slice, std::vector<WindowResult>& out) {
  std::vector<CellRef> cells;
  cells.reserve(slice.cells.size());
  for (auto& [key, cell] : slice.cells) cells.emplace_back(&key, &cell);
  slice.emitted = true;
  CountEmitted(EmitCells(definitions_[slice.def], slice.start, slice.end, cells, clock_(), out));
}

void WindowOperator::EmitRevisions(std::vector<WindowResult>& out) {
  if (dirty_.empty()) return;
  // Emit per slice, slices in (end, definition, start) order, like on-time rows.
  std::sort(dirty_.begin(), dirty_.end(), [](const DirtyRef& a, const DirtyRef& b) {
    return std::tie(a.slice->end, a.slice->def, a.slice->start) <
           std::tie(b.slice->end, b.slice->def, b.slice->start);
  });
  const TimeUs now = clock_();
  std::vector<CellRef> cells;
  for (size_t i = 0; i < dirty_.size();) {
    const Slice& slice = *dirty_[i].slice;
    cells.clear();
    for (; i < dirty_.size() && dirty_[i].slice == &slice; ++i) {
      cells.emplace_back(dirty_[i].key, dirty_[i].cell);
    }
    CountEmitted(EmitCells(definitions_[slice.def], slice.start, slice.end, cells, now, out));
  }
  dirty_.clear();
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
  for (const auto& [id, slice] : slices_) {
    stats.open_windows += slice->cells.size();
    stats.state_bytes += alloc(sizeof(Slice)) + alloc(sizeof(void*) * 4 + sizeof(SliceId) +
                                                      sizeof(std::unique_ptr<Slice>));
    stats.state_bytes += alloc(slice->cells.bucket_count() * sizeof(void*));
    for (const auto& [key, cell] : slice->cells) {
      stats.state_bytes += alloc(sizeof(void*) + sizeof(std::pair<const CellKey, Cell>));
      stats.state_bytes += cell.acc.HeapBytes();
    }
  }
  stats.state_bytes += timeline_.size() * alloc(sizeof(void*) * 4 + sizeof(Due));
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
