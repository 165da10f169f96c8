// End-to-end: `tributary backfill` over simulator archives, compared with `run` over the
// same file, re-run detection, reproducibility and input expansion.
#include "stream/backfill.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::ReadFile;
using testing::RunTributary;
using testing::TempDir;
using testing::WriteFile;

// Rows of `sql` as tab-separated lines, in the query's order.
std::string Dump(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "cannot open " << db_path;
    sqlite3_close(db);
    return out;
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
  } else {
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
        const unsigned char* t = sqlite3_column_text(stmt, c);
        out += t ? reinterpret_cast<const char*>(t) : "NULL";
        out += c + 1 < sqlite3_column_count(stmt) ? "\t" : "\n";
      }
    }
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

// Every row of a table, whatever its columns, sorted: a canonical dump that does not
// depend on insertion order.
std::string CanonicalTable(const std::string& db_path, const std::string& table) {
  std::string rows = Dump(db_path, "SELECT * FROM " + table);
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < rows.size()) {
    size_t nl = rows.find('\n', pos);
    lines.push_back(rows.substr(pos, nl - pos));
    pos = nl + 1;
  }
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

LedgerSnapshot ReadLedger(const std::string& dir) {
  Result<LedgerSnapshot> l = ParseLedgerJson(ReadFile(dir + "/ledger.json"));
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  return l.ok() ? *l : LedgerSnapshot{};
}

class BackfillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::CommandResult sim = RunTributary({"simulate", "--seed", "11", "--devices", "25",
                                               "--start", "2024-05-01T00:00:00Z", "--duration",
                                               "3h", "-o", dir_.File("archive.ndjson")});
    ASSERT_EQ(sim.exit_code, 0) << sim.err;
    // A gateway's backlog of the first hour, delivered at the end: late for every window.
    std::string backlog;
    for (int i = 0; i < 20; ++i) {
      backlog +=
          fmt::format(R"({{"device_id":"gw-{}","sensor_ts":{},"lat":52.5,"lon":13.4,"pm25":{}}})"
                      "\n",
                      i % 4, 1714525200000 + i * 60000, 10 + i);
    }
    WriteFile(dir_.File("archive.ndjson"), ReadFile(dir_.File("archive.ndjson")) + backlog);
    WriteFile(
        dir_.File("p.yaml"),
        "sources:\n  - name: archive\n    type: file\n    path: " + dir_.File("archive.ndjson") +
            "\nprocessing:\n  out_of_orderness: 30s\n"
            "windows:\n  - name: dev\n    type: tumbling\n    size: 10m\n    group_by: device\n"
            "  - name: all\n    type: tumbling\n    size: 15m\n    group_by: all\n"
            "sinks:\n  - name: local\n    type: sqlite\n");
  }
  std::string Backfill(const std::string& out, std::vector<std::string> extra = {},
                       int expect_code = 0) {
    std::vector<std::string> args{"backfill", "--config", dir_.File("p.yaml"),
                                  "--output", out,        "--no-progress"};
    args.insert(args.end(), extra.begin(), extra.end());
    if (extra_inputs_.empty()) args.push_back(dir_.File("archive.ndjson"));
    for (const auto& i : extra_inputs_) args.push_back(i);
    testing::CommandResult r = RunTributary(args);
    EXPECT_EQ(r.exit_code, expect_code) << r.err;
    return r.out + r.err;
  }
  TempDir dir_;
  std::vector<std::string> extra_inputs_;
};

constexpr const char* kWindowQuery =
    "SELECT window, group_key, metric, window_start_us, window_end_us, sample_count, mean, min, "
    "max, late_arrival_count FROM latest_windows ORDER BY 1, 2, 3, 4";

TEST_F(BackfillTest, ResultsEqualThoseOfRunOverTheSameFile) {
  testing::CommandResult run =
      RunTributary({"run", dir_.File("p.yaml"), "--data-dir", dir_.File("run"), "--quiet"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  Backfill(dir_.File("bf"));

  LedgerSnapshot a = ReadLedger(dir_.File("run"));
  LedgerSnapshot b = ReadLedger(dir_.File("bf"));
  EXPECT_TRUE(b.balanced());
  EXPECT_GT(b.input, 1000u);
  EXPECT_EQ(a.input, b.input);
  EXPECT_EQ(a.accepted, b.accepted);
  EXPECT_EQ(a.quarantined, b.quarantined);
  EXPECT_EQ(a.late, b.late);
  EXPECT_EQ(a.duplicate, b.duplicate);
  EXPECT_EQ(a.quarantine_reasons, b.quarantine_reasons);
  EXPECT_EQ(a.windows_emitted, b.windows_emitted);
  std::string wa = Dump(dir_.File("run/tributary.gpkg"), kWindowQuery);
  std::string wb = Dump(dir_.File("bf/tributary.gpkg"), kWindowQuery);
  EXPECT_GT(wa.size(), 1000u);
  EXPECT_EQ(wa, wb);
  // The staged store is written without WAL but closed in WAL mode, as `run` leaves it:
  // bytes 18 and 19 of the header (write and read format versions) are 2 in WAL mode.
  for (const std::string& db : {dir_.File("run/tributary.gpkg"), dir_.File("bf/tributary.gpkg")}) {
    std::string header = ReadFile(db).substr(0, 100);
    ASSERT_EQ(header.size(), 100u) << db;
    EXPECT_EQ(header[18], 2) << db;
    EXPECT_EQ(header[19], 2) << db;
    EXPECT_EQ(Dump(db, "PRAGMA integrity_check"), "ok\n") << db;
  }
  // Nothing of the staging folder is left; the manifest sits beside the outputs.
  EXPECT_FALSE(std::filesystem::exists(dir_.File("bf/.backfill-staging")));
  std::string manifest = ReadFile(dir_.File("bf/backfill-manifest.json"));
  EXPECT_NE(manifest.find("\"tributary_version\""), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"ledger\":{"), std::string::npos) << manifest;
}

TEST_F(BackfillTest, ManifestHashesInputsAndARepeatedRunIsSkippedUnlessForced) {
  Backfill(dir_.File("bf"));
  std::string manifest = ReadFile(dir_.File("bf/backfill-manifest.json"));
  Result<std::string> sha = Sha256OfFile(dir_.File("archive.ndjson"));
  ASSERT_TRUE(sha.ok());
  testing::CommandResult sum =
      testing::RunCommand({"/usr/bin/sha256sum", dir_.File("archive.ndjson")});
  ASSERT_EQ(sum.exit_code, 0);
  EXPECT_EQ(sum.out.substr(0, 64), *sha);
  EXPECT_NE(manifest.find("\"sha256\":\"" + *sha + "\""), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"config\":{"), std::string::npos);

  std::string second = Backfill(dir_.File("bf"));
  EXPECT_NE(second.find("already processed"), std::string::npos) << second;
  EXPECT_EQ(ReadFile(dir_.File("bf/backfill-manifest.json")), manifest);

  std::string forced = Backfill(dir_.File("bf"), {"--force"});
  EXPECT_EQ(forced.find("already processed"), std::string::npos) << forced;
  EXPECT_TRUE(ReadLedger(dir_.File("bf")).balanced());

  // A changed input is a new run.
  WriteFile(dir_.File("archive.ndjson"), ReadFile(dir_.File("archive.ndjson")) + "{\"bad\n");
  std::string changed = Backfill(dir_.File("bf"));
  EXPECT_EQ(changed.find("already processed"), std::string::npos) << changed;
}

TEST_F(BackfillTest, TwoRunsGiveIdenticalRowsIncludingEmissionAndArrivalTimes) {
  Backfill(dir_.File("a"), {"--as-of", "2024-05-02T00:00:00Z"});
  Backfill(dir_.File("b"), {"--as-of", "2024-05-02T00:00:00Z"});
  for (const char* table : {"readings", "windows", "quarantine", "late"}) {
    std::string ta = CanonicalTable(dir_.File("a/tributary.gpkg"), table);
    std::string tb = CanonicalTable(dir_.File("b/tributary.gpkg"), table);
    EXPECT_GT(ta.size(), 10u) << table;
    EXPECT_EQ(ta, tb) << table;
  }
  // emitted_at is the run's as-of time, not the wall clock.
  EXPECT_EQ(Dump(dir_.File("a/tributary.gpkg"),
                 "SELECT count(*) FROM windows WHERE emitted_at_us != 1714608000000000"),
            "0\n");
  EXPECT_EQ(ReadFile(dir_.File("a/ledger.json")), ReadFile(dir_.File("b/ledger.json")));
}

TEST_F(BackfillTest, FoldersAndGlobsExpandAndAMissingInputIsNamed) {
  std::filesystem::create_directories(dir_.File("in/sub"));
  std::string text = ReadFile(dir_.File("archive.ndjson"));
  size_t half = text.find('\n', text.size() / 2) + 1;
  WriteFile(dir_.File("in/part1.ndjson"), text.substr(0, half));
  WriteFile(dir_.File("in/part2.ndjson"), text.substr(half));
  WriteFile(dir_.File("in/notes.txt"), "not data\n");
  Result<std::vector<std::string>> folder = ExpandBackfillInputs({dir_.File("in")});
  ASSERT_TRUE(folder.ok()) << folder.status().ToString();
  EXPECT_EQ(*folder,
            (std::vector<std::string>{dir_.File("in/part1.ndjson"), dir_.File("in/part2.ndjson")}));
  Result<std::vector<std::string>> glob = ExpandBackfillInputs({dir_.File("in/part*.ndjson")});
  ASSERT_TRUE(glob.ok());
  EXPECT_EQ(*glob, *folder);
  Result<std::vector<std::string>> missing = ExpandBackfillInputs({dir_.File("nope.ndjson")});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.ndjson"), std::string::npos);

  // The two halves give what the whole file gives.
  extra_inputs_ = {dir_.File("in")};
  Backfill(dir_.File("parts"));
  extra_inputs_.clear();
  Backfill(dir_.File("whole"));
  EXPECT_EQ(Dump(dir_.File("parts/tributary.gpkg"), kWindowQuery),
            Dump(dir_.File("whole/tributary.gpkg"), kWindowQuery));
  std::string err = Backfill(dir_.File("x"), {dir_.File("missing.csv")}, 2);
  EXPECT_NE(err.find("missing.csv"), std::string::npos) << err;
}

}  // namespace
}  // namespace tributary
