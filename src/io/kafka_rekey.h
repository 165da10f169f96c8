// Re-keying a Kafka topic at a finer H3 resolution for hot cells (`tributary rekey`).
//
// Input topics are keyed by H3 resolution-5 cell, so one busy area lands in one
// partition; when the partition monitor reports such a partition hot (stream/
// partition_monitor.h: its cells and a suggested resolution), its cells can be split:
// every message whose position lies in one of `cells` is keyed by its cell at
// `resolution` (spreading the area over up to 7^(resolution − 5) keys), every other
// message with a position by its resolution-5 cell, and a message without a readable
// position keeps its key. Values, timestamps and headers are copied unchanged.
//
// The position is read from the JSON value: top-level `lat`/`latitude` and
// `lon`/`lng`/`longitude` numbers, or the same inside a `location` or `position`
// object (the shapes the json decoder reads without a field mapping).
//
// It reads `from` to the end offsets it finds when it starts (a snapshot: messages
// arriving later are left for a later run) and produces to `to` through an idempotent
// producer, waiting for every acknowledgement. Point the pipeline's source at `to`
// once it is done (with a new consumer group, or the group's offsets reset).
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "core/status.h"
#include "io/kafka_client.h"

namespace tributary {

struct RekeyOptions {
  std::string brokers;
  std::string from;
  std::string to;
  std::set<uint64_t> cells;  ///< H3 cells (any resolution up to `resolution`) to split
  int resolution = 7;        ///< the finer resolution for those cells
  KafkaProperties properties;
  int64_t timeout_ms = 30'000;
};

struct RekeyReport {
  uint64_t read = 0;
  uint64_t rekeyed_fine = 0;  ///< in `cells`: keyed at `resolution`
  uint64_t rekeyed_base = 0;  ///< elsewhere: keyed by their resolution-5 cell
  uint64_t kept = 0;          ///< no readable position: key unchanged
  uint64_t fine_keys = 0;     ///< distinct keys the split cells became
  std::string ToText() const;
};

/// The new key of a message with position (lat, lon) (NaN: none) and key `key`.
std::string RekeyKey(double lat, double lon, const std::string& key, const RekeyOptions& o,
                     bool* fine);
/// Read the position of a JSON message value; false when it has none.
bool RekeyPosition(std::string_view json, double* lat, double* lon);

/// Copy `from` to `to` with the new keys. Errors name the topic.
Result<RekeyReport> RekeyTopic(const RekeyOptions& options);

}  // namespace tributary
