// What ingestion reads from a source's options: the payload format, the field mapping
// of the json format, a default CRS, the time zone of naive timestamps, the unit of
// epoch numbers and the units OpenWeatherMap payloads were requested in.
//
// The keys are declared in the common source spec (core/pipeline_config.cc: every
// source may carry them whatever its connector); the `mapping` value is a nested
// mapping validated here against SourceMappingSpec(), so its errors name the file,
// line and key like any other option.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/config.h"
#include "core/status.h"
#include "core/time.h"
#include "ingest/json_decoder.h"
#include "ingest/time_zone.h"

namespace tributary {

/// Payload decoders selectable with a source's `format`.
enum class PayloadFormat : uint8_t { kJson, kSensorCommunity, kTtnV3, kChirpstackV4, kOwm };

/// Units an OpenWeatherMap request asked for (its `units` parameter).
enum class OwmUnits : uint8_t { kStandard, kMetric, kImperial };

/// The options ingestion applies to one source.
struct SourceIngestOptions {
  PayloadFormat format = PayloadFormat::kJson;
  FieldMapping mapping = FieldMapping::Defaults();
  std::string crs;  ///< CRS of positions whose payload names none; "" = WGS84
  std::shared_ptr<const TimeZone> time_zone;  ///< for naive timestamps; null = UTC
  EpochUnit epoch_unit = EpochUnit::kAuto;
  OwmUnits owm_units = OwmUnits::kStandard;
};

/// The keys of a source's `mapping` option (documented as `sources[].mapping`).
const SectionSpec& SourceMappingSpec();

/// Read and validate the ingestion options of one source.
Result<SourceIngestOptions> ReadSourceIngestOptions(const OptionReader& options);

/// Apply a `mapping` node to `mapping`: each role given replaces that role's paths; a
/// `metrics` map (metric name → path) adds explicit metric fields and, unless
/// `metric_containers` is given too, makes them the only metrics read.
Status ApplyFieldMapping(const OptionReader& reader, FieldMapping& mapping);

}  // namespace tributary
