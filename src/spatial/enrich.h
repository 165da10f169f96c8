// The enrichment stage: where each reading is, before windowing.
//
// For every reading of a batch: its H3 cell at the configured resolution (reading.h3)
// and, for each configured zone layer, the id of the zone covering its position
// (reading.zone for the first layer, reading.extra_zones[i - 1] for layer i), and its S2
// cell when `zones.s2_level` is set (reading.s2). A reading
// outside every zone of some layer gets QcFlag kNoZone; it is kept and forwarded.
// Because the ids are on the readings when the window stage sees them, `group_by: zone`
// and `group_by: h3` windows group without any spatial join per window.
//
// It is an operator of its own, first in the chain, rather than a step of ingestion:
// ingestion stays about bytes and values, the zone index is loaded once per pipeline
// and shared, and each worker's operator holds its own GEOS context (ZoneLocator).
// Threading: as every operator, one thread calls it.
#pragma once

#include <memory>

#include "core/pipeline_config.h"
#include "spatial/zones.h"
#include "stream/operator.h"

namespace tributary {

class ZoneEnrichOperator : public Operator {
 public:
  /// Enrich with `zones` (may be null: cells only), H3 at `h3_resolution` and S2 at
  /// `s2_level` (-1: none).
  ZoneEnrichOperator(std::shared_ptr<const ZoneSet> zones, int h3_resolution, int s2_level = -1);

  std::string_view name() const override { return "enrich"; }
  Status Open(RunContext& ctx) override;
  Status Process(Batch& batch) override;
  Status Finish(Batch& out) override;
  /// Stateless: a checkpoint holds nothing of it.
  Status Snapshot(CheckpointWriter& /*out*/) const override { return Status::Ok(); }
  bool SupportsPartitionState() const override { return true; }
  Status SnapshotPartition(std::string_view /*partition*/,
                           CheckpointWriter& /*out*/) const override {
    return Status::Ok();
  }
  Status RestorePartition(std::string_view /*partition*/, CheckpointReader& /*in*/) override {
    return Status::Ok();
  }
  Status Restore(CheckpointReader& /*in*/) override { return Status::Ok(); }

  /// Enrich one reading (also for tests and benchmarks).
  void Enrich(Reading& r);

 private:
  std::shared_ptr<const ZoneSet> zones_;
  std::unique_ptr<ZoneLocator> locator_;
  int h3_resolution_;
  int s2_level_;
};

/// The names of the zone layers after the first (those of reading.extra_zones), from
/// the pipeline's `zones` section; empty when there are none.
std::vector<std::string> ExtraZoneLayerNames(const PipelineConfig& config);
/// Append the JSON object {"<layer>": "<zone id>" or null, ...} of the reading's extra
/// zone layers (`names` from ExtraZoneLayerNames) to `out`; appends nothing for no names.
void AppendExtraZonesJson(const Reading& r, const std::vector<std::string>& names,
                          std::string& out);

/// Build the enrichment operator from the pipeline's `zones` section, loading every
/// boundary layer (errors name the layer and file). Null when there is nothing to do
/// (no layers and h3_resolution -1).
Result<std::unique_ptr<Operator>> MakeZoneEnrichOperator(const PipelineConfig& config);

}  // namespace tributary
