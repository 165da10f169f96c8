// The circuit breaker in the two-phase commit of checkpoints (io/sinks/breaker_sink.h),
// in front of a real PostgreSQL 15 with PostGIS (tests/integration/postgres.h): a
// checkpoint the server cannot take completes in the local buffer, and reaches the
// server later under its own id, once.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "core/ledger.h"
#include "core/registry.h"
#include "core/sink_health.h"
#include "integration/postgres.h"
#include "io/sinks/pg_conn.h"
#include "io/sinks/postgres_sink.h"
#include "sink_test_records.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::BareReading;
using testing::kSinkT0;
using testing::PostgresServer;
using testing::ReadFile;
using testing::SpawnTributaryRun;
using testing::WriteFile;

constexpr int kPerEpoch = 300;  // readings per checkpoint, in 3 batches

class BreakerCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err = server_.Start();
    ASSERT_EQ(err, "") << err;
    ctx_.ledger = &ledger_;
    ctx_.checkpointing = true;
    ctx_.data_dir = dir_.path();
  }

  // The postgres sink as a pipeline builds it; `breaker` false gives the bare sink.
  std::unique_ptr<Sink> Make(bool breaker = true) {
    YAML::Node node = YAML::Load(
        "{name: warehouse, type: postgres, schema: air, "
        "breaker_probe_interval: 200ms, breaker_probe_interval_max: 500ms}");
    node["conninfo"] = server_.conninfo();
    node["breaker"] = breaker;
    node["breaker_buffer"] = dir_.File("warehouse.buffer.sqlite");
    SinkEntry e;
    e.name = "warehouse";
    e.type = "postgres";
    e.options =
        OptionReader(node, "pipeline.yaml", "sinks[0]", {&SinkCommonSpec(), &PostgresSinkSpec()});
    EXPECT_TRUE(e.options.CheckKeys().ok());
    Result<std::unique_ptr<Sink>> sink = Registry::Get().MakeSink(e);
    EXPECT_TRUE(sink.ok()) << sink.status().ToString();
    return sink.ok() ? std::move(sink).value() : nullptr;
  }

  // Write the readings of checkpoint `id` (values (id-1)*kPerEpoch ...), then prepare
  // and commit it, as the checkpoint coordinator does. Returns the slowest call.
  DurationUs Epoch(Sink& sink, uint64_t id) {
    DurationUs slowest = 0;
    auto timed = [&](auto&& call) {
      TimeUs t = NowUs();
      Status st = call();
      slowest = std::max(slowest, NowUs() - t);
      EXPECT_TRUE(st.ok()) << "checkpoint " << id << ": " << st.ToString();
    };
    const int first = static_cast<int>(id - 1) * kPerEpoch;
    for (int part = 0; part < 3; ++part) {
      Batch b;
      for (int k = first + part * 100; k < first + (part + 1) * 100; ++k) {
        b.readings.push_back(BareReading(k % 2 == 0 ? "node-a" : "node-b", "no2",
                                         kSinkT0 + int64_t{k} * kMicrosPerMilli, k));
      }
      timed([&] { return sink.Write(b); });
    }
    timed([&] { return sink.PrepareCheckpoint(id); });
    timed([&] { return sink.CommitCheckpoint(id); });
    return slowest;
  }

  // Checkpoint 1 reaches the server, which then stops; checkpoints 2 and 3 go to the
  // buffer; the process dies (no Close) before anything of checkpoint 4 was written.
  void KilledDuringAnOutage() {
    std::unique_ptr<Sink> sink = Make();
    ASSERT_TRUE(sink->Open(ctx_).ok());
    ASSERT_TRUE(sink->OpenCheckpoints().ok());
    Epoch(*sink, 1);
    server_.Stop();
    Epoch(*sink, 2);
    Epoch(*sink, 3);
    sink.release();  // as by a kill
  }

  int64_t Int(const std::string& sql) {
    PgConnection db;
    Status st = db.Connect(server_.conninfo(), "tributary-tests", 5);
    EXPECT_TRUE(st.ok()) << st.ToString();
    Result<int64_t> n = db.QueryInt(sql);
    EXPECT_TRUE(n.ok()) << sql << ": " << n.status().ToString();
    return n.value_or(-1);
  }
  uint64_t Committed() {
    auto snap = ledger_.Snapshot();
    auto it = snap.sink_committed.find("warehouse/readings");
    return it == snap.sink_committed.end() ? 0 : it->second;
  }
  static uint64_t Rows(const SinkCheckpointRecord& rec) {
    auto it = rec.rows.find("warehouse/readings");
    return it == rec.rows.end() ? 0 : it->second;
  }
  void ExpectEachReadingOnce(int epochs) {
    EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), int64_t{epochs} * kPerEpoch);
    EXPECT_EQ(Int("SELECT count(DISTINCT value) FROM air.readings"), int64_t{epochs} * kPerEpoch);
    EXPECT_EQ(Int("SELECT max(value)::bigint FROM air.readings"), int64_t{epochs} * kPerEpoch - 1);
  }

  PostgresServer server_;
  testing::TempDir dir_;
  Ledger ledger_;
  RunContext ctx_;
};

TEST_F(BreakerCheckpointTest, CheckpointsOfAnOutageCompleteLocallyAndReachTheServerOnce) {
  std::unique_ptr<Sink> sink = Make();
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Result<SinkCheckpointRecord> rec = sink->OpenCheckpoints();
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->checkpoint, 0u);
  for (uint64_t id = 1; id <= 3; ++id) Epoch(*sink, id);
  ExpectEachReadingOnce(3);
  EXPECT_EQ(Int("SELECT checkpoint_id FROM air.sink_checkpoints"), 3);

  server_.Stop();
  for (uint64_t id = 4; id <= 8; ++id) {
    DurationUs slowest = Epoch(*sink, id);
    EXPECT_LT(slowest, 2 * kMicrosPerSecond) << "an open breaker does not wait for the server";
  }
  SinkHealth during = SinkHealthSnapshot()["warehouse"];
  EXPECT_EQ(during.state, BreakerState::kOpen);
  EXPECT_EQ(during.buffered_rows, 5u * kPerEpoch);
  EXPECT_EQ(Committed(), 3u * kPerEpoch) << "buffered rows are counted once the server has them";

  std::string err = server_.Start();
  ASSERT_EQ(err, "") << err;
  EXPECT_EQ(Int("SELECT checkpoint_id FROM air.sink_checkpoints"), 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // the next probe is due
  Epoch(*sink, 9);
  SinkHealth after = SinkHealthSnapshot()["warehouse"];
  sink->Close();
  EXPECT_EQ(after.state, BreakerState::kClosed);
  EXPECT_EQ(after.buffered_rows, 0u);
  EXPECT_EQ(after.drained_rows_total, 5u * kPerEpoch);
  ExpectEachReadingOnce(9);
  EXPECT_EQ(Int("SELECT checkpoint_id FROM air.sink_checkpoints"), 9);
  EXPECT_EQ(Committed(), 9u * kPerEpoch);

  // The record of checkpoint 9 holds what its commit counted: the drained checkpoints
  // with its own, so a recovery from it restores the ledger exactly.
  std::unique_ptr<Sink> again = Make();
  ASSERT_TRUE(again->Open(ctx_).ok());
  rec = again->OpenCheckpoints();
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->checkpoint, 9u);
  EXPECT_EQ(Rows(*rec), 6u * kPerEpoch);
  again->Close();
}

TEST_F(BreakerCheckpointTest, BufferedCheckpointsSurviveARestartWhileTheServerIsDown) {
  ASSERT_NO_FATAL_FAILURE(KilledDuringAnOutage());
  // The next start, the server still down: the sink is at checkpoint 3, whose commit
  // counted nothing (its rows are in the buffer).
  Ledger restarted;
  ctx_.ledger = &restarted;
  std::unique_ptr<Sink> sink = Make();
  ASSERT_TRUE(sink->Open(ctx_).ok()) << "an unreachable server does not stop the start";
  Result<SinkCheckpointRecord> rec = sink->OpenCheckpoints();
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->checkpoint, 3u);
  EXPECT_EQ(Rows(*rec), 0u);
  EXPECT_EQ(SinkHealthSnapshot()["warehouse"].buffered_rows, 2u * kPerEpoch);

  std::string err = server_.Start();
  ASSERT_EQ(err, "") << err;
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  Epoch(*sink, 4);
  sink->Close();
  ExpectEachReadingOnce(4);
  EXPECT_EQ(Int("SELECT checkpoint_id FROM air.sink_checkpoints"), 4);
  auto snap = restarted.Snapshot();
  EXPECT_EQ(snap.sink_committed["warehouse/readings"], 3u * kPerEpoch);
}

// A buffer left by an earlier run, the server up at the next start: the new epoch is
// held back until the buffered checkpoints are committed, each with its own rows.
TEST_F(BreakerCheckpointTest, BufferedCheckpointsAreCommittedAloneBeforeTheNextOne) {
  ASSERT_NO_FATAL_FAILURE(KilledDuringAnOutage());
  std::string err = server_.Start();
  ASSERT_EQ(err, "") << err;
  Ledger restarted;
  ctx_.ledger = &restarted;
  std::unique_ptr<Sink> sink = Make();
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Result<SinkCheckpointRecord> rec = sink->OpenCheckpoints();
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->checkpoint, 3u);
  Epoch(*sink, 4);
  sink->Close();
  ExpectEachReadingOnce(4);
  EXPECT_EQ(Int("SELECT checkpoint_id FROM air.sink_checkpoints"), 4);
  EXPECT_EQ(Int("SELECT readings FROM air.sink_checkpoints"), kPerEpoch)
      << "checkpoint 4's commit holds its own rows, not those of 2 and 3 nor they its";
  EXPECT_EQ(restarted.Snapshot().sink_committed["warehouse/readings"], 3u * kPerEpoch);
}

// The server committed a checkpoint the buffer file does not know of (the process
// stopped between the two): after a restart with the server down the checkpoint is
// committed again, into the buffer; once the server is back its record shows it holds
// that checkpoint, which is then dropped from the buffer and counted once.
TEST_F(BreakerCheckpointTest, ACheckpointTheServerAlreadyHoldsIsNotStoredTwice) {
  {
    std::unique_ptr<Sink> sink = Make();
    ASSERT_TRUE(sink->Open(ctx_).ok());
    ASSERT_TRUE(sink->OpenCheckpoints().ok());
    Epoch(*sink, 1);
    sink->Close();
  }
  {
    Ledger other;
    RunContext bare_ctx = ctx_;
    bare_ctx.ledger = &other;
    std::unique_ptr<Sink> bare = Make(/*breaker=*/false);
    ASSERT_TRUE(bare->Open(bare_ctx).ok());
    ASSERT_TRUE(bare->OpenCheckpoints().ok());
    Epoch(*bare, 2);
    bare->Close();
  }
  server_.Stop();
  Ledger restarted;
  ctx_.ledger = &restarted;
  std::unique_ptr<Sink> sink = Make();
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Result<SinkCheckpointRecord> rec = sink->OpenCheckpoints();
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->checkpoint, 1u) << "the buffer file's record; the server is unreachable";
  Epoch(*sink, 2);  // recovery commits checkpoint 2 again from the epoch log
  EXPECT_EQ(SinkHealthSnapshot()["warehouse"].buffered_rows, 1u * kPerEpoch);
  std::string err = server_.Start();
  ASSERT_EQ(err, "") << err;
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  Epoch(*sink, 3);
  SinkHealth after = SinkHealthSnapshot()["warehouse"];
  sink->Close();
  EXPECT_EQ(after.buffered_rows, 0u);
  ExpectEachReadingOnce(3);
  EXPECT_EQ(Int("SELECT checkpoint_id FROM air.sink_checkpoints"), 3);
  auto snap = restarted.Snapshot();
  EXPECT_EQ(snap.sink_committed["warehouse/readings"], 2u * kPerEpoch)
      << "checkpoint 2 counted once (from the server's record), then checkpoint 3";
}

TEST_F(BreakerCheckpointTest, ASinkTypeWithoutCheckpointsIsRefusedByName) {
  YAML::Node node =
      YAML::Load("{name: tsdb, type: influx, url: 'http://127.0.0.1:1', database: air}");
  node["breaker_buffer"] = dir_.File("tsdb.buffer.sqlite");
  SinkEntry e;
  e.name = "tsdb";
  e.type = "influx";
  const SectionSpec* spec = Registry::Get().SinkSpec("influx");
  ASSERT_NE(spec, nullptr);
  e.options = OptionReader(node, "pipeline.yaml", "sinks[0]", {&SinkCommonSpec(), spec});
  Result<std::unique_ptr<Sink>> sink = Registry::Get().MakeSink(e);
  ASSERT_TRUE(sink.ok()) << sink.status().ToString();
  ASSERT_TRUE((*sink)->Open(ctx_).ok());
  Result<SinkCheckpointRecord> rec = (*sink)->OpenCheckpoints();
  ASSERT_FALSE(rec.ok());
  EXPECT_NE(rec.status().message().find("checkpoints"), std::string::npos)
      << rec.status().message();
  (*sink)->Close();
}

// `tributary run` with checkpoints every 500 ms, a growing file read by the tail source,
// and two sinks: the local GeoPackage and PostgreSQL behind its breaker. PostgreSQL is
// down for over 10 s while rows keep arriving, and the process is killed with SIGKILL
// during the outage and started again while the server is still down. Afterwards the
// server holds every reading once, the same ones as the GeoPackage, and the ledger
// counts each once for both sinks.
TEST_F(BreakerCheckpointTest, RunKilledDuringAnOutageStoresEveryReadingOnceInPostgres) {
  const std::string data = dir_.File("data");
  const std::string input = dir_.File("in.ndjson");
  const std::string config = dir_.File("run.yaml");
  const std::string log = dir_.File("runs.log");
  WriteFile(input, "");
  WriteFile(config, "pipeline:\n  name: breaker-crash\n  data_dir: " + data +
                        "\nsources:\n  - {name: feed, type: tail, path: " + input +
                        ", poll_interval: 50ms}\n"
                        "sinks:\n  - {name: local, type: sqlite, tables: [readings]}\n"
                        "  - name: warehouse\n    type: postgres\n    schema: air\n"
                        "    tables: [readings]\n    conninfo: \"" +
                        server_.conninfo() +
                        "\"\n    breaker_probe_interval: 200ms\n"
                        "    breaker_probe_interval_max: 1s\n"
                        "checkpoint:\n  enabled: true\n  interval: 500ms\n");
  constexpr int kBursts = 60;
  constexpr int kPerBurst = 100;
  const int64_t base_ms = NowUs() / 1000 - 600'000;
  pid_t pid = SpawnTributaryRun({config}, log);
  ASSERT_GT(pid, 0);
  auto wait_exit = [](pid_t p) {
    int status = 0;
    waitpid(p, &status, 0);
    return status;
  };
  TimeUs outage_started = 0;
  DurationUs outage = 0;
  for (int b = 0; b < kBursts; ++b) {
    std::string lines;
    for (int i = 0; i < kPerBurst; ++i) {
      const int n = b * kPerBurst + i;
      lines += "{\"device_id\":\"dev-" + std::to_string(n % 10) +
               "\",\"sensor_ts\":" + std::to_string(base_ms + 10 * n) +
               ",\"lat\":52.5,\"lon\":13.4,\"pm25\":" + std::to_string(n % 500) + "}\n";
    }
    FILE* f = std::fopen(input.c_str(), "ab");
    ASSERT_NE(f, nullptr);
    std::fwrite(lines.data(), 1, lines.size(), f);
    std::fclose(f);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    if (b == 8) {
      server_.Stop();
      outage_started = NowUs();
    }
    if (b == 25) {  // the process dies during the outage and starts again
      kill(pid, SIGKILL);
      wait_exit(pid);
      pid = SpawnTributaryRun({config}, log);
      ASSERT_GT(pid, 0);
    }
    if (b == 52) {
      outage = NowUs() - outage_started;
      std::string err = server_.Start();
      ASSERT_EQ(err, "") << err;
    }
  }
  EXPECT_GE(outage, 10 * kMicrosPerSecond);
  const int n = kBursts * kPerBurst;
  for (int i = 0; i < 120; ++i) {
    if (Int("SELECT count(*) FROM air.readings") >= n) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  kill(pid, SIGTERM);
  const int status = wait_exit(pid);
  const std::string runs = ReadFile(log);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << runs;
  EXPECT_NE(runs.find("checkpoints go to"), std::string::npos) << runs;
  EXPECT_NE(runs.find("drained"), std::string::npos) << runs;
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), n) << runs;
  EXPECT_EQ(Int("SELECT count(DISTINCT event_time) FROM air.readings"), n);
  const std::string gpkg = data + "/tributary.gpkg";
  EXPECT_EQ(testing::QueryInt(gpkg, "SELECT count(*) FROM readings"), n);
  EXPECT_EQ(testing::QueryInt(gpkg, "SELECT count(DISTINCT event_time_us) FROM readings"), n);
  // The same readings in both: the sums of their values agree.
  EXPECT_EQ(Int("SELECT sum(value)::bigint FROM air.readings"),
            testing::QueryInt(gpkg, "SELECT CAST(sum(value) AS INTEGER) FROM readings"));
  Result<LedgerSnapshot> ledger = ParseLedgerJson(ReadFile(data + "/ledger.json"));
  ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
  EXPECT_TRUE(ledger->balanced());
  EXPECT_EQ(ledger->accepted, static_cast<uint64_t>(n));
  EXPECT_EQ(ledger->sink_committed["warehouse/readings"], static_cast<uint64_t>(n));
  EXPECT_EQ(ledger->sink_committed["local/readings"], static_cast<uint64_t>(n));
}

}  // namespace
}  // namespace tributary
