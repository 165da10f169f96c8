// The ingestion stage: raw payloads in, normalised Readings and quarantine records out.
//
//   RawBatch ──► decode (per source format) ──► record checks ──► per-metric normalise
//            ──► value checks ──► dedup ──► Batch.readings        (else Batch.quarantine)
//
// Ledger rule: input is counted per record. A payload that cannot be decoded into
// readings (broken JSON, no device id, bad timestamp, invalid position, no metric at
// all, ...) counts 1 input and 1 quarantined under its reason. A payload that decodes
// into N readings counts N inputs, and each of them is then quarantined on its own
// (unknown unit, out of bounds, ...), counted as duplicate, or forwarded in
// Batch.readings, so for this stage
//   input == forwarded + quarantined + duplicate
// holds after every Process call. A metric field that is null or an empty string is a
// dropout: no reading, not counted. Accepted and late are counted later, by the window
// stage, for the forwarded readings.
//
// Positions are WGS84 on output: coordinates in another CRS (named by the payload's crs
// field, else the source's `crs` option) are reprojected with PROJ (crs.h), keep their
// original values and CRS in provenance and get QcFlag kCrsTransformed. Timestamps
// without an offset are local time of the source's `time_zone` when one is set.
//
// Device registry (device_registry.h, `processing.registry`): the entry of a record's
// device is looked up once per device and cached by Symbol until the registry reloads;
// it supplies the firmware, the default CRS, a fixed position, field aliases, units and
// calibration curves. With `unknown_devices: quarantine` a device without an entry is
// quarantined as unknown_device. The stage polls the file for changes at the start of
// Process, at the rate of `processing.registry_poll`.
//
// Threading: Make and Open on the runtime thread; Process only ever from one thread at a
// time (the process thread). The stage owns its decoders, its PROJ transformer and its
// dedup state, so a stage per worker gives each worker its own PROJ context.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/ledger.h"
#include "core/model.h"
#include "core/pipeline_config.h"
#include "core/run_context.h"
#include "core/status.h"
#include "ingest/crs.h"
#include "ingest/dedup.h"
#include "ingest/device_registry.h"
#include "ingest/json_decoder.h"
#include "ingest/source_options.h"
#include "ingest/validate.h"
#include "ingest/vendor_decoders.h"

namespace tributary {

/// Counts of one Process call (also what the ledger receives).
struct IngestCounts {
  uint64_t input = 0;
  uint64_t forwarded = 0;
  uint64_t duplicate = 0;
  uint64_t quarantined = 0;
  std::array<uint64_t, kQuarantineReasonCount> by_reason{};
};

class CheckpointWriter;
class CheckpointReader;

class IngestStage {
 public:
  /// Build decoders for every source of `config` and read the `processing` options.
  static Result<std::unique_ptr<IngestStage>> Make(const PipelineConfig& config);
  ~IngestStage();

  /// Remember the run's ledger; must be called before Process.
  Status Open(RunContext& ctx);
  /// Decode, normalise, validate and deduplicate `in`; append readings/quarantine to `out`
  /// and add the number of duplicates to out.duplicates.
  Status Process(const RawBatch& in, Batch& out);

  /// Totals since Open, for tests and progress displays.
  const IngestCounts& totals() const { return totals_; }
  /// Checkpoints: the dedup horizon and the totals (stream/checkpoint.h).
  void Snapshot(CheckpointWriter& out) const;
  Status Restore(CheckpointReader& in);
  const Deduplicator& dedup() const { return dedup_; }
  /// Partition-owned state (docs/SCALING.md): one dedup horizon per input partition
  /// ("<topic>/<partition>"), keyed by the text of device and metric, so another
  /// process can take a partition's horizon over. Set before the first Process.
  void SetPartitionState(bool on) { partitioned_ = on; }
  void SnapshotPartition(std::string_view partition, CheckpointWriter& out) const;
  Status RestorePartition(std::string_view partition, CheckpointReader& in);
  void DropPartition(std::string_view partition);
  /// The device registry of the run (null when none is configured); thread-safe, so
  /// later stages may ask it for expected reporting intervals.
  const std::shared_ptr<DeviceRegistry>& registry() const { return registry_; }

 private:
  struct SourceState {
    Symbol name;
    SourceIngestOptions options;
    // Decodes the json format; for other formats it resolves metric names and units.
    std::unique_ptr<JsonDecoder> decoder;
    std::unique_ptr<VendorDecoder> vendor;  // null for the json format
  };
  // Interns device ids and firmware strings through a bounded local cache, so the hot
  // path does not take the process-wide intern lock for every record.
  class SymbolCache {
   public:
    Symbol Get(std::string_view text);

   private:
    std::unordered_map<std::string, Symbol, ShortStringHash, std::equal_to<>> map_;
  };
  // Per-record context while processing one payload.
  struct RecordContext;

  // What ingestion reads from the `processing` section besides ProcessingOptions.
  struct StageOptions {
    std::shared_ptr<DeviceRegistry> registry;
    bool quarantine_unknown = false;
    bool gas_mass_concentration = false;  // gas_unit: ug/m3
  };

  IngestStage(ProcessingOptions options, StageOptions stage_options,
              std::vector<SourceState> sources);
  static Result<StageOptions> ReadStageOptions(const PipelineConfig& config);
  // The registry entry of `device` (cached per Symbol); nullptr when none.
  const DeviceEntry* EntryFor(Symbol device);

  void ProcessRecord(SourceState& source, std::string_view payload, const RawRecord& raw,
                     Batch& out, IngestCounts& counts);
  bool CheckRecord(RecordContext& rc, Verdict& verdict);
  bool ReadEventTime(RecordContext& rc, Verdict& verdict);
  bool ReadPosition(RecordContext& rc, bool has_latlon, bool from_registry, Verdict& verdict);
  void ProcessMetric(RecordContext& rc, const MetricField& field, std::string_view unit_text,
                     Batch& out, IngestCounts& counts);
  std::string_view UnitFor(const DecodedRecord& rec, const MetricField& field,
                           const FieldMapping& mapping, const DeviceEntry* entry) const;
  void Quarantine(const RecordContext& rc, Verdict verdict, Symbol metric, Batch& out,
                  IngestCounts& counts);

  ProcessingOptions options_;
  StageOptions stage_options_;
  std::shared_ptr<DeviceRegistry> registry_;
  std::shared_ptr<const RegistrySnapshot> registry_snapshot_;  // held while entries are cached
  uint64_t registry_generation_ = 0;
  std::unordered_map<uint32_t, const DeviceEntry*> entries_;  // device Symbol id → entry
  std::vector<SourceState> sources_;
  Deduplicator dedup_;
  bool partitioned_ = false;
  // Partition-owned horizons by (topic symbol id, partition).
  std::map<std::pair<uint32_t, int32_t>, Deduplicator> partition_dedup_;
  Deduplicator& DedupOf(const Provenance& prov);
  CrsTransformer crs_;
  SymbolCache devices_;
  SymbolCache firmware_;
  SymbolCache crs_symbols_;
  DecodedRecord record_;  // reused across payloads
  Ledger* ledger_ = nullptr;
  IngestCounts totals_;
  double readings_per_record_ = 1.0;  // running estimate for reserving output
};

}  // namespace tributary
