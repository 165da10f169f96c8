// Daily-summary subscriptions end to end over real loopback HTTP and SMTP: subscribing
// through the API (write token), the welcome mail with current conditions, the daily
// summary's content, and the unsubscribe link from the mail, after which no more mail
// is sent.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <thread>

#include "core/pipeline_config.h"
#include "integration/smtp_server.h"
#include "server/http_server.h"
#include "server/subscription_service.h"
#include "stream/runtime.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::SmtpServer;

constexpr TimeUs kHour = 3600 * kMicrosPerSecond;
constexpr TimeUs kDay = 24 * kHour;

bool WaitFor(const std::function<bool()>& cond,
             std::chrono::seconds limit = std::chrono::seconds(20)) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cond();
}

std::string Between(const std::string& text, const std::string& from, const std::string& to) {
  size_t a = text.find(from);
  if (a == std::string::npos) return {};
  a += from.size();
  return text.substr(a, text.find(to, a) - a);
}

class SubscriptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<PipelineConfig> config = ParsePipelineConfig(R"(pipeline:
  name: subscriptions
  data_dir: )" + dir_.path() + R"(
sources:
  - {name: sim, type: simulator, devices: 2, duration: 1m, as_fast_as_possible: true}
alerts:
  summary:
    url: smtp://127.0.0.1:)" + std::to_string(smtp_.port()) +
                                                            R"(
    from: summaries@tributary.test
    at: "07:00"
    time_zone: Europe/Berlin
sinks: []
)",
                                                        "t");
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    Result<std::unique_ptr<Pipeline>> pipeline = Pipeline::Build(*config);
    ASSERT_TRUE(pipeline.ok()) << pipeline.status().ToString();
    pipeline_ = std::move(pipeline).value();
    ServerOptions options;
    options.port = 0;
    options.rate_limit = 0;
    options.write_token = "w-secret";
    Result<std::unique_ptr<ApiServer>> server = ApiServer::Start(*pipeline_, options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    ASSERT_NE(server_->subscriptions(), nullptr);
    // Two days of hourly windows for zone "mitte": PM2.5 55 in the mornings, 12 otherwise.
    Batch b;
    TimeUs start = NowUs() / kHour * kHour - 2 * kDay;
    for (int h = 0; h < 48; ++h) {
      WindowResult w;
      w.window = Intern("zone_1h");
      w.group_by = Intern("zone");
      w.group = Intern("mitte");
      w.metric = Intern("pm25");
      w.start = start + h * kHour;
      w.end = w.start + kHour;
      w.count = 12;
      w.mean = w.min = w.max = 12;
      b.windows.push_back(w);
    }
    b.windows.back().mean = 55;
    b.windows.back().max = 70;
    server_->live().OnBatch(b);
  }

  httplib::Client Client() { return httplib::Client("127.0.0.1", server_->port()); }
  httplib::Headers Write() { return {{"Authorization", "Bearer w-secret"}}; }

  SmtpServer smtp_;
  testing::TempDir dir_;
  std::unique_ptr<Pipeline> pipeline_;
  std::unique_ptr<ApiServer> server_;
};

TEST_F(SubscriptionTest, WelcomeSummaryAndUnsubscribeLinkThroughRealSmtp) {
  httplib::Client c = Client();
  const std::string body =
      R"({"email":"ann@example.org","kind":"zone","zone":"mitte","time":"00:00"})";
  // Writes need the write token; the list of addresses too.
  auto anon = c.Post("/api/subscriptions", body, "application/json");
  ASSERT_TRUE(anon);
  EXPECT_EQ(anon->status, 401);
  auto list_anon = c.Get("/api/subscriptions");
  ASSERT_TRUE(list_anon);
  EXPECT_EQ(list_anon->status, 401);
  auto bad = c.Post("/api/subscriptions", Write(), R"({"email":"nope","zone":"mitte"})",
                    "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("not an email address"), std::string::npos) << bad->body;
  auto bad_time =
      c.Post("/api/subscriptions", Write(),
             R"({"email":"ann@example.org","zone":"mitte","time":"7am"})", "application/json");
  ASSERT_TRUE(bad_time);
  EXPECT_EQ(bad_time->status, 400);

  auto res = c.Post("/api/subscriptions", Write(), body, "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  EXPECT_NE(res->body.find("\"zone\":\"mitte\""), std::string::npos) << res->body;
  EXPECT_EQ(res->body.find("token"), std::string::npos) << "the secret is only mailed";
  auto again = c.Post("/api/subscriptions", Write(), body, "application/json");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  auto list = c.Get("/api/subscriptions", Write());
  ASSERT_TRUE(list);
  ASSERT_EQ(list->status, 200);
  EXPECT_NE(list->body.find("\"count\":1"), std::string::npos) << list->body;
  EXPECT_NE(list->body.find("ann@example.org"), std::string::npos);

  // The welcome mail: current conditions, advice, the link. Only one for two requests.
  ASSERT_TRUE(WaitFor([&] { return smtp_.mails().size() == 1; })) << smtp_.mails().size();
  SmtpServer::Mail welcome = smtp_.mails()[0];
  EXPECT_NE(welcome.rcpt[0].find("<ann@example.org>"), std::string::npos);
  EXPECT_NE(welcome.from.find("<summaries@tributary.test>"), std::string::npos);
  EXPECT_NE(welcome.data.find("Subject: Subscribed to the daily summary for zone mitte"),
            std::string::npos)
      << welcome.data;
  EXPECT_NE(welcome.data.find("every day at 00:00 (Europe/Berlin)"), std::string::npos);
  EXPECT_NE(welcome.data.find("pm25: 55.0 ug/m3 (min 12.0, max 70.0)"), std::string::npos)
      << welcome.data;
  EXPECT_NE(welcome.data.find("Poor air quality"), std::string::npos);
  std::string link = Between(welcome.data, "To unsubscribe, open ", "\n");
  std::string prefix = "http://127.0.0.1:" + std::to_string(server_->port());
  ASSERT_EQ(link.rfind(prefix + "/api/unsubscribe?token=", 0), 0u) << link;
  EXPECT_NE(welcome.data.find("List-Unsubscribe: <" + link + ">"), std::string::npos);

  // 00:00 has passed today: the first summary is tomorrow's.
  SubscriptionService& subs = *server_->subscriptions();
  TimeUs now = NowUs();
  EXPECT_EQ(subs.RunDue(now), 0u);
  EXPECT_EQ(subs.RunDue(now + kDay), 1u);
  EXPECT_EQ(subs.RunDue(now + kDay), 0u) << "one summary a day";
  ASSERT_EQ(smtp_.mails().size(), 2u);
  const std::string& summary = smtp_.mails()[1].data;
  EXPECT_NE(summary.find("Subject: Daily summary for zone mitte, "), std::string::npos) << summary;
  EXPECT_NE(summary.find("Morning (06:00-12:00), last 24 h:"), std::string::npos);
  EXPECT_NE(summary.find("Evening (18:00-24:00), last 24 h:"), std::string::npos);
  EXPECT_NE(summary.find("PM2.5 windows with a mean above 35 ug/m3: 1"), std::string::npos)
      << summary;
  EXPECT_NE(summary.find("Forecast:\n  pm25: next window"), std::string::npos) << summary;
  EXPECT_NE(summary.find("To stop these emails, open " + link), std::string::npos);

  // Follow the link as a mail reader would (no token of any kind).
  std::string path = link.substr(prefix.size());
  auto un = c.Get(path);
  ASSERT_TRUE(un);
  EXPECT_EQ(un->status, 200);
  EXPECT_NE(un->body.find("Unsubscribed"), std::string::npos) << un->body;
  auto twice = c.Get(path);
  ASSERT_TRUE(twice);
  EXPECT_EQ(twice->status, 404);
  EXPECT_EQ(c.Get("/api/unsubscribe?token=0123")->status, 404);
  EXPECT_NE(c.Get("/api/subscriptions", Write())->body.find("\"count\":0"), std::string::npos);
  EXPECT_EQ(subs.RunDue(now + 2 * kDay), 0u);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // a tick of the schedule
  EXPECT_EQ(smtp_.mails().size(), 2u) << "no more mail after unsubscribing";
}

TEST_F(SubscriptionTest, SubscribersSurviveARestartInTheirOwnDatabase) {
  httplib::Client c = Client();
  auto res =
      c.Post("/api/subscriptions", Write(),
             R"({"email":"bob@example.org","kind":"device","zone":"aq-7"})", "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  EXPECT_NE(res->body.find("\"time\":\"07:00\""), std::string::npos) << "the configured default";
  ASSERT_TRUE(WaitFor([&] { return smtp_.mails().size() == 1; }));
  EXPECT_NE(smtp_.mails()[0].data.find("no data for this subscription yet"), std::string::npos);
  auto doc = c.Get("/api/openapi.json");
  ASSERT_TRUE(doc);
  for (const char* path :
       {"\"/api/subscriptions\"", "\"/api/subscriptions/{id}\"", "\"/api/unsubscribe\""}) {
    EXPECT_NE(doc->body.find(path), std::string::npos) << path;
  }
  server_.reset();
  EXPECT_EQ(testing::QueryInt(dir_.File("subscriptions.db"),
                              "SELECT count(*) FROM subscriptions WHERE email = 'bob@example.org' "
                              "AND kind = 'device' AND zone = 'aq-7' AND length(token) = 32"),
            1);
}

}  // namespace
}  // namespace tributary
