#include "core/model.h"

#include <cmath>

#include "core/json_writer.h"

namespace tributary {
namespace {

struct FlagName {
  uint32_t bit;
  const char* name;
};

constexpr FlagName kQcFlagNames[] = {
    {static_cast<uint32_t>(QcFlag::kTimestampDrift), "TIMESTAMP_DRIFT"},
    {static_cast<uint32_t>(QcFlag::kLate), "LATE"},
    {static_cast<uint32_t>(QcFlag::kCalibrated), "CALIBRATED"},
    {static_cast<uint32_t>(QcFlag::kUnitConverted), "UNIT_CONVERTED"},
    {static_cast<uint32_t>(QcFlag::kRangeSuspect), "RANGE_SUSPECT"},
    {static_cast<uint32_t>(QcFlag::kCrsTransformed), "CRS_TRANSFORMED"},
    {static_cast<uint32_t>(QcFlag::kNoZone), "NO_ZONE"},
    {static_cast<uint32_t>(QcFlag::kLateArrival), "LATE_ARRIVAL"},
    {static_cast<uint32_t>(QcFlag::kPositionFromRegistry), "POSITION_FROM_REGISTRY"},
    {static_cast<uint32_t>(QcFlag::kSpike), "SPIKE"},
    {static_cast<uint32_t>(QcFlag::kFlatline), "FLATLINE"},
    {static_cast<uint32_t>(QcFlag::kRateOfChange), "RATE_OF_CHANGE"},
    {static_cast<uint32_t>(QcFlag::kBaselineExceeded), "BASELINE_EXCEEDED"},
    {static_cast<uint32_t>(QcFlag::kNeighborDisagreement), "NEIGHBOR_DISAGREEMENT"},
    {static_cast<uint32_t>(QcFlag::kDriftCorrected), "DRIFT_CORRECTED"},
    {static_cast<uint32_t>(QcFlag::kAnomaly), "ANOMALY"},
    {static_cast<uint32_t>(QcFlag::kSimulatedFault), "SIMULATED_FAULT"},
};

constexpr FlagName kWindowFlagNames[] = {
    {static_cast<uint32_t>(WindowFlag::kSparse), "SPARSE"},
    {static_cast<uint32_t>(WindowFlag::kRangeViolation), "RANGE_VIOLATION"},
    {static_cast<uint32_t>(WindowFlag::kLatencyDegraded), "LATENCY_DEGRADED"},
    {static_cast<uint32_t>(WindowFlag::kLowCoverage), "LOW_COVERAGE"},
    {static_cast<uint32_t>(WindowFlag::kBelowMinSamples), "BELOW_MIN_SAMPLES"},
    {static_cast<uint32_t>(WindowFlag::kRevision), "REVISION"},
    {static_cast<uint32_t>(WindowFlag::kGapBefore), "GAP_BEFORE"},
    {static_cast<uint32_t>(WindowFlag::kCentroidJump), "CENTROID_JUMP"},
    {static_cast<uint32_t>(WindowFlag::kInsufficientCapture), "INSUFFICIENT_CAPTURE"},
    {static_cast<uint32_t>(WindowFlag::kExceedance), "EXCEEDANCE"},
};

template <size_t N>
std::string JoinFlags(uint32_t bits, const FlagName (&names)[N]) {
  std::string out;
  for (const FlagName& f : names) {
    if (bits & f.bit) {
      if (!out.empty()) out.push_back('|');
      out += f.name;
    }
  }
  return out;
}

}  // namespace

std::string QcFlagsToString(QcFlags flags) {
  return JoinFlags(flags.bits, kQcFlagNames);
}

std::string WindowFlagsToString(uint32_t flags) {
  return JoinFlags(flags, kWindowFlagNames);
}

std::string QcFlagsToJson(QcFlags flags) {
  JsonWriter w;
  w.BeginArray();
  for (const FlagName& f : kQcFlagNames) {
    if (flags.bits & f.bit) w.String(f.name);
  }
  w.EndArray();
  return w.Take();
}

std::string ProvenanceToJson(const Provenance& p, Symbol device, QcFlags flags) {
  JsonWriter w;
  w.BeginObject();
  w.Key("device_id").String(device.view());
  if (p.firmware) w.Key("firmware_version").String(p.firmware.view());
  if (p.calibration_date) w.Key("calibration_date").String(p.calibration_date.view());
  if (p.crs_source) {
    w.Key("crs_source").String(p.crs_source.view());
    w.Key("original_x").Number(p.orig_x);
    w.Key("original_y").Number(p.orig_y);
  }
  if (p.source) w.Key("source").String(p.source.view());
  if (p.topic) w.Key("topic").String(p.topic.view());
  if (p.partition >= 0) w.Key("partition").Int(p.partition);
  if (p.offset >= 0) w.Key("offset").Int(p.offset);
  if (p.drift_correction) w.Key("drift_correction").String(p.drift_correction.view());
  if (!std::isnan(p.anomaly_score)) {
    w.Key("anomaly_score").Number(std::round(static_cast<double>(p.anomaly_score) * 1e4) / 1e4);
  }
  w.Key("qc_flags").Raw(QcFlagsToJson(flags));
  w.EndObject();
  return w.Take();
}

}  // namespace tributary

namespace tributary {

const char* AlertStateName(AlertState s) {
  switch (s) {
    case AlertState::kFiring:
      return "firing";
    case AlertState::kRenotify:
      return "renotify";
    case AlertState::kResolved:
      return "resolved";
  }
  return "firing";
}

}  // namespace tributary
