#include "alert/alert_operator.h"

#include <algorithm>
#include <filesystem>

#include "alert/patterns.h"
#include "alert/summary.h"
#include "stream/checkpoint.h"
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

Status AlertOperator::Process(Batch& batch) {
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
  engine_.Snapshot(out);
  return Status::Ok();
}

Status AlertOperator::Restore(CheckpointReader& in) {
  return engine_.Restore(in);
}

}  // namespace tributary
