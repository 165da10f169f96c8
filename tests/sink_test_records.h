// Records with every field set, shared by the sink tests so each sink is checked
// against the same values.
#pragma once

#include "core/model.h"

namespace tributary::testing {

/// 2024-05-01T12:00:00Z.
inline constexpr TimeUs kSinkT0 = 1714564800000000;

/// A reading with every field, provenance included, set to a distinctive value.
inline Reading FullReading() {
  Reading r;
  r.device = Intern("node-17");
  r.metric = Intern("pm25");
  r.value = 12.5;
  r.event_time = kSinkT0 + 123456;
  r.arrival_time = kSinkT0 + 2 * kMicrosPerSecond;
  r.lat = 48.2082;
  r.lon = 16.3738;
  r.h3 = 0x85283473fffffffULL;
  r.zone = Intern("zone-a");
  r.flags.Set(QcFlag::kCalibrated);
  r.flags.Set(QcFlag::kCrsTransformed);
  r.prov.source = Intern("mqtt-city");
  r.prov.topic = Intern("city/air/node-17");
  r.prov.partition = 3;
  r.prov.offset = 991;
  r.prov.firmware = Intern("2.4.1");
  r.prov.calibration_date = Intern("2024-03-01");
  r.prov.crs_source = Intern("EPSG:32633");
  r.prov.orig_x = 601234.5;
  r.prov.orig_y = 5340123.25;
  return r;
}

/// A reading with only device, metric, value and times (no position).
inline Reading BareReading(const char* device, const char* metric, TimeUs t, double value) {
  Reading r;
  r.device = Intern(device);
  r.metric = Intern(metric);
  r.value = value;
  r.event_time = t;
  r.arrival_time = t + kMicrosPerSecond;
  return r;
}

/// A window result with most aggregates, extra quantiles, flags and a centroid set.
inline WindowResult FullWindowResult() {
  WindowResult w;
  w.window = Intern("device_1m");
  w.group_by = Intern("device");
  w.group = Intern("node-17");
  w.metric = Intern("pm25");
  w.start = kSinkT0;
  w.end = kSinkT0 + kMicrosPerMinute;
  w.count = 6;
  w.mean = 11.0;
  w.min = 8.0;
  w.max = 15.5;
  w.std = 2.25;
  w.median = 10.5;
  w.p95 = 15.0;
  w.first = 9.0;
  w.last = 12.0;
  w.centroid_lat = 48.2;
  w.centroid_lon = 16.37;
  w.distinct_sensors = 1;
  w.late_count = 2;
  w.interpolated_sample_fraction = 0.5;
  w.exceedance_count = 4;
  w.quantiles = {{0.9, 14.5}};
  w.aggregation_method = Intern("mean");
  w.flags = static_cast<uint32_t>(WindowFlag::kSparse);
  w.revision = 1;
  w.emitted_at = kSinkT0 + kMicrosPerMinute + 500000;
  return w;
}

}  // namespace tributary::testing
