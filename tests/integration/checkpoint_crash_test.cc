// The crash harness of checkpoints (docs/RELIABILITY.md): a fixed input runs once
// uninterrupted and once under `tributary run` processes killed with SIGKILL at random
// moments and restarted each time, with checkpoints on; the final outputs must be equal
// row for row: every table of the SQLite store, the Parquet archive and the ledger.
//
// Columns compared: all of every table, including the row ids (the order of inserts),
// except `emitted_at_us` and `emitted_at` of windows, which are the wall clock of the
// emission (the processing clock) and so differ between any two runs.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/ledger.h"
#include "test_util.h"

#ifdef TRIBUTARY_HAVE_DUCKDB
#include <duckdb.h>
#define CKPT_TEST_DUCKDB 1
#endif

namespace tributary {
namespace {

using testing::SpawnTributaryRun;

using testing::ReadFile;
using testing::RunTributary;
using testing::TempDir;
using testing::WriteFile;

// Every row of every output table as sorted-free text (ordered by id).
std::string DumpStore(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "cannot open " << path;
    sqlite3_close(db);
    return {};
  }
  std::string out;
  for (const char* table : {"readings", "windows", "quarantine", "late"}) {
    // Column list without the processing-clock columns.
    std::string cols;
    sqlite3_stmt* info = nullptr;
    std::string pragma = std::string("PRAGMA table_info(") + table + ")";
    sqlite3_prepare_v2(db, pragma.c_str(), -1, &info, nullptr);
    while (sqlite3_step(info) == SQLITE_ROW) {
      std::string name = reinterpret_cast<const char*>(sqlite3_column_text(info, 1));
      if (name == "emitted_at" || name == "emitted_at_us") continue;
      if (name == "geom") name = "hex(geom)";
      cols += (cols.empty() ? "" : ", ") + name;
    }
    sqlite3_finalize(info);
    std::string sql = "SELECT " + cols + " FROM " + table + " ORDER BY id";
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
      continue;
    }
    out += std::string("## ") + table + "\n";
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
        const unsigned char* t = sqlite3_column_text(stmt, c);
        out += t ? reinterpret_cast<const char*>(t) : "NULL";
        out += '\t';
      }
      out += '\n';
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return out;
}

#ifdef CKPT_TEST_DUCKDB
// Every row of every table of a Parquet archive, sorted (files may be cut differently).
std::string DumpArchive(const std::string& root) {
  duckdb_database db;
  duckdb_connection con;
  if (duckdb_open(nullptr, &db) != DuckDBSuccess) return "cannot open duckdb";
  duckdb_connect(db, &con);
  std::string out;
  for (const char* table : {"readings", "windows", "quarantine", "late"}) {
    std::string glob = root + "/" + table + "/**/*.parquet";
    if (!std::filesystem::exists(root + "/" + table)) {
      out += std::string("## ") + table + " (none)\n";
      continue;
    }
    std::string exclude = std::string(table) == "windows" ? " EXCLUDE (emitted_at)" : "";
    std::string sql = "SELECT * " + exclude + " FROM read_parquet('" + glob +
                      "', hive_partitioning = true) ORDER BY ALL";
    duckdb_result res;
    if (duckdb_query(con, sql.c_str(), &res) != DuckDBSuccess) {
      out += std::string("## ") + table + " error: " + duckdb_result_error(&res) + "\n";
      duckdb_destroy_result(&res);
      continue;
    }
    out += std::string("## ") + table + "\n";
    idx_t rows = duckdb_row_count(&res);
    idx_t cols = duckdb_column_count(&res);
    for (idx_t r = 0; r < rows; ++r) {
      for (idx_t c = 0; c < cols; ++c) {
        char* v = duckdb_value_varchar(&res, c, r);
        out += v ? v : "NULL";
        out += '\t';
        duckdb_free(v);
      }
      out += '\n';
    }
    duckdb_destroy_result(&res);
  }
  duckdb_disconnect(&con);
  duckdb_close(&db);
  return out;
}
#endif

// The ledger without nothing that may differ (it has no clock fields).
std::string LedgerText(const std::string& data_dir) {
  Result<LedgerSnapshot> l = ParseLedgerJson(ReadFile(data_dir + "/ledger.json"));
  if (!l.ok()) return "unreadable ledger: " + l.status().message();
  return l->ToJson();
}

// With `parquet` false the only sink is the SQLite store, which needs no epoch log.
std::string Config(const std::string& data_dir, const std::string& source_yaml, bool parquet = true,
                   const std::string& interval = "300ms") {
  return "pipeline:\n"
         "  data_dir: " +
         data_dir +
         "\n"
         "  batch_size: 100\n"
         "  queue_capacity: 2\n"
         "processing:\n"
         "  dedup_horizon: 1h\n"
         "  grace: 5m\n"
         "sources:\n" +
         source_yaml +
         "windows:\n"
         "  - name: t10m\n"
         "    type: tumbling\n"
         "    size: 10m\n"
         "    aggregates: [mean, max, median, p95]\n"
         "  - name: s15m\n"
         "    type: sliding\n"
         "    size: 15m\n"
         "    step: 5m\n"
         "    group_by: all\n"
         "    aggregates: [mean, std]\n"
         "  - name: burst\n"
         "    type: session\n"
         "    gap: 3m\n"
         "    metrics: [pm25]\n"
         "sinks:\n"
         "  - name: store\n"
         "    type: sqlite\n" +
         std::string(parquet ? "  - name: archive\n"
                               "    type: parquet\n"
                             : "") +
         "checkpoint:\n"
         "  enabled: true\n"
         "  interval: " +
         interval + "\n";
}

// The lines of `a` that `b` lacks and those of `b` that `a` lacks (as multisets), at most
// `most` of each, with the table each comes from: what a failed comparison shows.
std::string LineDifferences(const std::string& a, const std::string& b, int most = 12) {
  auto lines = [](const std::string& text) {
    std::multiset<std::string> out;
    std::string table;
    size_t at = 0;
    while (at < text.size()) {
      size_t eol = text.find('\n', at);
      if (eol == std::string::npos) eol = text.size();
      std::string line = text.substr(at, eol - at);
      at = eol + 1;
      if (line.rfind("## ", 0) == 0) {
        table = line.substr(3);
        continue;
      }
      out.insert(table + ": " + line);
    }
    return out;
  };
  const std::multiset<std::string> la = lines(a);
  const std::multiset<std::string> lb = lines(b);
  std::vector<std::string> only_a;
  std::vector<std::string> only_b;
  std::set_difference(la.begin(), la.end(), lb.begin(), lb.end(), std::back_inserter(only_a));
  std::set_difference(lb.begin(), lb.end(), la.begin(), la.end(), std::back_inserter(only_b));
  std::string out = std::to_string(only_a.size()) + " rows only in the clean run, " +
                    std::to_string(only_b.size()) + " only in the crashed one";
  if (only_a.empty() && only_b.empty()) out += " (the same rows in another order)";
  for (int i = 0; i < most && i < static_cast<int>(only_a.size()); ++i) {
    out += "\n  clean:   " + only_a[static_cast<size_t>(i)];
  }
  for (int i = 0; i < most && i < static_cast<int>(only_b.size()); ++i) {
    out += "\n  crashed: " + only_b[static_cast<size_t>(i)];
  }
  return out;
}

void ExpectSameOutputs(const std::string& clean, const std::string& crashed, bool parquet) {
  std::string a = DumpStore(clean + "/tributary.gpkg");
  std::string b = DumpStore(crashed + "/tributary.gpkg");
  EXPECT_GT(a.size(), 1000u);
  EXPECT_TRUE(a == b) << "the SQLite stores differ (" << a.size() << " vs " << b.size()
                      << " bytes of rows): " << LineDifferences(a, b);
#ifdef CKPT_TEST_DUCKDB
  if (parquet) {
    std::string pa = DumpArchive(clean + "/archive");
    std::string pb = DumpArchive(crashed + "/archive");
    EXPECT_GT(pa.size(), 1000u);
    EXPECT_TRUE(pa == pb) << "the Parquet archives differ (" << pa.size() << " vs " << pb.size()
                          << " bytes of rows): " << LineDifferences(pa, pb);
  }
#else
  (void)parquet;
#endif
  EXPECT_EQ(LedgerText(clean), LedgerText(crashed));
  Result<LedgerSnapshot> l = ParseLedgerJson(ReadFile(crashed + "/ledger.json"));
  ASSERT_TRUE(l.ok());
  EXPECT_TRUE(l->balanced()) << l->ToText();
}

// Kill `crashed.yaml` runs at random moments in [0, max(1.5 s, clean time / 3)) after
// each start, restarting each time, until 20 SIGKILLs hit a run that was still working
// (at most 200 starts). When a run reaches the end of its input between kills, its
// outputs are compared with the clean run's and the data folder is wiped for another
// round, so every completed round is checked and the kills keep landing mid-run
// (start-up, recovery, processing, commits).
// Without `parquet` (the SQLite sink alone) no epoch log may ever be written.
void RunHarness(const std::string& source_yaml, const TempDir& tmp, uint32_t seed,
                bool parquet = true) {
  const std::string clean = tmp.File("clean");
  const std::string crashed = tmp.File("crashed");
  const std::string log = tmp.File("crashed.log");
  // Checkpoints every 100 ms: a run of under a second under load takes several, so kills
  // land after one too and the restarts resume from it.
  WriteFile(tmp.File("clean.yaml"), Config(clean, source_yaml, parquet, "100ms"));
  WriteFile(tmp.File("crashed.yaml"), Config(crashed, source_yaml, parquet, "100ms"));
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = SpawnTributaryRun({tmp.File("clean.yaml")}, tmp.File("clean.log"));
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(tmp.File("clean.log"));
  auto clean_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  // At least 1.5 s, so that runs on a fast machine also get past their first checkpoint.
  const int max_delay = std::max<int>(1500, static_cast<int>(clean_ms / 3));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay(0, max_delay);
  int kills = 0;
  int rounds = 0;
  // Runs that resumed from a checkpoint: a kill may land before a round's first
  // checkpoint, so not every start resumes, but some must.
  // Every run appends to the same log: only what the last run wrote is looked at.
  int resumed = 0;
  size_t log_seen = 0;
  // Runs in which the SQLite sink committed at open a checkpoint the previous run had
  // prepared and the store decided (a kill between the decision and the commit).
  int finished_at_open = 0;
  int epoch_logs = 0;  // epoch logs found after a kill
  auto note_resumed = [&] {
    const std::string text = ReadFile(log);
    if (text.find("resumed from checkpoint", log_seen) != std::string::npos) ++resumed;
    if (text.find("prepared before the process stopped", log_seen) != std::string::npos) {
      ++finished_at_open;
    }
    log_seen = text.size();
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(crashed + "/checkpoints", ec)) {
      if (e.path().filename().string().rfind("epoch-", 0) == 0) ++epoch_logs;
    }
  };
  for (int start = 0; kills < 20 && start < 200; ++start) {
    pid = SpawnTributaryRun({tmp.File("crashed.yaml")}, log);
    ASSERT_GT(pid, 0) << "cannot start tributary";
    std::this_thread::sleep_for(std::chrono::milliseconds(delay(rng)));
    if (waitpid(pid, &status, WNOHANG) == 0) {
      ::kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      note_resumed();
      ++kills;
      continue;
    }
    note_resumed();
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(log);
    ++rounds;
    ExpectSameOutputs(clean, crashed, parquet);
    std::filesystem::remove_all(crashed);
  }
  ASSERT_EQ(kills, 20);
  pid = SpawnTributaryRun({tmp.File("crashed.yaml")}, log);
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(log);
  note_resumed();
  EXPECT_GT(resumed, 0) << "no run resumed from a checkpoint; the last log:\n" << ReadFile(log);
  if (!parquet) {
    EXPECT_EQ(epoch_logs, 0) << "epoch logs written without a sink that needs them";
  }
  ExpectSameOutputs(clean, crashed, parquet);
  std::cerr << "clean run " << clean_ms << " ms; 20 kills mid-run (delays up to " << max_delay
            << " ms), " << rounds + 1 << " rounds compared, " << resumed
            << " runs resumed from a checkpoint, " << finished_at_open
            << " finished a prepared checkpoint at open, " << epoch_logs
            << " epoch logs seen after kills\n";
}

// A file source over a `tributary simulate` NDJSON of `devices` sensors reporting every
// minute for `duration` from 2024-05-01; empty (and a failure recorded) when simulate fails.
std::string SimulatedFileSource(const TempDir& tmp, int seed, int devices,
                                const std::string& duration) {
  const std::string input = tmp.File("input.ndjson");
  testing::CommandResult sim = RunTributary(
      {"simulate", "--seed", std::to_string(seed), "--devices", std::to_string(devices), "--start",
       "2024-05-01T00:00:00Z", "--duration", duration, "--interval", "60s", "-o", input});
  if (sim.exit_code != 0) {
    ADD_FAILURE() << "simulate failed: " << sim.err;
    return "";
  }
  return "  - name: replay\n"
         "    type: file\n"
         "    path: " +
         input +
         "\n"
         "    arrival_time: 2024-05-02T00:00:00Z\n";
}

TEST(CheckpointCrash, FileSourceKilledTwentyTimesMatchesCleanRun) {
  TempDir tmp;
  const std::string source = SimulatedFileSource(tmp, 11, 30, "12h");
  ASSERT_FALSE(source.empty());
  RunHarness(source, tmp, 1);
}

// The SQLite sink alone (with four times the input of the test above, as this pipeline
// runs faster and the kills must land mid-run): the pipeline writes no epoch log (the sink makes
// each interval durable before the decision and finishes a decided commit itself at open), and
// kills at any moment, between prepare, decision and commit too, still give the clean run's store
// and ledger.
TEST(CheckpointCrash, SqliteOnlyKilledTwentyTimesMatchesCleanRunWithoutEpochLogs) {
  TempDir tmp;
  const std::string source = SimulatedFileSource(tmp, 13, 60, "6h");
  ASSERT_FALSE(source.empty());
  RunHarness(source, tmp, 3, /*parquet=*/false);
}

// A simulator running as fast as possible: its clock is simulated, so the runtime runs no
// idle ticks (they moved the watermark by wall time and made two clean runs differ).
// Twelve simulated hours take the pipeline several checkpoint intervals, so kills land
// after a checkpoint and restarts resume from it, as well as while the sinks write or
// commit one (recovery then replays its epoch log); SimulatorKilledAtEveryCommitStep-
// MatchesCleanRun kills at each of those steps on purpose.
TEST(CheckpointCrash, SimulatorKilledTwentyTimesMatchesCleanRun) {
  TempDir tmp;
  RunHarness(
      "  - name: sim\n"
      "    type: simulator\n"
      "    seed: 5\n"
      "    devices: 30\n"
      "    start: 2024-05-01T00:00:00Z\n"
      "    duration: 12h\n"
      "    as_fast_as_possible: true\n",
      tmp, 2);
}

// Fault injection (core/crash_point.h): for every step of the checkpoint protocol, a
// run is killed there with TRIBUTARY_CRASH_AT=<step>:<n>, then restarted until its
// input ends; the outputs (SQLite store, Parquet archive, ledger) must equal the clean
// run's. `n` picks which arrival at the step kills: the second checkpoint for the
// commit-phase steps (so recovery starts from a complete one), the fifth batch logged
// after the first checkpoint for the epoch log write.
// The inputs (60 devices over 6 h) are large enough for several checkpoints per run on a
// fast machine too, as the commit-phase steps are killed at the second.
void KillAtEveryStep(const std::string& source_yaml, const TempDir& tmp) {
  const std::string clean = tmp.File("clean");
  // Short intervals: every run takes several checkpoints, also on a fast machine.
  WriteFile(tmp.File("clean.yaml"), Config(clean, source_yaml, true, "100ms"));
  ASSERT_EQ(RunTributary({"run", tmp.File("clean.yaml"), "--listen", "off"}).exit_code, 0);
  struct Case {
    const char* step;
    int n;
    const char* recovery;  // what the restart's log must say
  };
  const Case cases[] = {
      {"epoch_write", 5, "resumed from checkpoint"},
      {"after_prepare", 2, "resumed from checkpoint 1 "},
      {"after_decide", 2, "committed checkpoint 2, prepared before the process stopped"},
      {"between_sinks", 2, "checkpoint 2: sink archive committed it now"},
      {"after_commit", 2, "resumed from checkpoint 2 "},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.step);
    const std::string crashed = tmp.File(std::string("crashed-") + c.step);
    const std::string yaml = tmp.File(std::string("crashed-") + c.step + ".yaml");
    const std::string log = crashed + ".log";
    WriteFile(yaml, Config(crashed, source_yaml, true, "100ms"));
    const std::string spec = std::string(c.step) + ":" + std::to_string(c.n);
    ::setenv("TRIBUTARY_CRASH_AT", spec.c_str(), 1);
    pid_t pid = SpawnTributaryRun({yaml}, log);
    ::unsetenv("TRIBUTARY_CRASH_AT");
    ASSERT_GT(pid, 0);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the run was not killed at " << spec << ":\n"
        << ReadFile(log);
    ASSERT_NE(ReadFile(log).find("TRIBUTARY_CRASH_AT: killed at " + std::string(c.step)),
              std::string::npos)
        << ReadFile(log);
    const size_t before = ReadFile(log).size();
    pid = SpawnTributaryRun({yaml}, log);
    ASSERT_GT(pid, 0);
    waitpid(pid, &status, 0);
    const std::string restart = ReadFile(log).substr(before);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << restart;
    EXPECT_NE(restart.find(c.recovery), std::string::npos) << restart;
    ExpectSameOutputs(clean, crashed, true);
  }
}

TEST(CheckpointCrash, FileSourceKilledAtEveryCommitStepMatchesCleanRun) {
  TempDir tmp;
  const std::string source = SimulatedFileSource(tmp, 11, 60, "6h");
  ASSERT_FALSE(source.empty());
  KillAtEveryStep(source, tmp);
}

TEST(CheckpointCrash, SimulatorKilledAtEveryCommitStepMatchesCleanRun) {
  TempDir tmp;
  KillAtEveryStep(
      "  - name: sim\n"
      "    type: simulator\n"
      "    seed: 5\n"
      "    devices: 60\n"
      "    start: 2024-05-01T00:00:00Z\n"
      "    duration: 6h\n"
      "    as_fast_as_possible: true\n",
      tmp);
}

TEST(CheckpointCrash, RestartAfterCompletionAddsNothing) {
  TempDir tmp;
  const std::string input = tmp.File("input.ndjson");
  ASSERT_EQ(RunTributary({"simulate", "--seed", "3", "--devices", "10", "--start",
                          "2024-05-01T00:00:00Z", "--duration", "2h", "-o", input})
                .exit_code,
            0);
  const std::string data = tmp.File("data");
  WriteFile(tmp.File("p.yaml"),
            Config(data, "  - name: replay\n    type: file\n    path: " + input +
                             "\n    arrival_time: 2024-05-02T00:00:00Z\n"));
  ASSERT_EQ(RunTributary({"run", tmp.File("p.yaml"), "--listen", "off"}).exit_code, 0);
  std::string first = DumpStore(data + "/tributary.gpkg");
  std::string ledger = LedgerText(data);
  testing::CommandResult again = RunTributary({"run", tmp.File("p.yaml"), "--listen", "off"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_TRUE(first == DumpStore(data + "/tributary.gpkg")) << "a second run changed the store";
  EXPECT_EQ(ledger, LedgerText(data));
}

TEST(CheckpointCrash, ChangedConfigIsRefusedWithAClearError) {
  TempDir tmp;
  const std::string input = tmp.File("input.ndjson");
  ASSERT_EQ(RunTributary({"simulate", "--seed", "3", "--devices", "10", "--start",
                          "2024-05-01T00:00:00Z", "--duration", "1h", "-o", input})
                .exit_code,
            0);
  const std::string data = tmp.File("data");
  std::string src = "  - name: replay\n    type: file\n    path: " + input +
                    "\n    arrival_time: 2024-05-02T00:00:00Z\n";
  WriteFile(tmp.File("p.yaml"), Config(data, src));
  ASSERT_EQ(RunTributary({"run", tmp.File("p.yaml"), "--listen", "off"}).exit_code, 0);
  // The same data folder with a source renamed: the checkpoint does not fit.
  std::string renamed = Config(data, src);
  renamed.replace(renamed.find("name: replay"), 12, "name: other1");
  WriteFile(tmp.File("q.yaml"), renamed);
  testing::CommandResult r = RunTributary({"run", tmp.File("q.yaml"), "--listen", "off"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE((r.out + r.err).find("checkpoint"), std::string::npos) << r.out << r.err;
}

}  // namespace
}  // namespace tributary
