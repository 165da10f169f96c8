// Per-partition rate and lag, and hot-partition detection.
//
// A partition is where a source's input comes from: for a source with broker
// partitions (kafka) the (source, topic, partition); for the others (mqtt, http, file,
// simulator) the H3 resolution-5 cell of the reading's position (about 250 km²), so
// devices that are neighbours share a partition, as they would in a topic keyed by H3
// res-5 cell. Readings without a position fall into the partition "<source>/h3:none".
//
// Every reading that leaves ingestion is counted on the process thread (a hash look-up
// per reading; the H3 cell is cached per device and computed again only when the
// device moves). Every `processing.partition_rate_interval` (10 s) the interval is closed:
//   rate        = readings in the interval / its length (readings per second)
//   lag_seconds = processing time − the newest event time of the partition
//   median      = the median rate of the partitions that had readings in the interval
//   hot         = at least 3 partitions were active, the partition had at least
//                 `processing.hot_partition_min_records` readings, and rate >
//                 processing.hot_partition_factor (3) × median.
// A partition that becomes hot is logged once (a warning with its rate, the factor and
// its H3 cells, most readings first), and once more when it cools down. Gauges:
//   tributary_partition_rate{pipeline,partition}          readings per second
//   tributary_partition_lag_seconds{pipeline,partition}   event-time lag
//   tributary_partition_hot{pipeline,partition,hot_cells} 1 while hot
//   tributary_hot_partitions{pipeline}                    how many are hot
// Kafka partitions also have tributary_kafka_consumer_lag (records behind the end of
// the partition), from the kafka source. /api/health shows the hot ones with their
// cells (Report()).
//
// At most 4096 partitions are tracked; beyond that readings count in "<source>/other".
// A partition without readings for 6 intervals is forgotten (its gauges removed).
//
// Threading: Observe and Tick on the process thread; Report from any thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/model.h"
#include "core/pipeline_config.h"
#include "core/time.h"

namespace tributary {

struct HotPartitionOptions {
  DurationUs interval = 10 * kMicrosPerSecond;
  double factor = 3.0;
  uint64_t min_records = 100;
  size_t max_partitions = 4096;
};

/// Read `processing.partition_rate_interval` and `processing.hot_partition_*`.
Result<HotPartitionOptions> ParseHotPartitionOptions(const PipelineConfig& config);

struct PartitionRate {
  std::string partition;              ///< "kafka-in/readings/3" or "mqtt-city/h3:85283473fffffff"
  double rate = 0;                    ///< readings per second in the last closed interval
  uint64_t records = 0;               ///< readings in the last closed interval
  double lag_seconds = 0;             ///< processing time − newest event time, at the close
  std::vector<std::string> h3_cells;  ///< res-5 cells, most readings first (at most 8)
  bool hot = false;
  /// While hot: the H3 resolution at which re-keying its cells (`tributary rekey`)
  /// would bring it to the median rate, if its readings spread evenly over the finer
  /// cells (each resolution step splits a cell into 7). 0 when not hot.
  int suggested_resolution = 0;
};

/// The finer H3 resolution that splits a partition `factor` times the median rate into
/// parts at or below the median: 5 + ceil(log7(factor)), at most 15.
int SuggestedResolution(double factor);

struct PartitionReport {
  TimeUs closed_at = kMinTime;            ///< end of the last closed interval (kMinTime: none yet)
  double median_rate = 0;                 ///< of the active partitions
  size_t active = 0;                      ///< partitions with readings in the interval
  std::vector<PartitionRate> partitions;  ///< by rate, highest first

  std::vector<const PartitionRate*> Hot() const;
};

class PartitionMonitor {
 public:
  /// `sources`: the pipeline's sources (their names, and which have broker partitions:
  /// type kafka). `gauge_labels` (`pipeline="..."`, no braces) prefix the gauges' labels;
  /// empty: no gauges.
  PartitionMonitor(HotPartitionOptions options, const std::vector<SourceEntry>& sources,
                   std::string gauge_labels);
  ~PartitionMonitor();

  /// Count the readings of one batch from source `source_index`.
  void Observe(const std::vector<Reading>& readings, int source_index, TimeUs now);
  /// Close the interval when it is due (also called by Observe).
  void Tick(TimeUs now);
  /// The last closed interval.
  PartitionReport Report() const;
  /// Remove this monitor's gauges.
  void ClearGauges();

 private:
  struct Key {
    uint16_t source = 0;
    uint32_t topic = 0;      // kafka: topic symbol id
    int32_t partition = -1;  // kafka: partition
    uint64_t cell = 0;       // others: H3 res-5 cell (0: none; ~0: overflow)
    friend bool operator==(const Key& a, const Key& b) {
      return a.source == b.source && a.topic == b.topic && a.partition == b.partition &&
             a.cell == b.cell;
    }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const noexcept;
  };
  struct Stat {
    std::string name;
    uint64_t count = 0;
    TimeUs newest_event = kMinTime;
    std::unordered_map<uint64_t, uint64_t> cells;  // res-5 cell → readings (interval)
    int idle_intervals = 0;
    bool hot = false;
    std::string hot_labels;  // labels of its tributary_partition_hot gauge while hot
  };
  struct DevicePlace {
    double lat = 0;
    double lon = 0;
    uint64_t cell = 0;
  };
  uint64_t CellOf(const Reading& r);
  Stat& StatFor(const Key& key);
  std::string NameOf(const Key& key) const;
  std::string Labels(const std::string& partition) const;

  const HotPartitionOptions options_;
  std::vector<std::string> source_names_;
  std::vector<bool> partitioned_;
  std::string labels_;
  TimeUs interval_start_ = kMinTime;
  std::unordered_map<Key, Stat, KeyHash> stats_;
  std::unordered_map<uint32_t, DevicePlace> places_;  // by device symbol id

  mutable std::mutex mu_;
  PartitionReport report_;
};

}  // namespace tributary
