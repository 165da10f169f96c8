// Scale-out with partition-owned state (docs/SCALING.md): two `tributary run` workers in
// one consumer group over a librdkafka mock cluster on loopback, one killed with SIGKILL
// mid-stream; the other takes its partitions over from their last committed state. The
// committed window results (and readings, with their QC flags) must equal those of a
// single worker that read the same input alone, and so must the alerts both deliver to
// a webhook (the same ids: a taken-over partition re-emits what its killed owner had
// not committed, under the same id).
//
// Reading the output: as in kafka_checkpoint_test.cc, the mock cluster (2.0.2) does not
// implement transaction isolation, so the test keeps what read_committed shows on a real
// broker — the messages whose (tributary-run, tributary-checkpoint) headers name a
// committed marker of one of the workers' transactional ids.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "integration/kafka_mock.h"
#include "spatial/h3.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::Committed;
using testing::ReadCommitted;
using testing::SpawnTributaryRun;

using testing::KafkaMockCluster;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

constexpr int kAreas = 6;           // H3 res-5 cells = input partitions
constexpr int kDevicesPerArea = 4;  // devices stay in their area
constexpr int kPerDevice = 250;     // readings per device, 10 s apart
constexpr int kQuietFrom = 150;     // a0-dev-3 sends nothing from its 150th reading on

// The input of one partition: its area's devices, in event-time order.
std::vector<std::pair<std::string, std::string>> AreaInput(int area) {
  const double lat = 48.0 + area * 1.5;
  const double lon = 11.0 + area * 0.7;
  const std::string cell = h3::CellToString(h3::LatLngToCell(lat, lon, 5));
  std::vector<std::pair<std::string, std::string>> out;
  const int64_t base_ms = 1714521600000;  // 2024-05-01T00:00:00Z
  for (int i = 0; i < kPerDevice; ++i) {
    for (int d = 0; d < kDevicesPerArea; ++d) {
      if (area == 0 && d == 3 && i >= kQuietFrom) continue;  // goes stale
      const int n = i * kDevicesPerArea + d;
      out.emplace_back(
          cell, "{\"device_id\":\"a" + std::to_string(area) + "-dev-" + std::to_string(d) +
                    "\",\"sensor_ts\":" + std::to_string(base_ms + 10'000LL * i) +
                    ",\"lat\":" + std::to_string(lat + d * 0.001) +
                    ",\"lon\":" + std::to_string(lon) + ",\"pm25\":" + std::to_string(n % 97) +
                    ",\"temperature\":" + std::to_string(10 + (n + area) % 13) + "}");
    }
  }
  return out;
}

std::string Config(const std::string& brokers, const std::string& name, const std::string& topic,
                   const std::string& worker, int hook_port,
                   const std::string& strategy = "cooperative-sticky") {
  return "pipeline:\n  name: " + name + "\n  batch_size: 100\n  queue_capacity: 2\n" +
         "processing:\n  idle_timeout: 24h\n  grace: 5m\n" + "zones:\n  h3_resolution: 5\n" +
         "qc:\n  enabled: true\n" +
         "alerts:\n  rules:\n"
         "    - {name: pm_high, kind: reading_threshold, metric: pm25, level: 90, clear: 50}\n"
         "    - {name: dev_max, kind: window_threshold, window: dev5m, metric: pm25, "
         "aggregate: max, level: 94, clear: 90}\n"
         "    - {name: quiet, kind: stale, expected_interval: 10s, stale_factor: 3}\n"
         "  channels:\n    - {name: hook, type: webhook, url: 'http://127.0.0.1:" +
         std::to_string(hook_port) + "/" + name + "'}\n" +
         "sources:\n  - name: bus\n    type: kafka\n    brokers: " + brokers + "\n    topics: [" +
         topic + "]\n    group_id: " + name + "\n    poll_records: 100\n" +
         "    properties: [session.timeout.ms=3000, heartbeat.interval.ms=300, "
         "partition.assignment.strategy=" +
         strategy + "]\n" +
         "windows:\n  - name: dev5m\n    type: tumbling\n    size: 5m\n"
         "    aggregates: [mean, max, median]\n"
         "  - name: cell10m\n    type: tumbling\n    size: 10m\n    group_by: h3\n"
         "    aggregates: [mean, std, count]\n"
         "sinks:\n  - name: out\n    type: kafka\n    brokers: " +
         brokers + "\n    readings_topic: " + name + ".readings\n    windows_topic: " + name +
         ".windows\n    quarantine_topic: ''\n    late_topic: " + name +
         ".late\n    breaker: false\n    transactional_id: " + name + "-" + worker +
         "\n    checkpoint_topic: " + name + ".checkpoints\n    state_topic: " + name + ".state\n" +
         "checkpoint:\n  enabled: true\n  interval: 300ms\n";
}

// Committed markers of every worker of `name`: "run/checkpoint".
std::set<std::string> Markers(KafkaMockCluster& kafka, const std::string& name) {
  std::set<std::string> out;
  static const std::regex marker("checkpoint=([0-9]+) run=([0-9a-f]+)");
  for (const auto& m : kafka.ReadAll(name + ".checkpoints", 1'000'000, 10000, 2000)) {
    std::smatch sm;
    if (m.key.rfind(name + "-", 0) == 0 && std::regex_search(m.value, sm, marker)) {
      out.insert(sm[2].str() + "/" + sm[1].str());
    }
  }
  return out;
}

struct Output {
  Committed readings;
  Committed windows;
  Committed late;
};

// Alerts delivered to the webhook, per pipeline name (the path).
class AlertHook {
 public:
  AlertHook() {
    http_.Post(R"(/(\w+))", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu_);
      got_[req.matches[1].str()].push_back(req.body);
      res.status = 200;
    });
    port_ = http_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { http_.listen_after_bind(); });
  }
  ~AlertHook() {
    http_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::vector<std::string> Bodies(const std::string& name) {
    std::lock_guard lock(mu_);
    return got_[name];
  }

 private:
  httplib::Server http_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::map<std::string, std::vector<std::string>> got_;
};

std::string Field(const std::string& json, const std::string& key) {
  const std::regex re("\"" + key + "\":\"([^\"]*)\"");
  std::smatch sm;
  return std::regex_search(json, sm, re) ? sm[1].str() : std::string();
}

// The distinct alerts delivered (at least once each): "id state". Every id depends on
// the input only (a stale alert fires when its sensor became stale, not at the watermark
// that noticed it), so a re-emission after a takeover carries the same id.
std::set<std::string> DistinctAlerts(const std::vector<std::string>& bodies) {
  std::set<std::string> out;
  for (const std::string& b : bodies) out.insert(Field(b, "id") + " " + Field(b, "state"));
  return out;
}

// Markers of one transactional id, read by a reader group of their own (`reader`).
size_t MarkerCount(KafkaMockCluster& kafka, const std::string& name, const std::string& key,
                   const std::string& reader) {
  size_t n = 0;
  for (const auto& m : kafka.ReadAll(name + ".checkpoints", 1'000'000, 10000, 2000, reader)) {
    if (m.key == key) ++n;
  }
  return n;
}

Output ReadOutput(KafkaMockCluster& kafka, const std::string& name) {
  std::set<std::string> markers = Markers(kafka, name);
  EXPECT_FALSE(markers.empty()) << name;
  Output o;
  o.readings = ReadCommitted(kafka, name + ".readings", markers, 30000);
  o.windows = ReadCommitted(kafka, name + ".windows", markers, 30000);
  o.late = ReadCommitted(kafka, name + ".late", markers, 6000);
  return o;
}

void CreateTopics(KafkaMockCluster& kafka, const std::string& name) {
  ASSERT_EQ(kafka.CreateTopic(name + ".readings", 3), "");
  ASSERT_EQ(kafka.CreateTopic(name + ".windows", 1), "");
  ASSERT_EQ(kafka.CreateTopic(name + ".late", 1), "");
  ASSERT_EQ(kafka.CreateTopic(name + ".checkpoints", 1), "");
  ASSERT_EQ(kafka.CreateTopic(name + ".state", 3), "");
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// How the second worker of the group goes away mid-stream.
struct Scenario {
  std::string strategy;        // partition.assignment.strategy of both workers
  bool freeze = false;         // SIGSTOP past its session timeout, then SIGCONT; else SIGKILL
  int slices = 60;             // the input is fed in this many slices, 500 ms apart
  int joined_ms = 12000;       // how long the second worker runs before
  int second_after_ms = 1500;  // when the second worker starts, after the first
};

// One worker alone, then two over the same input fed over time, the second of which
// goes away (Scenario) and is taken over by the first: the committed output and the
// distinct alerts of both runs must be equal.
void ScaleOut(const Scenario& sc) {
  KafkaMockCluster kafka(3);
  ASSERT_FALSE(kafka.bootstrap().empty());
  ASSERT_EQ(kafka.CreateTopic("sensors", kAreas), "");
  ASSERT_EQ(kafka.CreateTopic("sensors.fed", kAreas), "");
  std::vector<std::vector<std::pair<std::string, std::string>>> input;
  for (int a = 0; a < kAreas; ++a) {
    input.push_back(AreaInput(a));
    ASSERT_EQ(kafka.Produce("sensors", input.back(), a), "");
  }
  CreateTopics(kafka, "single");
  CreateTopics(kafka, "group");

  TempDir tmp;
  AlertHook hook;
  ASSERT_GT(hook.port(), 0);
  WriteFile(tmp.File("single.yaml"),
            Config(kafka.bootstrap(), "single", "sensors", "1", hook.port()));
  WriteFile(tmp.File("w1.yaml"),
            Config(kafka.bootstrap(), "group", "sensors.fed", "1", hook.port(), sc.strategy));
  WriteFile(tmp.File("w2.yaml"),
            Config(kafka.bootstrap(), "group", "sensors.fed", "2", hook.port(), sc.strategy));

  // One worker alone over the whole input; stopped with its last windows open (kept in
  // its final checkpoint), as the surviving worker is below.
  pid_t pid = SpawnTributaryRun(
      {tmp.File("single.yaml"), "--data-dir", tmp.File("single"), "--duration", "20s"},
      tmp.File("single.log"));
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(tmp.File("single.log"));
  Output single = ReadOutput(kafka, "single");
  const size_t total =
      static_cast<size_t>(2 * (kAreas * kDevicesPerArea * kPerDevice - (kPerDevice - kQuietFrom)));
  ASSERT_EQ(single.readings.records.size(), total) << ReadFile(tmp.File("single.log"));

  // Two workers over the same input, fed over time so that the kill lands mid-stream.
  std::thread feeder([&] {
    const int kSlices = sc.slices;
    for (int s = 0; s < kSlices; ++s) {
      for (int a = 0; a < kAreas; ++a) {
        const auto& all = input[static_cast<size_t>(a)];
        std::vector<std::pair<std::string, std::string>> slice(
            all.begin() + static_cast<long>(s * all.size() / kSlices),
            all.begin() + static_cast<long>((s + 1) * all.size() / kSlices));
        EXPECT_EQ(kafka.Produce("sensors.fed", slice, a), "");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  });
  const std::string log1 = tmp.File("w1.log");
  const std::string log2 = tmp.File("w2.log");
  pid_t w1 = SpawnTributaryRun({tmp.File("w1.yaml"), "--data-dir", tmp.File("w1")}, log1);
  ASSERT_GT(w1, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(sc.second_after_ms));
  pid_t w2 = SpawnTributaryRun({tmp.File("w2.yaml"), "--data-dir", tmp.File("w2")}, log2);
  ASSERT_GT(w2, 0);
  // Let the second worker join, take its share and commit some of it, then kill it.
  std::this_thread::sleep_for(std::chrono::milliseconds(sc.joined_ms));
  EXPECT_EQ(waitpid(w2, &status, WNOHANG), 0) << "worker 2 ended early:\n" << ReadFile(log2);
  if (!sc.freeze) {
    ::kill(w2, SIGKILL);
    waitpid(w2, &status, 0);
  } else {
    // Frozen past its session timeout (3 s): the group gives its partitions to worker 1,
    // which restores their last committed state. Thawed, worker 2 still holds an open
    // transaction with output and state of those partitions; it must not commit it.
    ::kill(w2, SIGSTOP);
    std::this_thread::sleep_for(std::chrono::milliseconds(9000));
    const size_t before = MarkerCount(kafka, "group", "group-2", "-frozen");
    EXPECT_GE(Count(ReadFile(log1), "assigned partitions restored from"), 2u) << ReadFile(log1);
    ::kill(w2, SIGCONT);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    pid_t done = 0;
    while (done == 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      done = waitpid(w2, &status, WNOHANG);
    }
    if (done == 0) {
      ADD_FAILURE() << "worker 2 ran on after its assignment was lost:\n" << ReadFile(log2);
      ::kill(w2, SIGKILL);
      waitpid(w2, &status, 0);
    } else {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << ReadFile(log2);
    }
    const std::string text = ReadFile(log2);
    EXPECT_TRUE(text.find("the group no longer knows this member") != std::string::npos ||
                text.find("no longer counts this member") != std::string::npos)
        << text;
    EXPECT_EQ(MarkerCount(kafka, "group", "group-2", "-thawed"), before)
        << "worker 2 committed after its assignment was lost:\n"
        << text;
    std::cerr << "worker 2 committed " << before << " checkpoints before it was frozen\n";
    for (size_t at = text.find("error"); at != std::string::npos; at = text.find("error", at + 1)) {
      std::cerr << "worker 2: " << text.substr(at, text.find('\n', at) - at) << "\n";
    }
  }
  feeder.join();
  // The input is complete: give the survivor time to read it all, then stop it (SIGTERM:
  // it stops like --duration, its final checkpoint commits with the last windows open).
  std::this_thread::sleep_for(std::chrono::milliseconds(20000));
  EXPECT_EQ(waitpid(w1, &status, WNOHANG), 0) << "worker 1 ended early:\n" << ReadFile(log1);
  ::kill(w1, SIGTERM);
  waitpid(w1, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(log1);
  const std::string text1 = ReadFile(log1);
  const std::string text2 = ReadFile(log2);
  // Worker 1 gave partitions up when worker 2 joined, and took them over after the kill.
  EXPECT_GE(Count(text1, "revoked partitions committed their state"), 1u) << text1;
  EXPECT_GE(Count(text1, "assigned partitions restored from"), 2u) << text1;
  EXPECT_GE(Count(text2, "assigned partitions restored from"), 1u) << text2;

  Output group = ReadOutput(kafka, "group");
  // Both workers committed output.
  EXPECT_GE(group.readings.runs.size(), 2u);
  EXPECT_GT(single.windows.records.size(), 200u);
  EXPECT_TRUE(group.readings.records == single.readings.records)
      << group.readings.records.size() << " committed readings of two workers, "
      << single.readings.records.size() << " of one";
  EXPECT_TRUE(group.windows.records == single.windows.records)
      << group.windows.records.size() << " committed windows of two workers, "
      << single.windows.records.size() << " of one";
  if (group.windows.records != single.windows.records) {
    std::vector<std::string> only_group;
    std::vector<std::string> only_single;
    std::set_difference(group.windows.records.begin(), group.windows.records.end(),
                        single.windows.records.begin(), single.windows.records.end(),
                        std::back_inserter(only_group));
    std::set_difference(single.windows.records.begin(), single.windows.records.end(),
                        group.windows.records.begin(), group.windows.records.end(),
                        std::back_inserter(only_single));
    for (size_t i = 0; i < std::min<size_t>(only_group.size(), 5); ++i) {
      std::cerr << "only with two workers: " << only_group[i] << "\n";
    }
    for (size_t i = 0; i < std::min<size_t>(only_single.size(), 5); ++i) {
      std::cerr << "only with one worker: " << only_single[i] << "\n";
    }
  }
  EXPECT_EQ(group.late.records, single.late.records);
  // QC ran: some committed readings carry flags of its checks (equal, above).
  static const std::regex qc_check(
      "\"qc_flags\":\\[[^\\]]*\"(SPIKE|FLATLINE|RATE_OF_CHANGE|NEIGHBOR_DISAGREEMENT)\"");
  EXPECT_GT(std::count_if(single.readings.records.begin(), single.readings.records.end(),
                          [](const std::string& r) { return std::regex_search(r, qc_check); }),
            0)
      << single.readings.records.front();

  // Alerts: the same distinct alerts from one worker and from two, every kind present.
  const std::vector<std::string> single_bodies = hook.Bodies("single");
  const std::vector<std::string> group_bodies = hook.Bodies("group");
  const std::set<std::string> single_alerts = DistinctAlerts(single_bodies);
  const std::set<std::string> group_alerts = DistinctAlerts(group_bodies);
  for (const char* rule : {"pm_high|", "dev_max|", "quiet|a0-dev-3|"}) {
    EXPECT_TRUE(std::any_of(single_alerts.begin(), single_alerts.end(), [&](const std::string& a) {
      return a.rfind(rule, 0) == 0;
    })) << rule;
  }
  EXPECT_EQ(std::count_if(single_alerts.begin(), single_alerts.end(),
                          [](const std::string& a) { return a.rfind("quiet|", 0) == 0; }),
            1);
  EXPECT_TRUE(group_alerts == single_alerts)
      << group_alerts.size() << " distinct alerts of two workers, " << single_alerts.size()
      << " of one";
  if (group_alerts != single_alerts) {
    std::vector<std::string> only_group;
    std::vector<std::string> only_single;
    std::set_difference(group_alerts.begin(), group_alerts.end(), single_alerts.begin(),
                        single_alerts.end(), std::back_inserter(only_group));
    std::set_difference(single_alerts.begin(), single_alerts.end(), group_alerts.begin(),
                        group_alerts.end(), std::back_inserter(only_single));
    for (size_t i = 0; i < std::min<size_t>(only_group.size(), 5); ++i) {
      std::cerr << "alert only with two workers: " << only_group[i] << "\n";
    }
    for (size_t i = 0; i < std::min<size_t>(only_single.size(), 5); ++i) {
      std::cerr << "alert only with one worker: " << only_single[i] << "\n";
    }
  }
  if (::testing::Test::HasFailure()) {
    // Per input partition: committed readings and their highest offset.
    static const std::regex where("\"partition\":([0-9]+),\"offset\":([0-9]+)");
    for (const Committed* c : {&single.readings, &group.readings}) {
      std::map<int, std::pair<int, long>> per;
      for (const std::string& r : c->records) {
        std::smatch sm;
        if (!std::regex_search(r, sm, where)) continue;
        auto& [n, top] = per[std::stoi(sm[1].str())];
        ++n;
        top = std::max(top, std::stol(sm[2].str()));
      }
      std::cerr << (c == &single.readings ? "one worker:" : "two workers:");
      for (const auto& [p, v] : per) std::cerr << " p" << p << "=" << v.first << "@" << v.second;
      std::cerr << "\n";
    }
    std::cerr << "--- worker 1:\n" << text1 << "--- worker 2:\n" << text2;
  }
  std::cerr << "two workers: " << group.readings.runs.size() << " runs committed readings; the "
            << "mock shows " << group.readings.visible << " reading messages, "
            << group.readings.records.size() << " of them committed; "
            << group.windows.records.size()
            << " window rows; alerts delivered: " << single_bodies.size() << " by one worker, "
            << group_bodies.size() << " by two (" << single_alerts.size() << " distinct)\n";
}

TEST(KafkaScaleOut, KilledWorkersPartitionsAreTakenOverFromTheirCommittedState) {
  ScaleOut({.strategy = "cooperative-sticky"});
}

// The eager protocol: every rebalance revokes (and commits) all partitions of every
// member, then assigns and restores them all.
TEST(KafkaScaleOut, EagerRebalancingTakesOverAsCooperativeDoes) {
  ScaleOut({.strategy = "range", .slices = 40, .joined_ms = 9000, .second_after_ms = 4500});
}

// Fencing: a worker frozen past its session timeout loses its assignment; thawed, it
// stops without committing, and the result is that of one worker.
TEST(KafkaScaleOut, WorkerWithALostAssignmentDoesNotCommit) {
  ScaleOut({.strategy = "cooperative-sticky",
            .freeze = true,
            .slices = 60,
            .joined_ms = 9000,
            .second_after_ms = 4500});
}

}  // namespace
}  // namespace tributary
