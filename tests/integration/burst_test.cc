// The memory ceiling under a burst: the built binary runs the simulator at ten times
// the embedded default's rate for 60 s with a low `processing.memory_limit`, while this test
// samples the process's resident set from /proc/<pid>/statm. It must stay under the
// ceiling and lose nothing (ledger balanced, every accepted reading in the store).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "core/ledger.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

// The embedded default sends about 1,000 messages per wall second (200 devices at a
// 60 s interval, speed 300 → 200 × 300 / 60); the burst is ten times that.
constexpr int kNominalRate = 1000;
constexpr int kBurstRate = 10 * kNominalRate;
constexpr int kBurstSeconds = 60;
constexpr uint64_t kCeilingMiB = 200;

uint64_t RssOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/statm");
  uint64_t size = 0;
  uint64_t resident = 0;
  if (!(in >> size >> resident)) return 0;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

pid_t Spawn(const std::vector<std::string>& args, const std::string& out_path,
            const std::string& err_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

TEST(MemoryCeilingBurstTest, TenTimesTheNominalRateStaysUnderTheCeilingAndLosesNothing) {
  TempDir dir;
  const std::string data = dir.File("data");
  // Deep queues (4096 batches of 1000 messages between stages) would let a burst the
  // pipeline cannot keep up with pile up far beyond the ceiling: only pausing the
  // source keeps it under.
  WriteFile(dir.File("burst.yaml"),
            "pipeline:\n"
            "  name: burst\n"
            "  batch_size: 1000\n"
            "  queue_capacity: 4096\n"
            "processing:\n"
            "  grace: 15m\n"
            "  memory_limit: " +
                std::to_string(kCeilingMiB) +
                "MiB\n"
                "sources:\n"
                "  - name: sim\n"
                "    type: simulator\n"
                "    rate: " +
                std::to_string(kBurstRate) +
                "\n"
                "windows:\n"
                "  - name: device_1m\n"
                "    type: tumbling\n"
                "    size: 1m\n"
                "    group_by: device\n"
                "    aggregates: [count, mean, min, max, p95]\n"
                "sinks:\n"
                "  - name: local\n"
                "    type: sqlite\n");
  const pid_t pid = Spawn({TRIBUTARY_BINARY, "run", dir.File("burst.yaml"), "--data-dir", data,
                           "--duration", std::to_string(kBurstSeconds) + "s", "--no-progress"},
                          dir.File("stdout.txt"), dir.File("stderr.txt"));
  ASSERT_GT(pid, 0);
  // Sample the resident set every 20 ms until the process exits.
  uint64_t peak = 0;
  uint64_t samples = 0;
  int status = 0;
  const auto started = std::chrono::steady_clock::now();
  while (true) {
    const uint64_t rss = RssOf(pid);
    if (rss > 0) {
      peak = std::max(peak, rss);
      ++samples;
    }
    pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    ASSERT_EQ(done, 0);
    if (std::chrono::steady_clock::now() - started > std::chrono::seconds(kBurstSeconds + 120)) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      FAIL() << "the run did not end; stderr:\n" << ReadFile(dir.File("stderr.txt"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const std::string err = ReadFile(dir.File("stderr.txt"));
  ASSERT_TRUE(WIFEXITED(status)) << err;
  ASSERT_EQ(WEXITSTATUS(status), 0) << err;
  ASSERT_GT(samples, 100u);

  Result<LedgerSnapshot> ledger = ParseLedgerJson(ReadFile(data + "/ledger.json"));
  ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
  EXPECT_TRUE(ledger->balanced()) << ledger->ToText();
  EXPECT_GT(ledger->input, static_cast<uint64_t>(kBurstRate)) << "the burst did not run";
  EXPECT_EQ(testing::QueryInt(data + "/tributary.gpkg", "SELECT count(*) FROM readings"),
            static_cast<int64_t>(ledger->accepted))
      << "every accepted reading is in the store";
  EXPECT_EQ(testing::QueryInt(data + "/tributary.gpkg", "SELECT count(*) FROM quarantine"),
            static_cast<int64_t>(ledger->quarantined));
  const uint64_t ceiling = kCeilingMiB << 20;
  EXPECT_LT(peak, ceiling) << "peak RSS " << (peak >> 20) << " MiB";
  const size_t pauses = [&] {
    size_t n = 0;
    for (size_t at = err.find("sources paused"); at != std::string::npos;
         at = err.find("sources paused", at + 1)) {
      ++n;
    }
    return n;
  }();
  std::printf(
      "burst: %d msg/s asked for %d s; %llu records in (%.0f/s over %.1f s), peak RSS %llu "
      "MiB of a %llu MiB ceiling (%.0f%%), %zu pause reports, %llu shed\n",
      kBurstRate, kBurstSeconds, static_cast<unsigned long long>(ledger->input),
      static_cast<double>(ledger->input) / wall_s, wall_s,
      static_cast<unsigned long long>(peak >> 20), static_cast<unsigned long long>(kCeilingMiB),
      100.0 * static_cast<double>(peak) / static_cast<double>(ceiling), pauses,
      static_cast<unsigned long long>(ledger->quarantine_reasons["memory_shed"]));
}

}  // namespace
}  // namespace tributary
