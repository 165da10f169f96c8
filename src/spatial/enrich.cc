#include "spatial/enrich.h"

#include <filesystem>

#include "spatial/h3.h"

namespace tributary {

ZoneEnrichOperator::ZoneEnrichOperator(std::shared_ptr<const ZoneSet> zones, int h3_resolution)
    : zones_(std::move(zones)), h3_resolution_(h3_resolution) {
  if (zones_ != nullptr) locator_ = std::make_unique<ZoneLocator>(zones_);
}

Status ZoneEnrichOperator::Open(RunContext& ctx) {
  (void)ctx;
  return Status::Ok();
}

void ZoneEnrichOperator::Enrich(Reading& r) {
  if (h3_resolution_ >= 0) r.h3 = h3::LatLngToCell(r.lat, r.lon, h3_resolution_);
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
  if (zones == nullptr && options.h3_resolution < 0) return std::unique_ptr<Operator>();
  return std::unique_ptr<Operator>(
      std::make_unique<ZoneEnrichOperator>(std::move(zones), options.h3_resolution));
}

}  // namespace tributary
