#include "spatial/enrich.h"

#include <filesystem>

#include "core/json_writer.h"
#include "spatial/h3.h"
#include "spatial/s2cell.h"

namespace tributary {

ZoneEnrichOperator::ZoneEnrichOperator(std::shared_ptr<const ZoneSet> zones, int h3_resolution,
                                       int s2_level)
    : zones_(std::move(zones)), h3_resolution_(h3_resolution), s2_level_(s2_level) {
  if (zones_ != nullptr) locator_ = std::make_unique<ZoneLocator>(zones_);
}

Status ZoneEnrichOperator::Open(RunContext& ctx) {
  (void)ctx;
  return Status::Ok();
}

void ZoneEnrichOperator::Enrich(Reading& r) {
  if (h3_resolution_ >= 0) r.h3 = h3::LatLngToCell(r.lat, r.lon, h3_resolution_);
  if (s2_level_ >= 0) r.s2 = S2CellIdAt(r.lat, r.lon, s2_level_);
  if (locator_ == nullptr) return;
  size_t layers = std::min(zones_->layers().size(), kMaxZoneLayers);
  for (size_t l = 0; l < layers; ++l) {
    Symbol id = locator_->LocateId(l, r.lat, r.lon);
    if (l == 0) {
      r.zone = id;
    } else {
      r.extra_zones[l - 1] = id;
    }
    if (id.empty()) r.flags.Set(QcFlag::kNoZone);
  }
}

Status ZoneEnrichOperator::Process(Batch& batch) {
  for (Reading& r : batch.readings) Enrich(r);
  return Status::Ok();
}

Status ZoneEnrichOperator::Finish(Batch& out) {
  (void)out;
  return Status::Ok();
}

Result<std::unique_ptr<Operator>> MakeZoneEnrichOperator(const PipelineConfig& config) {
  std::string base_dir;
  if (!config.file.empty() && config.file.front() != '<') {
    base_dir = std::filesystem::path(config.file).parent_path().string();
  }
  TRIB_ASSIGN_OR_RETURN(ZoneOptions options, ReadZoneOptions(config.zones, base_dir));
  if (options.layers.size() > kMaxZoneLayers) {
    return config.zones.Error(
        "layers", "at most " + std::to_string(kMaxZoneLayers) + " layers are supported");
  }
  std::shared_ptr<const ZoneSet> zones;
  if (!options.layers.empty()) {
    TRIB_ASSIGN_OR_RETURN(zones, ZoneSet::Load(options.layers));
  }
  if (zones == nullptr && options.h3_resolution < 0 && options.s2_level < 0) {
    return std::unique_ptr<Operator>();
  }
  return std::unique_ptr<Operator>(std::make_unique<ZoneEnrichOperator>(
      std::move(zones), options.h3_resolution, options.s2_level));
}

std::vector<std::string> ExtraZoneLayerNames(const PipelineConfig& config) {
  std::vector<std::string> names = ZoneLayerNames(config.zones);
  if (names.size() > kMaxZoneLayers) names.resize(kMaxZoneLayers);
  if (!names.empty()) names.erase(names.begin());
  return names;
}

void AppendExtraZonesJson(const Reading& r, const std::vector<std::string>& names,
                          std::string& out) {
  if (names.empty()) return;
  out += '{';
  for (size_t i = 0; i < names.size() && i + 1 < kMaxZoneLayers; ++i) {
    if (i > 0) out += ',';
    AppendJsonString(out, names[i]);
    out += ':';
    if (r.extra_zones[i].empty()) {
      out += "null";
    } else {
      AppendJsonString(out, r.extra_zones[i].view());
    }
  }
  out += '}';
}

}  // namespace tributary
