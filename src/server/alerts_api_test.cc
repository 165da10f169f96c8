#include <gtest/gtest.h>

#include <chrono>

#include "server/api.h"
#include "server/live_state.h"
#include "server/sse.h"

namespace tributary {
namespace {

AlertEvent Event(const char* key, AlertState state, TimeUs fired_at) {
  AlertEvent e;
  e.rule = Intern("pm_high");
  e.kind = Intern("reading_threshold");
  e.key = Intern(key);
  e.metric = Intern("pm25");
  e.severity = Intern("warning");
  e.state = state;
  e.fired_at = fired_at;
  e.event_time = fired_at;
  e.value = 40;
  e.level = 35;
  return e;
}

TEST(AlertsApiTest, FiringAndAllShowTheLatestEventOfEachAlertAndSseCarriesThem) {
  EventLog events(100);
  LiveState live(LiveStateOptions{}, &events);
  Batch b;
  b.alerts.push_back(Event("d1", AlertState::kFiring, 1000));
  b.alerts.push_back(Event("d2", AlertState::kFiring, 2000));
  live.OnBatch(b);
  Batch b2;
  b2.alerts.push_back(Event("d1", AlertState::kResolved, 1000));
  live.OnBatch(b2);

  Result<std::string> firing = AlertsJson(live, {});
  ASSERT_TRUE(firing.ok());
  EXPECT_NE(firing->find("\"count\":1"), std::string::npos) << *firing;
  EXPECT_NE(firing->find("\"key\":\"d2\""), std::string::npos);
  Result<std::string> all = AlertsJson(live, {{"state", "all"}});
  ASSERT_TRUE(all.ok());
  EXPECT_NE(all->find("\"count\":2"), std::string::npos) << *all;
  EXPECT_NE(all->find("\"state\":\"resolved\""), std::string::npos);
  EXPECT_FALSE(AlertsJson(live, {{"state", "open"}}).ok());

  std::vector<SseEvent> got = events.ReadAfter(0, 100, std::chrono::milliseconds(10));
  int alerts = 0;
  for (const SseEvent& e : got) alerts += e.type == "alert" ? 1 : 0;
  EXPECT_EQ(alerts, 3);
}

}  // namespace
}  // namespace tributary
