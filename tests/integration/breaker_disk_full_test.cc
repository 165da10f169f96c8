// A full local buffer of the circuit breaker (io/sinks/breaker_sink.h): the postgres
// sink's server goes down, the breaker buffers into a SQLite file capped with
// `breaker_buffer_max` (PRAGMA max_page_count, so SQLite itself answers SQLITE_FULL as
// on a full disk), and the buffer fills up. The condition must be reported (a
// retryable error naming the file, the health flag, the metric) and everything the
// buffer took must still be there and reach the server once it is back.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <thread>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/registry.h"
#include "core/sink_health.h"
#include "integration/postgres.h"
#include "io/connector.h"
#include "io/sinks/breaker_sink.h"
#include "io/sinks/pg_conn.h"
#include "server/metrics.h"
#include "sink_test_records.h"

namespace tributary {
namespace {

using testing::BareReading;
using testing::kSinkT0;
using testing::PostgresServer;

class BreakerDiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err = server_.Start();
    ASSERT_EQ(err, "") << err;
    ctx_.ledger = &ledger_;
    ctx_.data_dir = dir_.path();
  }

  std::unique_ptr<Sink> MakeSink(const std::string& max) {
    YAML::Node node = YAML::Load(
        "{name: vault, type: postgres, schema: vault, "
        "breaker_probe_interval: 100ms, breaker_probe_interval_max: 200ms}");
    node["conninfo"] = server_.conninfo();
    node["breaker_buffer"] = dir_.File("vault.buffer.sqlite");
    node["breaker_buffer_max"] = max;
    SinkEntry e;
    e.name = "vault";
    e.type = "postgres";
    e.options = OptionReader(node, "pipeline.yaml", "sinks[0]",
                             {&SinkCommonSpec(), Registry::Get().SinkSpec("postgres")});
    EXPECT_TRUE(e.options.CheckKeys().ok());
    Result<std::unique_ptr<Sink>> sink = Registry::Get().MakeSink(e);
    EXPECT_TRUE(sink.ok()) << sink.status().ToString();
    return sink.ok() ? std::move(sink).value() : nullptr;
  }

  static Batch Readings(int first, int n) {
    Batch b;
    for (int k = first; k < first + n; ++k) {
      b.readings.push_back(
          BareReading("node-full", "pm25", kSinkT0 + int64_t{k} * kMicrosPerMilli, k));
    }
    return b;
  }

  PostgresServer server_;
  testing::TempDir dir_;
  Ledger ledger_;
  RunContext ctx_;
};

TEST_F(BreakerDiskFullTest, AFullBufferIsReportedAndKeepsWhatItHolds) {
  std::unique_ptr<Sink> sink = MakeSink("256KiB");
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->Open(ctx_).ok());
  constexpr int kPerBatch = 100;
  int next = 0;
  ASSERT_TRUE(sink->Write(Readings(next, kPerBatch)).ok());
  next += kPerBatch;
  ASSERT_TRUE(sink->Commit().ok());

  server_.Stop();
  // Written while the server is down: the breaker opens and buffers until it is full.
  Status st;
  int accepted_rows = 0;  // rows a Write took since the server went down
  for (int i = 0; i < 2000 && st.ok(); ++i) {
    st = sink->Write(Readings(next, kPerBatch));
    if (st.ok()) {
      accepted_rows += kPerBatch;
      next += kPerBatch;
      if (i % 4 == 3) st = sink->Commit();
    }
  }
  ASSERT_FALSE(st.ok()) << "a 256 KiB buffer never filled up";
  EXPECT_TRUE(st.retryable()) << st.ToString();
  EXPECT_NE(st.message().find("is full"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(dir_.File("vault.buffer.sqlite")), std::string::npos) << st.message();
  SinkHealth h = SinkHealthSnapshot()["vault"];
  EXPECT_TRUE(h.buffer_full);
  EXPECT_EQ(h.state, BreakerState::kOpen);
  EXPECT_GT(accepted_rows, 0);
  std::string metrics = RenderPrometheus(MetricsInput{});
  EXPECT_NE(metrics.find("tributary_sink_buffer_full{sink=\"vault\"} 1"), std::string::npos);

  // What the buffer took is on disk, readable by anyone, and within the cap.
  const int64_t held = testing::QueryInt(dir_.File("vault.buffer.sqlite"),
                                         "SELECT COALESCE(SUM(rows), 0) FROM buffer");
  EXPECT_EQ(held, static_cast<int64_t>(h.buffered_rows));
  EXPECT_EQ(held, accepted_rows) << "every row a Write took is held";
  // Retrying while the server is still down fails the same way, and loses nothing.
  Status again = sink->Write(Readings(next, kPerBatch));
  EXPECT_FALSE(again.ok());
  EXPECT_EQ(testing::QueryInt(dir_.File("vault.buffer.sqlite"),
                              "SELECT COALESCE(SUM(rows), 0) FROM buffer"),
            held);

  // The server comes back: the retried batch goes through after the drain, in order.
  std::string err = server_.Start();
  ASSERT_EQ(err, "") << err;
  Status retried;
  for (int i = 0; i < 100; ++i) {
    retried = sink->Write(Readings(next, kPerBatch));
    if (retried.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(retried.ok()) << retried.ToString();
  next += kPerBatch;
  ASSERT_TRUE(sink->Commit().ok());
  h = SinkHealthSnapshot()["vault"];
  sink->Close();
  EXPECT_FALSE(h.buffer_full);
  EXPECT_EQ(h.state, BreakerState::kClosed);
  EXPECT_EQ(h.buffered_rows, 0u);

  PgConnection db;
  ASSERT_TRUE(db.Connect(server_.conninfo(), "tributary-tests", 5).ok());
  Result<int64_t> rows = db.QueryInt("SELECT count(*) FROM vault.readings");
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(*rows, next) << "every row written, before, during and after the outage";
  Result<int64_t> distinct = db.QueryInt("SELECT count(DISTINCT value) FROM vault.readings");
  ASSERT_TRUE(distinct.ok());
  EXPECT_EQ(*distinct, next);
  EXPECT_EQ(ledger_.Snapshot().sink_committed["vault/readings"], static_cast<uint64_t>(next));
}

TEST(BreakerOptionsTest, BufferMaxIsASize) {
  auto read = [](const std::string& max) {
    YAML::Node node = YAML::Load("{name: v, type: postgres, conninfo: 'host=x'}");
    node["breaker_buffer_max"] = max;
    OptionReader r(node, "p.yaml", "sinks[0]",
                   {&SinkCommonSpec(), Registry::Get().SinkSpec("postgres")});
    return ReadBreakerOptions(r);
  };
  Result<BreakerOptions> o = read("1GiB");
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->buffer_max_bytes, 1ull << 30);
  o = read("4KiB");
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("breaker_buffer_max"), std::string::npos);
  o = read("big");
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("breaker_buffer_max"), std::string::npos);
}

}  // namespace
}  // namespace tributary
