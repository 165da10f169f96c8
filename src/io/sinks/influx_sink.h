// The `influx` sink: readings and window results as InfluxDB 1.x line protocol over HTTP
// (POST /write?db=<database>&precision=u), batched, behind the circuit breaker
// (io/sinks/breaker_sink.h) unless `breaker: false`.
//
// Points: measurement `readings` with tags device, metric, zone (when set) and fields
// value, lat, lon, qc_flags, provenance (the JSON text), at the event time; measurement
// `windows` with tags window, group_by, group, metric, revision and fields count and every
// aggregate that is set, quality_flags and late_arrival_count, at the window start. A
// point with the same measurement, tags and time replaces the stored one, so re-delivered
// rows are stored once. Write buffers lines; Commit sends them in requests of at most
// `batch_lines` lines and counts the lines the server accepted in the ledger
// ("<sink name>/readings", "<sink name>/windows"). Connection errors and 5xx answers are
// retryable; 4xx answers (a malformed point, an unknown database) are not.
//
// Threading: one thread at a time, as every sink.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/pipeline_config.h"
#include "core/time.h"
#include "io/connector.h"

namespace tributary {

class Registry;

struct InfluxSinkOptions {
  std::string name = "influx";
  std::string url = "http://127.0.0.1:8086";  ///< scheme, host and port of influxd
  std::string database;                       ///< created on Open if missing
  std::string username;
  std::string password;
  bool readings = true;
  bool windows = true;
  int64_t batch_lines = 5000;
  DurationUs timeout = 10 * kMicrosPerSecond;
};

/// Options of `sinks[] (type: influx)`.
const SectionSpec& InfluxSinkSpec();
/// Read and validate the options of a sink entry of type influx.
Result<InfluxSinkOptions> ReadInfluxSinkOptions(const SinkEntry& entry);
/// Make an influx sink (without breaker); nothing is sent before Open.
std::unique_ptr<Sink> MakeInfluxSink(InfluxSinkOptions options);
/// Line protocol of one reading / one window result (no trailing newline). A reading's
/// extra zone layers (`zone_layers`, from ExtraZoneLayerNames) are tags zone_<layer>; its
/// H3 cell and S2 token are fields.
std::string InfluxReadingLine(const Reading& r, const std::vector<std::string>& zone_layers = {});
std::string InfluxWindowLine(const WindowResult& w);
/// Register the `influx` sink type.
void RegisterInfluxSink(Registry& registry);

}  // namespace tributary
