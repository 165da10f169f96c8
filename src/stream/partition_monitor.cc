#include "stream/partition_monitor.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "server/metrics.h"
#include "spatial/h3.h"

namespace tributary {

namespace {

constexpr int kPartitionResolution = 5;
constexpr uint64_t kOverflowCell = ~uint64_t{0};
constexpr int kForgetAfterIdle = 6;
constexpr size_t kMaxCellsShown = 8;
constexpr size_t kMaxCellsCounted = 256;

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  double m = v[mid];
  if (v.size() % 2 == 0) {
    m = (m + *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid))) / 2;
  }
  return m;
}

}  // namespace

Result<HotPartitionOptions> ParseHotPartitionOptions(const PipelineConfig& config) {
  OptionReader r(config.processing_options.node(), config.file, "processing",
                 {&ProcessingSectionSpec()});
  HotPartitionOptions o;
  TRIB_ASSIGN_OR_RETURN(o.interval, r.GetDuration("partition_rate_interval"));
  TRIB_ASSIGN_OR_RETURN(o.factor, r.GetDouble("hot_partition_factor"));
  TRIB_ASSIGN_OR_RETURN(int64_t min_records, r.GetInt("hot_partition_min_records"));
  o.min_records = static_cast<uint64_t>(min_records);
  return o;
}

std::vector<const PartitionRate*> PartitionReport::Hot() const {
  std::vector<const PartitionRate*> out;
  for (const PartitionRate& p : partitions) {
    if (p.hot) out.push_back(&p);
  }
  return out;
}

size_t PartitionMonitor::KeyHash::operator()(const Key& k) const noexcept {
  uint64_t x = k.cell ^ (static_cast<uint64_t>(k.topic) << 32) ^
               (static_cast<uint64_t>(static_cast<uint32_t>(k.partition)) << 7) ^
               (static_cast<uint64_t>(k.source) << 56);
  x ^= x >> 33;  // murmur3 finaliser
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return static_cast<size_t>(x);
}

PartitionMonitor::PartitionMonitor(HotPartitionOptions options,
                                   const std::vector<SourceEntry>& sources,
                                   std::string gauge_labels)
    : options_(options), labels_(std::move(gauge_labels)) {
  for (const SourceEntry& s : sources) {
    source_names_.push_back(s.name);
    partitioned_.push_back(s.type == "kafka");
  }
}

PartitionMonitor::~PartitionMonitor() = default;

uint64_t PartitionMonitor::CellOf(const Reading& r) {
  if (!std::isfinite(r.lat) || !std::isfinite(r.lon)) return 0;
  auto [it, added] = places_.try_emplace(r.device.id);
  DevicePlace& p = it->second;
  if (added || p.lat != r.lat || p.lon != r.lon) {
    p.lat = r.lat;
    p.lon = r.lon;
    if (r.h3 != 0 && h3::GetResolution(r.h3) >= kPartitionResolution) {
      p.cell = h3::CellToParent(r.h3, kPartitionResolution);
    } else {
      p.cell = h3::LatLngToCell(r.lat, r.lon, kPartitionResolution);
    }
  }
  return p.cell;
}

std::string PartitionMonitor::NameOf(const Key& key) const {
  std::string source =
      key.source < source_names_.size() ? source_names_[key.source] : std::string("?");
  if (key.cell == kOverflowCell) return source + "/other";
  if (key.partition >= 0) {
    return source + "/" + std::string(Symbol{key.topic}.view()) + "/" +
           std::to_string(key.partition);
  }
  if (key.cell == 0) return source + "/h3:none";
  return source + "/h3:" + h3::CellToString(key.cell);
}

PartitionMonitor::Stat& PartitionMonitor::StatFor(const Key& key) {
  auto it = stats_.find(key);
  if (it != stats_.end()) return it->second;
  Key k = key;
  if (stats_.size() >= options_.max_partitions) {
    k = Key{key.source, 0, -1, kOverflowCell};
    it = stats_.find(k);
    if (it != stats_.end()) return it->second;
  }
  Stat& s = stats_[k];
  s.name = NameOf(k);
  return s;
}

void PartitionMonitor::Observe(const std::vector<Reading>& readings, int source_index, TimeUs now) {
  if (interval_start_ == kMinTime) interval_start_ = now;
  const bool partitioned = source_index >= 0 &&
                           static_cast<size_t>(source_index) < partitioned_.size() &&
                           partitioned_[static_cast<size_t>(source_index)];
  const auto src = static_cast<uint16_t>(std::max(source_index, 0));
  // Readings of one batch come mostly from few partitions: remember the last one.
  Key last_key{};
  Stat* last = nullptr;
  for (const Reading& r : readings) {
    Key key{src, 0, -1, 0};
    uint64_t cell = 0;
    if (partitioned && r.prov.partition >= 0) {
      key.topic = r.prov.topic.id;
      key.partition = r.prov.partition;
      cell = CellOf(r);
    } else {
      cell = CellOf(r);
      key.cell = cell;
    }
    Stat* s = (last != nullptr && last_key == key) ? last : &StatFor(key);
    last_key = key;
    last = s;
    ++s->count;
    s->newest_event = std::max(s->newest_event, r.event_time);
    if (key.partition >= 0 && cell != 0) {
      auto c = s->cells.find(cell);
      if (c != s->cells.end()) {
        ++c->second;
      } else if (s->cells.size() < kMaxCellsCounted) {
        s->cells.emplace(cell, 1);
      }
    }
  }
  Tick(now);
}

std::string PartitionMonitor::Labels(const std::string& partition) const {
  std::string l = "{";
  if (!labels_.empty()) l += labels_ + ",";
  l += "partition=\"" + EscapeLabelValue(partition) + "\"";
  return l;
}

int SuggestedResolution(double factor) {
  int res = 5;
  for (double parts = 1; parts < factor && res < 15; parts *= 7) ++res;
  return res;
}

void PartitionMonitor::Tick(TimeUs now) {
  if (interval_start_ == kMinTime || now - interval_start_ < options_.interval) return;
  const double seconds = static_cast<double>(now - interval_start_) / kMicrosPerSecond;
  interval_start_ = now;

  PartitionReport report;
  report.closed_at = now;
  std::vector<double> active_rates;
  for (const auto& [key, s] : stats_) {
    if (s.count > 0) active_rates.push_back(static_cast<double>(s.count) / seconds);
  }
  report.active = active_rates.size();
  report.median_rate = Median(active_rates);
  const bool gauges = !labels_.empty();
  size_t hot_count = 0;
  for (auto it = stats_.begin(); it != stats_.end();) {
    const Key& key = it->first;
    Stat& s = it->second;
    if (s.count == 0 && ++s.idle_intervals >= kForgetAfterIdle) {
      if (gauges) ClearConnectorGauges(Labels(s.name).substr(1) + ",");
      if (gauges) ClearConnectorGauges(Labels(s.name).substr(1) + "}");
      it = stats_.erase(it);
      continue;
    }
    if (s.count > 0) s.idle_intervals = 0;
    PartitionRate p;
    p.partition = s.name;
    p.records = s.count;
    p.rate = static_cast<double>(s.count) / seconds;
    p.lag_seconds = s.newest_event == kMinTime
                        ? 0
                        : static_cast<double>(now - s.newest_event) / kMicrosPerSecond;
    if (key.partition >= 0) {
      std::vector<std::pair<uint64_t, uint64_t>> cells(s.cells.begin(), s.cells.end());
      std::sort(cells.begin(), cells.end(), [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
      });
      for (size_t i = 0; i < cells.size() && i < kMaxCellsShown; ++i) {
        p.h3_cells.push_back(h3::CellToString(cells[i].first));
      }
    } else if (key.cell != 0 && key.cell != kOverflowCell) {
      p.h3_cells.push_back(h3::CellToString(key.cell));
    }
    p.hot = report.active >= 3 && s.count >= options_.min_records &&
            p.rate > options_.factor * report.median_rate;
    if (p.hot) p.suggested_resolution = SuggestedResolution(p.rate / report.median_rate);
    std::string cells_text;
    for (const std::string& c : p.h3_cells) cells_text += (cells_text.empty() ? "" : ",") + c;
    if (p.hot && !s.hot) {
      spdlog::warn(
          "partition {} is hot: {:.1f} readings/s, {:.1f}x the median {:.1f}/s of {} "
          "active partitions (threshold {}x); H3 cells {}; re-key them at H3 resolution {} "
          "to spread the load (tributary rekey)",
          s.name, p.rate, report.median_rate > 0 ? p.rate / report.median_rate : 0.0,
          report.median_rate, report.active, options_.factor,
          cells_text.empty() ? "none" : cells_text, p.suggested_resolution);
    } else if (!p.hot && s.hot) {
      spdlog::info("partition {} is no longer hot: {:.1f} readings/s (median {:.1f}/s)", s.name,
                   p.rate, report.median_rate);
    }
    if (gauges) {
      const std::string labels = Labels(s.name);
      SetConnectorGauge("tributary_partition_rate", labels + "}", p.rate,
                        "Readings per second of a source partition (last interval).");
      SetConnectorGauge("tributary_partition_lag_seconds", labels + "}", p.lag_seconds,
                        "Processing time minus the newest event time of a source partition.");
      std::string hot_labels = labels + ",hot_cells=\"" + EscapeLabelValue(cells_text) + "\"}";
      if (s.hot && (!p.hot || hot_labels != s.hot_labels)) {
        ClearConnectorGauges(s.hot_labels);
        s.hot_labels.clear();
      }
      if (p.hot) {
        SetConnectorGauge("tributary_partition_hot", hot_labels, 1,
                          "1 while a partition's rate exceeds hot_partition_factor x the median "
                          "(label hot_cells: its H3 res-5 cells).");
        s.hot_labels = hot_labels;
      }
    }
    s.hot = p.hot;
    if (p.hot) ++hot_count;
    s.count = 0;
    s.cells.clear();
    report.partitions.push_back(std::move(p));
    ++it;
  }
  std::sort(report.partitions.begin(), report.partitions.end(),
            [](const PartitionRate& a, const PartitionRate& b) {
              return a.rate != b.rate ? a.rate > b.rate : a.partition < b.partition;
            });
  if (gauges) {
    SetConnectorGauge("tributary_hot_partitions", "{" + labels_ + "}",
                      static_cast<double>(hot_count),
                      "Source partitions now reported hot (rate above hot_partition_factor x "
                      "the median).");
  }
  std::lock_guard lock(mu_);
  report_ = std::move(report);
}

PartitionReport PartitionMonitor::Report() const {
  std::lock_guard lock(mu_);
  return report_;
}

void PartitionMonitor::ClearGauges() {
  if (!labels_.empty()) ClearConnectorGauges(labels_);
}

}  // namespace tributary
