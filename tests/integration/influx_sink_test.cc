// The influx sink against a real influxd 1.6 on a free loopback port.
#include "io/sinks/influx_sink.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <thread>

#include "core/ledger.h"
#include "core/registry.h"
#include "core/sink_health.h"
#include "sink_test_records.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::FullReading;
using testing::kSinkT0;

// influxd with a temporary config: HTTP and RPC on free loopback ports, meta, data and
// WAL in a temporary folder, usage reporting and self-monitoring off.
class InfluxServer {
 public:
  InfluxServer() : port_(testing::FreeLoopbackPort()) {
    std::string d = dir_.path();
    testing::WriteFile(
        dir_.File("influxdb.conf"),
        "reporting-disabled = true\nbind-address = \"127.0.0.1:" +
            std::to_string(testing::FreeLoopbackPort()) + "\"\n[meta]\n  dir = \"" + d +
            "/meta\"\n[data]\n  dir = \"" + d + "/data\"\n  wal-dir = \"" + d +
            "/wal\"\n[monitor]\n  store-enabled = false\n[http]\n  bind-address = \"127.0.0.1:" +
            std::to_string(port_) + "\"\n  log-enabled = false\n");
  }
  ~InfluxServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  std::string Start() {
    if (::access("/usr/bin/influxd", X_OK) != 0) return "influxd is not installed";
    std::string conf = dir_.File("influxdb.conf");
    std::string log = dir_.File("influxd.log");
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      ::execl("/usr/bin/influxd", "influxd", "-config", conf.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    httplib::Client c("127.0.0.1", port_);
    for (int i = 0; i < 400; ++i) {
      auto r = c.Get("/ping");
      if (r && r->status == 204) return "";
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return "influxd did not answer /ping: " + testing::ReadFile(log);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // The JSON answer of an InfluxQL query.
  std::string Query(const std::string& db, const std::string& q) const {
    httplib::Client c("127.0.0.1", port_);
    auto r = c.Get("/query", httplib::Params{{"db", db}, {"q", q}}, httplib::Headers{});
    return r ? r->body : "<no answer>";
  }

 private:
  testing::TempDir dir_;
  int port_;
  pid_t pid_ = -1;
};

TEST(InfluxSinkTest, WritesReadingsAndWindowsOnceWithProvenance) {
  InfluxServer server;
  std::string err = server.Start();
  ASSERT_EQ(err, "") << err;
  InfluxSinkOptions o;
  o.name = "tsdb";
  o.url = server.url();
  o.database = "air";
  o.batch_lines = 7;  // several requests per commit
  Ledger ledger;
  RunContext ctx;
  ctx.ledger = &ledger;

  Batch b;
  b.readings.push_back(FullReading());
  for (int i = 0; i < 20; ++i) {
    b.readings.push_back(
        testing::BareReading("node 2,a", "no2", kSinkT0 + i * kMicrosPerSecond, i));
  }
  WindowResult w;
  w.window = Intern("zone_15m");
  w.group_by = Intern("zone");
  w.group = Intern("zone-a");
  w.metric = Intern("pm25");
  w.start = kSinkT0;
  w.end = kSinkT0 + 15 * kMicrosPerMinute;
  w.count = 42;
  w.mean = 11.5;
  w.flags = static_cast<uint32_t>(WindowFlag::kSparse);
  b.windows.push_back(w);

  for (int round = 0; round < 2; ++round) {  // the second round re-delivers everything
    auto sink = MakeInfluxSink(o);
    Status st = sink->Open(ctx);
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_TRUE(sink->Write(b).ok());
    st = sink->Commit();
    ASSERT_TRUE(st.ok()) << st.ToString();
    sink->Close();
  }
  EXPECT_NE(server.Query("air", "SELECT count(value) FROM readings")
                .find("[\"1970-01-01T00:00:00Z\",21]"),
            std::string::npos)
      << server.Query("air", "SELECT count(value) FROM readings");
  std::string one = server.Query(
      "air", "SELECT value, qc_flags, provenance FROM readings WHERE device = 'node-17'");
  EXPECT_NE(one.find("2024-05-01T12:00:00.123456Z"), std::string::npos) << one;
  EXPECT_NE(one.find("12.5"), std::string::npos) << one;
  EXPECT_NE(one.find("CALIBRATED|CRS_TRANSFORMED"), std::string::npos) << one;
  EXPECT_NE(one.find("firmware_version"), std::string::npos) << one;
  std::string tagged =
      server.Query("air", "SELECT count(value) FROM readings WHERE device = 'node 2,a'");
  EXPECT_NE(tagged.find(",20]"), std::string::npos) << tagged;
  std::string win = server.Query("air", "SELECT \"count\", mean, quality_flags FROM windows");
  EXPECT_NE(win.find("[\"2024-05-01T12:00:00Z\",42,11.5,\"SPARSE\"]"), std::string::npos) << win;
  auto snap = ledger.Snapshot();
  EXPECT_EQ(snap.sink_committed["tsdb/readings"], 42u) << "lines accepted, both rounds";
  EXPECT_EQ(snap.sink_committed["tsdb/windows"], 2u);
}

TEST(InfluxSinkTest, AnUnreachableServerIsRetryable) {
  InfluxSinkOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  o.database = "air";
  o.timeout = kMicrosPerSecond;
  RunContext ctx;
  auto sink = MakeInfluxSink(o);
  Status st = sink->Open(ctx);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(st.retryable()) << st.ToString();
}

TEST(InfluxSinkTest, EscapesTagsAndDropsMissingFields) {
  Reading r = testing::BareReading("a b,c=d", "pm25", 5, NAN);
  EXPECT_EQ(InfluxReadingLine(r),
            "readings,device=a\\ b\\,c\\=d,metric=pm25 qc_flags=\"\",provenance="
            "\"{\\\"device_id\\\":\\\"a b,c=d\\\",\\\"qc_flags\\\":[]}\" 5");
  r.qc_score = 1.5f;  // scored by QC: the field appears
  EXPECT_NE(InfluxReadingLine(r).find(" qc_score=1.5,qc_flags="), std::string::npos)
      << InfluxReadingLine(r);
}

TEST(InfluxSinkTest, BuffersWhileTheServerIsDownAndDrainsWhenItComesUp) {
  InfluxServer server;
  testing::TempDir data;
  YAML::Node node = YAML::Load(
      "{name: tsdb-breaker, type: influx, database: air, breaker_probe_interval: 100ms, "
      "breaker_probe_interval_max: 200ms}");
  node["url"] = server.url();
  SinkEntry e;
  e.name = "tsdb-breaker";
  e.type = "influx";
  e.options =
      OptionReader(node, "pipeline.yaml", "sinks[0]", {&SinkCommonSpec(), &InfluxSinkSpec()});
  ASSERT_TRUE(e.options.CheckKeys().ok());
  Result<std::unique_ptr<Sink>> made = Registry::Get().MakeSink(e);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  std::unique_ptr<Sink> sink = std::move(made).value();
  Ledger ledger;
  RunContext ctx;
  ctx.ledger = &ledger;
  ctx.data_dir = data.path();
  ASSERT_TRUE(sink->Open(ctx).ok()) << "a server that is down does not stop the run";
  Batch b;
  for (int i = 0; i < 30; ++i) {
    b.readings.push_back(testing::BareReading("n1", "pm25", kSinkT0 + i * kMicrosPerSecond, i));
  }
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  EXPECT_EQ(SinkHealthSnapshot()["tsdb-breaker"].state, BreakerState::kOpen);
  EXPECT_EQ(SinkHealthSnapshot()["tsdb-breaker"].buffered_rows, 30u);
  std::string err = server.Start();
  ASSERT_EQ(err, "") << err;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();
  EXPECT_EQ(SinkHealthSnapshot()["tsdb-breaker"].state, BreakerState::kClosed);
  EXPECT_EQ(SinkHealthSnapshot()["tsdb-breaker"].buffered_rows, 0u);
  EXPECT_EQ(ledger.Snapshot().sink_committed["tsdb-breaker/readings"], 30u);
  std::string n = server.Query("air", "SELECT count(value) FROM readings");
  EXPECT_NE(n.find(",30]"), std::string::npos) << n;
}

}  // namespace
}  // namespace tributary
