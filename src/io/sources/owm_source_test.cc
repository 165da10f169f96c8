// The `owm` source against a local HTTP server that serves recorded OpenWeatherMap
// responses (examples/payloads/owm*.json): the request it makes, skipping a city the
// server does not know, backoff on 429 (with Retry-After) and on a dead server, the key
// from the environment, and a pipeline run that stores the decoded readings.
#include "io/sources/owm_source.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "stream/runtime.h"
#include "test_util.h"

namespace tributary {
namespace {

std::string Payload(const std::string& name) {
  return testing::ReadFile(
      (std::filesystem::path(TRIBUTARY_SOURCE_DIR) / "examples/payloads" / name).string());
}

// Answers like api.openweathermap.org/data/2.5/weather for key "k3y"; the first
// `fail_first` requests get 429 (with Retry-After when `retry_after` is set).
class FakeOwm {
 public:
  FakeOwm() {
    server_.Get("/data/2.5/weather", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      std::string q =
          req.has_param("q") ? req.get_param_value("q") : "id=" + req.get_param_value("id");
      asked_[q]++;
      units_ = req.get_param_value("units");
      if (served_++ < fail_first_) {
        if (!retry_after_.empty()) res.set_header("Retry-After", retry_after_);
        res.status = 429;
        res.set_content(Payload("owm_error_429.json"), "application/json");
        return;
      }
      if (req.get_param_value("appid") != "k3y") {
        res.status = 401;
        res.set_content(Payload("owm_error_401.json"), "application/json");
      } else if (q == "Berlin,DE" || q == "id=2950159") {
        res.set_content(Payload("owm.json"), "application/json");
      } else if (q == "London,GB") {
        res.set_content(Payload("owm_london.json"), "application/json");
      } else {
        res.status = 404;
        res.set_content(Payload("owm_error_404.json"), "application/json");
      }
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ~FakeOwm() {
    server_.stop();
    thread_.join();
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/data/2.5/weather";
  }
  void FailFirst(int n, std::string retry_after = {}) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_first_ = n;
    retry_after_ = std::move(retry_after);
  }
  int asked(const std::string& q) {
    std::lock_guard<std::mutex> lock(mu_);
    return asked_[q];
  }
  int served() {
    std::lock_guard<std::mutex> lock(mu_);
    return served_;
  }
  std::string units() {
    std::lock_guard<std::mutex> lock(mu_);
    return units_;
  }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::map<std::string, int> asked_;
  std::string units_;
  int served_ = 0;
  int fail_first_ = 0;
  std::string retry_after_;
};

OwmSourceOptions Options(const FakeOwm& server) {
  OwmSourceOptions o;
  o.cities = {"Berlin,DE", "Atlantis", "London,GB"};
  o.interval = 3600 * kMicrosPerSecond;
  o.api_key = "k3y";
  o.base_url = server.url();
  o.units = "metric";
  o.timeout = 5 * kMicrosPerSecond;
  o.backoff_min = 50'000;
  o.backoff_max = 200'000;
  return o;
}

std::vector<std::string> PollRecords(OwmSource& s, size_t n, int polls = 200) {
  std::vector<std::string> got;
  for (int i = 0; i < polls && got.size() < n; ++i) {
    RawBatch b;
    EXPECT_TRUE(s.Poll(b, 100, 20'000).ok());
    for (const RawRecord& r : b.records) got.emplace_back(b.Payload(r));
  }
  return got;
}

TEST(OwmSourceTest, PollsEachCityOncePerIntervalAndSkipsUnknownOnes) {
  FakeOwm server;
  OwmSource source(Options(server));
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  RawBatch b;
  ASSERT_TRUE(source.Poll(b, 100, 0).ok());
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b.Payload(b.records[0]), Payload("owm.json"));
  EXPECT_EQ(b.Payload(b.records[1]), Payload("owm_london.json"));
  EXPECT_EQ(b.records[0].topic.view(), "Berlin,DE");
  EXPECT_EQ(b.records[1].topic.view(), "London,GB");
  EXPECT_EQ(server.units(), "metric");
  EXPECT_EQ(server.asked("Atlantis"), 1);
  EXPECT_EQ(source.fetched(), 2u);
  EXPECT_EQ(source.failed(), 1u);
  // The next round is an hour away: nothing is asked meanwhile.
  b.Clear();
  ASSERT_TRUE(source.Poll(b, 100, 10'000).ok());
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(server.served(), 3);
  EXPECT_EQ(source.rounds(), 1u);
}

TEST(OwmSourceTest, BacksOffOn429AndResumesTheRound) {
  FakeOwm server;
  server.FailFirst(2);
  OwmSource source(Options(server));
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  RawBatch b;
  ASSERT_TRUE(source.Poll(b, 100, 0).ok());
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(source.current_backoff(), 50'000);
  // Within the backoff nothing is asked.
  ASSERT_TRUE(source.Poll(b, 100, 0).ok());
  EXPECT_EQ(server.served(), 1);
  std::vector<std::string> got = PollRecords(source, 2);
  EXPECT_EQ(got.size(), 2u);
  EXPECT_EQ(source.failed(), 3u);  // two 429s and Atlantis
  EXPECT_EQ(server.asked("Berlin,DE"), 3);
  EXPECT_EQ(server.asked("London,GB"), 1);
  EXPECT_EQ(source.current_backoff(), 0);
}

TEST(OwmSourceTest, HonoursRetryAfterAndBacksOffWhenTheServerIsDown) {
  FakeOwm server;
  server.FailFirst(1, "1");
  OwmSourceOptions o = Options(server);
  o.backoff_max = 5 * kMicrosPerSecond;
  OwmSource source(o);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  RawBatch b;
  ASSERT_TRUE(source.Poll(b, 100, 0).ok());
  auto after_429 = std::chrono::steady_clock::now();
  EXPECT_EQ(PollRecords(source, 2).size(), 2u);
  // The second request waited for Retry-After (1 s), not for backoff_min (50 ms).
  EXPECT_GE(std::chrono::steady_clock::now() - after_429, std::chrono::milliseconds(900));

  // Nobody listening: a network error backs off and doubles.
  OwmSourceOptions dead = Options(server);
  dead.base_url = "http://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort()) + "/w";
  OwmSource down(dead);
  ASSERT_TRUE(down.Open(ctx).ok());
  for (int i = 0; i < 100 && down.current_backoff() < 200'000; ++i) {
    b.Clear();
    ASSERT_TRUE(down.Poll(b, 100, 20'000).ok());
    EXPECT_TRUE(b.empty());
  }
  EXPECT_EQ(down.current_backoff(), 200'000);  // 50 → 100 → 200 (the maximum)
  EXPECT_GE(down.failed(), 3u);
}

TEST(OwmSourceTest, TakesTheKeyFromTheEnvironment) {
  FakeOwm server;
  OwmSourceOptions o = Options(server);
  o.api_key.clear();
  o.api_key_env = "TRIBUTARY_TEST_OWM_KEY";
  ::unsetenv("TRIBUTARY_TEST_OWM_KEY");
  RunContext ctx;
  {
    OwmSource source(o);
    Status st = source.Open(ctx);
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.ToString().find("TRIBUTARY_TEST_OWM_KEY"), std::string::npos) << st.ToString();
  }
  ::setenv("TRIBUTARY_TEST_OWM_KEY", "wrong", 1);
  {
    OwmSource source(o);
    ASSERT_TRUE(source.Open(ctx).ok());
    RawBatch b;
    ASSERT_TRUE(source.Poll(b, 100, 0).ok());
    EXPECT_TRUE(b.empty());  // 401 for each city: skipped, no records
    EXPECT_EQ(source.failed(), 3u);
  }
  ::setenv("TRIBUTARY_TEST_OWM_KEY", "k3y", 1);
  {
    OwmSource source(o);
    ASSERT_TRUE(source.Open(ctx).ok());
    RawBatch b;
    ASSERT_TRUE(source.Poll(b, 100, 0).ok());
    EXPECT_EQ(b.size(), 2u);
  }
  ::unsetenv("TRIBUTARY_TEST_OWM_KEY");
}

TEST(OwmSourceTest, RejectsBadOptions) {
  auto parse = [](const std::string& yaml) {
    OptionReader r(YAML::Load(yaml), "t.yaml", "sources[0]",
                   {&SourceCommonSpec(), &OwmSourceSectionSpec()});
    return ParseOwmSourceOptions(r);
  };
  EXPECT_TRUE(parse("name: w\ntype: owm\ncities: [Berlin]\n").ok());
  EXPECT_NE(parse("name: w\ntype: owm\n").status().ToString().find("cities"), std::string::npos);
  EXPECT_NE(parse("name: w\ntype: owm\ncity_ids: [x1]\n").status().ToString().find("city_ids"),
            std::string::npos);
  EXPECT_NE(
      parse("name: w\ntype: owm\ncities: [a]\nformat: json\n").status().ToString().find("format"),
      std::string::npos);
  EXPECT_NE(parse("name: w\ntype: owm\ncities: [a]\nbase_url: ftp://x\n")
                .status()
                .ToString()
                .find("base_url"),
            std::string::npos);
}

TEST(OwmRunTest, PipelineStoresDecodedWeather) {
  FakeOwm server;
  testing::TempDir dir;
  Result<PipelineConfig> config = ParsePipelineConfig(
      "pipeline:\n  name: owm-run\n  commit_interval: 100ms\n  data_dir: " + dir.path() +
          "\nsources:\n  - name: weather\n    type: owm\n    cities: ['Berlin,DE']\n"
          "    city_ids: ['2950159']\n    api_key: k3y\n    interval: 1h\n"
          "    base_url: " +
          server.url() + "\nsinks:\n  - name: local\n    type: sqlite\n",
      "owm.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  Result<std::unique_ptr<Pipeline>> built = Pipeline::Build(*config);
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  Status st = (*built)->Run(2 * kMicrosPerSecond);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(server.units(), "standard");
  LedgerSnapshot ledger = (*built)->LedgerNow();
  EXPECT_TRUE(ledger.balanced());
  EXPECT_EQ(ledger.quarantined, 0u);
  EXPECT_GT(ledger.duplicate, 0u);  // Berlin twice (by name and by id): the same readings
  const std::string db = dir.File("tributary.gpkg");
  EXPECT_EQ(testing::QueryInt(db,
                              "SELECT count(*) FROM readings WHERE device_id = 'owm-2950159' "
                              "AND metric = 'temperature' AND abs(value - 12.0) < 0.01"),
            1);
  EXPECT_EQ(testing::QueryInt(db,
                              "SELECT count(*) FROM readings WHERE metric = 'humidity' AND "
                              "value = 81"),
            1);
}

// With checkpoints on, an answer is in the ingest log before it is handed on: a source
// that stops before any checkpoint gives it again after the restart, even though the
// API now refuses every request.
TEST(OwmSourceTest, WithCheckpointsAnswersSurviveARestartInTheIngestLog) {
  FakeOwm server;
  testing::TempDir dir;
  Result<PipelineConfig> config = ParsePipelineConfig(
      "pipeline:\n  name: owm-log\n  data_dir: " + dir.path() +
          "\nsources:\n  - {name: weather, type: owm, cities: ['Berlin,DE', 'London,GB'], "
          "api_key: k3y, interval: 1h, base_url: '" +
          server.url() +
          "'}\n"
          "sinks: []\ncheckpoint: {enabled: true}\n",
      "owm.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  RunContext ctx;
  ctx.config = &*config;
  ctx.data_dir = dir.path();
  ctx.checkpointing = true;
  auto make = [&] {
    Result<OwmSourceOptions> o = ParseOwmSourceOptions(config->sources[0].options);
    EXPECT_TRUE(o.ok());
    o->source_name = "weather";
    return std::make_unique<OwmSource>(*o);
  };
  std::vector<std::string> first;
  {
    auto source = make();
    ASSERT_TRUE(source->Open(ctx).ok());
    EXPECT_TRUE(source->SupportsCheckpoints());
    RawBatch out;
    for (int i = 0; i < 20 && out.records.size() < 2; ++i) {
      ASSERT_TRUE(source->Poll(out, 10, 100 * kMicrosPerMilli).ok());
    }
    ASSERT_EQ(out.records.size(), 2u);
    for (const RawRecord& r : out.records) first.emplace_back(out.Payload(r));
    source->Close();
  }
  server.FailFirst(1000);
  auto source = make();
  ASSERT_TRUE(source->Open(ctx).ok());
  RawBatch again;
  ASSERT_TRUE(source->Poll(again, 10, 0).ok());
  ASSERT_EQ(again.records.size(), 2u) << "the logged answers are given again";
  for (size_t i = 0; i < 2; ++i) EXPECT_EQ(again.Payload(again.records[i]), first[i]);
  EXPECT_EQ(again.records[0].topic.view(), "Berlin,DE");
  source->Close();
}

// The example configs of the three new sources are valid pipelines.
TEST(SourceExamplesTest, ExampleConfigsPassCheck) {
  for (const char* name : {"http_ingest.yaml", "csv_tail_bridge.yaml", "owm_poller.yaml"}) {
    const std::string path =
        (std::filesystem::path(TRIBUTARY_SOURCE_DIR) / "examples/sources" / name).string();
    testing::CommandResult r = testing::RunTributary({"check", path}, {}, {"INGEST_TOKEN=x"});
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err << r.out;
  }
}

}  // namespace
}  // namespace tributary
