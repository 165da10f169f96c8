// End-to-end: the built binary runs the embedded default pipeline and a configured
// one; the local store and the ledger are checked from the outside.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <thread>

#include "core/ledger.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::ReadFile;
using testing::RunTributary;
using testing::TempDir;
using testing::WriteFile;

// Minimal read-only access to the store for assertions.
class Store {
 public:
  explicit Store(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << "cannot open " << path;
    }
  }
  ~Store() { sqlite3_close(db_); }
  int64_t Int(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return v;
    }
    if (sqlite3_step(stmt) == SQLITE_ROW) v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return v;
  }
  std::string Text(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return out;
    }
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
        const unsigned char* t = sqlite3_column_text(stmt, c);
        out += t ? reinterpret_cast<const char*>(t) : "NULL";
        out += c + 1 < sqlite3_column_count(stmt) ? "\t" : "\n";
      }
    }
    sqlite3_finalize(stmt);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

LedgerSnapshot ReadLedger(const std::string& dir) {
  Result<LedgerSnapshot> l = ParseLedgerJson(ReadFile(dir + "/ledger.json"));
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  return l.ok() ? *l : LedgerSnapshot{};
}

TEST(DefaultRunTest, EmbeddedDefaultFillsTheLocalStoreAndBalancesTheLedger) {
  TempDir dir;
  testing::CommandResult r =
      RunTributary({"run", "--data-dir", dir.path(), "--duration", "4s", "--no-progress"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("[balanced]"), std::string::npos) << r.out;

  LedgerSnapshot ledger = ReadLedger(dir.path());
  EXPECT_TRUE(ledger.balanced());
  EXPECT_GT(ledger.input, 1000u);
  EXPECT_GT(ledger.accepted, 0u);
  EXPECT_GT(ledger.quarantined, 0u);  // the simulator injects malformed payloads
  EXPECT_GT(ledger.windows_emitted, 0u);

  Store store(dir.path() + "/tributary.gpkg");
  // Every accepted reading, quarantined record and late reading is in the store.
  EXPECT_EQ(store.Int("SELECT count(*) FROM readings"), static_cast<int64_t>(ledger.accepted));
  EXPECT_EQ(store.Int("SELECT count(*) FROM quarantine"), static_cast<int64_t>(ledger.quarantined));
  EXPECT_EQ(store.Int("SELECT count(*) FROM late"), static_cast<int64_t>(ledger.late));
  EXPECT_EQ(store.Int("SELECT count(*) FROM windows"),
            static_cast<int64_t>(ledger.windows_emitted));
  // Quarantine rows say why, and keep the raw payload.
  EXPECT_EQ(store.Int("SELECT count(*) FROM quarantine WHERE reason IS NULL OR reason = ''"), 0);
  EXPECT_EQ(store.Int("SELECT count(*) FROM quarantine WHERE raw IS NULL"), 0);
  EXPECT_GT(store.Int("SELECT count(*) FROM quarantine WHERE reason = 'malformed_json'"), 0);
  // Windows are one-minute tumbling per device and metric, with consistent aggregates.
  EXPECT_EQ(store.Int("SELECT count(*) FROM windows WHERE window = 'device_1m' AND "
                      "(window_end_us - window_start_us != 60000000 OR window_start_us % "
                      "60000000 != 0)"),
            0);
  // ... and five-minute tumbling per district of the builtin boundary set.
  EXPECT_GT(store.Int("SELECT count(*) FROM windows WHERE window = 'district_5m'"), 0);
  EXPECT_EQ(store.Int("SELECT count(*) FROM windows WHERE window = 'district_5m' AND "
                      "(group_by != 'zone' OR group_key NOT GLOB 'D[1-9]' OR "
                      "window_end_us - window_start_us != 300000000)"),
            0);
  // A PM2.5 surface was written for closed windows.
  EXPECT_FALSE(std::filesystem::is_empty(dir.path() + "/surfaces/pm25"));
  // Enrichment gave every reading its district and H3 cell.
  EXPECT_EQ(store.Int("SELECT count(*) FROM readings WHERE zone_id IS NULL OR h3 IS NULL"), 0);
  // (The mean of equal values may round one ulp past them: a relative 1e-12 slack.)
  EXPECT_EQ(store.Int("SELECT count(*) FROM windows WHERE NOT (min - abs(min) * 1e-12 <= mean "
                      "AND mean <= max + abs(max) * 1e-12) OR sample_count < 1"),
            0);
  EXPECT_GT(store.Int("SELECT count(DISTINCT metric) FROM windows"), 3);
  // Provenance travels with every reading.
  EXPECT_EQ(store.Int("SELECT count(*) FROM readings WHERE json_extract(provenance, "
                      "'$.source') != 'simulator'"),
            0);
}

TEST(DefaultRunTest, SameSeedGivesIdenticalWindows) {
  TempDir a, b;
  std::string config = R"(pipeline:
  name: determinism
sources:
  - name: sim
    type: simulator
    seed: 7
    devices: 40
    start: "2024-05-01T00:00:00Z"
    duration: 3h
    as_fast_as_possible: true
windows:
  - name: device_5m
    type: tumbling
    size: 5m
    group_by: device
sinks:
  - name: local
    type: sqlite
)";
  WriteFile(a.File("p.yaml"), config);
  for (const TempDir* d : {&a, &b}) {
    testing::CommandResult r =
        RunTributary({"run", a.File("p.yaml"), "--data-dir", d->path(), "--quiet"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  LedgerSnapshot la = ReadLedger(a.path()), lb = ReadLedger(b.path());
  EXPECT_TRUE(la.balanced());
  EXPECT_EQ(la.input, lb.input);
  EXPECT_EQ(la.accepted, lb.accepted);
  EXPECT_EQ(la.quarantine_reasons, lb.quarantine_reasons);
  const char* q =
      "SELECT window, group_key, metric, window_start_us, sample_count, mean, min, max "
      "FROM latest_windows ORDER BY 1, 2, 3, 4";
  std::string wa = Store(a.path() + "/tributary.gpkg").Text(q);
  std::string wb = Store(b.path() + "/tributary.gpkg").Text(q);
  EXPECT_GT(wa.size(), 1000u);
  EXPECT_EQ(wa, wb);
}

TEST(DefaultRunTest, SigintStopsCleanlyAndFlushesOpenWindows) {
  TempDir dir;
  std::string out_path = dir.File("stdout.txt");
  std::string data = dir.File("data");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::vector<std::string> args{TRIBUTARY_BINARY, "run", "--data-dir", data, "--no-progress"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  // Let it process for a while (an unbounded run), then interrupt it.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  ASSERT_EQ(kill(pid, SIGINT), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE(ReadFile(out_path).find("[balanced]"), std::string::npos) << ReadFile(out_path);
  LedgerSnapshot ledger = ReadLedger(data);
  EXPECT_TRUE(ledger.balanced());
  EXPECT_GT(ledger.input, 0u);
  Store store(data + "/tributary.gpkg");
  EXPECT_EQ(store.Int("SELECT count(*) FROM readings"), static_cast<int64_t>(ledger.accepted));
  // The windows still open at the signal were emitted: the newest window of every
  // (device, metric) covers the newest reading of that key.
  EXPECT_EQ(store.Int("SELECT count(*) FROM (SELECT device_id, metric, max(event_time_us) AS t "
                      "FROM readings GROUP BY 1, 2) r WHERE NOT EXISTS (SELECT 1 FROM windows w "
                      "WHERE w.group_key = r.device_id AND w.metric = r.metric AND "
                      "w.window_start_us <= r.t AND r.t < w.window_end_us)"),
            0);
}

TEST(DefaultRunTest, SimulateThenReplayFromFileAccountsForEveryLine) {
  TempDir dir;
  testing::CommandResult sim =
      RunTributary({"simulate", "--seed", "3", "--devices", "20", "--start", "2024-05-01T00:00:00Z",
                    "--duration", "2h", "-o", dir.File("sim.ndjson")});
  ASSERT_EQ(sim.exit_code, 0) << sim.err;
  std::string ndjson = ReadFile(dir.File("sim.ndjson"));
  size_t lines = static_cast<size_t>(std::count(ndjson.begin(), ndjson.end(), '\n'));
  ASSERT_GT(lines, 1000u);
  // Same seed, same bytes.
  testing::CommandResult again =
      RunTributary({"simulate", "--seed", "3", "--devices", "20", "--start", "2024-05-01T00:00:00Z",
                    "--duration", "2h"});
  EXPECT_EQ(again.out, ndjson);

  WriteFile(dir.File("replay.yaml"),
            "sources:\n  - name: replay\n    type: file\n    path: " + dir.File("sim.ndjson") +
                "\nwindows:\n  - name: w\n    type: tumbling\n"
                "    size: 10m\n    group_by: all\n"
                "sinks:\n  - name: local\n    type: sqlite\n");
  testing::CommandResult run =
      RunTributary({"run", dir.File("replay.yaml"), "--data-dir", dir.File("data"), "--quiet"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  LedgerSnapshot ledger = ReadLedger(dir.File("data"));
  EXPECT_TRUE(ledger.balanced());
  Store store(dir.File("data") + "/tributary.gpkg");
  // Every line of the file is somewhere: as readings (one per metric), quarantined, or
  // late; the only lines with no row are the simulator's exact re-sends (duplicates).
  // A re-send whose readings fail validation is quarantined again, so it may have rows.
  size_t dup_pos = sim.err.find(" duplicates");
  ASSERT_NE(dup_pos, std::string::npos) << sim.err;
  size_t num_start = sim.err.rfind(' ', dup_pos - 1) + 1;
  int64_t resent = std::stoll(sim.err.substr(num_start, dup_pos - num_start));
  int64_t lines_with_rows = store.Int(
      "SELECT count(*) FROM (SELECT json_extract(provenance, '$.offset') FROM readings UNION "
      "SELECT offset FROM quarantine UNION SELECT json_extract(provenance, '$.offset') FROM "
      "late)");
  EXPECT_LE(lines_with_rows, static_cast<int64_t>(lines));
  EXPECT_GE(lines_with_rows + resent, static_cast<int64_t>(lines));
  EXPECT_GE(static_cast<int64_t>(ledger.duplicate), resent);
  EXPECT_GT(store.Int("SELECT count(*) FROM windows WHERE group_key = 'all'"), 0);
}

TEST(DefaultRunTest, ReplayQuarantineRecoversRecordsAfterAMappingFix) {
  TempDir dir;
  std::string lines;
  for (int i = 0; i < 3; ++i) {
    lines += "{\"dev\":\"x-" + std::to_string(i) +
             "\",\"sensor_ts\":1714564800000,\"lat\":52.5,\"lon\":13.4,\"pm25\":" +
             std::to_string(5 + i) + "}\n";
  }
  WriteFile(dir.File("in.ndjson"), lines);
  std::string base =
      "sources:\n  - name: field\n    type: file\n    path: " + dir.File("in.ndjson") + "\n";
  WriteFile(dir.File("before.yaml"), base + "sinks:\n  - name: local\n    type: sqlite\n");
  WriteFile(dir.File("after.yaml"), base + "    mapping: {device_id: dev}\n");
  std::string data = dir.File("data");
  testing::CommandResult run =
      RunTributary({"run", dir.File("before.yaml"), "--data-dir", data, "--quiet"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(ReadLedger(data).quarantined, 3u);

  testing::CommandResult replay =
      RunTributary({"replay-quarantine", dir.File("after.yaml"), "--data-dir", data});
  ASSERT_EQ(replay.exit_code, 0) << replay.err;
  EXPECT_NE(replay.out.find("recovered 3"), std::string::npos) << replay.out;
  LedgerSnapshot ledger = ReadLedger(data);
  EXPECT_TRUE(ledger.balanced());
  EXPECT_EQ(ledger.quarantined, 0u);
  EXPECT_EQ(ledger.accepted, 3u);
  Store store(data + "/tributary.gpkg");
  EXPECT_EQ(store.Int("SELECT count(*) FROM quarantine"), 0);
  EXPECT_EQ(store.Int("SELECT count(*) FROM readings WHERE device_id LIKE 'x-%'"), 3);
  // A second replay finds nothing left and stores nothing twice.
  testing::CommandResult again =
      RunTributary({"replay-quarantine", dir.File("after.yaml"), "--data-dir", data});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(Store(data + "/tributary.gpkg").Int("SELECT count(*) FROM readings"), 3);
}

TEST(DefaultRunTest, CheckNamesTheBadLine) {
  TempDir dir;
  WriteFile(dir.File("bad.yaml"),
            "sources:\n  - name: sim\n    type: simulator\n    devices: lots\n");
  testing::CommandResult r = RunTributary({"check", dir.File("bad.yaml")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("bad.yaml:4:14: sources[0].devices"), std::string::npos) << r.err;

  testing::CommandResult ok = RunTributary({"check", dir.File("missing.yaml")});
  EXPECT_EQ(ok.exit_code, 2);
  EXPECT_NE(ok.err.find("cannot read config file"), std::string::npos) << ok.err;
}

TEST(DefaultRunTest, VersionAndHelp) {
  testing::CommandResult v = RunTributary({"--version"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_EQ(v.out.rfind("tributary ", 0), 0u) << v.out;
  for (const char* verb :
       {"run", "check", "simulate", "config-doc", "default-config", "h3", "replay-quarantine"}) {
    testing::CommandResult h = RunTributary({verb, "--help"});
    EXPECT_EQ(h.exit_code, 0) << verb;
    EXPECT_NE(h.out.find("Usage"), std::string::npos) << verb << h.out;
  }
}

}  // namespace
}  // namespace tributary
