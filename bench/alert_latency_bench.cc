// In-process alert latency: from a raw JSON reading entering ingestion to its alert
// leaving through a delivery channel (the channel's Deliver call), one reading at a
// time, through ingestion, the window operator, the alert operator and the channel's
// worker with its persistent retry queue (SQLite, WAL). Every reading crosses the
// threshold one way or the other, so each produces one alert event (firing/resolved).
//
//   build/ci/bench/alert_latency_bench [readings]
//
// Prints p50/p99/p999/max in µs. The MQTT end-to-end variant (device publish →
// Mosquitto → tributary → Mosquitto → subscriber) is alert_mqtt_latency_bench.cc.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "alert/alert_operator.h"
#include "core/pipeline_config.h"
#include "ingest/ingest.h"
#include "stream/window.h"

using namespace tributary;

namespace {

std::atomic<int64_t> g_delivered_ns{0};
std::atomic<uint64_t> g_delivered{0};

int64_t SteadyNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class TimingChannel final : public AlertChannel {
 public:
  Status Deliver(const AlertMessage&) override {
    g_delivered_ns.store(SteadyNs());
    g_delivered.fetch_add(1);
    return Status::Ok();
  }
};

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 20000;
  std::string dir = std::filesystem::temp_directory_path() / "tributary_alert_bench";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  Result<PipelineConfig> config = ParsePipelineConfig(R"(
sources: [{name: s, type: simulator}]
windows: [{name: m1, type: tumbling, size: 1m, aggregates: [mean, max]}]
alerts:
  rules:
    - {name: pm_high, kind: reading_threshold, metric: pm25, level: 35, clear: 30}
)",
                                                      "bench.yaml");
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 1;
  }
  Ledger ledger;
  RunContext ctx;
  ctx.config = &*config;
  ctx.ledger = &ledger;
  ctx.data_dir = dir;
  auto ingest = IngestStage::Make(*config);
  auto window = MakeWindowOperator(*config);
  auto rules = ParseAlertRules(*config);
  if (!ingest.ok() || !window.ok() || !rules.ok()) return 1;
  std::vector<std::pair<ChannelOptions, std::unique_ptr<AlertChannel>>> channels;
  ChannelOptions co;
  co.name = "timing";
  co.retry_initial = 1000;
  co.retry_max = 1000000;
  co.max_pending = 100000;
  channels.emplace_back(co, std::make_unique<TimingChannel>());
  AlertOperator alerts(std::move(*rules), AlertDispatcher::FromChannels(std::move(channels)),
                       dir + "/queue.db", kMicrosPerSecond);
  if (!(*ingest)->Open(ctx).ok() || !(*window)->Open(ctx).ok() || !alerts.Open(ctx).ok()) return 1;

  std::vector<double> lat_us;
  lat_us.reserve(static_cast<size_t>(n));
  const int64_t t0_ms = 1714564800000;
  Symbol topic = Intern("bench");
  for (int i = 0; i < n; ++i) {
    std::string payload =
        "{\"device_id\":\"d1\",\"timestamp\":" + std::to_string(t0_ms + int64_t{i} * 1000) +
        ",\"lat\":52.5,\"lon\":13.4,\"pm25\":" + (i % 2 == 0 ? "40" : "20") + "}";
    RawBatch raw;
    uint64_t before = g_delivered.load();
    int64_t start = SteadyNs();
    raw.Add(payload, NowUs(), topic, i + 1);
    Batch batch;
    if (!(*ingest)->Process(raw, batch).ok() || !(*window)->Process(batch).ok() ||
        !alerts.Process(batch).ok()) {
      return 1;
    }
    while (g_delivered.load() == before) std::this_thread::yield();
    lat_us.push_back(static_cast<double>(g_delivered_ns.load() - start) / 1000.0);
  }
  Batch out;
  (void)(*window)->Finish(out);
  (void)alerts.Finish(out);
  std::sort(lat_us.begin(), lat_us.end());
  auto pct = [&](double q) {
    return lat_us[std::min(lat_us.size() - 1, static_cast<size_t>(q * lat_us.size()))];
  };
  std::printf(
      "in-process reading -> alert delivered (%d alerts): p50 %.1f us  p99 %.1f us  "
      "p999 %.1f us  max %.1f us\n",
      n, pct(0.50), pct(0.99), pct(0.999), lat_us.back());
  std::filesystem::remove_all(dir);
  return 0;
}
