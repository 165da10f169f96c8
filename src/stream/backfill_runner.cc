#include "stream/backfill_runner.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "alert/alert_operator.h"
#include "core/queue.h"
#include "core/registry.h"
#include "ingest/dedup.h"
#include "ingest/ingest.h"
#include "io/connector.h"
#include "spatial/enrich.h"
#include "spatial/surface.h"
#include "stream/operator.h"
#include "stream/qc/qc.h"
#include "stream/runtime.h"
#include "stream/window.h"

namespace tributary {

namespace {
constexpr int kMaxSinkRetries = 8;
constexpr auto kWait = std::chrono::milliseconds(100);
// A sink also commits once it holds this many rows since its last commit, not only every
// pipeline.commit_interval: sinks that buffer until Commit (parquet) would otherwise hold
// more the faster the run goes.
constexpr size_t kMaxRowsPerCommit = 500000;

// A source batch stops growing past this many payload bytes, as in the file source, so
// that batch boundaries (which the window stage judges lateness at) are those of `run`.
constexpr size_t kMaxSourceBatchBytes = 8 << 20;

// One chunk: consecutive source batches (each of pipeline.batch_size records, as `run`
// reads them), numbered in input order. Its size follows the memory plan.
struct BackfillChunk {
  uint64_t seq = 0;
  std::vector<RawBatch> raws;
};
}  // namespace

// A decode worker's own stages.
struct BackfillRunner::Worker {
  std::unique_ptr<IngestStage> ingest;
  std::unique_ptr<Operator> enrich;  // null when there is nothing to enrich
};

struct BackfillRunner::Shared {
  Shared(size_t workers, size_t sinks) : work(workers) {
    for (size_t i = 0; i < sinks; ++i) {
      outs.push_back(std::make_unique<BoundedQueue<std::shared_ptr<const Batch>>>(16));
    }
  }
  BoundedQueue<BackfillChunk> work;
  // One queue and thread per sink: sinks write the same batches concurrently.
  std::vector<std::unique_ptr<BoundedQueue<std::shared_ptr<const Batch>>>> outs;

  bool Push(Batch& batch) {
    auto shared = std::make_shared<const Batch>(std::move(batch));
    for (auto& q : outs) {
      std::shared_ptr<const Batch> copy = shared;
      if (!q->Push(copy)) return false;
    }
    return true;
  }
  void CloseOutputs() {
    for (auto& q : outs) q->Close();
  }

  std::mutex mu;
  std::condition_variable cv;
  std::map<uint64_t, std::vector<Batch>> done;  // decoded chunks waiting for their turn
  uint64_t next = 0;                            // next chunk the ordered stage takes
  uint64_t total = UINT64_MAX;                  // chunks read, once the reader finished
  Status first_error;

  void Fail(const Status& st) {
    std::lock_guard lock(mu);
    if (first_error.ok()) first_error = st;
    cv.notify_all();
  }
  bool failed() {
    std::lock_guard lock(mu);
    return !first_error.ok();
  }
};

BackfillRunner::BackfillRunner(PipelineConfig config, BackfillRunnerOptions options)
    : config_(std::move(config)), options_(std::move(options)) {}
BackfillRunner::~BackfillRunner() = default;

Result<std::unique_ptr<BackfillRunner>> BackfillRunner::Build(
    const PipelineConfig& config, const BackfillRunnerOptions& options) {
  std::unique_ptr<BackfillRunner> r(new BackfillRunner(config, options));
  if (config.sources.size() != 1) {
    return Status::Internal("backfill runner: expected one source, got " +
                            std::to_string(config.sources.size()));
  }
  size_t workers = options.workers;
  if (workers == 0) workers = std::max(1u, std::thread::hardware_concurrency());
  // Workers do not deduplicate: the ordered stage does, in input order.
  PipelineConfig worker_config = r->config_;
  worker_config.processing.dedup_horizon = 0;
  for (size_t i = 0; i < workers; ++i) {
    auto w = std::make_unique<Worker>();
    TRIB_ASSIGN_OR_RETURN(w->ingest, IngestStage::Make(worker_config));
    TRIB_ASSIGN_OR_RETURN(w->enrich, MakeZoneEnrichOperator(r->config_));
    r->workers_.push_back(std::move(w));
  }
  const TimeUs as_of = options.as_of;
  // QC keeps per-sensor histories, so it runs in input order with the windows.
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<QcOperator> qc, MakeQcOperator(r->config_));
  if (qc != nullptr) r->ordered_.push_back(std::move(qc));
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<WindowOperator> window,
                        MakeWindowOperator(r->config_, [as_of] { return as_of; }));
  r->ordered_.push_back(std::move(window));
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<Operator> surface, MakeSurfaceOperator(r->config_));
  if (surface != nullptr) r->ordered_.push_back(std::move(surface));
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<AlertOperator> alerts, AlertOperator::Make(r->config_));
  if (alerts) r->ordered_.push_back(std::move(alerts));
  const Registry& registry = Registry::Get();
  for (const SinkEntry& entry : r->config_.sinks) {
    TRIB_ASSIGN_OR_RETURN(std::unique_ptr<Sink> sink, registry.MakeSink(entry));
    r->sinks_.push_back(std::move(sink));
    r->sink_names_.push_back(entry.name);
  }
  return r;
}

Status BackfillRunner::Run(const std::vector<std::string>& paths) {
  std::error_code ec;
  std::filesystem::create_directories(config_.data_dir, ec);
  if (ec) return Status::Io("cannot create " + config_.data_dir + ": " + ec.message());
  uint64_t total = 0;
  for (const std::string& p : paths) {
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_size);
  }
  total_bytes_ = total;

  RunContext ctx;
  ctx.config = &config_;
  ctx.ledger = &ledger_;
  ctx.data_dir = config_.data_dir;
  ctx.stop = &stop_;
  ctx.staged_outputs = true;
  auto close_sinks = [&] {
    for (auto& s : sinks_) s->Close();
  };
  for (size_t i = 0; i < sinks_.size(); ++i) {
    Status st = sinks_[i]->Open(ctx);
    if (!st.ok()) {
      close_sinks();
      return st.WithContext("sink " + sink_names_[i]);
    }
  }
  for (auto& w : workers_) {
    Status st = w->ingest->Open(ctx);
    if (st.ok() && w->enrich) st = w->enrich->Open(ctx);
    if (!st.ok()) {
      close_sinks();
      return st;
    }
  }
  for (auto& op : ordered_) {
    Status st = op->Open(ctx);
    if (!st.ok()) {
      close_sinks();
      return st.WithContext(std::string("operator ") + std::string(op->name()));
    }
  }

  Shared sh(workers_.size(), sinks_.size());
  const BackfillMemoryPlan& mem = options_.memory;
  const size_t in_flight = std::max<size_t>(mem.chunks_in_flight, workers_.size() + 1);

  // Reader: files → chunks, at most `in_flight` ahead of the ordered stage. Source
  // batches continue across files, as the file source's do.
  std::thread reader([&] {
    const size_t batch_records = std::max<size_t>(config_.batch_size, 1);
    uint64_t seq = 0;
    uint64_t done_bytes = 0;
    BackfillChunk chunk;
    size_t chunk_bytes = 0;
    size_t chunk_records = 0;
    RawBatch cur;
    // Hand on the chunk once it holds enough (or `force`, at the end).
    auto flush = [&](bool force) -> bool {
      const bool full_batch = cur.records.size() >= batch_records ||
                              (!cur.records.empty() && cur.data.size() >= kMaxSourceBatchBytes);
      if (full_batch || (force && !cur.records.empty())) {
        chunk_bytes += cur.data.size();
        chunk_records += cur.records.size();
        chunk.raws.push_back(std::move(cur));
        cur = RawBatch{};
      }
      if (chunk.raws.empty()) return true;
      if (!force && chunk_bytes < mem.chunk_bytes && chunk_records < mem.chunk_records) return true;
      {
        std::unique_lock lock(sh.mu);
        sh.cv.wait(lock, [&] {
          return seq < sh.next + in_flight || !sh.first_error.ok() ||
                 stop_.load(std::memory_order_relaxed);
        });
        if (!sh.first_error.ok() || stop_.load(std::memory_order_relaxed)) return false;
      }
      chunk.seq = seq++;
      if (!sh.work.Push(chunk)) return false;
      chunk = BackfillChunk{};
      chunk_bytes = 0;
      chunk_records = 0;
      return true;
    };
    bool ok = true;
    for (const std::string& path : paths) {
      if (!ok || stop_.load(std::memory_order_relaxed)) break;
      Result<std::unique_ptr<BackfillFileReader>> file =
          BackfillFileReader::Open(path, options_.as_of);
      if (!file.ok()) {
        sh.Fail(file.status());
        break;
      }
      bool more = true;
      while (ok && more && !stop_.load(std::memory_order_relaxed)) {
        const size_t room = batch_records - cur.records.size();
        const size_t byte_room =
            cur.data.size() < kMaxSourceBatchBytes ? kMaxSourceBatchBytes - cur.data.size() : 1;
        Result<bool> r = (*file)->Read(cur, room, byte_room);
        if (!r.ok()) {
          sh.Fail(r.status());
          ok = false;
          break;
        }
        more = *r;
        bytes_read_.store(done_bytes + (*file)->bytes_consumed(), std::memory_order_relaxed);
        ok = flush(false);
      }
      struct stat st {};
      if (::stat(path.c_str(), &st) == 0) done_bytes += static_cast<uint64_t>(st.st_size);
      bytes_read_.store(done_bytes, std::memory_order_relaxed);
    }
    if (ok && !stop_.load()) flush(true);
    {
      std::lock_guard lock(sh.mu);
      sh.total = seq;
      sh.cv.notify_all();
    }
    sh.work.Close();
  });

  // Decode workers.
  std::vector<std::thread> workers;
  for (auto& w : workers_) {
    workers.emplace_back([&, worker = w.get()] {
      while (std::optional<BackfillChunk> chunk = sh.work.Pop()) {
        std::vector<Batch> batches(chunk->raws.size());
        Status st;
        for (size_t i = 0; i < chunk->raws.size() && st.ok(); ++i) {
          st = worker->ingest->Process(chunk->raws[i], batches[i]);
          if (st.ok() && worker->enrich) st = worker->enrich->Process(batches[i]);
        }
        if (!st.ok()) {
          sh.Fail(st.WithContext("ingest"));
          stop_ = true;
          sh.work.Close();
          break;
        }
        chunk->raws.clear();
        std::lock_guard lock(sh.mu);
        sh.done.emplace(chunk->seq, std::move(batches));
        sh.cv.notify_all();
      }
    });
  }

  // Sink threads, one per sink.
  auto sink_loop = [&](size_t i) {
    auto with_retry = [&](auto&& op, const char* what) -> bool {
      DurationUs backoff = 100 * kMicrosPerMilli;
      for (int attempt = 0;; ++attempt) {
        Status st = op();
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
    auto commit = [&]() -> bool {
      if (!with_retry([&] { return sinks_[i]->Commit(); }, "commit")) return false;
      if (i == 0) {
        Status st = WriteFileAtomic(config_.data_dir + "/ledger.json", ledger_.Snapshot().ToJson());
        if (!st.ok()) spdlog::warn("{}", st.ToString());
      }
      return true;
    };
    BoundedQueue<std::shared_ptr<const Batch>>& queue = *sh.outs[i];
    TimeUs last_commit = NowUs();
    size_t rows_since_commit = 0;
    bool ok = true;
    while (true) {
      std::optional<std::shared_ptr<const Batch>> batch = queue.PopFor(kWait);
      if (!batch && queue.closed()) break;
      if (batch && ok) {
        const Batch& b = **batch;
        ok = with_retry([&] { return sinks_[i]->Write(b); }, "write");
        rows_since_commit +=
            b.readings.size() + b.windows.size() + b.late.size() + b.quarantine.size();
        if (!ok) {
          stop_ = true;
          std::lock_guard lock(sh.mu);
          sh.cv.notify_all();
        }
      }
      if (ok && (NowUs() - last_commit >= config_.commit_interval ||
                 rows_since_commit >= kMaxRowsPerCommit)) {
        ok = commit();
        last_commit = NowUs();
        rows_since_commit = 0;
      }
    }
    if (ok) commit();
  };
  std::vector<std::thread> sink_threads;
  for (size_t i = 0; i < sinks_.size(); ++i) sink_threads.emplace_back(sink_loop, i);

  // Ordered stage, on this thread: dedup, then the stateful operators, in input order.
  Deduplicator dedup(config_.processing.dedup_horizon);
  auto run_chain = [&](Batch& batch, size_t from) -> bool {
    for (size_t k = from; k < ordered_.size(); ++k) {
      Status st = ordered_[k]->Process(batch);
      if (!st.ok()) {
        sh.Fail(st.WithContext(std::string("operator ") + std::string(ordered_[k]->name())));
        return false;
      }
    }
    return true;
  };
  bool ok = true;
  while (ok) {
    std::vector<Batch> batches;
    {
      std::unique_lock lock(sh.mu);
      sh.cv.wait(lock, [&] {
        return sh.done.count(sh.next) > 0 || sh.next >= sh.total || !sh.first_error.ok() ||
               stop_.load(std::memory_order_relaxed);
      });
      if (!sh.first_error.ok() || stop_.load(std::memory_order_relaxed)) break;
      auto it = sh.done.find(sh.next);
      if (it == sh.done.end()) break;  // every chunk processed
      batches = std::move(it->second);
      sh.done.erase(it);
      ++sh.next;
      sh.cv.notify_all();  // the reader may read ahead again
    }
    for (Batch& batch : batches) {
      if (dedup.horizon() > 0) {
        size_t kept = 0;
        for (size_t i = 0; i < batch.readings.size(); ++i) {
          const Reading& r = batch.readings[i];
          if (dedup.IsDuplicate(r.device, r.metric, r.event_time)) continue;
          if (kept != i) batch.readings[kept] = std::move(batch.readings[i]);
          ++kept;
        }
        const size_t dups = batch.readings.size() - kept;
        if (dups > 0) {
          batch.readings.resize(kept);
          batch.duplicates += dups;
          ledger_.AddDuplicate(dups);
        }
      }
      ok = run_chain(batch, 0) && sh.Push(batch);
      if (!ok) break;
    }
  }
  if (!sh.failed() && !stop_.load()) {
    for (size_t k = 0; k < ordered_.size() && ok; ++k) {
      Batch out;
      Status st = ordered_[k]->Finish(out);
      if (!st.ok()) {
        sh.Fail(st);
        break;
      }
      if (run_chain(out, k + 1) && !out.empty()) sh.Push(out);
    }
  }
  if (sh.failed() || stop_.load()) {
    stop_ = true;
    sh.work.Close();
    std::lock_guard lock(sh.mu);
    sh.cv.notify_all();
  }
  sh.CloseOutputs();
  reader.join();
  for (auto& t : workers) t.join();
  for (auto& t : sink_threads) t.join();
  close_sinks();
  Status st = WriteFileAtomic(config_.data_dir + "/ledger.json", ledger_.Snapshot().ToJson());
  std::lock_guard lock(sh.mu);
  if (!sh.first_error.ok()) return sh.first_error;
  if (stop_.load()) return Status::Cancelled("backfill stopped before the end of its input");
  return st;
}

}  // namespace tributary
