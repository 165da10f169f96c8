// Dashboard serving and the API's hardening over real loopback HTTP: static files and
// path traversal, the token cookie, the separate write token, body size, CORS and the
// per-client rate limit. The pipeline is built but not run: these are server concerns.
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>

#include "core/pipeline_config.h"
#include "server/http_server.h"
#include "stream/runtime.h"
#include "test_util.h"

namespace tributary {
namespace {

class HardeningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.path() + "/dist/assets");
    Write(dir_.path() + "/dist/index.html", "<!doctype html><title>dash</title>");
    Write(dir_.path() + "/dist/assets/app.js", "console.log(1)");
    Write(dir_.path() + "/secret.txt", "do not serve");
    Result<PipelineConfig> config = ParsePipelineConfig(R"(pipeline:
  name: hardening
  data_dir: )" + dir_.path() + R"(
sources:
  - name: sim
    type: simulator
    devices: 2
    duration: 1m
    as_fast_as_possible: true
sinks: []
)",
                                                        "t");
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    Result<std::unique_ptr<Pipeline>> pipeline = Pipeline::Build(*config);
    ASSERT_TRUE(pipeline.ok()) << pipeline.status().ToString();
    pipeline_ = std::move(pipeline).value();
    options_.port = 0;
    options_.static_dir = dir_.path() + "/dist";
    options_.rate_limit = 0;
  }
  void Start() {
    Result<std::unique_ptr<ApiServer>> server = ApiServer::Start(*pipeline_, options_);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }
  static void Write(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
  }
  httplib::Client Client() { return httplib::Client("127.0.0.1", server_->port()); }

  testing::TempDir dir_;
  std::unique_ptr<Pipeline> pipeline_;
  ServerOptions options_;
  std::unique_ptr<ApiServer> server_;
};

TEST_F(HardeningTest, ServesTheDashboardWithContentTypesAndNoTraversal) {
  Start();
  httplib::Client cli = Client();
  auto index = cli.Get("/");
  ASSERT_TRUE(index);
  EXPECT_EQ(index->status, 200);
  EXPECT_NE(index->body.find("dash"), std::string::npos);
  EXPECT_EQ(index->get_header_value("Content-Type").rfind("text/html", 0), 0u);
  auto js = cli.Get("/assets/app.js");
  ASSERT_TRUE(js);
  EXPECT_EQ(js->status, 200);
  EXPECT_NE(js->get_header_value("Content-Type").find("javascript"), std::string::npos);
  for (const char* path : {"/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt",
                           "/assets/%2E%2E/%2E%2E/secret.txt", "/..%2fsecret.txt"}) {
    auto res = cli.Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_NE(res->status, 200) << path;
    EXPECT_EQ(res->body.find("do not serve"), std::string::npos) << path;
  }
}

TEST_F(HardeningTest, SaysSoWhenTheDashboardIsNotBuilt) {
  options_.static_dir = dir_.path() + "/missing";
  Start();
  httplib::Client cli = Client();
  auto res = cli.Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(res->body.find("not built"), std::string::npos);
  EXPECT_NE(res->body.find(dir_.path() + "/missing"), std::string::npos);
}

TEST_F(HardeningTest, TokenInTheAddressOnceThenACookie) {
  options_.token = "read-secret";
  Start();
  httplib::Client cli = Client();
  auto anonymous = cli.Get("/");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  EXPECT_NE(anonymous->body.find("token"), std::string::npos);
  EXPECT_EQ(anonymous->body.find("<title>dash</title>"), std::string::npos);
  auto wrong = cli.Get("/?token=nope");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  EXPECT_FALSE(wrong->has_header("Set-Cookie"));
  auto right = cli.Get("/?token=read-secret");
  ASSERT_TRUE(right);
  EXPECT_EQ(right->status, 303);
  std::string cookie = right->get_header_value("Set-Cookie");
  EXPECT_EQ(cookie.rfind("tributary_token=read-secret;", 0), 0u) << cookie;
  EXPECT_NE(cookie.find("HttpOnly"), std::string::npos);
  httplib::Headers with_cookie = {{"Cookie", "other=1; tributary_token=read-secret"}};
  for (const char* path : {"/", "/api/ledger", "/api/zones"}) {
    auto res = cli.Get(path, with_cookie);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 200) << path;
  }
  auto bad_cookie = cli.Get("/api/ledger", {{"Cookie", "tributary_token=read-secreT"}});
  ASSERT_TRUE(bad_cookie);
  EXPECT_EQ(bad_cookie->status, 401);
}

TEST_F(HardeningTest, ZonesAreAnEmptyCollectionWithoutZoneWindows) {
  Start();
  httplib::Client cli = Client();
  auto res = cli.Get("/api/zones");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, R"({"type":"FeatureCollection","features":[]})");
}

TEST_F(HardeningTest, WritesNeedTheWriteTokenNotTheReadToken) {
  options_.token = "read-secret";
  options_.write_token = "write-secret";
  options_.max_body_bytes = 1024;
  Start();
  httplib::Client cli = Client();
  auto with_read = cli.Post("/api/subscriptions", {{"Authorization", "Bearer read-secret"}}, "{}",
                            "application/json");
  ASSERT_TRUE(with_read);
  EXPECT_EQ(with_read->status, 401);
  auto none = cli.Post("/api/subscriptions", "{}", "application/json");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  // Authorised: this build has no subscriptions handler, so the route is not found.
  httplib::Headers write = {{"Authorization", "Bearer write-secret"}};
  auto authorised = cli.Post("/api/subscriptions", write, "{}", "application/json");
  ASSERT_TRUE(authorised);
  EXPECT_EQ(authorised->status, 404);
  auto big = cli.Post("/api/subscriptions", write, std::string(4096, 'x'), "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  // The write token does not open reads.
  auto read = cli.Get("/api/ledger", write);
  ASSERT_TRUE(read);
  EXPECT_EQ(read->status, 401);
}

TEST_F(HardeningTest, CorsAnswersOnlyConfiguredOrigins) {
  options_.cors_origins = {"http://grafana.local:3000"};
  Start();
  httplib::Client cli = Client();
  auto allowed = cli.Get("/api/ledger", {{"Origin", "http://grafana.local:3000"}});
  ASSERT_TRUE(allowed);
  EXPECT_EQ(allowed->get_header_value("Access-Control-Allow-Origin"), "http://grafana.local:3000");
  auto other = cli.Get("/api/ledger", {{"Origin", "http://evil.example"}});
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 200);
  EXPECT_FALSE(other->has_header("Access-Control-Allow-Origin"));
  auto preflight = cli.Options("/api/ledger", {{"Origin", "http://grafana.local:3000"},
                                               {"Access-Control-Request-Method", "GET"}});
  ASSERT_TRUE(preflight);
  EXPECT_EQ(preflight->status, 204);
  EXPECT_NE(preflight->get_header_value("Access-Control-Allow-Headers").find("Authorization"),
            std::string::npos);
  auto refused = cli.Options("/api/ledger", {{"Origin", "http://evil.example"}});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 403);
}

TEST_F(HardeningTest, RateLimitAnswers429PastTheBurst) {
  options_.rate_limit = 5;  // burst of 10
  Start();
  httplib::Client cli = Client();
  int ok = 0, limited = 0;
  std::string retry_after;
  for (int i = 0; i < 30; ++i) {
    auto res = cli.Get("/healthz");
    ASSERT_TRUE(res);
    if (res->status == 200) ++ok;
    if (res->status == 429) {
      ++limited;
      retry_after = res->get_header_value("Retry-After");
    }
  }
  EXPECT_GE(ok, 10);
  EXPECT_LT(ok, 30);
  EXPECT_EQ(ok + limited, 30);
  EXPECT_EQ(retry_after, "1");
}

}  // namespace
}  // namespace tributary
