#include "alert/alert_operator.h"

#include <algorithm>
#include <filesystem>

#include "alert/patterns.h"
#include "alert/summary.h"
#include "stream/checkpoint.h"
#include "stream/partitioned_operator.h"
#include "stream/qc/drift.h"

namespace tributary {

Result<std::unique_ptr<AlertOperator>> AlertOperator::Make(const PipelineConfig& config) {
  TRIB_ASSIGN_OR_RETURN(std::vector<AlertRule> rules, ParseAlertRules(config));
  // The summary is run by the HTTP server; checking it here lets `tributary check` and
  // the start of a run report its mistakes.
  TRIB_RETURN_IF_ERROR(ReadSummaryOptions(config).status());
  std::vector<std::string> names;
  std::vector<std::vector<std::string>> channels;
  for (const AlertRule& r : rules) {
    names.push_back(r.name);
    channels.push_back(r.channels);
  }
  // Pattern matches and drift alerts are made by operators upstream; this operator
  // delivers them with its own.
  TRIB_ASSIGN_OR_RETURN(std::vector<PatternRule> patterns, ParsePatternRules(config));
  for (const PatternRule& p : patterns) {
    if (std::find(names.begin(), names.end(), p.name) != names.end()) {
      return config.alerts.Error("patterns", "pattern '" + p.name + "' has the name of a rule");
    }
    names.push_back(p.name);
    channels.push_back(p.channels);
  }
  TRIB_ASSIGN_OR_RETURN(DriftOptions drift, ReadDriftOptions(config));
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<AlertDispatcher> dispatcher,
                        AlertDispatcher::Make(config, names, channels));
  if (rules.empty() && patterns.empty() && !drift.enabled) {
    return std::unique_ptr<AlertOperator>();
  }
  TRIB_ASSIGN_OR_RETURN(std::string queue_file, config.alerts.GetString("queue_file"));
  TRIB_ASSIGN_OR_RETURN(DurationUs wait, config.alerts.GetDuration("shutdown_wait"));
  return std::make_unique<AlertOperator>(std::move(rules), std::move(dispatcher), queue_file, wait);
}

AlertOperator::AlertOperator(std::vector<AlertRule> rules,
                             std::unique_ptr<AlertDispatcher> dispatcher, std::string queue_file,
                             DurationUs shutdown_wait)
    : engine_(std::move(rules)),
      dispatcher_(std::move(dispatcher)),
      queue_file_(std::move(queue_file)),
      shutdown_wait_(shutdown_wait) {}

AlertOperator::~AlertOperator() {
  if (dispatcher_) dispatcher_->Stop(0);
}

Status AlertOperator::Open(RunContext& ctx) {
  if (opened_) return Status::Internal("alert operator opened twice");
  opened_ = true;
  if (!dispatcher_ || dispatcher_->channel_count() == 0) return Status::Ok();
  std::string file = queue_file_;
  if (file.empty())
    file = (ctx.data_dir.empty() ? std::string(".") : ctx.data_dir) + "/alert_queue.db";
  std::filesystem::path parent = std::filesystem::path(file).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  return dispatcher_->Open(file);
}

void AlertOperator::Emit(std::vector<AlertEvent>& events) {
  TimeUs now = NowUs();
  for (AlertEvent& e : events) {
    if (e.emitted_at != 0) continue;  // delivered by an earlier pass
    e.emitted_at = now;
    if (dispatcher_) dispatcher_->Submit(e);
  }
}

void AlertOperator::SetExpectedIntervalLookup(AlertEngine::IntervalLookup lookup) {
  interval_lookup_ = std::move(lookup);
  engine_.SetExpectedIntervalLookup(interval_lookup_);
  for (auto& [key, e] : parts_) e->SetExpectedIntervalLookup(interval_lookup_);
}

AlertEngine& AlertOperator::PartitionEngine(uint64_t key) {
  std::unique_ptr<AlertEngine>& e = parts_[key];
  if (e == nullptr) {
    e = std::make_unique<AlertEngine>(engine_.rules());
    if (interval_lookup_) e->SetExpectedIntervalLookup(interval_lookup_);
  }
  return *e;
}

void AlertOperator::ProcessPartitioned(Batch& batch) {
  struct Part {
    std::vector<const Reading*> readings;
    std::vector<const WindowResult*> windows;
    bool has_watermark = false;
    TimeUs watermark = kMinTime;
  };
  std::map<uint64_t, Part> split;
  for (const Reading& r : batch.readings) {
    split[PackPartition(r.prov.topic, r.prov.partition)].readings.push_back(&r);
  }
  std::vector<const WindowResult*> unmarked;
  for (const WindowResult& w : batch.windows) {
    if (w.source_partition < 0 && w.source_topic.empty()) {
      unmarked.push_back(&w);
    } else {
      split[PackPartition(w.source_topic, w.source_partition)].windows.push_back(&w);
    }
  }
  for (const PartitionWatermark& pw : batch.partition_watermarks) {
    const uint64_t key = PackPartition(pw.topic, pw.partition);
    if (parts_.count(key) == 0 && split.count(key) == 0) continue;  // no state to judge
    Part& p = split[key];
    p.has_watermark = true;
    p.watermark = pw.watermark;
  }
  for (auto& [key, p] : split) {
    AlertEngine& e = PartitionEngine(key);
    for (const Reading* r : p.readings) e.OnReading(*r, batch.alerts);
    for (const WindowResult* w : p.windows) e.OnWindow(*w, batch.alerts);
    // A partition without a watermark of its own (no partitioned window stage) is
    // judged by the batch's, the minimum over the partitions.
    e.OnWatermark(p.has_watermark ? p.watermark : batch.watermark, batch.alerts);
  }
  for (const WindowResult* w : unmarked) engine_.OnWindow(*w, batch.alerts);
}

Status AlertOperator::Process(Batch& batch) {
  if (partitioned_) {
    ProcessPartitioned(batch);
    Emit(batch.alerts);
    return Status::Ok();
  }
  // Events already in the batch come from upstream operators (pattern rules, drift).
  for (const Reading& r : batch.readings) engine_.OnReading(r, batch.alerts);
  for (const WindowResult& w : batch.windows) engine_.OnWindow(w, batch.alerts);
  engine_.OnWatermark(batch.watermark, batch.alerts);
  Emit(batch.alerts);
  return Status::Ok();
}

Status AlertOperator::Finish(Batch& out) {
  (void)out;
  if (dispatcher_) dispatcher_->Stop(shutdown_wait_);
  return Status::Ok();
}

Status AlertOperator::Snapshot(CheckpointWriter& out) const {
  // The checkpoint covers every alert emitted so far: none may exist only in a channel's
  // memory once it completes (a restart restores a state in which they already fired).
  if (dispatcher_) TRIB_RETURN_IF_ERROR(dispatcher_->Persist());
  engine_.Snapshot(out);
  return Status::Ok();
}

Status AlertOperator::Restore(CheckpointReader& in) {
  return engine_.Restore(in);
}

Status AlertOperator::SnapshotPartition(std::string_view partition, CheckpointWriter& out) const {
  out.Section("alerts-partition");
  uint64_t key = 0;
  auto it = ParsePackedPartition(partition, false, key) ? parts_.find(key) : parts_.end();
  out.Bool(it != parts_.end());
  if (it != parts_.end()) it->second->Snapshot(out);
  return Status::Ok();
}

Status AlertOperator::RestorePartition(std::string_view partition, CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("alerts-partition"));
  uint64_t key = 0;
  if (!ParsePackedPartition(partition, true, key)) {
    return Status::Invalid("alerts: '" + std::string(partition) + "' is not a partition key");
  }
  parts_.erase(key);
  if (!in.Bool()) return in.status();
  Status st = PartitionEngine(key).Restore(in);
  if (!st.ok()) parts_.erase(key);
  return st.WithContext("alert state of partition " + std::string(partition));
}

void AlertOperator::DropPartition(std::string_view partition) {
  uint64_t key = 0;
  if (ParsePackedPartition(partition, false, key)) parts_.erase(key);
}

std::vector<std::string> AlertOperator::Partitions() const {
  std::vector<std::string> out;
  for (const auto& [key, e] : parts_) out.push_back(PackedPartitionStateKey(key));
  return out;
}

const AlertEngine* AlertOperator::partition(std::string_view key) const {
  uint64_t k = 0;
  if (!ParsePackedPartition(key, false, k)) return nullptr;
  auto it = parts_.find(k);
  return it == parts_.end() ? nullptr : it->second.get();
}

}  // namespace tributary
