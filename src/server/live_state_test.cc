#include "server/live_state.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <map>
#include <set>
#include <string>

#include "server/sse.h"

namespace tributary {
namespace {

Reading At(const char* device, double lat, double lon, double pm25) {
  Reading r;
  r.device = Intern(device);
  r.metric = Intern("pm25");
  r.value = pm25;
  r.lat = lat;
  r.lon = lon;
  r.event_time = NowUs();
  r.arrival_time = NowUs();
  return r;
}

std::vector<SseEvent> Summaries(EventLog& log, uint64_t after) {
  SseFilter f;
  f.types = {"summary"};
  return log.ReadMatching(after, 1000, std::chrono::milliseconds(0), f).events;
}

TEST(LiveStateSummary, CoalescesTheIntervalAndListsOnlySensorsThatReported) {
  EventLog log(1000);
  LiveStateOptions options;
  options.summary_interval = 3600 * kMicrosPerSecond;  // never due within the test
  LiveState live(options, &log);
  Batch b1;
  b1.readings = {At("s-1", 52.5, 13.4, 10), At("s-2", 52.6, 13.5, 20), At("s-1", 52.5, 13.4, 11)};
  live.OnBatch(b1);
  EXPECT_TRUE(Summaries(log, 0).empty());  // not due: coalesced, not one per batch

  EventLog log2(1000);
  options.summary_interval = 0;  // every batch closes an interval
  LiveState every(options, &log2);
  every.OnBatch(b1);
  Batch b2;
  b2.readings = {At("s-2", 52.6, 13.5, 25)};
  QuarantineRecord q;
  q.device = Intern("s-3");
  q.reason = Intern("range");
  q.arrival_time = NowUs();
  b2.quarantine.push_back(q);
  every.OnBatch(b2);
  std::vector<SseEvent> got = Summaries(log2, 0);
  ASSERT_EQ(got.size(), 2u);
  simdjson::dom::parser p;
  simdjson::dom::element first = p.parse(got[0].data);
  EXPECT_EQ(uint64_t(first["readings"]), 3u);
  EXPECT_EQ(uint64_t(first["sensor_count"]), 2u);
  std::set<std::string> devices;
  for (simdjson::dom::element s : first["sensors"].get_array()) {
    devices.insert(std::string(std::string_view(s["device"])));
    if (std::string_view(s["device"]) == "s-1") {
      EXPECT_DOUBLE_EQ(double(s["values"]["pm25"]), 11.0);  // the latest of two
      EXPECT_DOUBLE_EQ(double(s["lat"]), 52.5);
      EXPECT_EQ(std::string_view(s["status"]), "ok");
    }
  }
  EXPECT_EQ(devices, (std::set<std::string>{"s-1", "s-2"}));
  simdjson::dom::parser p2;
  simdjson::dom::element second = p2.parse(got[1].data);
  EXPECT_EQ(uint64_t(second["readings"]), 1u);
  EXPECT_EQ(uint64_t(second["quarantined"]), 1u);
  devices.clear();
  for (simdjson::dom::element s : second["sensors"].get_array()) {
    std::string d{std::string_view(s["device"])};
    devices.insert(d);
    if (d == "s-3") {
      EXPECT_EQ(std::string_view(s["status"]), "quarantining");
    }
    if (d == "s-2") {
      EXPECT_DOUBLE_EQ(double(s["values"]["pm25"]), 25.0);
    }
  }
  EXPECT_EQ(devices, (std::set<std::string>{"s-2", "s-3"}));  // s-1 did not report again
}

TEST(LiveStateStatus, QuarantiningFollowsTheLatestMessageStaleTheProcessingClock) {
  LiveStateOptions options;
  options.expected_interval = 60 * kMicrosPerSecond;
  LiveState live(options, nullptr);
  // Arrival times in the source's clock, far from the wall clock (as a simulator's are).
  const TimeUs t = ParseTime("2030-01-01T00:00:00Z").value();
  auto reading = [&](const char* device, TimeUs arrival) {
    Reading r = At(device, 52.5, 13.4, 10);
    r.event_time = arrival;
    r.arrival_time = arrival;
    return r;
  };
  auto quarantine = [&](const char* device, TimeUs arrival) {
    QuarantineRecord q;
    q.device = Intern(device);
    q.reason = Intern("range");
    q.arrival_time = arrival;
    return q;
  };
  Batch b;
  b.readings = {reading("ok-after-bad", t + 10), reading("bad-now", t)};
  b.quarantine = {quarantine("ok-after-bad", t), quarantine("bad-now", t + 10)};
  live.OnBatch(b);
  auto status_of = [&](TimeUs now) {
    std::map<std::string, std::string> out;
    for (const SensorView& v : live.Sensors(now)) {
      out[std::string(v.device.view())] = SensorStatusName(v.status);
    }
    return out;
  };
  std::map<std::string, std::string> now = status_of(NowUs());
  EXPECT_EQ(now["ok-after-bad"], "ok");
  EXPECT_EQ(now["bad-now"], "quarantining");
  // Nothing observed for longer than 3 expected intervals of processing time: stale.
  std::map<std::string, std::string> later = status_of(NowUs() + 4 * options.expected_interval);
  EXPECT_EQ(later["ok-after-bad"], "stale");
  EXPECT_EQ(later["bad-now"], "stale");
}

TEST(LiveStateSummary, WindowEventsCarryTheirGroupForFiltering) {
  EventLog log(100);
  LiveState live(LiveStateOptions{}, &log);
  Batch b;
  WindowResult w;
  w.window = Intern("district_5m");
  w.group_by = Intern("zone");
  w.group = Intern("mitte");
  w.metric = Intern("pm25");
  b.windows.push_back(w);
  live.OnBatch(b);
  SseFilter f;
  f.types = {"window"};
  f.groups = {"mitte"};
  std::vector<SseEvent> got = log.ReadMatching(0, 10, std::chrono::milliseconds(0), f).events;
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].group_by, "zone");
  f.groups = {"other"};
  EXPECT_TRUE(log.ReadMatching(0, 10, std::chrono::milliseconds(0), f).events.empty());
}

}  // namespace
}  // namespace tributary
