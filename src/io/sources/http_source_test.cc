// The `http` source over real loopback HTTP (libcurl as the client): answers and their
// reasons, backpressure (503 + Retry-After), `respond: committed`, and a whole pipeline
// run whose store and ledger hold exactly what was posted.
#include "io/sources/http_source.h"

#include <curl/curl.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/time.h"
#include "stream/runtime.h"
#include "test_util.h"

namespace tributary {
namespace {

struct HttpAnswer {
  long status = 0;
  std::string body;
  std::string retry_after;
};

size_t CollectTestBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t CollectRetryAfter(char* data, size_t size, size_t n, void* user) {
  std::string line(data, size * n);
  if (line.rfind("Retry-After:", 0) == 0) {
    std::string v = line.substr(12);
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.pop_back();
    while (!v.empty() && v.front() == ' ') v.erase(v.begin());
    *static_cast<std::string*>(user) = v;
  }
  return size * n;
}

HttpAnswer Request(const std::string& method, const std::string& url, const std::string& body,
                   const std::string& content_type, const std::string& token) {
  HttpAnswer a;
  CURL* c = curl_easy_init();
  curl_slist* headers = nullptr;
  if (!content_type.empty())
    headers = curl_slist_append(headers, ("Content-Type: " + content_type).c_str());
  if (!token.empty())
    headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "POST") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, CollectTestBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &a.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, CollectRetryAfter);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &a.retry_after);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(c);
  return a;
}

HttpAnswer Post(const std::string& url, const std::string& body,
                const std::string& content_type = "application/x-ndjson",
                const std::string& token = "t0k") {
  return Request("POST", url, body, content_type, token);
}

std::string Reading(int i, int64_t base_ms) {
  return "{\"device_id\":\"http-" + std::to_string(i % 3) +
         "\",\"sensor_ts\":" + std::to_string(base_ms + 1000LL * i) +
         ",\"lat\":52.5,\"lon\":13.4,\"pm25\":" + std::to_string(5 + i) + "}";
}

HttpIngestOptions TestOptions() {
  HttpIngestOptions o;
  o.port = 0;
  o.tokens = {"t0k", "second"};
  o.max_body_bytes = 4096;
  o.buffer = 5;
  o.retry_after_s = 3;
  return o;
}

class HttpSourceTest : public ::testing::Test {
 protected:
  void Open(HttpIngestOptions o) {
    source_ = std::make_unique<HttpIngestSource>(std::move(o));
    ctx_.data_dir = dir_.path();
    ASSERT_TRUE(source_->Open(ctx_).ok());
    url_ = "http://127.0.0.1:" + std::to_string(source_->port()) + "/ingest";
  }
  testing::TempDir dir_;
  RunContext ctx_;
  std::unique_ptr<HttpIngestSource> source_;
  std::string url_;
};

TEST(HttpSourceOptionsTest, ParsesAndRejects) {
  auto parse = [](const std::string& yaml) {
    OptionReader r(YAML::Load(yaml), "t.yaml", "sources[0]", {&HttpIngestSectionSpec()});
    return ParseHttpIngestOptions(r);
  };
  Result<HttpIngestOptions> o =
      parse("listen: 0.0.0.0:9000\ntokens: [a, b]\nrespond: committed\nretry_after: 2500ms\n");
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->host, "0.0.0.0");
  EXPECT_EQ(o->port, 9000);
  EXPECT_EQ(o->tokens.size(), 2u);
  EXPECT_EQ(o->respond, HttpIngestRespond::kCommitted);
  EXPECT_EQ(o->retry_after_s, 3);
  EXPECT_NE(parse("listen: nope\n").status().ToString().find("sources[0].listen"),
            std::string::npos);
  EXPECT_NE(parse("listen: h:70000\n").status().ToString().find("listen"), std::string::npos);
  EXPECT_NE(parse("path: ingest\n").status().ToString().find("path"), std::string::npos);
  EXPECT_NE(parse("tokens: ['']\n").status().ToString().find("tokens"), std::string::npos);
}

TEST_F(HttpSourceTest, AnswersWithCountsAndReasons) {
  Open(TestOptions());
  const int64_t base = NowUs() / 1000;
  // An NDJSON batch with a blank line and one line that is not JSON.
  std::string batch = Reading(0, base) + "\n\n" + Reading(1, base) + "\r\n{broken\n";
  HttpAnswer a = Post(url_, batch);
  EXPECT_EQ(a.status, 202) << a.body;
  EXPECT_NE(a.body.find("\"received\":3"), std::string::npos) << a.body;
  EXPECT_NE(a.body.find("\"malformed\":1"), std::string::npos) << a.body;
  EXPECT_NE(a.body.find("\"first_offset\":1"), std::string::npos) << a.body;
  // One reading as application/json, with the second token.
  a = Post(url_, Reading(2, base), "application/json; charset=utf-8", "second");
  EXPECT_EQ(a.status, 202) << a.body;
  EXPECT_NE(a.body.find("\"first_offset\":4"), std::string::npos) << a.body;

  a = Post(url_, Reading(3, base), "application/json", "");
  EXPECT_EQ(a.status, 401);
  EXPECT_NE(a.body.find("missing Authorization"), std::string::npos) << a.body;
  a = Post(url_, Reading(3, base), "application/json", "wrong");
  EXPECT_EQ(a.status, 401);
  EXPECT_NE(a.body.find("not one of"), std::string::npos) << a.body;
  a = Post(url_, "a,b\n1,2\n", "text/csv");
  EXPECT_EQ(a.status, 415);
  EXPECT_NE(a.body.find("text/csv"), std::string::npos) << a.body;
  a = Post(url_, " \n\n", "application/x-ndjson");
  EXPECT_EQ(a.status, 400);
  EXPECT_NE(a.body.find("no record"), std::string::npos) << a.body;
  a = Post(url_, std::string(5000, ' ') + Reading(3, base), "application/json");
  EXPECT_EQ(a.status, 413);
  EXPECT_NE(a.body.find("max_body_bytes"), std::string::npos) << a.body;
  a = Request("GET", url_, "", "", "t0k");
  EXPECT_EQ(a.status, 405);
  a = Post("http://127.0.0.1:" + std::to_string(source_->port()) + "/other", Reading(3, base));
  EXPECT_EQ(a.status, 404);
  EXPECT_NE(a.body.find("/ingest"), std::string::npos) << a.body;
  // Six records never fit a buffer of five: refused as too large, not as busy.
  std::string six;
  for (int i = 0; i < 6; ++i) six += Reading(i, base) + "\n";
  a = Post(url_, six);
  EXPECT_EQ(a.status, 413);
  EXPECT_NE(a.body.find("buffer of 5"), std::string::npos) << a.body;

  // Exactly the four records of the two accepted requests are handed on, in order.
  RawBatch out;
  ASSERT_TRUE(source_->Poll(out, 100, 0).ok());
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out.Payload(out.records[0]), Reading(0, base));
  EXPECT_EQ(out.Payload(out.records[1]), Reading(1, base));  // CR removed
  EXPECT_EQ(out.Payload(out.records[2]), "{broken");
  EXPECT_EQ(out.Payload(out.records[3]), Reading(2, base));
  EXPECT_EQ(out.records[3].offset, 4);
  EXPECT_EQ(out.checkpoint, 2u);  // both requests complete in this batch
}

TEST_F(HttpSourceTest, BackpressureAnswers503WithRetryAfter) {
  Open(TestOptions());
  const int64_t base = NowUs() / 1000;
  std::string three = Reading(0, base) + "\n" + Reading(1, base) + "\n" + Reading(2, base) + "\n";
  EXPECT_EQ(Post(url_, three).status, 202);
  // Three wait; three more do not fit into five: the whole request is refused.
  HttpAnswer a = Post(url_, three);
  EXPECT_EQ(a.status, 503);
  EXPECT_EQ(a.retry_after, "3");
  EXPECT_NE(a.body.find("buffer is full"), std::string::npos) << a.body;
  EXPECT_EQ(source_->buffered(), 3u);
  // Two records fit.
  EXPECT_EQ(Post(url_, Reading(3, base) + "\n" + Reading(4, base)).status, 202);
  RawBatch out;
  ASSERT_TRUE(source_->Poll(out, 2, 0).ok());
  EXPECT_EQ(out.size(), 2u);
  EXPECT_EQ(out.checkpoint, 0u);  // the first request is not complete yet
  out.Clear();
  ASSERT_TRUE(source_->Poll(out, 100, 0).ok());
  EXPECT_EQ(out.size(), 3u);
  EXPECT_EQ(out.checkpoint, 2u);
  // Room again: taken.
  EXPECT_EQ(Post(url_, three).status, 202);
  // Paused by the runtime: refused while paused, taken after.
  source_->SetPaused(true);
  a = Post(url_, Reading(9, base));
  EXPECT_EQ(a.status, 503);
  EXPECT_EQ(a.retry_after, "3");
  EXPECT_NE(a.body.find("paused"), std::string::npos) << a.body;
  source_->SetPaused(false);
  EXPECT_EQ(Post(url_, Reading(9, base)).status, 202);
  EXPECT_EQ(source_->buffered(), 4u);
  // Stopping: refused, and what was taken is still handed on.
  source_->Stop();
  EXPECT_EQ(Post(url_, Reading(10, base)).status, 503);
  out.Clear();
  ASSERT_TRUE(source_->Poll(out, 100, 0).ok());
  EXPECT_EQ(out.size(), 4u);
}

TEST_F(HttpSourceTest, RespondCommittedWaitsForTheSinks) {
  HttpIngestOptions o = TestOptions();
  o.respond = HttpIngestRespond::kCommitted;
  o.commit_timeout = 20 * kMicrosPerSecond;
  Open(o);
  const int64_t base = NowUs() / 1000;
  std::atomic<bool> answered{false};
  HttpAnswer a;
  std::thread client([&] {
    a = Post(url_, Reading(0, base) + "\n" + Reading(1, base));
    answered = true;
  });
  RawBatch out;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (out.empty() && std::chrono::steady_clock::now() < deadline) {
    ASSERT_TRUE(source_->Poll(out, 100, 100'000).ok());
  }
  ASSERT_EQ(out.size(), 2u);
  ASSERT_EQ(out.checkpoint, 1u);
  // Handed on is not committed: the answer still waits.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(answered.load());
  source_->OnCommitted(out.checkpoint);
  client.join();
  EXPECT_EQ(a.status, 202);
  EXPECT_NE(a.body.find("\"committed\":true"), std::string::npos) << a.body;
}

TEST(HttpSourceRunTest, PostedReadingsReachTheStoreAndTheLedgerBalances) {
  testing::TempDir dir;
  Result<PipelineConfig> config = ParsePipelineConfig(
      "pipeline:\n  name: http-run\n  commit_interval: 100ms\n  data_dir: " + dir.path() +
          "\nsources:\n  - name: gateway\n    type: http\n    listen: 127.0.0.1:0\n"
          "    tokens: [t0k]\n    respond: committed\n"
          "sinks:\n  - name: local\n    type: sqlite\n",
      "http.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  Result<std::unique_ptr<Pipeline>> built = Pipeline::Build(*config);
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  Pipeline& pipeline = **built;
  Status run_status;
  std::thread runner([&] { run_status = pipeline.Run(); });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!pipeline.running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(pipeline.running());
  const auto* source = dynamic_cast<const HttpIngestSource*>(pipeline.source(0));
  ASSERT_NE(source, nullptr);
  const std::string url = "http://127.0.0.1:" + std::to_string(source->port()) + "/ingest";
  const int64_t base = NowUs() / 1000 - 600'000;
  constexpr int kRequests = 5;
  constexpr int kPerRequest = 20;
  int posted = 0;
  for (int r = 0; r < kRequests; ++r) {
    std::string body;
    for (int i = 0; i < kPerRequest; ++i) body += Reading(posted++, base) + "\n";
    body += "{\"device_id\": \"broken\"\n";  // not JSON: quarantined
    HttpAnswer a = Post(url, body);
    EXPECT_EQ(a.status, 202) << a.body;
    EXPECT_NE(a.body.find("\"committed\":true"), std::string::npos) << a.body;
  }
  // A reading without a timestamp is JSON, so the answer cannot know it: quarantined later.
  EXPECT_EQ(Post(url, "{\"device_id\":\"x\",\"pm25\":3}", "application/json").status, 202);
  EXPECT_EQ(Post(url, Reading(0, base), "application/json", "bad").status, 401);
  pipeline.Stop();
  runner.join();
  ASSERT_TRUE(run_status.ok()) << run_status.ToString();
  LedgerSnapshot ledger = pipeline.LedgerNow();
  EXPECT_TRUE(ledger.balanced());
  EXPECT_EQ(ledger.input, static_cast<uint64_t>(posted + kRequests + 1));
  EXPECT_EQ(ledger.quarantined, static_cast<uint64_t>(kRequests + 1));
  const std::string db = dir.File("tributary.gpkg");
  EXPECT_EQ(testing::QueryInt(db, "SELECT count(*) FROM readings"), posted);
  EXPECT_EQ(testing::QueryInt(db, "SELECT count(*) FROM quarantine"), kRequests + 1);
  EXPECT_EQ(testing::QueryInt(db,
                              "SELECT count(*) FROM readings WHERE json_extract(provenance, "
                              "'$.topic') = '/ingest'"),
            posted);
}

}  // namespace
}  // namespace tributary
