// The memory ceiling: a limit for the whole process and what the pipeline does near it.
//
// The limit (`processing.memory_limit`) is a byte size ("512MiB"), a share of the machine
// ("50%"), `auto` or `off`. `auto` (the default) is the smaller of 80 % of the cgroup's
// memory limit (cgroup v2 memory.max, or v1 memory.limit_in_bytes, when one is set) and
// 50 % of the machine's MemTotal, so the ceiling sits well below the point where the
// kernel's OOM killer would act.
//
// A monitor thread samples the resident set size from /proc/self/statm every
// `processing.memory_sample` (100 ms; one read of a small /proc file, no allocation) and keeps a
// level = RSS / limit:
//   level >= processing.memory_pause (0.75): every source is paused (Source::SetPaused(true)): the
//     kafka source pauses its partitions, mqtt stops taking messages (its bounded buffer
//     fills and the client stops reading the socket), file and simulator stop reading,
//     the http source answers 503. The stages downstream go on and drain the queues.
//     Sources resume when the level is back under memory_pause − 0.05, or when both
//     queues between the stages are empty: waiting longer cannot free more, so input is
//     taken again (a pipeline whose held state stays above the threshold runs in short
//     bursts, each paused again at the next sample, which throttles its input).
//   level >= processing.memory_shed (0.90): the window stage also sheds: a reading that would open
//     a window key (definition, group, metric) the stage has never held is refused and
//     quarantined with reason `memory_shed` (raw = the reading as a long-shape JSON
//     object, so `replay-quarantine` can take it again); readings of known keys are
//     processed as usual. Shedding ends under memory_shed − 0.05.
// Every transition is logged (pauses at most once per 5 s, with the number of pauses
// since the last line) and exported as gauges (tributary_memory_limit_bytes,
// tributary_memory_level, tributary_memory_paused, tributary_memory_shedding,
// tributary_memory_peak_rss_bytes); refused readings are counted in the ledger
// (quarantined, reason memory_shed) and in tributary_quarantined_total{reason=
// "memory_shed"}. Nothing is dropped: in == accepted + quarantined + late + duplicate
// holds with shedding too.
//
// Glibc keeps freed memory in its arenas, so RSS falls slowly after state is freed:
// when shedding starts (and every 5 s while it lasts) the monitor asks malloc_trim to
// give free pages back.
//
// Threading: Start/Stop from the thread that runs the pipeline; the pause hook runs on
// the monitor thread; Status() and shedding() from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "core/config.h"
#include "core/pipeline_config.h"
#include "core/time.h"

namespace tributary {

/// What the machine allows this process: the cgroup limit when one is set, else the
/// machine's MemTotal; `what` names where it came from. 0 when neither is readable.
uint64_t MachineMemoryBytes(std::string* what = nullptr);

struct MemoryLimitOptions {
  uint64_t limit_bytes = 0;  ///< 0: no ceiling (`off`)
  std::string origin;  ///< how the limit was chosen, for logs ("processing.memory_limit: 512MiB")
  double pause_level = 0.75;
  double shed_level = 0.90;
  DurationUs sample_interval = 100 * kMicrosPerMilli;
};

/// Read `processing.memory_*` of `config`; errors name the key.
Result<MemoryLimitOptions> ParseMemoryLimitOptions(const PipelineConfig& config);

/// Resident set size of this process in bytes, from /proc/self/statm (0 if unreadable).
uint64_t ReadProcessRssBytes();

struct MemoryGuardStatus {
  uint64_t limit_bytes = 0;  ///< 0: no ceiling
  uint64_t rss_bytes = 0;    ///< last sample
  uint64_t peak_rss_bytes = 0;
  double level = 0;  ///< rss / limit
  bool paused = false;
  bool shedding = false;
  uint64_t pauses = 0;  ///< times the sources were paused
};

class MemoryGuard {
 public:
  using RssReader = std::function<uint64_t()>;
  /// Pause (true) or resume (false) every source.
  using PauseHook = std::function<void(bool)>;
  /// True when nothing waits in the queues between the stages.
  using DrainedProbe = std::function<bool()>;

  explicit MemoryGuard(MemoryLimitOptions options, RssReader rss = ReadProcessRssBytes);
  ~MemoryGuard();
  MemoryGuard(const MemoryGuard&) = delete;
  MemoryGuard& operator=(const MemoryGuard&) = delete;

  /// Start the monitor thread (no thread when there is no ceiling). `gauge_labels`
  /// (`{pipeline="..."}`) label the exported gauges.
  void Start(PauseHook pause, DrainedProbe drained, std::string gauge_labels);
  /// Stop the monitor; resumes the sources if they are paused. Idempotent.
  void Stop();
  /// Take one sample (the monitor thread calls this; tests call it directly).
  void Sample(uint64_t rss, bool drained);

  /// Set while the window stage must refuse new window keys.
  const std::atomic<bool>& shedding() const { return shedding_; }
  MemoryGuardStatus Status() const;
  const MemoryLimitOptions& options() const { return options_; }

 private:
  void Run();
  void Publish(const MemoryGuardStatus& s);

  const MemoryLimitOptions options_;
  RssReader rss_;
  PauseHook pause_;
  DrainedProbe drained_;
  std::string labels_;
  std::atomic<bool> shedding_{false};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
  MemoryGuardStatus status_;
  TimeUs last_pause_log_ = kMinTime;
  uint64_t pauses_unlogged_ = 0;
  TimeUs last_trim_ = kMinTime;
};

}  // namespace tributary
