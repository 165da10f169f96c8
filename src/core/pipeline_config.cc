#include "core/pipeline_config.h"

#include <fstream>
#include <set>
#include <sstream>

#include "core/registry.h"

namespace tributary {

const SectionSpec& PipelineSectionSpec() {
  static const SectionSpec spec{
      "pipeline",
      "Run-wide settings.",
      {
          {"name", OptionType::kString, "tributary", "Name of the pipeline, shown in logs."},
          {"data_dir", OptionType::kString, "./tributary-data",
           "Folder for the local store, the ledger and other run files "
           "(`--data-dir` overrides it)."},
          {"batch_size", OptionType::kInt, "1024", "Raw records a source hands on at once.",
           "1..1000000"},
          {"queue_capacity", OptionType::kInt, "8",
           "Batches each queue between stages holds before its producer blocks "
           "(backpressure).",
           "1..4096"},
          {"commit_interval", OptionType::kDuration, "1s",
           "How often sinks commit what they have written.", "10ms..1h"},
          {"duration", OptionType::kDuration, "0s",
           "Stop the run after this long (wall clock); 0 runs until the input ends or a "
           "signal (`--duration` overrides it)."},
      }};
  return spec;
}

const SectionSpec& ProcessingSectionSpec() {
  static const SectionSpec spec{
      "processing",
      "Event-time and ingestion settings shared by every stage.",
      {
          {"out_of_orderness", OptionType::kDuration, "30s",
           "Allowed disorder within one source partition: its watermark is the largest "
           "event time seen minus this.",
           "0s..7d"},
          {"idle_timeout", OptionType::kDuration, "1m",
           "A partition without data for this long stops holding the watermark back, and "
           "rejoins when data arrives.",
           "1s..7d"},
          {"clock_outliers", OptionType::kInt, "3",
           "Per source partition, the watermark passes over the event times of up to this "
           "many devices whose clocks run furthest ahead, as long as this many plus one "
           "others report within an hour of them; so one fast device clock cannot close "
           "every other device's windows early. A partition with this many devices plus one "
           "or fewer follows its largest event time, as does every partition with 0.",
           "0..16"},
          {"grace", OptionType::kDuration, "15m",
           "Default grace period of window definitions: how long after a window ends "
           "late readings still update it (15 min for terrestrial sensors, 60 min or more "
           "for maritime and satellite links).",
           "0s..30d"},
          {"dedup_horizon", OptionType::kDuration, "1h",
           "How long (device, metric, event time) keys are remembered to drop duplicates.",
           "0s..30d"},
          {"drift_threshold", OptionType::kDuration, "5m",
           "A reading whose event time differs from its arrival time by more than this is "
           "flagged TIMESTAMP_DRIFT (and kept).",
           "1s..30d"},
          {"max_future", OptionType::kDuration, "5m",
           "A reading whose event time is ahead of its arrival by more than this is "
           "quarantined (future_timestamp), so a fast device clock cannot drag the "
           "watermark forward.",
           "0s..30d"},
          // Read by ingestion (ingest/ingest.cc).
          {"registry", OptionType::kString, "",
           "Device registry file (YAML or JSON; a relative path is relative to the pipeline "
           "file): per device id or glob pattern the model, firmware, reporting interval, "
           "default CRS, fixed position, field aliases, units and calibration (keys under "
           "`registry devices.<id or pattern>`). Reloaded when it changes; a broken new file "
           "keeps the previous registry and logs the error. Empty: no registry."},
          {"registry_poll", OptionType::kDuration, "2s",
           "How often the registry file's modification time is checked.", "100ms..1h"},
          {"unknown_devices", OptionType::kEnum, "accept",
           "Devices the registry does not list: `accept` them with defaults (no calibration, "
           "units as sent), or `quarantine` their records (reason unknown_device; "
           "`replay-quarantine` recovers them after the registry is fixed). Needs `registry` "
           "for `quarantine`.",
           "accept|quarantine"},
          {"gas_unit", OptionType::kEnum, "ppb",
           "Unit of NO2, O3, SO2 and CO readings: `ppb` (mixing ratio, canonical) or `ug/m3` "
           "(mass concentration at 25 degC and 1013.25 hPa: ug/m3 = ppb x M / 24.45).",
           "ppb|ug/m3"},
          // Read by the memory guard and the partition monitor (stream/memory_guard.h,
          // stream/partition_monitor.h; docs/RELIABILITY.md).
          {"memory_limit", OptionType::kString, "auto",
           "Memory ceiling of the process: a size (`512MiB`, `2GiB`, `1.5GB`, bytes), a share "
           "of what the machine allows (`40%` of the cgroup limit, or of MemTotal without "
           "one), `auto` (the smaller of 80% of the cgroup limit and 50% of MemTotal) or "
           "`off`. At least 32MiB."},
          {"memory_pause", OptionType::kDouble, "0.75",
           "Share of the memory ceiling at which every source pauses (kafka partitions pause, "
           "mqtt stops taking messages, http answers 503, file and simulator stop reading).",
           "0.1..0.99"},
          {"memory_shed", OptionType::kDouble, "0.9",
           "Share of the memory ceiling at which the window stage refuses readings of window "
           "keys it has never held (quarantined as memory_shed). Above memory_pause.",
           "0.1..0.99"},
          {"memory_sample", OptionType::kDuration, "100ms",
           "How often the resident set size is read from /proc/self/statm.", "10ms..10s"},
          {"partition_rate_interval", OptionType::kDuration, "10s",
           "Interval over which per-partition rates are measured and hot partitions judged.",
           "1s..1h"},
          {"hot_partition_factor", OptionType::kDouble, "3",
           "A partition whose rate exceeds this many times the median rate of the active "
           "partitions is reported hot (needs at least 3 active partitions).",
           "1.1..1000"},
          {"hot_partition_min_records", OptionType::kInt, "100",
           "Readings a partition needs in one interval before it can be reported hot.",
           "1..1000000000"},
      }};
  return spec;
}

const SectionSpec& SourceCommonSpec() {
  static const SectionSpec spec{
      "sources[]",
      "Every source has these keys; the keys of each type follow in its own section.",
      {
          {"name",
           OptionType::kString,
           "",
           "Unique name of the source (kept in provenance).",
           {},
           true},
          {"type",
           OptionType::kString,
           "",
           "Connector type, e.g. `simulator` or `file`.",
           {},
           true},
          {"format", OptionType::kEnum, "json",
           "Payload decoder: `json` (one object per record: wide or long shape, NDJSON "
           "lines, CSV rows re-encoded by the file source), `sensor_community` (luftdaten "
           "sensordatavalues), `ttn_v3` (The Things Stack v3 uplink), `chirpstack_v4` "
           "(ChirpStack v4 uplink event), `owm` (OpenWeatherMap current weather).",
           "json|sensor_community|ttn_v3|chirpstack_v4|owm"},
          {"mapping", OptionType::kAny, "",
           "Field mapping of the `json` format (read by ingestion): which dotted payload "
           "paths give the device id, timestamp, position, metrics and units, e.g. "
           "`{device_id: meta.dev, timestamp: ts, lat: pos.lat, lon: pos.lon, metrics: "
           "{pm25: pm2_5}, units: {pm2_5: mg/m3}}`. Keys are listed under `sources[].mapping`."},
          {"crs", OptionType::kString, "",
           "CRS of positions whose payload names none, as an EPSG code (`EPSG:27700`); they "
           "are reprojected to WGS84. Empty: WGS84."},
          {"time_zone", OptionType::kString, "",
           "IANA time zone (`Europe/Berlin`) of timestamps without a UTC offset. Empty: such "
           "timestamps are UTC. Ambiguous or skipped wall times take the offset in force "
           "before the transition."},
          {"epoch_unit", OptionType::kEnum, "auto",
           "Unit of numeric timestamps: `auto` picks by magnitude (s < 1e11 <= ms < 1e14 <= us).",
           "auto|s|ms|us"},
          {"owm_units", OptionType::kEnum, "standard",
           "Units the OpenWeatherMap payloads were requested in (`format: owm`): `standard` "
           "(K, m/s), `metric` (degC, m/s) or `imperial` (degF, mph).",
           "standard|metric|imperial"},
      }};
  return spec;
}

const SectionSpec& SinkCommonSpec() {
  static const SectionSpec spec{
      "sinks[]",
      "Every sink has these keys; the keys of each type follow in its own section.",
      {
          {"name",
           OptionType::kString,
           "",
           "Unique name of the sink (used in the ledger).",
           {},
           true},
          {"type", OptionType::kString, "", "Connector type, e.g. `sqlite`.", {}, true},
      }};
  return spec;
}

namespace {

const SectionSpec& TopLevelSpec() {
  static const SectionSpec spec{
      "(top level)",
      "",
      {
          {"pipeline", OptionType::kSection, "", "Run-wide settings."},
          {"processing", OptionType::kSection, "", "Event-time and ingestion settings."},
          {"sources", OptionType::kSection, "", "List of sources."},
          {"windows", OptionType::kSection, "", "List of window definitions."},
          {"sinks", OptionType::kSection, "", "List of sinks."},
          {"server", OptionType::kSection, "", "HTTP API, live events and metrics."},
          {"zones", OptionType::kSection, "", "H3 cells and zone layers of readings."},
          {"surfaces", OptionType::kSection, "", "List of interpolated surfaces."},
          {"alerts", OptionType::kSection, "", "Alert rules and delivery channels."},
          {"checkpoint", OptionType::kSection, "", "Checkpoints and crash recovery."},
          {"anomaly", OptionType::kSection, "",
           "Calibration drift and multivariate anomaly detection."},
          {"qc", OptionType::kSection, "", "Per-sensor quality control."},
      }};
  return spec;
}

const SectionSpec* FindSection(std::string_view path) {
  for (const SectionSpec* s : Registry::Get().Sections()) {
    if (s->path == path) return s;
  }
  return nullptr;
}

// Read name and type of a list entry; check uniqueness of the name.
Status ReadNameType(const OptionReader& common, std::set<std::string>& names, std::string& name,
                    std::string& type) {
  TRIB_ASSIGN_OR_RETURN(name, common.GetString("name"));
  TRIB_ASSIGN_OR_RETURN(type, common.GetString("type"));
  if (name.empty()) return common.Error("name", "must not be empty");
  if (!names.insert(name).second) return common.Error("name", "duplicate name '" + name + "'");
  return Status::Ok();
}

Result<std::vector<YAML::Node>> ListOf(const OptionReader& top, std::string_view key) {
  std::vector<YAML::Node> out;
  YAML::Node n = top.Node(key);
  if (!n.IsDefined() || n.IsNull()) return out;
  if (!n.IsSequence()) return top.Error(key, "expected a list (entries start with '- ')");
  for (const YAML::Node& item : n) out.push_back(item);
  return out;
}

}  // namespace

Result<PipelineConfig> ParsePipelineConfig(std::string_view yaml_text, const std::string& file) {
  TRIB_ASSIGN_OR_RETURN(YAML::Node root, LoadYamlText(yaml_text, file));
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  OptionReader top(root, file, "", {&TopLevelSpec()});
  TRIB_RETURN_IF_ERROR(top.CheckKeys());
  const Registry& registry = Registry::Get();

  PipelineConfig config;
  config.file = file;
  OptionReader pipeline = top.Child("pipeline", &PipelineSectionSpec());
  TRIB_RETURN_IF_ERROR(pipeline.CheckKeys());
  TRIB_ASSIGN_OR_RETURN(config.name, pipeline.GetString("name"));
  TRIB_ASSIGN_OR_RETURN(config.data_dir, pipeline.GetString("data_dir"));
  TRIB_ASSIGN_OR_RETURN(int64_t batch_size, pipeline.GetInt("batch_size"));
  TRIB_ASSIGN_OR_RETURN(int64_t queue_capacity, pipeline.GetInt("queue_capacity"));
  config.batch_size = static_cast<size_t>(batch_size);
  config.queue_capacity = static_cast<size_t>(queue_capacity);
  TRIB_ASSIGN_OR_RETURN(config.commit_interval, pipeline.GetDuration("commit_interval"));
  TRIB_ASSIGN_OR_RETURN(config.duration, pipeline.GetDuration("duration"));

  OptionReader processing = top.Child("processing", &ProcessingSectionSpec());
  TRIB_RETURN_IF_ERROR(processing.CheckKeys());
  ProcessingOptions& p = config.processing;
  TRIB_ASSIGN_OR_RETURN(p.out_of_orderness, processing.GetDuration("out_of_orderness"));
  TRIB_ASSIGN_OR_RETURN(p.idle_timeout, processing.GetDuration("idle_timeout"));
  TRIB_ASSIGN_OR_RETURN(int64_t clock_outliers, processing.GetInt("clock_outliers"));
  p.clock_outliers = static_cast<size_t>(clock_outliers);
  TRIB_ASSIGN_OR_RETURN(p.grace, processing.GetDuration("grace"));
  TRIB_ASSIGN_OR_RETURN(p.dedup_horizon, processing.GetDuration("dedup_horizon"));
  TRIB_ASSIGN_OR_RETURN(p.drift_threshold, processing.GetDuration("drift_threshold"));
  TRIB_ASSIGN_OR_RETURN(p.max_future, processing.GetDuration("max_future"));
  config.processing_options = processing;

  std::set<std::string> names;
  TRIB_ASSIGN_OR_RETURN(std::vector<YAML::Node> sources, ListOf(top, "sources"));
  for (size_t i = 0; i < sources.size(); ++i) {
    std::string path = "sources[" + std::to_string(i) + "]";
    OptionReader common(sources[i], file, path, {&SourceCommonSpec()});
    if (!sources[i].IsMap()) return common.Error("", "expected a mapping with name and type");
    SourceEntry entry{"", "", common};
    TRIB_RETURN_IF_ERROR(ReadNameType(common, names, entry.name, entry.type));
    const SectionSpec* spec = registry.SourceSpec(entry.type);
    if (spec == nullptr) {
      std::string known;
      for (const auto& t : registry.SourceTypes()) known += (known.empty() ? "" : ", ") + t;
      return common.Error("type",
                          "unknown source type '" + entry.type + "' (known: " + known + ")");
    }
    entry.options = OptionReader(sources[i], file, path, {&SourceCommonSpec(), spec});
    TRIB_RETURN_IF_ERROR(entry.options.CheckKeys());
    config.sources.push_back(std::move(entry));
  }

  TRIB_ASSIGN_OR_RETURN(std::vector<YAML::Node> windows, ListOf(top, "windows"));
  const SectionSpec* window_spec = FindSection("windows[]");
  for (size_t i = 0; i < windows.size(); ++i) {
    std::string path = "windows[" + std::to_string(i) + "]";
    OptionReader reader(windows[i], file, path, {window_spec});
    if (!windows[i].IsMap()) return reader.Error("", "expected a mapping of window options");
    if (window_spec != nullptr) TRIB_RETURN_IF_ERROR(reader.CheckKeys());
    config.windows.push_back(std::move(reader));
  }

  names.clear();
  TRIB_ASSIGN_OR_RETURN(std::vector<YAML::Node> sinks, ListOf(top, "sinks"));
  for (size_t i = 0; i < sinks.size(); ++i) {
    std::string path = "sinks[" + std::to_string(i) + "]";
    OptionReader common(sinks[i], file, path, {&SinkCommonSpec()});
    if (!sinks[i].IsMap()) return common.Error("", "expected a mapping with name and type");
    SinkEntry entry{"", "", common};
    TRIB_RETURN_IF_ERROR(ReadNameType(common, names, entry.name, entry.type));
    const SectionSpec* spec = registry.SinkSpec(entry.type);
    if (spec == nullptr) {
      std::string known;
      for (const auto& t : registry.SinkTypes()) known += (known.empty() ? "" : ", ") + t;
      return common.Error("type", "unknown sink type '" + entry.type + "' (known: " + known + ")");
    }
    entry.options = OptionReader(sinks[i], file, path, {&SinkCommonSpec(), spec});
    TRIB_RETURN_IF_ERROR(entry.options.CheckKeys());
    config.sinks.push_back(std::move(entry));
  }

  const SectionSpec* server_spec = FindSection("server");
  if (server_spec != nullptr) {
    config.server = top.Child("server", server_spec);
    TRIB_RETURN_IF_ERROR(config.server.CheckKeys());
  }
  TRIB_ASSIGN_OR_RETURN(std::vector<YAML::Node> surfaces, ListOf(top, "surfaces"));
  const SectionSpec* surface_spec = FindSection("surfaces[]");
  for (size_t i = 0; i < surfaces.size(); ++i) {
    std::string path = "surfaces[" + std::to_string(i) + "]";
    OptionReader reader(surfaces[i], file, path, {surface_spec});
    if (!surfaces[i].IsMap()) return reader.Error("", "expected a mapping of surface options");
    if (surface_spec != nullptr) TRIB_RETURN_IF_ERROR(reader.CheckKeys());
    config.surfaces.push_back(std::move(reader));
  }
  const SectionSpec* zones_spec = FindSection("zones");
  if (zones_spec != nullptr) {
    config.zones = top.Child("zones", zones_spec);
    TRIB_RETURN_IF_ERROR(config.zones.CheckKeys());
  }
  const SectionSpec* alerts_spec = FindSection("alerts");
  if (alerts_spec != nullptr) {
    config.alerts = top.Child("alerts", alerts_spec);
    TRIB_RETURN_IF_ERROR(config.alerts.CheckKeys());
  }
  const SectionSpec* checkpoint_spec = FindSection("checkpoint");
  if (checkpoint_spec != nullptr) {
    config.checkpoint = top.Child("checkpoint", checkpoint_spec);
    TRIB_RETURN_IF_ERROR(config.checkpoint.CheckKeys());
  }
  const SectionSpec* anomaly_spec = FindSection("anomaly");
  if (anomaly_spec != nullptr) {
    config.anomaly = top.Child("anomaly", anomaly_spec);
    TRIB_RETURN_IF_ERROR(config.anomaly.CheckKeys());
  }
  const SectionSpec* qc_spec = FindSection("qc");
  if (qc_spec != nullptr) {
    config.qc = top.Child("qc", qc_spec);
    TRIB_RETURN_IF_ERROR(config.qc.CheckKeys());
  }
  return config;
}

Result<PipelineConfig> LoadPipelineConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParsePipelineConfig(ss.str(), path);
}

std::string_view EmbeddedDefaultConfig() {
  static const char kText[] =
      R"(# The embedded default pipeline: a simulated city sensor network processed
# into per-device one-minute and per-district five-minute windows, stored in
# ./tributary-data/tributary.gpkg.
pipeline:
  name: embedded-default
processing:
  grace: 15m
sources:
  - name: simulator
    type: simulator
    speed: 300           # five simulated minutes per wall-clock second, so windows,
    outages_per_day: 2   # late bursts and quarantine show up within seconds
windows:
  - name: device_1m
    type: tumbling
    size: 1m
    group_by: device
    aggregates: [count, mean, min, max]
  - name: district_5m
    type: tumbling
    size: 5m
    group_by: zone
    aggregates: [count, mean, min, max, p95]
  - name: pm25_5m
    type: tumbling
    size: 5m
    group_by: device
    metrics: [pm25]
    aggregates: [count, mean, centroid]
surfaces:                # IDW grid of PM2.5 for every closed five-minute window
  - name: pm25
    window: pm25_5m
    metric: pm25
    width: 200
qc:                      # per-sensor checks: spikes, flatlines, rates, 30-day baselines,
  enabled: true          # neighbours (flags and qc_score on every reading; README: Quality control)
zones:
  h3_resolution: 8
  layers:
    - name: district
      path: builtin:city_districts   # also examples/zones/city_districts.geojson
      id_field: district_id
      name_field: name
alerts:                  # shown on the dashboard and kept in the store's alerts table
  rules:
    - name: pm25_high    # the seeds' real-time PM2.5 threshold, with hysteresis
      kind: reading_threshold
      metric: pm25
      level: 35
      clear: 30
      severity: warning
      renotify: 30m
  summary:               # daily summary emails to subscribers; off unless an SMTP URL is set
    url: ${TRIBUTARY_SMTP_URL:-}
    at: ${TRIBUTARY_SUMMARY_AT:-07:00}
    time_zone: ${TRIBUTARY_SUMMARY_TIME_ZONE:-UTC}
server:
  write_token: ${TRIBUTARY_WRITE_TOKEN:-}   # needed by POST /api/subscriptions; empty: read-only
sinks:
  - name: local
    type: sqlite         # or duckdb: the same tables in <data_dir>/tributary.duckdb
)";
  return kText;
}

}  // namespace tributary
