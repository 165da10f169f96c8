#include "stream/memory_guard.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "core/byte_size.h"
#include "server/metrics.h"

namespace tributary {

namespace {

constexpr uint64_t kMinCeiling = 32ull << 20;
constexpr double kHysteresis = 0.05;
constexpr DurationUs kPauseLogEvery = 5 * kMicrosPerSecond;
constexpr DurationUs kTrimEvery = 5 * kMicrosPerSecond;

std::string Trim(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

// First number in a file ("max" or unreadable: 0).
uint64_t ReadLimitFile(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return 0;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc()) return 0;
  // cgroup v1 reports "no limit" as a page-rounded LONG_MAX.
  return v >= (1ull << 60) ? 0 : v;
}

uint64_t CgroupLimitBytes(std::string* where) {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  uint64_t best = 0;
  while (std::getline(in, line)) {
    // v2: "0::/path"; v1: "N:memory:/path" (or "N:memory,...:/path").
    size_t a = line.find(':');
    size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    std::vector<std::string> candidates;
    if (controllers.empty()) {
      // Walk from the process's cgroup up to the root: any level may set memory.max.
      std::string p = path;
      while (true) {
        candidates.push_back("/sys/fs/cgroup" + (p == "/" ? std::string() : p) + "/memory.max");
        if (p.empty() || p == "/") break;
        size_t slash = p.rfind('/');
        p = slash == 0 ? "/" : p.substr(0, slash);
      }
    } else if (("," + controllers + ",").find(",memory,") != std::string::npos) {
      candidates.push_back("/sys/fs/cgroup/memory" + (path == "/" ? std::string() : path) +
                           "/memory.limit_in_bytes");
      candidates.push_back("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    }
    for (const std::string& c : candidates) {
      uint64_t v = ReadLimitFile(c);
      if (v > 0 && (best == 0 || v < best)) {
        best = v;
        if (where != nullptr) *where = c;
      }
    }
  }
  return best;
}

uint64_t MemTotalBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemTotal:") return kib * 1024;
  }
  return 0;
}

std::string Mib(uint64_t bytes) {
  return fmt::format("{:.0f} MiB", static_cast<double>(bytes) / (1 << 20));
}

}  // namespace

uint64_t MachineMemoryBytes(std::string* what) {
  std::string where;
  uint64_t cgroup = CgroupLimitBytes(&where);
  uint64_t total = MemTotalBytes();
  if (cgroup > 0 && (total == 0 || cgroup < total)) {
    if (what != nullptr) *what = "cgroup limit " + where;
    return cgroup;
  }
  if (what != nullptr) *what = "MemTotal";
  return total;
}

Result<MemoryLimitOptions> ParseMemoryLimitOptions(const PipelineConfig& config) {
  OptionReader r(config.processing_options.node(), config.file, "processing",
                 {&ProcessingSectionSpec()});
  MemoryLimitOptions o;
  TRIB_ASSIGN_OR_RETURN(std::string memory, r.GetString("memory_limit"));
  memory = Trim(memory);
  TRIB_ASSIGN_OR_RETURN(o.pause_level, r.GetDouble("memory_pause"));
  TRIB_ASSIGN_OR_RETURN(o.shed_level, r.GetDouble("memory_shed"));
  TRIB_ASSIGN_OR_RETURN(o.sample_interval, r.GetDuration("memory_sample"));
  if (o.shed_level <= o.pause_level) {
    return r.Error("memory_shed",
                   "must be above memory_pause (" + fmt::format("{}", o.pause_level) + ")");
  }
  if (memory == "off") {
    o.origin = "processing.memory_limit: off";
    return o;
  }
  if (memory == "auto") {
    std::string where;
    uint64_t cgroup = CgroupLimitBytes(&where);
    uint64_t total = MemTotalBytes();
    uint64_t from_total = total / 2;
    uint64_t from_cgroup = cgroup / 10 * 8;
    if (cgroup > 0 && (total == 0 || from_cgroup < from_total)) {
      o.limit_bytes = from_cgroup;
      o.origin = "processing.memory_limit: auto, 80% of the " + where + " (" + Mib(cgroup) + ")";
    } else {
      o.limit_bytes = from_total;
      o.origin = "processing.memory_limit: auto, 50% of MemTotal (" + Mib(total) + ")";
    }
    if (o.limit_bytes == 0) o.origin = "processing.memory_limit: auto, machine memory unknown: off";
    return o;
  }
  if (!memory.empty() && memory.back() == '%') {
    double share = 0;
    std::string num = memory.substr(0, memory.size() - 1);
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), share);
    if (ec != std::errc() || p != num.data() + num.size() || share <= 0 || share > 100) {
      return r.Error("memory_limit", "'" + memory + "' is not a share between 0% and 100%");
    }
    std::string what;
    uint64_t machine = MachineMemoryBytes(&what);
    if (machine == 0)
      return r.Error("memory_limit", "cannot read the machine's memory for a share");
    o.limit_bytes = static_cast<uint64_t>(static_cast<double>(machine) * share / 100.0);
    o.origin = "processing.memory_limit: " + memory + " of the " + what + " (" + Mib(machine) + ")";
  } else {
    Result<uint64_t> bytes = ParseByteSizeText(memory);
    if (!bytes.ok()) return r.Error("memory_limit", bytes.status().message());
    o.limit_bytes = *bytes;
    o.origin = "processing.memory_limit: " + memory;
  }
  if (o.limit_bytes < kMinCeiling) {
    return r.Error("memory_limit", "'" + memory + "' is below the smallest ceiling, 32MiB");
  }
  return o;
}

uint64_t ReadProcessRssBytes() {
  // /proc/self/statm: size resident shared text lib data dt, in pages.
  int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* p = buf;
  const char* end = buf + n;
  uint64_t size = 0;
  uint64_t resident = 0;
  auto r1 = std::from_chars(p, end, size);
  if (r1.ec != std::errc()) return 0;
  p = r1.ptr;
  while (p < end && *p == ' ') ++p;
  auto r2 = std::from_chars(p, end, resident);
  if (r2.ec != std::errc()) return 0;
  static const long page = ::sysconf(_SC_PAGESIZE);
  return resident * static_cast<uint64_t>(page > 0 ? page : 4096);
}

MemoryGuard::MemoryGuard(MemoryLimitOptions options, RssReader rss)
    : options_(std::move(options)), rss_(std::move(rss)) {
  status_.limit_bytes = options_.limit_bytes;
}

MemoryGuard::~MemoryGuard() {
  Stop();
}

void MemoryGuard::Start(PauseHook pause, DrainedProbe drained, std::string gauge_labels) {
  pause_ = std::move(pause);
  drained_ = std::move(drained);
  labels_ = std::move(gauge_labels);
  if (options_.limit_bytes == 0) {
    spdlog::info("memory: no ceiling ({})", options_.origin);
    return;
  }
  spdlog::info(
      "memory: ceiling {} ({}); sources pause at {:.0f}%, new window keys are refused "
      "at {:.0f}%",
      Mib(options_.limit_bytes), options_.origin, options_.pause_level * 100,
      options_.shed_level * 100);
  {
    std::lock_guard lock(mu_);
    stop_ = false;
  }
  Publish(Status());
  thread_ = std::thread([this] { Run(); });
}

void MemoryGuard::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  bool was_paused = false;
  {
    std::lock_guard lock(mu_);
    was_paused = status_.paused;
    status_.paused = false;
  }
  shedding_.store(false, std::memory_order_relaxed);
  if (was_paused && pause_) pause_(false);
}

void MemoryGuard::Run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::microseconds(options_.sample_interval), [&] { return stop_; });
    if (stop_) break;
    lock.unlock();
    const uint64_t rss = rss_();
    const bool drained = drained_ ? drained_() : false;
    Sample(rss, drained);
    lock.lock();
  }
}

void MemoryGuard::Sample(uint64_t rss, bool drained) {
  if (options_.limit_bytes == 0) return;
  const TimeUs now = NowUs();
  const double level = static_cast<double>(rss) / static_cast<double>(options_.limit_bytes);
  std::unique_lock lock(mu_);
  MemoryGuardStatus& s = status_;
  s.rss_bytes = rss;
  s.peak_rss_bytes = std::max(s.peak_rss_bytes, rss);
  s.level = level;
  int pause_change = 0;  // +1 pause, -1 resume
  if (!s.paused && level >= options_.pause_level) {
    s.paused = true;
    ++s.pauses;
    pause_change = 1;
  } else if (s.paused && (level < options_.pause_level - kHysteresis || drained)) {
    s.paused = false;
    pause_change = -1;
  }
  bool shed_change = false;
  if (!s.shedding && level >= options_.shed_level) {
    s.shedding = true;
    shed_change = true;
  } else if (s.shedding && level < options_.shed_level - kHysteresis) {
    s.shedding = false;
    shed_change = true;
  }
  bool trim = false;
  if (s.shedding && (shed_change || now - last_trim_ >= kTrimEvery)) {
    last_trim_ = now;
    trim = true;
  }
  const MemoryGuardStatus snapshot = s;
  if (pause_change == 1) ++pauses_unlogged_;
  bool log_pause = pause_change != 0 && now - last_pause_log_ >= kPauseLogEvery;
  uint64_t pauses_since = pauses_unlogged_;
  if (log_pause) {
    last_pause_log_ = now;
    pauses_unlogged_ = 0;
  }
  lock.unlock();

  if (shed_change) shedding_.store(snapshot.shedding, std::memory_order_relaxed);
  if (pause_change != 0 && pause_) pause_(pause_change > 0);
  if (log_pause) {
    if (pause_change > 0) {
      spdlog::warn(
          "memory: RSS {} is {:.0f}% of the {} ceiling: sources paused ({} pause{} since "
          "the last report)",
          Mib(rss), level * 100, Mib(options_.limit_bytes), pauses_since,
          pauses_since == 1 ? "" : "s");
    } else {
      spdlog::info("memory: sources resumed (RSS {}, {:.0f}% of the ceiling{})", Mib(rss),
                   level * 100, drained ? "; the queues are drained" : "");
    }
  }
  if (shed_change) {
    if (snapshot.shedding) {
      spdlog::error(
          "memory: RSS {} is {:.0f}% of the {} ceiling: the window stage refuses new "
          "window keys (quarantined as memory_shed)",
          Mib(rss), level * 100, Mib(options_.limit_bytes));
    } else {
      spdlog::warn("memory: RSS {} ({:.0f}% of the ceiling): new window keys are taken again",
                   Mib(rss), level * 100);
    }
  }
#ifdef __GLIBC__
  if (trim) ::malloc_trim(0);
#else
  (void)trim;
#endif
  Publish(snapshot);
}

MemoryGuardStatus MemoryGuard::Status() const {
  std::lock_guard lock(mu_);
  return status_;
}

void MemoryGuard::Publish(const MemoryGuardStatus& s) {
  if (labels_.empty()) return;
  SetConnectorGauge("tributary_memory_limit_bytes", labels_, static_cast<double>(s.limit_bytes),
                    "Memory ceiling of the process in bytes (processing.memory_limit).");
  SetConnectorGauge("tributary_memory_level", labels_, s.level,
                    "Resident memory as a share of the ceiling (last sample).");
  SetConnectorGauge("tributary_memory_peak_rss_bytes", labels_,
                    static_cast<double>(s.peak_rss_bytes), "Highest resident memory sampled.");
  SetConnectorGauge("tributary_memory_paused", labels_, s.paused ? 1 : 0,
                    "1 while the sources are paused near the memory ceiling.");
  SetConnectorGauge("tributary_memory_pauses", labels_, static_cast<double>(s.pauses),
                    "Times the sources were paused near the memory ceiling.");
  SetConnectorGauge("tributary_memory_shedding", labels_, s.shedding ? 1 : 0,
                    "1 while the window stage refuses new window keys (memory_shed).");
}

}  // namespace tributary
