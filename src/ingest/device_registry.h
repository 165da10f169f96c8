// The device registry: what the fleet's operators know about each device that the
// payloads do not say (or say wrongly).
//
// One YAML (or JSON) file, named by the pipeline's `processing.registry`, maps device ids
// or glob patterns to entries:
//
//   devices:
//     "aq-0042":                     # exact id
//       model: SDS011
//       firmware: 2.1.0              # used when the payload reports none
//       interval: 60s                # expected reporting interval
//       crs: EPSG:27700              # for x/y (and a fixed position) without a crs
//       position: {lat: 52.51, lon: 13.39}   # or {x: .., y: ..} in `crs`
//       aliases: {p_25: pm25}        # payload field (or long-shape name) → metric
//       units: {pm25: mg/m3}         # field or metric → unit when the payload has none
//       calibration:
//         pm25: {m: 0.52, b: 1.1, c: 0.0, date: 2024-03-01}
//       reference: ref-01            # co-located reference station (drift checks)
//     "aq-*":                        # pattern: * any run, ? one character, [..] a set
//       model: generic
//
// Lookup: an exact id wins; otherwise the matching pattern with the most literal
// characters; ties go to the pattern written first. Only that one entry applies: entries
// do not merge, so an exact entry repeats what it needs of a pattern's. Calibration is y = c·x² +
// m·x + b applied to the value already in the metric's canonical unit (so coefficients are fitted
// in canonical units), before the physical-bounds check.
//
// Reload: DeviceRegistry polls the file's modification time and size at a bounded rate
// from the thread that calls Poll (the ingest process thread). A changed file is
// parsed off to the side; when it is valid it replaces the current snapshot atomically,
// when it is broken the old snapshot stays and the located error is logged. Snapshots
// are immutable and shared, so a reader holding one is never disturbed by a reload.
//
// Threading: Snapshot(), ExpectedInterval() and Find() may be called from any thread;
// Poll() and Reload() from one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/intern.h"
#include "core/status.h"
#include "core/time.h"
#include "ingest/metrics.h"
#include "ingest/units.h"

namespace tributary {

/// A calibration curve for one metric: y = c·x² + m·x + b in the canonical unit.
struct Calibration {
  Symbol metric;  ///< canonical (or new) metric name the curve applies to
  double m = 1.0;
  double b = 0.0;
  double c = 0.0;
  Symbol date;  ///< ISO date the calibration was made ("" when not given)

  double Apply(double x) const { return (c * x + m) * x + b; }
};

/// A payload field name the registry maps to a metric (resolved when the file is read).
struct FieldAlias {
  std::string field;                       ///< payload path, last segment, or long-shape name
  std::string target;                      ///< metric name as written
  const MetricInfo* metric = nullptr;      ///< nullptr: a new (non-canonical) metric
  const UnitInfo* implied_unit = nullptr;  ///< unit implied by the target alias ("temp_f")
  Symbol name;                             ///< canonical or interned new name
};

/// Everything the registry says about the devices one key matches.
struct DeviceEntry {
  std::string key;       ///< the id or pattern as written
  bool pattern = false;  ///< key contains *, ? or [
  size_t literal_chars = 0;
  int line = 0;  ///< where the entry starts in the file (1-based)
  std::string model;
  Symbol firmware;
  DurationUs interval = 0;  ///< expected reporting interval; 0 = not given
  std::string crs;          ///< default CRS of the device's x/y coordinates; "" = none
  bool has_position = false;
  bool position_xy = false;  ///< position given as x/y in `crs` (else WGS84 lat/lon)
  double lat = 0, lon = 0;   ///< WGS84 degrees, or y/x in `crs` when position_xy
  std::vector<FieldAlias> aliases;
  /// Field name or metric name → unit text (a FindUnit key).
  std::vector<std::pair<std::string, std::string>> units;
  std::vector<const MetricInfo*> unit_metrics;  ///< FindMetric of each units key
  std::vector<Calibration> calibrations;
  /// Id of the co-located reference station (`reference:`); "" = none. Pairs a
  /// low-cost sensor with it for calibration-drift checks (stream/qc/drift.h).
  std::string reference;

  /// The alias of a field (its path first, then its last segment); nullptr when none.
  const FieldAlias* AliasFor(std::string_view path, std::string_view leaf) const;
  /// The unit configured for a field or metric; empty when none.
  std::string_view UnitFor(std::string_view path, std::string_view leaf,
                           const MetricInfo* metric) const;
  /// The calibration of `metric`; nullptr when none.
  const Calibration* CalibrationFor(Symbol metric) const;
};

/// One parsed registry file: immutable once built.
class RegistrySnapshot {
 public:
  /// Parse registry text; errors name `file`, the line and the key.
  static Result<std::shared_ptr<const RegistrySnapshot>> Parse(std::string_view text,
                                                               const std::string& file);
  /// Read and parse a registry file.
  static Result<std::shared_ptr<const RegistrySnapshot>> Load(const std::string& path);

  /// The entry for `device` (exact id, else the most specific pattern); nullptr if none.
  const DeviceEntry* Find(std::string_view device) const;
  size_t size() const { return entries_.size(); }
  const std::vector<DeviceEntry>& entries() const { return entries_; }

 private:
  std::vector<DeviceEntry> entries_;
  std::unordered_map<std::string, size_t> exact_;
  std::vector<size_t> patterns_;  // most literal characters first, then file order
};

/// The keys of one registry entry (documented as `registry devices.<id or pattern>`).
const SectionSpec& DeviceRegistryEntrySpec();
/// The keys of one calibration curve (`registry devices.<id>.calibration.<metric>`).
const SectionSpec& DeviceCalibrationSpec();

/// True when `pattern` (glob: *, ?, [set]) matches all of `text`.
bool GlobMatch(std::string_view pattern, std::string_view text);

/// The current registry of a run, reloaded when its file changes.
class DeviceRegistry {
 public:
  /// Load `path` (it must exist and parse); poll for changes every `poll_interval`.
  static Result<std::shared_ptr<DeviceRegistry>> Open(std::string path, DurationUs poll_interval);

  /// The current snapshot (never null).
  std::shared_ptr<const RegistrySnapshot> Snapshot() const;
  /// Increases with every snapshot installed, so callers can drop cached lookups.
  uint64_t generation() const;
  /// The expected reporting interval of `device` (0 when the registry gives none).
  DurationUs ExpectedInterval(std::string_view device) const;

  /// Check the file when the poll interval has passed since the last check; reload it
  /// when its modification time or size changed. True when a new snapshot was installed.
  bool Poll();
  /// Re-read the file now. On error the current snapshot stays and the error is returned
  /// (and logged).
  Status Reload();

  const std::string& path() const { return path_; }

 private:
  struct FileStamp {
    std::filesystem::file_time_type mtime{};
    uintmax_t size = 0;
    bool exists = false;
    friend bool operator==(const FileStamp&, const FileStamp&) = default;
  };
  DeviceRegistry(std::string path, DurationUs poll_interval);
  FileStamp Stamp() const;

  std::string path_;
  std::chrono::steady_clock::duration poll_interval_;
  std::chrono::steady_clock::time_point last_poll_{};
  FileStamp stamp_;
  FileStamp failed_stamp_;  // the stamp of a broken file already reported
  mutable std::mutex mu_;   // guards snapshot_ and generation_
  std::shared_ptr<const RegistrySnapshot> snapshot_;
  uint64_t generation_ = 0;
};

}  // namespace tributary
