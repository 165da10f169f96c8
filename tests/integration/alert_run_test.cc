// A whole run with alert rules: file source → window → alert operator → sqlite sink
// and a webhook channel, through the tributary binary.
#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <mutex>
#include <thread>

#include "io/sinks/sqlite_util.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::TempDir;

TEST(AlertRunTest, ReadingThresholdAlertIsStoredAndDelivered) {
  TempDir dir;
  std::string lines;
  const double values[] = {10, 40, 45, 33, 20, 12};
  for (int i = 0; i < 6; ++i) {
    lines += "{\"device_id\":\"d1\",\"timestamp\":" + std::to_string(1714564800000 + i * 60000) +
             ",\"lat\":52.5,\"lon\":13.4,\"pm25\":" + std::to_string(values[i]) + "}\n";
  }
  { std::ofstream(dir.File("in.ndjson")) << lines; }
  httplib::Server http;
  std::mutex mu;
  std::vector<std::string> got;
  http.Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    got.push_back(req.body);
    res.status = 200;
  });
  int port = http.bind_to_any_port("127.0.0.1");
  std::thread t([&] { http.listen_after_bind(); });
  {
    std::ofstream(dir.File("p.yaml"))
        << "sources:\n  - name: f\n    type: file\n    path: " << dir.File("in.ndjson")
        << "\nwindows:\n  - {name: m1, type: tumbling, size: 1m}\n"
           "sinks:\n  - name: local\n    type: sqlite\n"
           "alerts:\n  rules:\n"
           "    - {name: pm_high, kind: reading_threshold, metric: pm25, level: 35, clear: 30}\n"
           "  channels:\n"
           "    - {name: hook, type: webhook, url: 'http://127.0.0.1:"
        << port << "/hook'}\n";
  }
  testing::CommandResult run =
      testing::RunTributary({"run", dir.File("p.yaml"), "--data-dir", dir.File("data"), "--quiet"});
  http.stop();
  t.join();
  ASSERT_EQ(run.exit_code, 0) << run.err;
  SqliteDb db;
  ASSERT_TRUE(db.Open(dir.File("data") + "/tributary.gpkg", true).ok());
  EXPECT_EQ(*db.QueryInt("SELECT count(*) FROM alerts"), 1);
  EXPECT_EQ(*db.QueryText("SELECT state || ' ' || key || ' ' || fired_at || ' ' || resolved_at || "
                          "' ' || first_value || ' ' || last_value FROM alerts"),
            "resolved d1 2024-05-01T12:01:00Z 2024-05-01T12:04:00Z 40.0 20.0");
  std::lock_guard lock(mu);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_NE(got[0].find("\"state\":\"firing\""), std::string::npos) << got[0];
  EXPECT_NE(got[1].find("\"state\":\"resolved\""), std::string::npos) << got[1];
}

}  // namespace
}  // namespace tributary
