#include "stream/runtime.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "alert/alert_operator.h"
#include "alert/patterns.h"
#include "core/queue.h"
#include "core/registry.h"
#include "core/stage_metrics.h"
#include "ingest/device_registry.h"
#include "ingest/ingest.h"
#include "io/connector.h"
#include "io/sinks/kafka_sink.h"
#include "io/sources/kafka_source.h"
#include "server/metrics.h"
#include "spatial/enrich.h"
#include "spatial/surface.h"
#include "stream/checkpoint.h"
#include "stream/operator.h"
#include "stream/partitioned_operator.h"
#include "stream/partitioned_window.h"
#include "stream/qc/drift.h"
#include "stream/qc/iforest.h"
#include "stream/qc/qc.h"
#include "stream/window.h"

namespace tributary {

namespace {
constexpr auto kPollWait = std::chrono::milliseconds(100);
constexpr DurationUs kSourcePollWaitUs = 100 * kMicrosPerMilli;
constexpr int kMaxSinkRetries = 8;
}  // namespace

struct Pipeline::Shared {
  explicit Shared(size_t capacity) : raw(capacity), batches(capacity) {}
  BoundedQueue<RawBatch> raw;
  BoundedQueue<Batch> batches;
  std::atomic<int> sources_running{0};
  std::atomic<size_t> sources_ended{0};  // reached end_of_stream
  std::atomic<TimeUs> watermark{kMinTime};
  std::mutex error_mu;
  Status first_error;
  // Partition-owned state: a source's request to give up partitions (see Run).
  std::mutex revoke_mu;
  std::condition_variable revoke_cv;
  std::vector<std::string> revoke_keys;
  bool revoke_requested = false;
  bool revoke_closed = false;         // no checkpoint will commit any more
  uint64_t revoke_checkpoint = 0;     // the checkpoint that covers the last request
  uint64_t committed_checkpoint = 0;  // the last checkpoint the sinks committed

  void Fail(const Status& st) {
    std::lock_guard lock(error_mu);
    if (first_error.ok()) first_error = st;
  }
  bool failed() {
    std::lock_guard lock(error_mu);
    return !first_error.ok();
  }
};

Pipeline::Pipeline(PipelineConfig config) : config_(std::move(config)) {}
Pipeline::~Pipeline() = default;

Result<std::unique_ptr<Pipeline>> Pipeline::Build(const PipelineConfig& config,
                                                  const PipelineBuildOptions& options) {
  std::unique_ptr<Pipeline> p(new Pipeline(config));
  p->idle_ticks_ = options.idle_ticks;
  TRIB_ASSIGN_OR_RETURN(MemoryLimitOptions memory, ParseMemoryLimitOptions(p->config_));
  p->memory_guard_ = std::make_unique<MemoryGuard>(std::move(memory));
  TRIB_ASSIGN_OR_RETURN(HotPartitionOptions hot, ParseHotPartitionOptions(p->config_));
  p->partition_monitor_ = std::make_unique<PartitionMonitor>(
      hot, p->config_.sources, "pipeline=\"" + EscapeLabelValue(p->config_.name) + "\"");
  const Registry& registry = Registry::Get();
  if (config.sources.empty()) {
    return Status::Invalid(config.file + ": the pipeline has no sources");
  }
  for (const SourceEntry& entry : p->config_.sources) {
    TRIB_ASSIGN_OR_RETURN(std::unique_ptr<Source> source, registry.MakeSource(entry));
    p->sources_.push_back(std::move(source));
  }
  // Partition-owned state: a kafka sink with a state changelog (the sinks themselves are
  // made last, as symbols are interned in the order stages are built).
  for (const SinkEntry& entry : p->config_.sinks) {
    if (entry.type != "kafka") continue;
    Result<KafkaSinkOptions> kafka = ParseKafkaSinkOptions(entry.options, entry.name);
    if (kafka.ok() && !kafka->state_topic.empty()) p->partition_state_ = true;
  }
  TRIB_ASSIGN_OR_RETURN(p->ingest_, IngestStage::Make(p->config_));
  p->ingest_->SetPartitionState(p->partition_state_);
  // Enrichment first: windows group by the zone and H3 cell it attaches.
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<Operator> enrich, MakeZoneEnrichOperator(p->config_));
  if (enrich != nullptr) p->operators_.push_back(std::move(enrich));
  // SPARSE, the data-capture rule and stale-sensor alerts judge each device against
  // its reporting interval in the device registry, when there is one.
  std::shared_ptr<DeviceRegistry> devices = p->ingest_->registry();
  // Drift correction and anomaly flags before the windows, so windows aggregate the
  // corrected values and the flags reach every sink.
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<DriftOperator> drift,
                        DriftOperator::Make(p->config_, devices));
  if (drift != nullptr) p->operators_.push_back(std::move(drift));
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<AnomalyOperator> anomaly,
                        AnomalyOperator::Make(p->config_));
  if (anomaly != nullptr) p->operators_.push_back(std::move(anomaly));
  // Quality control between enrichment and windows: its flags reach the windows and the
  // zone baselines see the zone enrichment attached.
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<QcOperator> qc, MakeQcOperator(p->config_));
  if (qc != nullptr) {
    std::function<std::string(Symbol)> model;
    if (devices != nullptr) {
      model = [devices](Symbol device) -> std::string {
        std::shared_ptr<const RegistrySnapshot> snap = devices->Snapshot();
        const DeviceEntry* e = snap->Find(device.view());
        return e != nullptr ? e->model : std::string();
      };
      qc->SetModelLookup(model);
    }
    if (p->partition_state_) {
      // One QC instance per input partition (stream/partitioned_operator.h): baselines
      // and neighbours see only the partition's sensors.
      auto qc_options = std::make_shared<const QcOptions>(qc->options());
      p->operators_.push_back(std::make_unique<PartitionedOperator>(
          "qc", [qc_options, model]() -> std::unique_ptr<Operator> {
            auto op = std::make_unique<QcOperator>(*qc_options);
            if (model) op->SetModelLookup(model);
            return op;
          }));
    } else {
      p->operators_.push_back(std::move(qc));
    }
  }
  const WindowOperator::Clock window_clock =
      options.processing_clock ? options.processing_clock : NowUs;
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<WindowOperator> window,
                        MakeWindowOperator(p->config_, window_clock));
  WindowOperator::ExpectedInterval expected;
  if (devices != nullptr) {
    expected = [devices](Symbol device, Symbol) -> DurationUs {
      return devices->ExpectedInterval(device.view());
    };
  }
  if (p->partition_state_) {
    // One window stage per input partition (stream/partitioned_window.h).
    auto defs = std::make_shared<const std::vector<WindowDefinition>>(window->definitions());
    auto partitioned = std::make_unique<PartitionedWindowOperator>(
        [defs, processing = p->config_.processing, window_clock] {
          return std::make_unique<WindowOperator>(*defs, processing, window_clock);
        });
    if (expected) partitioned->SetExpectedInterval(expected);
    p->operators_.push_back(std::move(partitioned));
  } else {
    if (expected) window->SetExpectedInterval(expected);
    p->operators_.push_back(std::move(window));
  }
  // Surfaces interpolate the per-device results the window stage emitted.
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<Operator> surface, MakeSurfaceOperator(p->config_));
  if (surface != nullptr) p->operators_.push_back(std::move(surface));
  // Pattern rules see readings and window results; their matches go out through the
  // alert operator after them.
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<PatternOperator> patterns,
                        PatternOperator::Make(p->config_));
  if (patterns != nullptr && p->partition_state_) {
    // One pattern instance per input partition (stream/partitioned_operator.h): a
    // partition keyed by area sees the sequences and co-occurrences of its area.
    auto rules = std::make_shared<const std::vector<PatternRule>>(patterns->rules());
    p->operators_.push_back(
        std::make_unique<PartitionedOperator>("patterns", [rules]() -> std::unique_ptr<Operator> {
          return std::make_unique<PatternOperator>(*rules);
        }));
  } else if (patterns != nullptr) {
    p->operators_.push_back(std::move(patterns));
  }
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<AlertOperator> alerts, AlertOperator::Make(p->config_));
  if (alerts) {
    if (devices != nullptr) {
      alerts->SetExpectedIntervalLookup(
          [devices](Symbol device) { return devices->ExpectedInterval(device.view()); });
    }
    // One rule engine per input partition, judged by that partition's watermark.
    if (p->partition_state_) alerts->EnablePartitionState();
    p->operators_.push_back(std::move(alerts));
  }
  for (const SinkEntry& entry : p->config_.sinks) {
    TRIB_ASSIGN_OR_RETURN(std::unique_ptr<Sink> sink, registry.MakeSink(entry));
    p->sinks_.push_back(std::move(sink));
    p->sink_names_.push_back(entry.name);
  }
  if (p->partition_state_) TRIB_RETURN_IF_ERROR(p->CheckPartitionState());
  return p;
}

// Partition-owned state needs every stage to keep its state per partition, one kafka
// source whose partitions the state follows, and output that commits with the state.
Status Pipeline::CheckPartitionState() {
  const std::string what = config_.file + ": partition-owned state (a kafka sink's state_topic)";
  TRIB_ASSIGN_OR_RETURN(CheckpointOptions ckpt, ReadCheckpointOptions(config_));
  if (!ckpt.enabled) return Status::Invalid(what + " needs checkpoint.enabled");
  if (sources_.size() != 1 || dynamic_cast<KafkaSource*>(sources_[0].get()) == nullptr) {
    return Status::Invalid(what + " needs exactly one source, of type kafka");
  }
  for (size_t i = 0; i < sinks_.size(); ++i) {
    if (dynamic_cast<KafkaSink*>(sinks_[i].get()) == nullptr) {
      return Status::Invalid(what + ": sink " + sink_names_[i] +
                             " is not a kafka sink (with breaker: false); its output could not "
                             "commit with the state");
    }
  }
  for (auto& op : operators_) {
    if (!op->SupportsPartitionState()) {
      return Status::Invalid(
          what + ": operator " + std::string(op->name()) +
          " cannot keep its state per partition yet (leave it out of the pipeline, or run "
          "without state_topic; docs/SCALING.md lists the stages that can)");
    }
  }
  return Status::Ok();
}

std::string Pipeline::LedgerPath() const {
  return config_.data_dir + "/ledger.json";
}

RunProgress Pipeline::Progress() const {
  RunProgress p;
  p.ledger = ledger_.Snapshot();
  if (shared_) {
    p.watermark = shared_->watermark.load(std::memory_order_relaxed);
    p.raw_queue_depth = shared_->raw.size();
    p.sink_queue_depth = shared_->batches.size();
  }
  if (memory_guard_) p.memory = memory_guard_->Status();
  if (partition_monitor_) p.partitions = partition_monitor_->Report();
  return p;
}

Status WriteFileAtomic(const std::string& path, std::string_view content) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Io("cannot write " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status st = Status::Io("cannot write " + tmp + ": " + std::strerror(errno));
      ::close(fd);
      return st;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return Status::Io("cannot flush " + tmp + ": " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::Io("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

Status Pipeline::Run(DurationUs duration) {
  std::error_code ec;
  std::filesystem::create_directories(config_.data_dir, ec);
  if (ec) {
    return Status::Io("cannot create data folder " + config_.data_dir + ": " + ec.message());
  }
  shared_ = std::make_unique<Shared>(config_.queue_capacity);
  Shared& sh = *shared_;
  RunContext ctx;
  ctx.config = &config_;
  ctx.ledger = &ledger_;
  ctx.data_dir = config_.data_dir;
  ctx.stop = &stop_;
  for (auto& s : sources_) ctx.sources.push_back(s.get());
  for (auto& s : sinks_) ctx.sinks.push_back(s.get());
  if (partition_state_) {
    // A source giving up partitions: the process thread checkpoints and drops them, the
    // sink thread commits; the source waits for that commit (Shared::revoke_*).
    ctx.revoke_partitions = [&sh](const std::vector<std::string>& keys) {
      std::unique_lock lock(sh.revoke_mu);
      if (sh.revoke_closed) return false;
      sh.revoke_keys.insert(sh.revoke_keys.end(), keys.begin(), keys.end());
      sh.revoke_requested = true;
      sh.revoke_cv.wait_for(lock, std::chrono::seconds(60), [&sh] {
        return sh.revoke_closed ||
               (!sh.revoke_requested && sh.committed_checkpoint >= sh.revoke_checkpoint);
      });
      return !sh.revoke_requested && sh.committed_checkpoint >= sh.revoke_checkpoint;
    };
  }
  for (auto& op : operators_) {
    if (auto* window = dynamic_cast<WindowOperator*>(op.get())) {
      window->SetMemoryShed(&memory_guard_->shedding());
    }
    if (auto* window = dynamic_cast<PartitionedWindowOperator*>(op.get())) {
      window->SetMemoryShed(&memory_guard_->shedding());
    }
  }

  // Checkpoints (stream/checkpoint.h): the symbols of the latest one are interned before
  // any stage opens; its state is restored once all are open.
  TRIB_ASSIGN_OR_RETURN(CheckpointOptions ckpt_options, ReadCheckpointOptions(config_));
  std::unique_ptr<CheckpointCoordinator> ckpt;
  if (ckpt_options.enabled) {
    CheckpointCoordinator::Stages stages;
    for (size_t i = 0; i < sources_.size(); ++i) {
      stages.sources.push_back(sources_[i].get());
      stages.source_names.push_back(config_.sources[i].name);
    }
    stages.ingest = ingest_.get();
    for (auto& op : operators_) stages.operators.push_back(op.get());
    for (auto& s : sinks_) stages.sinks.push_back(s.get());
    stages.sink_names = sink_names_;
    stages.ledger = &ledger_;
    ckpt_options.partition_state = partition_state_;
    ckpt = std::make_unique<CheckpointCoordinator>(ckpt_options, std::move(stages));
    TRIB_RETURN_IF_ERROR(ckpt->Load());
    ctx.checkpointing = true;
    ctx.checkpoint_decided = ckpt->decided();
  }

  // Open sinks first: a sink that cannot open must fail the run before any source
  // consumes (and possibly acknowledges) input.
  auto close_all = [&] {
    for (auto& s : sources_) s->Close();
    for (auto& s : sinks_) s->Close();
  };
  for (size_t i = 0; i < sinks_.size(); ++i) {
    Status st = sinks_[i]->Open(ctx);
    if (!st.ok()) {
      close_all();
      return st.WithContext("sink " + sink_names_[i]);
    }
  }
  TRIB_RETURN_IF_ERROR(ingest_->Open(ctx));
  for (auto& op : operators_) {
    Status st = op->Open(ctx);
    if (!st.ok()) {
      close_all();
      return st.WithContext(std::string("operator ") + std::string(op->name()));
    }
  }
  for (size_t i = 0; i < sources_.size(); ++i) {
    Status st = sources_[i]->Open(ctx);
    if (!st.ok()) {
      close_all();
      return st.WithContext("source " + config_.sources[i].name);
    }
  }
  if (ckpt) {
    Status st = ckpt->Recover();
    if (!st.ok()) {
      close_all();
      return st;
    }
  }

  running_.store(true, std::memory_order_release);
  // Near the memory ceiling every source pauses; it resumes once memory or the queues
  // allow (stream/memory_guard.h).
  memory_guard_->Start(
      [this](bool pause) {
        for (auto& s : sources_) s->SetPaused(pause);
      },
      [&sh] { return sh.raw.size() == 0 && sh.batches.size() == 0; },
      "{pipeline=\"" + EscapeLabelValue(config_.name) + "\"}");

  // Stage names of the throughput counters (core/stage_metrics.h).
  std::vector<std::string> operator_stages;
  for (auto& op : operators_) operator_stages.push_back("operator:" + std::string(op->name()));
  auto batch_events = [](const Batch& b) {
    return b.readings.size() + b.windows.size() + b.alerts.size();
  };

  // Source threads.
  std::vector<std::thread> source_threads;
  sh.sources_running = static_cast<int>(sources_.size());
  for (size_t i = 0; i < sources_.size(); ++i) {
    source_threads.emplace_back([this, i, &sh] {
      Source& source = *sources_[i];
      const std::string stage = "source:" + config_.sources[i].name;
      while (!stop_.load(std::memory_order_relaxed)) {
        RawBatch raw;
        raw.source_index = static_cast<uint16_t>(i);
        Status st = source.Poll(raw, config_.batch_size, kSourcePollWaitUs);
        if (!st.ok()) {
          sh.Fail(st.WithContext("source " + config_.sources[i].name));
          stop_ = true;
          break;
        }
        bool end = raw.end_of_stream;
        if (!raw.empty()) AddStageEvents(stage, raw.size());
        if ((!raw.empty() || !raw.restores.empty()) && !sh.raw.Push(raw)) break;
        if (end) {
          sh.sources_ended.fetch_add(1);
          break;
        }
      }
      // Stopped: hand on what the source still holds (see Source::Stop).
      while (stop_.load(std::memory_order_relaxed) && !sh.failed()) {
        RawBatch rest;
        rest.source_index = static_cast<uint16_t>(i);
        if (!source.Poll(rest, config_.batch_size, 0).ok() || rest.empty()) break;
        if (!sh.raw.Push(rest)) break;
      }
      if (sh.sources_running.fetch_sub(1) == 1) sh.raw.Close();
    });
  }

  // Idle ticks move watermarks by wall time; not for inputs whose clock is simulated.
  const bool idle_ticks =
      idle_ticks_ && !std::all_of(sources_.begin(), sources_.end(),
                                  [](const auto& s) { return s->ClockIsSimulated(); });
  // Process thread: ingestion then the operator chain.
  std::thread process_thread([this, &sh, &operator_stages, &batch_events, &ckpt, idle_ticks] {
    auto run_chain = [&](Batch& batch, size_t from) -> bool {
      for (size_t k = from; k < operators_.size(); ++k) {
        Status st = operators_[k]->Process(batch);
        if (!st.ok()) {
          sh.Fail(st.WithContext(std::string("operator ") + std::string(operators_[k]->name())));
          return false;
        }
        if (size_t n = batch_events(batch); n > 0) AddStageEvents(operator_stages[k], n);
      }
      sh.watermark.store(batch.watermark, std::memory_order_relaxed);
      return true;
    };
    // A checkpoint barrier: snapshot now, the sink thread completes it after `batch`.
    // Partition-owned state: the partitions this process holds and their next offsets
    // as of the last raw batch processed.
    std::set<std::string> owned;
    std::map<std::string, int64_t> next_offsets;
    auto partition_states = [&]() -> Result<std::shared_ptr<const std::vector<PartitionState>>> {
      auto states = std::make_shared<std::vector<PartitionState>>();
      for (const std::string& key : owned) {
        auto at = next_offsets.find(key);
        if (at == next_offsets.end()) continue;  // nothing read: its stored state holds
        CheckpointWriter w;
        w.Section("partition");
        SnapshotSymbols(w);
        ingest_->SnapshotPartition(key, w);
        for (auto& op : operators_) TRIB_RETURN_IF_ERROR(op->SnapshotPartition(key, w));
        states->push_back(PartitionState{key, at->second, w.Take()});
      }
      return std::shared_ptr<const std::vector<PartitionState>>(std::move(states));
    };
    auto drop_partition = [&](const std::string& key) {
      ingest_->DropPartition(key);
      for (auto& op : operators_) op->DropPartition(key);
      owned.erase(key);
      next_offsets.erase(key);
    };
    auto restore_partitions = [&](std::vector<PartitionState>& restores) -> Status {
      for (PartitionState& r : restores) {
        drop_partition(r.key);
        owned.insert(r.key);
        if (r.offset >= 0) next_offsets[r.key] = r.offset;
        if (r.state.empty()) continue;
        CheckpointReader in(r.state);
        TRIB_RETURN_IF_ERROR(in.ExpectSection("partition"));
        TRIB_ASSIGN_OR_RETURN(std::vector<uint32_t> symbols, ReadSymbolMap(in));
        in.SetSymbolMap(&symbols);
        TRIB_RETURN_IF_ERROR(ingest_->RestorePartition(r.key, in));
        for (auto& op : operators_) {
          TRIB_RETURN_IF_ERROR(op->RestorePartition(r.key, in).WithContext(
              "partition " + r.key + ", operator " + std::string(op->name())));
        }
        TRIB_RETURN_IF_ERROR(in.status().WithContext("partition state of " + r.key));
      }
      return Status::Ok();
    };
    auto note_offsets = [&](std::string_view position) {
      CheckpointReader in(position);
      const uint64_t n = in.Count();
      for (uint64_t i = 0; i < n && in.ok(); ++i) {
        std::string topic(in.Str());
        const auto partition = static_cast<int32_t>(in.I64());
        const int64_t next = in.I64();
        if (in.ok()) next_offsets[PartitionStateKey(Intern(topic), partition)] = next;
      }
    };
    auto take_checkpoint = [&](Batch& batch) -> bool {
      Result<uint64_t> id = ckpt->Take(NowUs());
      if (!id.ok()) {
        sh.Fail(id.status());
        return false;
      }
      batch.checkpoint_id = *id;
      if (partition_state_) {
        auto states = partition_states();
        if (!states.ok()) {
          sh.Fail(states.status());
          return false;
        }
        batch.partition_states = std::move(*states);
      }
      return true;
    };
    // A source asked to give up partitions: once every batch it handed on is processed
    // (the raw queue is empty and the source waits), checkpoint them and drop them.
    auto serve_revoke = [&](Batch* batch) -> bool {
      if (!partition_state_ || sh.raw.size() != 0) return true;
      std::vector<std::string> keys;
      {
        std::lock_guard lock(sh.revoke_mu);
        if (!sh.revoke_requested) return true;
        keys = std::move(sh.revoke_keys);
        sh.revoke_keys.clear();
      }
      Batch barrier;
      Batch& b = batch != nullptr ? *batch : barrier;
      if (b.checkpoint_id == 0 && !take_checkpoint(b)) return false;
      for (const std::string& key : keys) drop_partition(key);
      {
        std::lock_guard lock(sh.revoke_mu);
        sh.revoke_checkpoint = b.checkpoint_id;
        sh.revoke_requested = false;
      }
      sh.revoke_cv.notify_all();
      return batch != nullptr || sh.batches.Push(barrier);
    };
    bool ok = true;
    while (ok) {
      std::optional<RawBatch> raw = sh.raw.PopFor(kPollWait);
      if (!raw) {
        if (sh.raw.closed()) break;
        partition_monitor_->Tick(NowUs());
        if (ckpt && ckpt->Due(NowUs())) {
          Batch barrier;
          ok = take_checkpoint(barrier) && sh.batches.Push(barrier);
        }
        if (ok && ckpt) ok = serve_revoke(nullptr);
        if (!idle_ticks) continue;
        for (size_t k = 0; k < operators_.size() && ok; ++k) {
          Batch out;
          Status st = operators_[k]->OnIdle(NowUs(), out);
          if (!st.ok()) {
            sh.Fail(st);
            ok = false;
            break;
          }
          if (out.empty() && out.watermark == kMinTime) continue;
          // Later operators see an idle watermark move too (stale-sensor alerts).
          ok = run_chain(out, k + 1);
          if (out.empty()) {
            sh.watermark.store(std::max(sh.watermark.load(), out.watermark));
            continue;
          }
          ok = ok && sh.batches.Push(out);
        }
        continue;
      }
      Batch batch;
      if (!raw->restores.empty()) {
        Status restored = restore_partitions(raw->restores);
        if (!restored.ok()) {
          sh.Fail(restored);
          break;
        }
      }
      Status st = ingest_->Process(*raw, batch);
      if (!st.ok()) {
        sh.Fail(st.WithContext("ingest"));
        break;
      }
      partition_monitor_->Observe(batch.readings, raw->source_index, NowUs());
      AddStageEvents("ingest", batch_events(batch));
      ok = run_chain(batch, 0);
      // Set after the chain, so no operator can lose it; Source::OnCommitted needs it.
      batch.source_index = raw->source_index;
      batch.source_checkpoint = raw->checkpoint;
      if (ckpt) {
        if (partition_state_ && !raw->position.empty()) note_offsets(raw->position);
        ckpt->NotePosition(raw->source_index, std::move(raw->position));
        if (ok && ckpt->Due(NowUs())) ok = take_checkpoint(batch);
        if (ok) ok = serve_revoke(&batch);
      }
      ok = ok && sh.batches.Push(batch);
    }
    // Finish: each operator emits what is still open; later operators process it. With
    // checkpoints, a run stopped before its input ended keeps its windows open instead:
    // the final checkpoint holds them and the next run continues them.
    const bool finish = !ckpt || sh.sources_ended.load() == sources_.size();
    for (size_t k = 0; finish && k < operators_.size() && !sh.failed(); ++k) {
      Batch out;
      Status st = operators_[k]->Finish(out);
      if (!st.ok()) {
        sh.Fail(st);
        break;
      }
      if (run_chain(out, k + 1) && !out.empty()) sh.batches.Push(out);
    }
    if (ckpt && !sh.failed()) {
      Batch barrier;
      if (take_checkpoint(barrier)) {
        if (serve_revoke(&barrier)) sh.batches.Push(barrier);
      }
    }
    sh.batches.Close();
    if (sh.failed()) {
      stop_ = true;
      sh.raw.Close();  // unblock sources waiting for room; nothing more is consumed
    }
  });

  // Sink thread.
  std::thread sink_thread([this, &sh, &batch_events, &ckpt] {
    // Per source: the checkpoint of the last raw batch whose results every sink wrote,
    // and the last one handed to Source::OnCommitted.
    std::vector<uint64_t> written_checkpoint(sources_.size(), 0);
    std::vector<uint64_t> committed_checkpoint(sources_.size(), 0);
    auto with_retry = [&](size_t i, auto&& op, const char* what) -> bool {
      DurationUs backoff = 100 * kMicrosPerMilli;
      for (int attempt = 0;; ++attempt) {
        auto started = std::chrono::steady_clock::now();
        Status st = op();
        ObserveSinkLatency(
            sink_names_[i], what,
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        if (st.ok()) return true;
        if (!st.retryable() || attempt >= kMaxSinkRetries) {
          sh.Fail(st.WithContext("sink " + sink_names_[i] + " " + what));
          return false;
        }
        spdlog::warn("sink {} {} failed ({}), retrying in {}", sink_names_[i], what, st.ToString(),
                     FormatDuration(backoff));
        std::this_thread::sleep_for(std::chrono::microseconds(backoff));
        backoff = std::min<DurationUs>(backoff * 2, 10 * kMicrosPerSecond);
      }
    };
    auto after_commit = [&]() -> bool {
      Status st = WriteFileAtomic(LedgerPath(), ledger_.Snapshot().ToJson());
      if (!st.ok()) spdlog::warn("{}", st.ToString());
      // Everything written so far is durable: sources may commit their positions.
      for (size_t i = 0; i < sources_.size(); ++i) {
        if (written_checkpoint[i] != committed_checkpoint[i]) {
          sources_[i]->OnCommitted(written_checkpoint[i]);
          committed_checkpoint[i] = written_checkpoint[i];
        }
      }
      return true;
    };
    auto commit_all = [&]() -> bool {
      for (size_t i = 0; i < sinks_.size(); ++i) {
        if (!with_retry(
                i, [&] { return sinks_[i]->Commit(); }, "commit"))
          return false;
      }
      return after_commit();
    };
    TimeUs last_commit = NowUs();
    bool ok = true;
    while (true) {
      std::optional<Batch> batch = sh.batches.PopFor(kPollWait);
      if (!batch && sh.batches.closed()) break;
      if (batch && ok) {
        for (size_t i = 0; i < sinks_.size() && ok; ++i) {
          ok = with_retry(
              i, [&] { return sinks_[i]->Write(*batch); }, "write");
          if (ok) AddStageEvents("sink:" + sink_names_[i], batch_events(*batch));
        }
        if (!ok) stop_ = true;
        if (ok && batch->source_checkpoint != 0 && batch->source_index >= 0 &&
            static_cast<size_t>(batch->source_index) < sources_.size()) {
          written_checkpoint[static_cast<size_t>(batch->source_index)] = batch->source_checkpoint;
        }
        if (ok && observer_ != nullptr) observer_->OnBatch(*batch);
        // Checkpoints: sinks commit only at barriers, through the two-phase commit.
        if (ok && ckpt) {
          Status st = ckpt->Record(*batch);
          if (st.ok() && batch->checkpoint_id != 0) st = ckpt->Complete(batch->checkpoint_id);
          if (!st.ok()) {
            sh.Fail(st);
            ok = false;
            stop_ = true;
          } else if (batch->checkpoint_id != 0) {
            ok = after_commit();
            {
              std::lock_guard lock(sh.revoke_mu);
              sh.committed_checkpoint = batch->checkpoint_id;
            }
            sh.revoke_cv.notify_all();
          }
        }
      }
      if (ok && !ckpt && NowUs() - last_commit >= config_.commit_interval) {
        ok = commit_all();
        last_commit = NowUs();
      }
    }
    if (ok) commit_all();
    {
      std::lock_guard lock(sh.revoke_mu);
      sh.revoke_closed = true;  // a source waiting for a revocation's commit: none comes
    }
    sh.revoke_cv.notify_all();
  });

  // Supervise: duration and stop requests.
  TimeUs started = NowUs();
  bool stop_sent = false;
  while (sh.sources_running.load() > 0) {
    if (!stop_sent && (stop_.load() || (duration > 0 && NowUs() - started >= duration))) {
      stop_ = true;
      for (auto& s : sources_) s->Stop();
      stop_sent = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  memory_guard_->Stop();
  for (auto& t : source_threads) t.join();
  process_thread.join();
  sink_thread.join();
  running_.store(false, std::memory_order_release);
  if (ckpt) {
    checkpoint_costs_ = ckpt->costs();
    const CheckpointCosts& c = checkpoint_costs_;
    auto ms = [](DurationUs d) { return static_cast<double>(d) / 1e3; };
    spdlog::info(
        "checkpoints: {} taken, snapshot {:.0f} ms (process thread, last {} bytes); epoch log "
        "{:.0f} ms for {} bytes, prepare {:.0f} ms, fsync {:.0f} ms, store {:.0f} ms, commit "
        "{:.0f} ms (sink thread)",
        c.taken, ms(c.snapshot), c.state_bytes, ms(c.epoch_write), c.epoch_bytes, ms(c.prepare),
        ms(c.epoch_sync), ms(c.save), ms(c.commit));
  }
  for (auto& s : sources_) s->Close();
  for (auto& s : sinks_) s->Close();
  Status st = WriteFileAtomic(LedgerPath(), ledger_.Snapshot().ToJson());
  std::lock_guard lock(sh.error_mu);
  if (!sh.first_error.ok()) return sh.first_error;
  return st;
}

}  // namespace tributary
