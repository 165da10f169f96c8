#include "ingest/source_options.h"

#include <fmt/format.h>

#include "ingest/crs.h"
#include "ingest/metrics.h"
#include "ingest/units.h"

namespace tributary {

namespace {

struct RoleKey {
  std::string_view key;
  FieldRole role;
};

constexpr RoleKey kRoleKeys[] = {
    {"device_id", FieldRole::kDeviceId},
    {"timestamp", FieldRole::kTimestamp},
    {"lat", FieldRole::kLat},
    {"lon", FieldRole::kLon},
    {"x", FieldRole::kX},
    {"y", FieldRole::kY},
    {"crs", FieldRole::kCrs},
    {"metric_name", FieldRole::kMetricName},
    {"metric_value", FieldRole::kMetricValue},
    {"unit", FieldRole::kUnit},
    {"firmware", FieldRole::kFirmware},
};

bool ValidPath(std::string_view path) {
  if (path.empty() || path.size() > 256 || path.front() == '.' || path.back() == '.') return false;
  return path.find("..") == std::string_view::npos;
}

// An error at a nested node: "file:3:5: sources[0].mapping.metrics.pm25: message".
Status NestedError(const OptionReader& reader, std::string_view key, const YAML::Node& node,
                   std::string_view message) {
  ConfigLocation loc = reader.Where();
  if (node.IsDefined() && !node.Mark().is_null()) {
    loc.line = node.Mark().line + 1;
    loc.column = node.Mark().column + 1;
  }
  return Status::Invalid(fmt::format("{}:{}:{}: {}.{}: {}", loc.file, loc.line, loc.column,
                                     reader.path(), key, message));
}

Result<std::vector<std::pair<std::string, std::string>>> ReadStringMap(const OptionReader& reader,
                                                                       std::string_view key) {
  std::vector<std::pair<std::string, std::string>> out;
  YAML::Node node = reader.Node(key);
  if (!node.IsDefined() || node.IsNull()) return out;
  if (!node.IsMap()) return reader.Error(key, "expected a mapping");
  for (auto it = node.begin(); it != node.end(); ++it) {
    std::string name = it->first.Scalar();
    if (!it->second.IsScalar() || it->second.Scalar().empty()) {
      return NestedError(reader, fmt::format("{}.{}", key, name), it->second,
                         "expected a single non-empty string");
    }
    out.emplace_back(std::move(name), it->second.Scalar());
  }
  return out;
}

}  // namespace

const SectionSpec& SourceMappingSpec() {
  static const SectionSpec spec{
      "sources[].mapping",
      "Field mapping of a `json` source. Paths are dotted for nested objects (`meta.dev`); "
      "a role given here replaces the built-in aliases of that role (a list gives "
      "alternatives in priority order).",
      {
          {"device_id", OptionType::kStringList, "", "Path(s) of the device id."},
          {"timestamp", OptionType::kStringList, "",
           "Path(s) of the event time (ISO-8601 text or epoch number)."},
          {"lat", OptionType::kStringList, "", "Path(s) of the latitude."},
          {"lon", OptionType::kStringList, "", "Path(s) of the longitude."},
          {"x", OptionType::kStringList, "", "Path(s) of a projected easting."},
          {"y", OptionType::kStringList, "", "Path(s) of a projected northing."},
          {"crs", OptionType::kStringList, "", "Path(s) of the CRS name (EPSG code)."},
          {"metric_name", OptionType::kStringList, "",
           "Path(s) of the metric name (long shape: one metric per record)."},
          {"metric_value", OptionType::kStringList, "",
           "Path(s) of the metric value (long shape)."},
          {"unit", OptionType::kStringList, "", "Path(s) of a unit for all metrics of a record."},
          {"firmware", OptionType::kStringList, "", "Path(s) of the firmware version."},
          {"metrics", OptionType::kAny, "",
           "Mapping of metric name to payload path (`{pm25: data.pm2_5}`). When given without "
           "`metric_containers`, only these fields are metrics."},
          {"units", OptionType::kAny, "",
           "Mapping of payload path or metric name to the unit it is sent in "
           "(`{pm2_5: mg/m3}`), for payloads that carry no unit of their own (a unit in the "
           "payload wins)."},
          {"metric_containers", OptionType::kStringList, "",
           "Objects whose numeric fields are metrics (`\"\"` is the top level). Default: the "
           "top level and data, payload, readings, measurements, values."},
          {"metadata", OptionType::kStringList, "",
           "Further field names that are never metrics (added to battery_pct, rssi, ...)."},
      }};
  return spec;
}

Status ApplyFieldMapping(const OptionReader& reader, FieldMapping& mapping) {
  TRIB_RETURN_IF_ERROR(reader.CheckKeys());
  for (const RoleKey& rk : kRoleKeys) {
    if (!reader.Has(rk.key)) continue;
    TRIB_ASSIGN_OR_RETURN(auto paths, reader.GetStringList(rk.key));
    if (paths.empty()) return reader.Error(rk.key, "expected at least one path");
    for (const std::string& p : paths) {
      if (!ValidPath(p)) return reader.Error(rk.key, fmt::format("\"{}\" is not a field path", p));
    }
    mapping.roles[static_cast<size_t>(rk.role)] = std::move(paths);
  }
  TRIB_ASSIGN_OR_RETURN(auto metrics, ReadStringMap(reader, "metrics"));
  for (auto& [name, path] : metrics) {
    YAML::Node at = reader.Node("metrics")[name];
    if (!ValidPath(path)) {
      return NestedError(reader, "metrics." + name, at,
                         fmt::format("\"{}\" is not a field path", path));
    }
    size_t normalized_length = 0;
    char buf[80];
    normalized_length = NormalizeMetricName(name, buf, sizeof(buf));
    if (normalized_length == 0 || name.size() > 64) {
      return NestedError(reader, "metrics." + name, at, "not a usable metric name");
    }
    mapping.metric_fields.emplace_back(path, name);
  }
  if (reader.Has("metric_containers")) {
    TRIB_ASSIGN_OR_RETURN(mapping.metric_containers, reader.GetStringList("metric_containers"));
  } else if (!metrics.empty()) {
    mapping.metric_containers.clear();
  }
  if (reader.Has("metadata")) {
    TRIB_ASSIGN_OR_RETURN(auto extra, reader.GetStringList("metadata"));
    mapping.metadata.insert(mapping.metadata.end(), extra.begin(), extra.end());
  }
  TRIB_ASSIGN_OR_RETURN(auto units, ReadStringMap(reader, "units"));
  for (auto& [key, unit] : units) {
    if (FindUnit(unit) == nullptr) {
      return NestedError(reader, "units." + key, reader.Node("units")[key],
                         fmt::format("unknown unit \"{}\"", unit));
    }
    mapping.fixed_units.emplace_back(key, unit);
  }
  return Status::Ok();
}

Result<SourceIngestOptions> ReadSourceIngestOptions(const OptionReader& options) {
  SourceIngestOptions out;
  if (options.Has("format")) {
    TRIB_ASSIGN_OR_RETURN(std::string format, options.GetString("format"));
    if (format == "json") {
      out.format = PayloadFormat::kJson;
    } else if (format == "sensor_community") {
      out.format = PayloadFormat::kSensorCommunity;
    } else if (format == "ttn_v3") {
      out.format = PayloadFormat::kTtnV3;
    } else if (format == "chirpstack_v4") {
      out.format = PayloadFormat::kChirpstackV4;
    } else if (format == "owm") {
      out.format = PayloadFormat::kOwm;
    } else {
      return options.Error("format", fmt::format("unsupported payload format '{}'", format));
    }
  }
  if (options.Has("mapping")) {
    if (out.format != PayloadFormat::kJson) {
      return options.Error("mapping", "a field mapping applies to `format: json` only");
    }
    YAML::Node node = options.Node("mapping");
    if (!node.IsMap()) return options.Error("mapping", "expected a mapping of roles to paths");
    TRIB_RETURN_IF_ERROR(
        ApplyFieldMapping(options.Child("mapping", &SourceMappingSpec()), out.mapping));
  }
  if (options.Has("crs")) {
    TRIB_ASSIGN_OR_RETURN(std::string crs, options.GetString("crs"));
    if (!crs.empty() && !IsWgs84(crs)) {
      int code = 0;
      if (!ParseEpsgCode(crs, code)) {
        return options.Error("crs", fmt::format("\"{}\" is not an EPSG code (EPSG:27700)", crs));
      }
      CrsTransformer probe;
      LonLat ignored;
      Verdict v = probe.ToWgs84(crs, 0, 0, ignored);
      if (!v.ok && v.reason == QuarantineReason::kUnknownCrs) return options.Error("crs", v.detail);
      out.crs = crs;
    }
  }
  if (options.Has("time_zone")) {
    TRIB_ASSIGN_OR_RETURN(std::string name, options.GetString("time_zone"));
    if (!name.empty()) {
      auto zone = TimeZone::Load(name);
      if (!zone.ok()) return options.Error("time_zone", zone.status().message());
      out.time_zone = *zone;
    }
  }
  if (options.Has("epoch_unit")) {
    Result<std::string> unit_value = options.GetString("epoch_unit");
    if (!unit_value.ok()) return unit_value.status();
    const std::string& unit = *unit_value;
    out.epoch_unit = unit == "s"    ? EpochUnit::kSeconds
                     : unit == "ms" ? EpochUnit::kMillis
                     : unit == "us" ? EpochUnit::kMicros
                                    : EpochUnit::kAuto;
  }
  if (options.Has("owm_units")) {
    Result<std::string> units_value = options.GetString("owm_units");
    if (!units_value.ok()) return units_value.status();
    const std::string& units = *units_value;
    out.owm_units = units == "metric"     ? OwmUnits::kMetric
                    : units == "imperial" ? OwmUnits::kImperial
                                          : OwmUnits::kStandard;
  }
  return out;
}

}  // namespace tributary
