// The HTTP API over real loopback HTTP: a bounded simulator run with the server on.
#include "server/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <simdjson.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "core/pipeline_config.h"
#include "core/stage_metrics.h"
#include "stream/runtime.h"
#include "test_util.h"

extern char** environ;

namespace tributary {
namespace {

constexpr const char* kToken = "s3cret-token";

std::string PipelineYaml(const std::string& data_dir, int port) {
  return R"(pipeline:
  name: server-test
  data_dir: )" +
         data_dir + R"(
processing:
  grace: 15m
sources:
  - name: sim
    type: simulator
    seed: 7
    devices: 20
    start: 2024-05-01T00:00:00Z
    duration: 3h
    as_fast_as_possible: true
windows:
  - name: device_1m
    type: tumbling
    size: 1m
    group_by: device
    aggregates: [count, mean, min, max]
  - name: district_5m
    type: tumbling
    size: 5m
    group_by: zone
    metrics: [pm25]
    aggregates: [count, mean]
zones:
  layers:
    - name: district
      path: builtin:city_districts
      id_field: district_id
      name_field: name
sinks:
  - name: local
    type: sqlite
server:
  listen: 127.0.0.1:)" +
         std::to_string(port) + R"(
  token: )" +
         kToken +
         R"(
  replay_buffer: 1000000
  max_windows: 1000000
  summary_interval: 0s
)";
}

httplib::Headers Auth() {
  return {{"Authorization", std::string("Bearer ") + kToken}};
}

/// An SSE client: collects (id, event) pairs until `want` were read or the stream ends.
struct SseRead {
  int status = 0;
  std::vector<std::pair<uint64_t, std::string>> events;
};

SseRead ReadEvents(int port, size_t want, const std::string& last_event_id,
                   std::atomic<bool>* connected = nullptr) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(std::chrono::seconds(20));
  httplib::Headers headers = Auth();
  if (!last_event_id.empty()) headers.emplace("Last-Event-ID", last_event_id);
  SseRead out;
  std::string buffer;
  uint64_t id = 0;
  auto res = cli.Get(
      "/api/events", headers,
      [&](const httplib::Response& r) {
        out.status = r.status;
        if (connected != nullptr) connected->store(true);
        return true;
      },
      [&](const char* data, size_t n) {
        buffer.append(data, n);
        size_t end;
        while ((end = buffer.find("\n\n")) != std::string::npos) {
          std::istringstream block(buffer.substr(0, end));
          buffer.erase(0, end + 2);
          std::string line;
          std::string type;
          bool has_id = false;
          while (std::getline(block, line)) {
            if (line.rfind("id: ", 0) == 0) {
              id = std::stoull(line.substr(4));
              has_id = true;
            } else if (line.rfind("event: ", 0) == 0) {
              type = line.substr(7);
            }
          }
          if (has_id) out.events.emplace_back(id, type);
          if (out.events.size() >= want) return false;
        }
        return true;
      });
  (void)res;
  return out;
}

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    port_ = testing::FreeLoopbackPort();
    Result<PipelineConfig> config = ParsePipelineConfig(PipelineYaml(dir_->path(), port_), "t");
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    Result<ServerOptions> options = ReadServerOptions(*config);
    ASSERT_TRUE(options.ok()) << options.status().ToString();
    Result<std::unique_ptr<Pipeline>> pipeline = Pipeline::Build(*config);
    ASSERT_TRUE(pipeline.ok()) << pipeline.status().ToString();
    pipeline_ = std::move(pipeline).value().release();
    Result<std::unique_ptr<ApiServer>> server = ApiServer::Start(*pipeline_, *options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value().release();
    ASSERT_EQ(server_->port(), port_);

    // A live client subscribed before the run starts sees events as they happen.
    httplib::Client cli("127.0.0.1", port_);
    auto ready = cli.Get("/readyz");
    ASSERT_TRUE(ready);
    ready_before_run_ = ready->status;
    std::atomic<bool> connected{false};
    std::thread live([&] { live_ = new SseRead(ReadEvents(port_, 50, "", &connected)); });
    for (int i = 0; i < 500 && !connected.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    run_status_ = new Status(pipeline_->Run());
    live.join();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete pipeline_;
    delete live_;
    delete run_status_;
    delete dir_;
  }

  static std::string Get(const std::string& path, int expect_status = 200) {
    httplib::Client cli("127.0.0.1", port_);
    auto res = cli.Get(path, Auth());
    EXPECT_TRUE(res) << path;
    if (!res) return {};
    EXPECT_EQ(res->status, expect_status) << path << ": " << res->body;
    return res->body;
  }

  static testing::TempDir* dir_;
  static int port_;
  static Pipeline* pipeline_;
  static ApiServer* server_;
  static SseRead* live_;
  static Status* run_status_;
  static int ready_before_run_;
  simdjson::dom::parser parser_;
};

testing::TempDir* ServerTest::dir_ = nullptr;
int ServerTest::port_ = 0;
Pipeline* ServerTest::pipeline_ = nullptr;
ApiServer* ServerTest::server_ = nullptr;
SseRead* ServerTest::live_ = nullptr;
Status* ServerTest::run_status_ = nullptr;
int ServerTest::ready_before_run_ = 0;

TEST_F(ServerTest, RunSucceedsAndReadinessFollowsIt) {
  ASSERT_TRUE(run_status_->ok()) << run_status_->ToString();
  EXPECT_EQ(ready_before_run_, 503);
  httplib::Client cli("127.0.0.1", port_);
  auto healthz = cli.Get("/healthz");
  ASSERT_TRUE(healthz);
  EXPECT_EQ(healthz->status, 200);
  auto ready = cli.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);  // the bounded run has ended
}

TEST_F(ServerTest, LedgerBalances) {
  std::string body = Get("/api/ledger");
  Result<LedgerSnapshot> ledger = ParseLedgerJson(body);
  ASSERT_TRUE(ledger.ok()) << body;
  EXPECT_GT(ledger->input, 10000u);
  EXPECT_GT(ledger->quarantined, 0u);
  EXPECT_TRUE(ledger->balanced()) << body;
  EXPECT_EQ(ledger->input, pipeline_->LedgerNow().input);
}

TEST_F(ServerTest, SensorsListDevicesWithPositions) {
  std::string body = Get("/api/sensors");
  simdjson::dom::element doc = parser_.parse(body);
  simdjson::dom::array sensors = doc["sensors"].get_array();
  std::set<std::string> devices;
  size_t with_position = 0;
  for (simdjson::dom::element s : sensors) {
    devices.insert(std::string(std::string_view(s["device"])));
    std::string_view status = s["status"];
    EXPECT_TRUE(status == "ok" || status == "stale" || status == "quarantining") << status;
    if (s["lat"].is_null()) {
      // Known only from quarantine records: no accepted reading, so no position.
      EXPECT_EQ(int64_t(s["readings"]), 0);
      EXPECT_GT(int64_t(s["quarantined"]), 0);
      continue;
    }
    ++with_position;
    EXPECT_NEAR(double(s["lat"]), 52.52, 0.5);
    EXPECT_NEAR(double(s["lon"]), 13.40, 0.5);
    EXPECT_GT(s["metrics"].get_object().size(), 0u);
    EXPECT_GT(int64_t(s["readings"]), 0);
  }
  EXPECT_GE(with_position, 18u);  // 20 devices; an outage may hide one or two
  EXPECT_EQ(devices.size(), sensors.size());
}

TEST_F(ServerTest, WindowsFilterByMetricAndTimeRange) {
  std::string all_body = Get("/api/windows?metric=temperature&limit=10000");
  simdjson::dom::element all = parser_.parse(all_body);
  size_t expected = 0;
  for (simdjson::dom::element w : all["windows"].get_array()) {
    EXPECT_EQ(std::string_view(w["metric"]), "temperature");
    std::string_view start = w["start"];
    if (start >= "2024-05-01T01:00:00" && start < "2024-05-01T02:00:00") ++expected;
  }
  ASSERT_GT(expected, 0u);
  std::string body =
      Get("/api/windows?metric=temperature&from=2024-05-01T01:00:00Z&to=2024-05-01T02:00:00Z"
          "&limit=10000");
  simdjson::dom::parser p2;
  simdjson::dom::element doc = p2.parse(body);
  simdjson::dom::array windows = doc["windows"].get_array();
  EXPECT_EQ(windows.size(), expected);
  EXPECT_EQ(uint64_t(doc["count"]), expected);
  for (simdjson::dom::element w : windows) {
    EXPECT_EQ(std::string_view(w["metric"]), "temperature");
    EXPECT_EQ(std::string_view(w["window"]), "device_1m");
    std::string_view start = w["start"];
    EXPECT_GE(start, "2024-05-01T01:00:00");
    EXPECT_LT(start, "2024-05-01T02:00:00");
  }
  Get("/api/windows?from=yesterday", 400);
  Get("/api/windows?limit=0", 400);
}

TEST_F(ServerTest, QuarantineHasReasonsAndRespectsTheLimit) {
  std::string body = Get("/api/quarantine?limit=5");
  simdjson::dom::element doc = parser_.parse(body);
  simdjson::dom::array records = doc["records"].get_array();
  EXPECT_EQ(records.size(), 5u);
  for (simdjson::dom::element r : records) {
    EXPECT_FALSE(std::string_view(r["reason"]).empty());
    EXPECT_FALSE(std::string_view(r["detail"]).empty());
  }
}

TEST_F(ServerTest, MetricsEqualTheLedger) {
  httplib::Client cli("127.0.0.1", port_);
  auto res = cli.Get("/metrics");  // open without a token
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  std::map<std::string, uint64_t> samples;
  std::istringstream in(res->body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t sp = line.rfind(' ');
    samples[line.substr(0, sp)] = static_cast<uint64_t>(std::stod(line.substr(sp + 1)));
  }
  LedgerSnapshot l = pipeline_->LedgerNow();
  EXPECT_EQ(samples.at("tributary_records_input_total"), l.input);
  EXPECT_EQ(samples.at("tributary_records_total{outcome=\"accepted\"}"), l.accepted);
  EXPECT_EQ(samples.at("tributary_records_total{outcome=\"quarantined\"}"), l.quarantined);
  EXPECT_EQ(samples.at("tributary_records_total{outcome=\"late\"}"), l.late);
  EXPECT_EQ(samples.at("tributary_records_total{outcome=\"duplicate\"}"), l.duplicate);
  EXPECT_EQ(samples.at("tributary_windows_emitted_total"), l.windows_emitted);
  ASSERT_FALSE(l.quarantine_reasons.empty());
  for (const auto& [reason, n] : l.quarantine_reasons) {
    EXPECT_EQ(samples.at("tributary_quarantined_total{reason=\"" + reason + "\"}"), n) << reason;
  }
  EXPECT_EQ(samples.count("tributary_queue_depth{queue=\"raw\"}"), 1u);
  EXPECT_EQ(samples.count("tributary_watermark_lag_seconds"), 1u);
  EXPECT_GT(samples.at("process_resident_memory_bytes"), 1000000u);
}

TEST_F(ServerTest, HealthReportsWatermarkAndQueues) {
  simdjson::dom::element doc = parser_.parse(Get("/api/health"));
  EXPECT_FALSE(bool(doc["running"]));
  std::string_view watermark = doc["watermark"];
  EXPECT_EQ(watermark.substr(0, 10), "2024-05-01");
  EXPECT_EQ(uint64_t(doc["queues"]["raw"]), 0u);
}

TEST_F(ServerTest, OpenApiListsEveryPath) {
  simdjson::dom::element doc = parser_.parse(Get("/api/openapi.json"));
  EXPECT_EQ(std::string_view(doc["openapi"]).substr(0, 2), "3.");
  simdjson::dom::object paths = doc["paths"];
  for (const char* path :
       {"/api/sensors", "/api/windows", "/api/quarantine", "/api/ledger", "/api/health",
        "/api/events", "/api/surface/latest", "/api/openapi.json", "/api/zones", "/api/alerts",
        "/api/forecast", "/healthz", "/readyz", "/metrics"}) {
    EXPECT_EQ(paths[path].error(), simdjson::SUCCESS) << path;
  }
  // The live stream's filter parameters are described.
  std::set<std::string> params;
  for (simdjson::dom::element p : paths["/api/events"]["get"]["parameters"].get_array()) {
    params.insert(std::string(std::string_view(p["name"])));
  }
  for (const char* name : {"Last-Event-ID", "last_event_id", "types", "group_by", "groups"}) {
    EXPECT_EQ(params.count(name), 1u) << name;
  }
}

TEST_F(ServerTest, SurfaceOfAnUnknownEntryIs404) {
  std::string body = Get("/api/surface/latest?name=no-such-surface", 404);
  EXPECT_NE(body.find("no surface"), std::string::npos);
}

TEST_F(ServerTest, TokenIsEnforcedOnApiOnly) {
  httplib::Client cli("127.0.0.1", port_);
  auto none = cli.Get("/api/ledger");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  auto wrong = cli.Get("/api/ledger", {{"Authorization", "Bearer nope"}});
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  auto events = cli.Get("/api/events");
  ASSERT_TRUE(events);
  EXPECT_EQ(events->status, 401);
  for (const char* open : {"/healthz", "/metrics"}) {
    auto res = cli.Get(open);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << open;
  }
}

TEST_F(ServerTest, OnlyGetIsAllowed) {
  httplib::Client cli("127.0.0.1", port_);
  auto res = cli.Post("/api/ledger", Auth(), "{}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  auto del = cli.Delete("/healthz");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 405);
}

TEST_F(ServerTest, LiveEventsArriveWithIncreasingIds) {
  ASSERT_EQ(live_->status, 200);
  ASSERT_EQ(live_->events.size(), 50u);
  for (size_t i = 1; i < live_->events.size(); ++i) {
    EXPECT_EQ(live_->events[i].first, live_->events[i - 1].first + 1);
  }
}

TEST_F(ServerTest, ReconnectWithLastEventIdResumesWithoutGaps) {
  const uint64_t last = server_->events().last_id();
  ASSERT_GT(last, 600u);
  SseRead first = ReadEvents(port_, 300, "0");
  ASSERT_EQ(first.status, 200);
  ASSERT_EQ(first.events.size(), 300u);
  EXPECT_EQ(first.events.front().first, 1u);
  // Resume after the last id seen: every later event arrives, in order, none missing.
  const uint64_t resume = first.events.back().first;
  SseRead rest = ReadEvents(port_, last - resume, std::to_string(resume));
  ASSERT_EQ(rest.events.size(), last - resume);
  EXPECT_EQ(rest.events.front().first, resume + 1);
  EXPECT_EQ(rest.events.back().first, last);
  std::map<std::string, uint64_t> types;
  for (const auto& e : first.events) ++types[e.second];
  for (size_t i = 0; i < rest.events.size(); ++i) {
    if (i > 0) {
      EXPECT_EQ(rest.events[i].first, rest.events[i - 1].first + 1);
    }
    ++types[rest.events[i].second];
  }
  LedgerSnapshot l = pipeline_->LedgerNow();
  EXPECT_EQ(types["window"], l.windows_emitted);
  EXPECT_EQ(types["quarantine"], l.quarantined);
  EXPECT_GT(types["reading_summary"], 0u);
  EXPECT_EQ(types["window"] + types["quarantine"] + types["reading_summary"] + types["summary"],
            last);
}

/// Events of a filtered stream with their data: `query` is the part after `?`.
struct SseData {
  int status = 0;
  std::string body;
  std::vector<std::tuple<uint64_t, std::string, std::string>> events;  // id, type, data
};

SseData ReadFiltered(int port, const std::string& query, size_t want) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(std::chrono::seconds(5));
  SseData out;
  std::string buffer;
  auto res = cli.Get(
      "/api/events?" + query, Auth(),
      [&](const httplib::Response& r) {
        out.status = r.status;
        return true;
      },
      [&](const char* data, size_t n) {
        if (out.status != 200) {
          out.body.append(data, n);
          return true;
        }
        buffer.append(data, n);
        size_t end;
        while ((end = buffer.find("\n\n")) != std::string::npos) {
          std::istringstream block(buffer.substr(0, end));
          buffer.erase(0, end + 2);
          std::string line, type, payload;
          uint64_t id = 0;
          while (std::getline(block, line)) {
            if (line.rfind("id: ", 0) == 0) id = std::stoull(line.substr(4));
            if (line.rfind("event: ", 0) == 0) type = line.substr(7);
            if (line.rfind("data: ", 0) == 0) payload = line.substr(6);
          }
          if (id != 0) out.events.emplace_back(id, type, payload);
          if (out.events.size() >= want) return false;
        }
        return true;
      });
  (void)res;
  return out;
}

TEST_F(ServerTest, FilteredStreamResumesWithOnlyTheAskedEvents) {
  // Count what the whole log holds, then ask for summaries and alerts only from id 0.
  SseRead all = ReadEvents(port_, server_->events().last_id(), "0");
  std::map<std::string, uint64_t> types;
  for (const auto& e : all.events) ++types[e.second];
  ASSERT_GT(types["summary"], 1u);
  SseData got = ReadFiltered(port_, "types=summary,alerts&last_event_id=0", types["summary"]);
  ASSERT_EQ(got.status, 200);
  ASSERT_EQ(got.events.size(), types["summary"]);
  std::set<std::string> devices;
  uint64_t readings = 0;
  for (size_t i = 0; i < got.events.size(); ++i) {
    const auto& [id, type, data] = got.events[i];
    EXPECT_EQ(type, "summary");
    if (i > 0) {
      EXPECT_GT(id, std::get<0>(got.events[i - 1]));
    }
    simdjson::dom::parser p;
    simdjson::dom::element doc = p.parse(data);
    readings += uint64_t(doc["readings"]);
    for (simdjson::dom::element s : doc["sensors"].get_array()) {
      devices.insert(std::string(std::string_view(s["device"])));
      std::string_view status = s["status"];
      EXPECT_TRUE(status == "ok" || status == "stale" || status == "quarantining") << status;
      EXPECT_EQ(s["values"].error(), simdjson::SUCCESS);
    }
  }
  // Coalesced: far fewer summaries than readings, yet every device is in one of them.
  EXPECT_GE(devices.size(), 18u);
  EXPECT_LE(readings, pipeline_->LedgerNow().accepted);
  EXPECT_GT(readings, 0u);
  // Resuming after an id continues with the next matching event.
  const uint64_t resume = std::get<0>(got.events.front());
  SseData rest = ReadFiltered(port_, "types=summary&last_event_id=" + std::to_string(resume), 1);
  ASSERT_EQ(rest.events.size(), 1u);
  EXPECT_EQ(std::get<0>(rest.events[0]), std::get<0>(got.events.at(1)));
}

TEST_F(ServerTest, FilteredStreamNarrowsWindowsByGroup) {
  // The zone windows and the per-device windows of one device only.
  SseData got =
      ReadFiltered(port_, "types=windows&group_by=zone&groups=aq-0001&last_event_id=0", 200);
  ASSERT_EQ(got.status, 200);
  ASSERT_EQ(got.events.size(), 200u);
  std::set<std::string> group_bys;
  for (const auto& [id, type, data] : got.events) {
    EXPECT_EQ(type, "window");
    simdjson::dom::parser p;
    simdjson::dom::element w = p.parse(data);
    std::string_view group_by = w["group_by"];
    group_bys.insert(std::string(group_by));
    if (group_by == "device") {
      EXPECT_EQ(std::string_view(w["group"]), "aq-0001");
    }
  }
  EXPECT_EQ(group_bys, (std::set<std::string>{"device", "zone"}));
  SseData bad = ReadFiltered(port_, "types=readings", 1);
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("unknown event type 'readings'"), std::string::npos) << bad.body;
}

TEST_F(ServerTest, ZonesAreGeoJsonPolygonsWithTheirLatestWindow) {
  simdjson::dom::element doc = parser_.parse(Get("/api/zones"));
  EXPECT_EQ(std::string_view(doc["type"]), "FeatureCollection");
  simdjson::dom::array features = doc["features"];
  ASSERT_GT(features.size(), 1u);
  size_t with_value = 0;
  for (simdjson::dom::element f : features) {
    std::string_view type = f["geometry"]["type"];
    EXPECT_TRUE(type == "Polygon" || type == "MultiPolygon") << type;
    simdjson::dom::array rings = type == "Polygon" ? f["geometry"]["coordinates"].get_array()
                                                   : f["geometry"]["coordinates"].at(0).get_array();
    simdjson::dom::array ring = rings.at(0);
    EXPECT_GE(ring.size(), 4u);  // a closed ring
    double lon = double(ring.at(0).at(0));
    double lat = double(ring.at(0).at(1));
    EXPECT_NEAR(lat, 52.52, 1.0);  // x = longitude, y = latitude
    EXPECT_NEAR(lon, 13.40, 1.0);
    EXPECT_EQ(std::string_view(f["properties"]["layer"]), "district");
    EXPECT_EQ(std::string_view(f["properties"]["zone"]), std::string_view(f["id"]));
    if (!f["properties"]["value"].is_null()) {
      ++with_value;
      EXPECT_EQ(std::string_view(f["properties"]["metric"]), "pm25");
      EXPECT_EQ(std::string_view(f["properties"]["window"]), "district_5m");
    }
  }
  EXPECT_GT(with_value, 0u);
}

// /metrics parses as Prometheus text and carries every family the dashboard and the
// Grafana example need.
TEST_F(ServerTest, MetricsParseAndCoverEveryStage) {
  httplib::Client cli("127.0.0.1", port_);
  auto res = cli.Get("/metrics");
  ASSERT_TRUE(res);
  std::map<std::string, std::string> family_type;
  std::map<std::string, double> samples;
  std::istringstream in(res->body);
  std::string line;
  const std::regex sample_re(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? (\S+)$)");
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream t(line.substr(7));
      std::string name, type;
      t >> name >> type;
      EXPECT_EQ(family_type.count(name), 0u) << "TYPE declared twice: " << name;
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
      family_type[name] = type;
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, sample_re)) << "not a sample line: " << line;
    std::string name = m[1];
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      size_t n = std::strlen(suffix);
      if (family_type.count(family) == 0 && name.size() > n &&
          name.compare(name.size() - n, n, suffix) == 0) {
        family = name.substr(0, name.size() - n);
      }
    }
    EXPECT_EQ(family_type.count(family), 1u) << "sample without TYPE: " << line;
    samples[line.substr(0, line.rfind(' '))] = std::stod(m[m.size() - 1]);
  }
  for (const char* family :
       {"tributary_records_input_total", "tributary_records_total", "tributary_queue_depth",
        "tributary_late_fraction", "tributary_quarantine_fraction", "tributary_stage_events_total",
        "tributary_sink_write_seconds", "tributary_sink_commit_seconds",
        "tributary_sink_committed_rows_total", "process_resident_memory_bytes"}) {
    EXPECT_EQ(family_type.count(family), 1u) << family;
  }
  EXPECT_EQ(family_type["tributary_sink_write_seconds"], "histogram");
  // Events per stage: the source's raw messages each hold one or more input records.
  LedgerSnapshot l = pipeline_->LedgerNow();
  double raw = samples.at("tributary_stage_events_total{stage=\"source:sim\"}");
  EXPECT_GT(raw, 0);
  EXPECT_LE(raw, double(l.input));
  EXPECT_GT(samples.at("tributary_stage_events_total{stage=\"ingest\"}"), 0);
  EXPECT_GT(samples.at("tributary_stage_events_total{stage=\"sink:local\"}"), 0);
  // The write histogram is cumulative and its +Inf bucket is the count.
  double previous = 0;
  for (double le : kSinkLatencyBuckets) {
    char key[128];
    std::snprintf(key, sizeof key, "tributary_sink_write_seconds_bucket{sink=\"local\",le=\"%g\"}",
                  le);
    double v = samples.at(key);
    EXPECT_GE(v, previous) << key;
    previous = v;
  }
  double count = samples.at("tributary_sink_write_seconds_count{sink=\"local\"}");
  EXPECT_GT(count, 0);
  EXPECT_EQ(samples.at("tributary_sink_write_seconds_bucket{sink=\"local\",le=\"+Inf\"}"), count);
  EXPECT_GE(count, previous);
  EXPECT_GT(samples.at("tributary_sink_commit_seconds_count{sink=\"local\"}"), 0);
}

TEST(ServerOptions, ListenParsesAndOverrides) {
  Result<PipelineConfig> config =
      ParsePipelineConfig("sources: [{name: s, type: simulator}]\n", "t");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  Result<ServerOptions> defaults = ReadServerOptions(*config);
  ASSERT_TRUE(defaults.ok());
  EXPECT_TRUE(defaults->enabled);
  EXPECT_FALSE(defaults->listen_explicit);
  EXPECT_EQ(defaults->host, "127.0.0.1");
  EXPECT_EQ(defaults->port, 8080);
  EXPECT_EQ(defaults->replay_buffer, 10000u);
  Result<ServerOptions> off = ReadServerOptions(*config, "off");
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->enabled);
  Result<ServerOptions> other = ReadServerOptions(*config, "0.0.0.0:9000");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->host, "0.0.0.0");
  EXPECT_EQ(other->port, 9000);
  EXPECT_TRUE(other->listen_explicit);
  EXPECT_FALSE(ReadServerOptions(*config, "localhost:99999").ok());
  EXPECT_FALSE(ReadServerOptions(*config, "nohost").ok());
  EXPECT_FALSE(
      ParsePipelineConfig("sources: [{name: s, type: simulator}]\nserver: {lisen: x}\n", "t").ok());
}

// `tributary run --listen` answers /healthz while running and stops cleanly on SIGINT.
TEST(ServerEndToEnd, RunAnswersHealthzWhileRunning) {
  testing::TempDir dir;
  int port = testing::FreeLoopbackPort();
  std::vector<std::string> args = {TRIBUTARY_BINARY, "run",
                                   "--duration",     "3s",
                                   "--listen",       "127.0.0.1:" + std::to_string(port),
                                   "--data-dir",     dir.path(),
                                   "--quiet"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ), 0);
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(std::chrono::milliseconds(200));
  int healthz = 0;
  int readyz = 0;
  for (int i = 0; i < 100 && (healthz != 200 || readyz != 200); ++i) {
    if (auto res = cli.Get("/healthz")) healthz = res->status;
    if (auto res = cli.Get("/readyz")) readyz = res->status;
    if (healthz != 200 || readyz != 200) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(healthz, 200);
  EXPECT_EQ(readyz, 200);
  kill(pid, SIGINT);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(cli.Get("/healthz"));  // the server is gone with the process
}

}  // namespace
}  // namespace tributary
