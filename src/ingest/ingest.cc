#include "ingest/ingest.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "stream/checkpoint.h"
#include "stream/operator.h"

namespace tributary {

namespace {

/// Device ids and firmware strings cached per stage (beyond this, interned uncached).
constexpr size_t kMaxCachedSymbols = 1 << 16;
constexpr size_t kMaxFirmwareBytes = 64;
constexpr size_t kMaxCrsBytes = 48;

bool IsDropout(const JsonScalar& v) {
  if (v.kind == JsonKind::kNull) return true;
  if (v.kind != JsonKind::kString) return false;
  for (char c : v.text) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  }
  return true;
}

bool Missing(const JsonScalar& v) {
  return !v.present() || v.kind == JsonKind::kNull;
}

// The first few accepted names of a role, for messages: "device_id|sensor_id|id|device".
std::string RoleNames(const FieldMapping& mapping, FieldRole role) {
  const auto& names = mapping.roles[static_cast<size_t>(role)];
  std::string out;
  for (size_t i = 0; i < names.size() && i < 4; ++i) {
    if (i > 0) out += '|';
    out += names[i];
  }
  return out;
}

// A field's name for messages: the path it came from, else the role's main name.
std::string_view FieldName(const JsonScalar& v, const FieldMapping& mapping, FieldRole role) {
  if (!v.path.empty()) return v.path;
  const auto& names = mapping.roles[static_cast<size_t>(role)];
  return names.empty() ? FieldRoleName(role) : std::string_view(names.front());
}

// A coordinate from a number or a numeric string.
bool CoordinateValue(const JsonScalar& v, double& out) {
  if (v.kind == JsonKind::kNumber) {
    out = v.number;
    return true;
  }
  return v.kind == JsonKind::kString && ParseNumber(v.text, out);
}

// A short text form of a scalar usable as an identifier (strings, number literals).
bool IdentifierText(const JsonScalar& v, std::string_view& out) {
  if (v.kind == JsonKind::kString) {
    out = v.text;
    return true;
  }
  if (v.kind == JsonKind::kNumber && !v.text.empty()) {
    out = v.text;
    return true;
  }
  return false;
}

bool SaneCrs(std::string_view crs) {
  if (crs.empty() || crs.size() > kMaxCrsBytes) return false;
  return std::all_of(crs.begin(), crs.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ':' ||
           c == '_' || c == '-' || c == '.';
  });
}

}  // namespace

struct IngestStage::RecordContext {
  std::string_view payload;
  JsonDecoder* decoder = nullptr;
  const SourceIngestOptions* options = nullptr;
  const DecodedRecord* rec = nullptr;
  Provenance prov;
  TimeUs arrival = 0;
  Symbol device;
  TimeUs event_time = 0;
  const DeviceEntry* entry = nullptr;  // registry entry of the device, if any
  double lat = NAN;
  double lon = NAN;
  QcFlags flags;
};

Symbol IngestStage::SymbolCache::Get(std::string_view text) {
  if (auto it = map_.find(text); it != map_.end()) return it->second;
  Symbol s = Intern(text);
  if (map_.size() < kMaxCachedSymbols) map_.emplace(std::string(text), s);
  return s;
}

Result<std::unique_ptr<IngestStage>> IngestStage::Make(const PipelineConfig& config) {
  if (config.sources.size() > UINT16_MAX) {
    return Status::Invalid(fmt::format("{}: more than {} sources", config.file, UINT16_MAX));
  }
  std::vector<SourceState> sources;
  for (const SourceEntry& entry : config.sources) {
    TRIB_ASSIGN_OR_RETURN(SourceIngestOptions options, ReadSourceIngestOptions(entry.options));
    // The owm source delivers OpenWeatherMap payloads: that is its format by default.
    if (entry.type == "owm" && !entry.options.Has("format")) options.format = PayloadFormat::kOwm;
    SourceState state;
    state.name = Intern(entry.name);
    if (options.format == PayloadFormat::kJson) {
      state.decoder = std::make_unique<JsonDecoder>(std::move(options.mapping));
    } else {
      state.decoder = std::make_unique<JsonDecoder>(VendorDecoder::MessageMapping(options.format));
      state.vendor = VendorDecoder::Make(options.format, options.owm_units, *state.decoder);
    }
    options.mapping = FieldMapping();  // the decoder holds it
    state.options = std::move(options);
    sources.push_back(std::move(state));
  }
  TRIB_ASSIGN_OR_RETURN(StageOptions stage_options, ReadStageOptions(config));
  return std::unique_ptr<IngestStage>(
      new IngestStage(config.processing, std::move(stage_options), std::move(sources)));
}

Result<IngestStage::StageOptions> IngestStage::ReadStageOptions(const PipelineConfig& config) {
  // Tests and tools may build a PipelineConfig without a `processing` reader: absent keys
  // then take the defaults documented in ProcessingSectionSpec.
  const OptionReader& p = config.processing_options;
  StageOptions out;
  std::string path;
  if (p.Has("registry")) {
    TRIB_ASSIGN_OR_RETURN(path, p.GetString("registry"));
  }
  if (!path.empty()) {
    std::filesystem::path file(path);
    // Relative to the pipeline file, so a pipeline and its registry travel together.
    if (file.is_relative() && !config.file.empty() && config.file.front() != '<') {
      file = std::filesystem::path(config.file).parent_path() / file;
    }
    DurationUs poll = 2 * kMicrosPerSecond;
    if (p.Has("registry_poll")) {
      TRIB_ASSIGN_OR_RETURN(poll, p.GetDuration("registry_poll"));
    }
    auto registry = DeviceRegistry::Open(file.lexically_normal().string(), poll);
    if (!registry.ok()) return p.Error("registry", registry.status().message());
    out.registry = std::move(registry).value();
  }
  if (p.Has("unknown_devices")) {
    TRIB_ASSIGN_OR_RETURN(std::string policy, p.GetString("unknown_devices"));
    out.quarantine_unknown = policy == "quarantine";
    if (out.quarantine_unknown && out.registry == nullptr) {
      return p.Error("unknown_devices", "`quarantine` needs a device registry (`registry`)");
    }
  }
  if (p.Has("gas_unit")) {
    TRIB_ASSIGN_OR_RETURN(std::string unit, p.GetString("gas_unit"));
    out.gas_mass_concentration = unit == "ug/m3";
  }
  return out;
}

IngestStage::IngestStage(ProcessingOptions options, StageOptions stage_options,
                         std::vector<SourceState> sources)
    : options_(options),
      stage_options_(std::move(stage_options)),
      sources_(std::move(sources)),
      dedup_(options.dedup_horizon) {
  registry_ = stage_options_.registry;
  if (registry_ != nullptr) {
    registry_generation_ = registry_->generation();
    registry_snapshot_ = registry_->Snapshot();
  }
}

const DeviceEntry* IngestStage::EntryFor(Symbol device) {
  if (registry_snapshot_ == nullptr || device.empty()) return nullptr;
  if (auto it = entries_.find(device.id); it != entries_.end()) return it->second;
  const DeviceEntry* entry = registry_snapshot_->Find(device.view());
  if (entries_.size() >= kMaxCachedSymbols) entries_.clear();
  entries_.emplace(device.id, entry);
  return entry;
}

IngestStage::~IngestStage() = default;

Status IngestStage::Open(RunContext& ctx) {
  if (ctx.ledger == nullptr) return Status::Internal("ingest: the run context has no ledger");
  ledger_ = ctx.ledger;
  return Status::Ok();
}

Status IngestStage::Process(const RawBatch& in, Batch& out) {
  if (ledger_ == nullptr) return Status::Internal("ingest: Process called before Open");
  if (in.source_index >= sources_.size()) {
    return Status::Internal(fmt::format("ingest: raw batch from source #{} but the pipeline has {}",
                                        in.source_index, sources_.size()));
  }
  SourceState& source = sources_[in.source_index];
  if (registry_ != nullptr) {
    registry_->Poll();
    if (uint64_t g = registry_->generation(); g != registry_generation_) {
      registry_generation_ = g;
      registry_snapshot_ = registry_->Snapshot();
      entries_.clear();
    }
  }
  IngestCounts counts;
  auto expected = static_cast<size_t>(std::ceil(readings_per_record_));
  out.readings.reserve(out.readings.size() + in.records.size() * expected);
  for (const RawRecord& raw : in.records) {
    if (static_cast<size_t>(raw.begin) + raw.size > in.data.size()) {
      return Status::Internal(
          fmt::format("ingest: raw record [{}, +{}) outside the batch data ({} bytes)", raw.begin,
                      raw.size, in.data.size()));
    }
    ProcessRecord(source, in.Payload(raw), raw, out, counts);
  }
  if (!in.records.empty()) {
    double ratio = static_cast<double>(counts.input) / static_cast<double>(in.records.size());
    readings_per_record_ = std::clamp(0.5 * readings_per_record_ + 0.5 * ratio, 1.0, 64.0);
  }
  out.duplicates += counts.duplicate;
  ledger_->AddInput(counts.input);
  if (counts.duplicate > 0) ledger_->AddDuplicate(counts.duplicate);
  for (size_t i = 0; i < kQuarantineReasonCount; ++i) {
    if (counts.by_reason[i] > 0) {
      ledger_->AddQuarantined(QuarantineReasonName(static_cast<QuarantineReason>(i)),
                              counts.by_reason[i]);
    }
  }
  totals_.input += counts.input;
  totals_.forwarded += counts.forwarded;
  totals_.duplicate += counts.duplicate;
  totals_.quarantined += counts.quarantined;
  for (size_t i = 0; i < kQuarantineReasonCount; ++i) totals_.by_reason[i] += counts.by_reason[i];
  return Status::Ok();
}

void IngestStage::ProcessRecord(SourceState& source, std::string_view payload, const RawRecord& raw,
                                Batch& out, IngestCounts& counts) {
  RecordContext rc;
  rc.payload = payload;
  rc.decoder = source.decoder.get();
  rc.options = &source.options;
  rc.rec = &record_;
  rc.arrival = raw.arrival_time;
  rc.prov.source = source.name;
  rc.prov.topic = raw.topic;
  rc.prov.partition = raw.partition;
  rc.prov.offset = raw.offset;

  DecodeStatus status = source.vendor != nullptr ? source.vendor->Decode(payload, record_)
                                                 : source.decoder->Decode(payload, record_);
  const DecodedRecord& rec = record_;
  if (!status.ok) {
    // A device id read before the JSON broke still tells whose payload this was.
    std::string_view id;
    const JsonScalar& device = rec.role(FieldRole::kDeviceId);
    if (IdentifierText(device, id) && !id.empty() && id.size() <= kMaxDeviceIdBytes) {
      rc.device = devices_.Get(id);
    }
    ++counts.input;
    Quarantine(rc, Verdict::Fail(status.reason, std::move(status.detail)), {}, out, counts);
    return;
  }
  if (const JsonScalar& csv = rec.role(FieldRole::kCsvError); csv.present()) {
    std::string_view id;
    if (IdentifierText(rec.role(FieldRole::kDeviceId), id) && !id.empty() &&
        id.size() <= kMaxDeviceIdBytes) {
      rc.device = devices_.Get(id);
    }
    ++counts.input;
    std::string detail = csv.kind == JsonKind::kString ? std::string(csv.text) : csv.Describe();
    Quarantine(rc, Verdict::Fail(QuarantineReason::kMalformedCsv, std::move(detail)), {}, out,
               counts);
    // Keep the CSV record as it was in the file rather than its JSON re-encoding.
    if (const JsonScalar& text = rec.role(FieldRole::kCsvRaw); text.kind == JsonKind::kString) {
      out.quarantine.back().raw.assign(text.text);
    }
    return;
  }
  Verdict verdict;
  if (!CheckRecord(rc, verdict)) {
    ++counts.input;
    Quarantine(rc, std::move(verdict), {}, out, counts);
    return;
  }

  if (rec.long_shape()) {
    const JsonScalar& name = rec.role(FieldRole::kMetricName);
    const JsonScalar& value = rec.role(FieldRole::kMetricValue);
    if (name.kind != JsonKind::kString || IsDropout(name)) {
      ++counts.input;
      Quarantine(
          rc,
          Verdict::Fail(QuarantineReason::kMissingField,
                        fmt::format("{} = {} is not a metric name", name.path, name.Describe())),
          {}, out, counts);
      return;
    }
    MetricField field;
    source.decoder->ResolveMetricName(name.text, field);
    if (rc.entry != nullptr) {
      if (const FieldAlias* alias = rc.entry->AliasFor(name.text, name.text); alias != nullptr) {
        field.metric = alias->metric;
        field.implied_unit = alias->implied_unit;
        field.name = alias->name;
      }
    }
    if (Missing(value) || IsDropout(value)) {
      ++counts.input;
      std::string_view value_name =
          FieldName(value, source.decoder->mapping(), FieldRole::kMetricValue);
      Quarantine(rc,
                 Verdict::Fail(QuarantineReason::kMissingField,
                               fmt::format("no value ({}) for metric {}",
                                           value.present() ? value_name
                                                           : RoleNames(source.decoder->mapping(),
                                                                       FieldRole::kMetricValue),
                                           name.text)),
                 field.name, out, counts);
      return;
    }
    field.value = value;
    field.path = name.text;
    const JsonScalar& unit = rec.role(FieldRole::kUnit);
    std::string_view unit_text = unit.kind == JsonKind::kString ? unit.text : std::string_view();
    if (unit_text.empty() && rc.entry != nullptr) {
      unit_text = rc.entry->UnitFor(name.text, name.text, field.metric);
    }
    ProcessMetric(rc, field, unit_text, out, counts);
    return;
  }

  size_t readings = 0;
  for (const MetricField& field : rec.metrics) {
    if (IsDropout(field.value)) continue;
    const FieldAlias* alias = nullptr;
    if (rc.entry != nullptr && !rc.entry->aliases.empty()) {
      alias = rc.entry->AliasFor(field.path, field.leaf);
    }
    if (alias != nullptr) {
      MetricField renamed = field;
      renamed.metric = alias->metric;
      renamed.implied_unit = alias->implied_unit;
      renamed.name = alias->name;
      ProcessMetric(rc, renamed, UnitFor(rec, renamed, source.decoder->mapping(), rc.entry), out,
                    counts);
    } else {
      ProcessMetric(rc, field, UnitFor(rec, field, source.decoder->mapping(), rc.entry), out,
                    counts);
    }
    ++readings;
  }
  if (readings == 0) {
    ++counts.input;
    std::string detail =
        rec.metrics.empty()
            ? fmt::format("none of the {} fields is a metric", rec.field_count)
            : fmt::format("all {} metric fields are null or empty", rec.metrics.size());
    Quarantine(rc, Verdict::Fail(QuarantineReason::kNoReadings, std::move(detail)), {}, out,
               counts);
  }
}

bool IngestStage::CheckRecord(RecordContext& rc, Verdict& verdict) {
  const DecodedRecord& rec = *rc.rec;
  const FieldMapping& mapping = rc.decoder->mapping();
  const JsonScalar& device = rec.role(FieldRole::kDeviceId);
  const JsonScalar& ts = rec.role(FieldRole::kTimestamp);
  const JsonScalar& lat = rec.role(FieldRole::kLat);
  const JsonScalar& lon = rec.role(FieldRole::kLon);
  const JsonScalar& x = rec.role(FieldRole::kX);
  const JsonScalar& y = rec.role(FieldRole::kY);
  const JsonScalar& crs = rec.role(FieldRole::kCrs);
  const JsonScalar& firmware = rec.role(FieldRole::kFirmware);

  // Firmware first: it belongs in the provenance of a quarantined record too.
  std::string_view fw;
  if (IdentifierText(firmware, fw) && !fw.empty() && fw.size() <= kMaxFirmwareBytes) {
    rc.prov.firmware = firmware_.Get(fw);
  }

  // The device first: its registry entry may supply the position.
  std::string_view id;
  if (!Missing(device) && !IsDropout(device) && IdentifierText(device, id) &&
      id.size() <= kMaxDeviceIdBytes) {
    rc.device = devices_.Get(id);
    rc.entry = EntryFor(rc.device);
  }

  // Required fields, all named at once.
  std::string missing;
  auto add_missing = [&](std::string what) {
    if (!missing.empty()) missing += ", ";
    missing += what;
  };
  bool has_latlon = !Missing(lat) || !Missing(lon);
  bool has_xy = !Missing(x) || !Missing(y);
  bool registry_position = !has_latlon && !has_xy && rc.entry != nullptr && rc.entry->has_position;
  if (Missing(device) || IsDropout(device)) {
    add_missing(fmt::format("device id ({})", RoleNames(mapping, FieldRole::kDeviceId)));
  }
  if ((Missing(ts) || IsDropout(ts)) && !rec.time_from_arrival) {
    add_missing(fmt::format("timestamp ({})", RoleNames(mapping, FieldRole::kTimestamp)));
  }
  if (registry_position) {
    // The station's fixed position from the registry stands in for the payload's.
  } else if (has_latlon || !has_xy) {
    if (Missing(lat))
      add_missing(fmt::format("latitude ({})", RoleNames(mapping, FieldRole::kLat)));
    if (Missing(lon))
      add_missing(fmt::format("longitude ({})", RoleNames(mapping, FieldRole::kLon)));
  } else {
    if (Missing(x)) add_missing("x");
    if (Missing(y)) add_missing("y");
    if (Missing(crs) && rc.options->crs.empty() && (rc.entry == nullptr || rc.entry->crs.empty())) {
      add_missing("crs (x/y coordinates need one, in the payload or the source's crs option)");
    }
  }
  if (!missing.empty()) {
    verdict = Verdict::Fail(QuarantineReason::kMissingField, "missing " + missing);
    return false;
  }

  // Device id.
  if (!IdentifierText(device, id)) {
    verdict = Verdict::Fail(
        QuarantineReason::kInvalidDeviceId,
        fmt::format("{} = {} is not a string or a number", device.path, device.Describe()));
    return false;
  }
  if (id.size() > kMaxDeviceIdBytes) {
    verdict = Verdict::Fail(
        QuarantineReason::kInvalidDeviceId,
        fmt::format("{} is {} bytes long (limit {})", device.path, id.size(), kMaxDeviceIdBytes));
    return false;
  }
  if (stage_options_.quarantine_unknown && rc.entry == nullptr) {
    verdict = Verdict::Fail(QuarantineReason::kUnknownDevice,
                            fmt::format("device \"{}\" ({}) has no entry in the device registry {}",
                                        id, device.path, registry_->path()));
    return false;
  }
  if (rc.prov.firmware.empty() && rc.entry != nullptr) rc.prov.firmware = rc.entry->firmware;

  if (!ReadEventTime(rc, verdict) || !ReadPosition(rc, has_latlon, registry_position, verdict)) {
    return false;
  }
  if (HasTimestampDrift(rc.event_time, rc.arrival, options_.drift_threshold)) {
    rc.flags.Set(QcFlag::kTimestampDrift);
  }
  return true;
}

bool IngestStage::ReadEventTime(RecordContext& rc, Verdict& verdict) {
  const JsonScalar& ts = rc.rec->role(FieldRole::kTimestamp);
  if ((Missing(ts) || IsDropout(ts)) && rc.rec->time_from_arrival) {
    rc.event_time = rc.arrival;
    return true;
  }
  const SourceIngestOptions& opts = *rc.options;
  Result<TimeUs> event = Status::Invalid("is not a number or a string");
  if (ts.kind == JsonKind::kNumber) {
    event = EpochToTime(ts.number, opts.epoch_unit);
  } else if (ts.kind == JsonKind::kString) {
    double number = 0;
    if (opts.epoch_unit != EpochUnit::kAuto && ParseNumber(ts.text, number)) {
      event = EpochToTime(number, opts.epoch_unit);
    } else {
      event = ParseTime(ts.text);
      // A wall-clock time without an offset is local time of the source's zone.
      if (event.ok() && opts.time_zone != nullptr && !HasUtcOffset(ts.text)) {
        event = opts.time_zone->LocalToUtc(*event);
      }
    }
  }
  if (!event.ok()) {
    verdict =
        Verdict::Fail(QuarantineReason::kBadTimestamp,
                      fmt::format("{} = {}: {}", ts.path, ts.Describe(), event.status().message()));
    return false;
  }
  rc.event_time = *event;
  verdict = CheckEventTime(rc.event_time, rc.arrival, options_.max_future);
  return verdict.ok;
}

bool IngestStage::ReadPosition(RecordContext& rc, bool has_latlon, bool from_registry,
                               Verdict& verdict) {
  const DecodedRecord& rec = *rc.rec;
  if (from_registry) {
    const DeviceEntry& e = *rc.entry;
    rc.flags.Set(QcFlag::kPositionFromRegistry);
    if (!e.position_xy) {
      rc.lat = e.lat;  // checked when the registry was read
      rc.lon = e.lon;
      return true;
    }
    if (SaneCrs(e.crs)) rc.prov.crs_source = crs_symbols_.Get(e.crs);
    rc.prov.orig_x = e.lon;
    rc.prov.orig_y = e.lat;
    LonLat out;
    verdict = crs_.ToWgs84(e.crs, e.lon, e.lat, out);
    if (!verdict.ok) {
      verdict.detail =
          fmt::format("registry position of {} (line {}): {}", e.key, e.line, verdict.detail);
      return false;
    }
    rc.lat = out.lat;
    rc.lon = out.lon;
    rc.flags.Set(QcFlag::kCrsTransformed);
    return true;
  }
  const JsonScalar& crs = rec.role(FieldRole::kCrs);
  std::string_view crs_text;
  bool crs_given = IdentifierText(crs, crs_text);
  if (!Missing(crs) && !crs_given) {
    verdict = Verdict::Fail(QuarantineReason::kUnknownCrs,
                            fmt::format("{} = {} is not a CRS name", crs.path, crs.Describe()));
    return false;
  }
  if (!crs_given) {
    // The device's default from the registry, else the source's ("" = WGS84).
    crs_text = rc.entry != nullptr && !rc.entry->crs.empty() ? std::string_view(rc.entry->crs)
                                                             : std::string_view(rc.options->crs);
  }
  const JsonScalar& lat_field = has_latlon ? rec.role(FieldRole::kLat) : rec.role(FieldRole::kY);
  const JsonScalar& lon_field = has_latlon ? rec.role(FieldRole::kLon) : rec.role(FieldRole::kX);
  double coord[2] = {NAN, NAN};  // lat (or y), lon (or x)
  for (int i = 0; i < 2; ++i) {
    const JsonScalar& c = i == 0 ? lat_field : lon_field;
    if (!CoordinateValue(c, coord[i])) {
      verdict = Verdict::Fail(QuarantineReason::kNanCoordinate,
                              fmt::format("{} = {} is not a number", c.path, c.Describe()));
      return false;
    }
  }
  if (IsWgs84(crs_text)) {
    rc.lat = coord[0];
    rc.lon = coord[1];
    verdict = CheckPosition(rc.lat, rc.lon, lat_field.path, lon_field.path);
    return verdict.ok;
  }
  if (SaneCrs(crs_text)) rc.prov.crs_source = crs_symbols_.Get(crs_text);
  rc.prov.orig_x = coord[1];
  rc.prov.orig_y = coord[0];
  LonLat out;
  verdict = crs_.ToWgs84(crs_text, coord[1], coord[0], out);
  if (!verdict.ok) {
    verdict.detail = fmt::format("{}/{} = {}/{}: {}", lon_field.path, lat_field.path,
                                 lon_field.Describe(), lat_field.Describe(), verdict.detail);
    return false;
  }
  rc.lat = out.lat;
  rc.lon = out.lon;
  rc.flags.Set(QcFlag::kCrsTransformed);
  return true;
}

std::string_view IngestStage::UnitFor(const DecodedRecord& rec, const MetricField& field,
                                      const FieldMapping& mapping, const DeviceEntry* entry) const {
  const auto& fixed_units = mapping.fixed_units;
  for (const UnitEntry& u : rec.units) {
    if (u.key == field.leaf || u.key == field.path) return u.unit;
  }
  if (field.metric != nullptr) {
    for (const UnitEntry& u : rec.units) {
      if (FindMetric(u.key) == field.metric) return u.unit;
    }
  }
  const JsonScalar& unit = rec.role(FieldRole::kUnit);
  if (unit.kind == JsonKind::kString) return unit.text;
  if (entry != nullptr && !entry->units.empty()) {
    std::string_view text = entry->UnitFor(field.path, field.leaf, field.metric);
    if (!text.empty()) return text;
  }
  for (const auto& [key, text] : fixed_units) {
    if (key == field.path || key == field.leaf ||
        (field.metric != nullptr && FindMetric(key) == field.metric)) {
      return text;
    }
  }
  return std::string_view();
}

void IngestStage::ProcessMetric(RecordContext& rc, const MetricField& field,
                                std::string_view unit_text, Batch& out, IngestCounts& counts) {
  ++counts.input;
  auto reject = [&](QuarantineReason reason, std::string detail) {
    Quarantine(rc, Verdict::Fail(reason, std::move(detail)), field.name, out, counts);
  };
  double raw_value = NAN;
  if (field.value.kind == JsonKind::kNumber) {
    raw_value = field.value.number;
  } else if (field.value.kind != JsonKind::kString || !ParseNumber(field.value.text, raw_value)) {
    return reject(QuarantineReason::kNonNumericValue,
                  fmt::format("{} = {} is not a number", field.path, field.value.Describe()));
  }
  if (!std::isfinite(raw_value)) {
    return reject(
        QuarantineReason::kNonFiniteValue,
        fmt::format("{} = {} is not a finite number", field.path, field.value.Describe()));
  }
  if (field.name.empty()) {
    return reject(QuarantineReason::kUnknownMetric,
                  fmt::format("{} is not a known metric and is not accepted as a new one "
                              "(name longer than 64 bytes, or too many distinct new names)",
                              field.path.substr(0, 80)));
  }
  double value = raw_value;
  QcFlags flags = rc.flags;
  const Calibration* calibration = rc.entry != nullptr && !rc.entry->calibrations.empty()
                                       ? rc.entry->CalibrationFor(field.name)
                                       : nullptr;
  if (const MetricInfo* metric = field.metric; metric != nullptr) {
    const UnitInfo* unit = field.implied_unit != nullptr ? field.implied_unit : metric->unit_info;
    if (!unit_text.empty()) {
      unit = rc.decoder->FindUnitCached(unit_text);
      if (unit == nullptr) {
        return reject(QuarantineReason::kUnknownUnit,
                      fmt::format("{}: unit \"{}\" is unknown (canonical unit of {} is {})",
                                  field.path, unit_text.substr(0, 80), metric->name, metric->unit));
      }
    }
    MetricConversion mc = ConversionTo(*metric, unit);
    if (!mc.known) {
      return reject(QuarantineReason::kUnknownUnit,
                    fmt::format("{}: unit \"{}\" ({}) is not a unit of {} ({})", field.path,
                                unit_text.empty() ? unit->name : unit_text,
                                DimensionName(unit->dimension), metric->name, metric->unit));
    }
    if (!mc.conversion.identity()) {
      value = mc.conversion.Apply(raw_value);
      flags.Set(QcFlag::kUnitConverted);
      if (!std::isfinite(value)) {
        return reject(QuarantineReason::kNonFiniteValue,
                      fmt::format("{} = {} {} overflows when converted to {}", field.path,
                                  field.value.Describe(), unit_text, metric->unit));
      }
    }
    // Name the unit the value was read in, also when only the alias implied it.
    std::string_view unit_label =
        unit_text.empty() && unit != metric->unit_info ? unit->name : unit_text;
    if (calibration != nullptr) {
      value = calibration->Apply(value);
      flags.Set(QcFlag::kCalibrated);
      if (!std::isfinite(value)) {
        return reject(QuarantineReason::kNonFiniteValue,
                      fmt::format("{} = {}: calibration gives a non-finite value", field.path,
                                  field.value.Describe()));
      }
    }
    Verdict bounds = CheckBounds(*metric, value, raw_value, field.path, unit_label);
    if (!bounds.ok) {
      if (calibration != nullptr) bounds.detail += " after calibration";
      return reject(bounds.reason, std::move(bounds.detail));
    }
    if (stage_options_.gas_mass_concentration) {
      if (const MetricConversion gas = GasMassConversion(*metric); gas.known) {
        value = gas.conversion.Apply(value);
        flags.Set(QcFlag::kUnitConverted);
      }
    }
  } else if (calibration != nullptr) {
    value = calibration->Apply(value);
    flags.Set(QcFlag::kCalibrated);
    if (!std::isfinite(value)) {
      return reject(QuarantineReason::kNonFiniteValue,
                    fmt::format("{} = {}: calibration gives a non-finite value", field.path,
                                field.value.Describe()));
    }
  }
  if ((partitioned_ ? DedupOf(rc.prov) : dedup_)
          .IsDuplicate(rc.device, field.name, rc.event_time)) {
    ++counts.duplicate;
    return;
  }
  Reading& r = out.readings.emplace_back();
  r.event_time = rc.event_time;
  r.arrival_time = rc.arrival;
  r.device = rc.device;
  r.metric = field.name;
  r.value = value;
  r.lat = rc.lat;
  r.lon = rc.lon;
  r.flags = flags;
  r.prov = rc.prov;
  if (calibration != nullptr) r.prov.calibration_date = calibration->date;
  ++counts.forwarded;
}

void IngestStage::Quarantine(const RecordContext& rc, Verdict verdict, Symbol metric, Batch& out,
                             IngestCounts& counts) {
  QuarantineRecord& q = out.quarantine.emplace_back();
  q.reason = QuarantineReasonSymbol(verdict.reason);
  q.detail = std::move(verdict.detail);
  if (verdict.reason == QuarantineReason::kPayloadTooLarge) {
    q.raw.assign(rc.payload.substr(0, kMaxQuarantinedRawBytes));
    q.detail += fmt::format(" (raw payload truncated to its first {} bytes)",
                            std::min(rc.payload.size(), kMaxQuarantinedRawBytes));
  } else {
    q.raw.assign(rc.payload);
  }
  q.arrival_time = rc.arrival;
  q.device = rc.device;
  q.metric = metric;
  q.prov = rc.prov;
  ++counts.quarantined;
  ++counts.by_reason[static_cast<size_t>(verdict.reason)];
}

void IngestStage::Snapshot(CheckpointWriter& out) const {
  out.Section("ingest");
  out.U64(totals_.input);
  out.U64(totals_.forwarded);
  out.U64(totals_.duplicate);
  out.U64(totals_.quarantined);
  out.U64(totals_.by_reason.size());
  for (uint64_t n : totals_.by_reason) out.U64(n);
  dedup_.Snapshot(out);
}

Status IngestStage::Restore(CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("ingest"));
  totals_.input = in.U64();
  totals_.forwarded = in.U64();
  totals_.duplicate = in.U64();
  totals_.quarantined = in.U64();
  const uint64_t reasons = in.Count();
  for (uint64_t i = 0; i < reasons; ++i) {
    uint64_t n = in.U64();
    if (i < totals_.by_reason.size()) totals_.by_reason[i] = n;
  }
  TRIB_RETURN_IF_ERROR(in.status());
  return dedup_.Restore(in);
}

Deduplicator& IngestStage::DedupOf(const Provenance& prov) {
  auto [it, added] =
      partition_dedup_.try_emplace({prov.topic.id, prov.partition}, options_.dedup_horizon);
  if (added) it->second.SetPortable(true);
  return it->second;
}

void IngestStage::SnapshotPartition(std::string_view partition, CheckpointWriter& out) const {
  out.Section("ingest-partition");
  std::string_view topic;
  int32_t p = 0;
  auto it = partition_dedup_.end();
  if (ParsePartitionStateKey(partition, topic, p)) {
    it = partition_dedup_.find({FindSymbol(topic).id, p});
  }
  out.Bool(it != partition_dedup_.end());
  if (it != partition_dedup_.end()) it->second.Snapshot(out);
}

Status IngestStage::RestorePartition(std::string_view partition, CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("ingest-partition"));
  std::string_view topic;
  int32_t p = 0;
  if (!ParsePartitionStateKey(partition, topic, p)) {
    return Status::Invalid("ingest: '" + std::string(partition) + "' is not a partition key");
  }
  const std::pair<uint32_t, int32_t> key{Intern(topic).id, p};
  partition_dedup_.erase(key);
  if (!in.Bool()) return in.status();
  Deduplicator& d = partition_dedup_.try_emplace(key, options_.dedup_horizon).first->second;
  d.SetPortable(true);
  return d.Restore(in).WithContext("dedup state of partition " + std::string(partition));
}

void IngestStage::DropPartition(std::string_view partition) {
  std::string_view topic;
  int32_t p = 0;
  if (ParsePartitionStateKey(partition, topic, p)) {
    partition_dedup_.erase({FindSymbol(topic).id, p});
  }
}

}  // namespace tributary
