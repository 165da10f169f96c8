// End-to-end processing benchmark: simulated JSON payloads held in memory go through
// ingestion (decode, normalise, validate, dedup) and the window operator (1-minute
// tumbling windows per device and metric). Generation is not timed.
//
//   build/release/bench/pipeline_bench [messages] [devices] [--qc | --e2e]
//
// Prints a human summary and, as the last line, one JSON object with readings/s and
// peak RSS.
//
// With --qc the chain is ingestion → zone enrichment (the built-in districts) → window,
// run alternately without and with the QC operator (stream/qc/qc.h) between enrichment
// and windows, three times each on the same input; the best run of each is reported with
// the throughput ratio, so a loaded machine disturbs both sides alike.
//
// With --e2e the whole pipeline runs as `tributary run` runs it: the embedded default
// (simulator source generating as fast as possible for messages / devices simulated
// minutes, zones, three window kinds, the PM2.5 surface, the threshold alert, the
// SQLite store in a temporary data folder) on the runtime's threads, alternately with
// every quality-control stage off (qc disabled, no anomaly section, no pattern rules)
// and on (qc, calibration drift of 50 sensor/reference pairs with correction, the
// isolation forest over five air-quality metrics, one co-occurrence and one sequence
// rule), three times each. Generation, ingestion and the store are all timed. Both sides
// read the same registry (the reference pairs), so ingestion is identical. The forest
// trains its first models after 240 minutes rather than the default day, so that most
// of the run is scored. Reported: the best wall time of each side, their throughput
// ratio, and the process CPU time of each (user + system, all threads).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "ingest/ingest.h"
#include "io/sources/simulator.h"
#include "spatial/enrich.h"
#include "stream/qc/qc.h"
#include "stream/runtime.h"
#include "stream/window.h"

using namespace tributary;

namespace {

double PeakRssMb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

[[noreturn]] void Die(const Status& st) {
  std::fprintf(stderr, "pipeline_bench: %s\n", st.ToString().c_str());
  std::exit(1);
}

struct RunResult {
  double secs = 0;
  double qc_secs = 0;  // inside the QC operator
  uint64_t windows = 0;
  uint64_t flagged = 0;
  LedgerSnapshot ledger;
};

// One timed pass over `batches` with fresh operators.
RunResult RunOnce(const PipelineConfig& config, const std::vector<RawBatch>& batches, bool zones,
                  bool qc) {
  Result<std::unique_ptr<IngestStage>> ingest = IngestStage::Make(config);
  if (!ingest.ok()) Die(ingest.status());
  std::vector<std::unique_ptr<Operator>> chain;
  if (zones) {
    Result<std::unique_ptr<Operator>> enrich = MakeZoneEnrichOperator(config);
    if (!enrich.ok()) Die(enrich.status());
    if (*enrich) chain.push_back(std::move(*enrich));
  }
  if (qc) {
    Result<std::unique_ptr<QcOperator>> op = MakeQcOperator(config);
    if (!op.ok()) Die(op.status());
    if (*op) chain.push_back(std::move(*op));
  }
  Result<std::unique_ptr<Operator>> window = MakeWindowOperator(config);
  if (!window.ok()) Die(window.status());
  chain.push_back(std::move(*window));
  Ledger ledger;
  RunContext ctx;
  ctx.config = &config;
  ctx.ledger = &ledger;
  if (Status st = (*ingest)->Open(ctx); !st.ok()) Die(st);
  for (auto& op : chain) {
    if (Status st = op->Open(ctx); !st.ok()) Die(st);
  }
  RunResult out;
  auto start = std::chrono::steady_clock::now();
  for (const RawBatch& raw : batches) {
    Batch batch;
    if (Status st = (*ingest)->Process(raw, batch); !st.ok()) Die(st);
    for (auto& op : chain) {
      auto t0 = std::chrono::steady_clock::now();
      if (Status st = op->Process(batch); !st.ok()) Die(st);
      if (op->name() == "qc") {
        out.qc_secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
    }
    out.windows += batch.windows.size();
    for (const Reading& r : batch.readings) out.flagged += r.qc_score >= 1.0f;
  }
  Batch tail;
  if (Status st = chain.back()->Finish(tail); !st.ok()) Die(st);
  out.windows += tail.windows.size();
  out.secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out.ledger = ledger.Snapshot();
  return out;
}

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto secs = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return secs(usage.ru_utime) + secs(usage.ru_stime);
}

// Replace the first occurrence of `from` in `text` with `to` (which must be there).
void ReplaceOnce(std::string& text, std::string_view from, std::string_view to) {
  size_t at = text.find(from);
  if (at == std::string::npos) {
    std::fprintf(stderr, "pipeline_bench: the embedded default has no '%.*s'\n",
                 static_cast<int>(from.size()), from.data());
    std::exit(1);
  }
  text.replace(at, from.size(), to);
}

// The embedded default with a bounded, fast simulator, a data folder of its own and the
// QC stages on or off.
std::string EndToEndYaml(const std::string& root, const std::string& dir, int64_t devices,
                         int64_t minutes, bool qc) {
  std::string yaml(EmbeddedDefaultConfig());
  ReplaceOnce(yaml, "  name: embedded-default\n",
              "  name: embedded-default\n  data_dir: " + dir + "\n");
  ReplaceOnce(yaml, "  grace: 15m\n", "  grace: 15m\n  registry: " + root + "/registry.yaml\n");
  ReplaceOnce(yaml, "    speed: 300 ",
              "    devices: " + std::to_string(devices) + "\n    start: 2024-05-01T00:00:00Z\n" +
                  "    duration: " + std::to_string(minutes) +
                  "m\n    as_fast_as_possible: true\n    speed: 0 ");
  ReplaceOnce(yaml, "  enabled: true          # neighbours",
              std::string("  enabled: ") + (qc ? "true " : "false") + "         # neighbours");
  if (qc) {
    ReplaceOnce(yaml, "alerts:  ", R"(anomaly:
  drift:
    enabled: true
    metrics: [pm25, no2]
    min_pairs: 6
    window: 24h
    apply_correction: true
  iforest:
    enabled: true
    metrics: [pm25, pm10, no2, temperature, humidity]
    min_samples: 240
    shadow: 30m
alerts:  )");
    ReplaceOnce(yaml, "  rules:\n", R"(  patterns:
    - name: front
      kind: co_occurrence
      within: 30m
      radius_m: 8000
      conditions:
        - {metric: temperature, trend: rising, min_change: 3}
        - {metric: pressure, trend: falling, min_change: 2}
    - name: plume
      kind: sequence
      count: 3
      within: 30m
      radius_m: 3000
      conditions: [{metric: pm25, trend: rising, min_change: 20, over: 10m}]
  rules:
)");
  }
  return yaml;
}

struct EndToEnd {
  double secs = 0, cpu = 0;
  LedgerSnapshot ledger;
};

EndToEnd RunEndToEnd(const std::string& root, int64_t devices, int64_t minutes, bool qc) {
  const std::string dir = root + (qc ? "/qc" : "/plain");
  std::filesystem::remove_all(dir);
  Result<PipelineConfig> config =
      ParsePipelineConfig(EndToEndYaml(root, dir, devices, minutes, qc), "<bench>");
  if (!config.ok()) Die(config.status());
  Result<std::unique_ptr<Pipeline>> p = Pipeline::Build(*config);
  if (!p.ok()) Die(p.status());
  EndToEnd out;
  double cpu0 = CpuSeconds();
  auto t0 = std::chrono::steady_clock::now();
  if (Status st = (*p)->Run(); !st.ok()) Die(st);
  out.secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.cpu = CpuSeconds() - cpu0;
  out.ledger = (*p)->LedgerNow();
  std::filesystem::remove_all(dir);
  return out;
}

int EndToEndCompare(uint64_t messages, int64_t devices) {
  const int64_t minutes =
      std::max<int64_t>(1, static_cast<int64_t>(messages) / std::max<int64_t>(devices, 1));
  const std::string root =
      (std::filesystem::temp_directory_path() / ("pipeline_bench_" + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(root);
  {
    // Every even-numbered air-quality node is co-located with the node before it.
    std::ofstream reg(root + "/registry.yaml");
    reg << "devices:\n";
    for (int n = 2; n <= 100; n += 2) {
      char line[64];
      std::snprintf(line, sizeof line, "  aq-%04d: {reference: aq-%04d}\n", n, n - 1);
      reg << line;
    }
  }
  EndToEnd best[2];
  for (int round = 0; round < 3; ++round) {
    for (int with_qc = 0; with_qc < 2; ++with_qc) {
      EndToEnd r = RunEndToEnd(root, devices, minutes, with_qc == 1);
      std::printf("round %d %-8s %.3f s wall, %.3f s CPU, %.0f readings/s\n", round,
                  with_qc ? "qc" : "no qc", r.secs, r.cpu,
                  static_cast<double>(r.ledger.input) / r.secs);
      std::fflush(stdout);
      if (best[with_qc].secs == 0 || r.secs < best[with_qc].secs) best[with_qc] = r;
    }
  }
  std::filesystem::remove_all(root);
  double base = static_cast<double>(best[0].ledger.input) / best[0].secs;
  double with = static_cast<double>(best[1].ledger.input) / best[1].secs;
  double cost = 1.0 - with / base;
  double cpu_cost = 1.0 - best[0].cpu / best[1].cpu;
  std::printf(
      "end to end, %lld devices × %lld min, %llu readings: without QC %.0f readings/s, with "
      "every QC stage %.0f readings/s; QC costs %.1f %% of throughput (CPU %.2f s vs %.2f s: "
      "%.1f %% of the QC run's CPU time)\n",
      static_cast<long long>(devices), static_cast<long long>(minutes),
      static_cast<unsigned long long>(best[1].ledger.input), base, with, 100.0 * cost, best[0].cpu,
      best[1].cpu, 100.0 * cpu_cost);
  std::printf(
      "{\"bench\":\"pipeline_e2e_qc\",\"devices\":%lld,\"minutes\":%lld,\"readings\":%llu,"
      "\"readings_per_s_without_qc\":%.0f,\"readings_per_s_with_qc\":%.0f,\"qc_cost\":%.4f,"
      "\"cpu_s_without_qc\":%.3f,\"cpu_s_with_qc\":%.3f,\"peak_rss_mb\":%.1f}\n",
      static_cast<long long>(devices), static_cast<long long>(minutes),
      static_cast<unsigned long long>(best[1].ledger.input), base, with, cost, best[0].cpu,
      best[1].cpu, PeakRssMb());
  return best[0].ledger.balanced() && best[1].ledger.balanced() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  bool qc_compare = false;
  bool e2e = false;
  std::vector<char*> args;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--qc") {
      qc_compare = true;
    } else if (std::string_view(argv[i]) == "--e2e") {
      e2e = true;
    } else {
      args.push_back(argv[i]);
    }
  }
  const uint64_t target_messages = !args.empty() ? std::strtoull(args[0], nullptr, 10) : 1000000;
  const int64_t devices = args.size() > 1 ? std::strtoll(args[1], nullptr, 10) : 1000;
  if (e2e) return EndToEndCompare(target_messages, devices);

  std::string yaml = R"(pipeline:
  name: bench
sources:
  - name: simulator
    type: simulator
windows:
  - name: device_1m
    type: tumbling
    size: 1m
    group_by: device
    aggregates: [count, mean, min, max]
)";
  if (qc_compare) {
    yaml += R"(zones:
  layers:
    - name: district
      path: builtin:city_districts
      id_field: district_id
)";
  }
  Result<PipelineConfig> config = ParsePipelineConfig(yaml, "<bench>");
  if (!config.ok()) Die(config.status());

  // Generate the input in memory, in batches as the source would hand them on.
  SimulatorOptions sim_options;
  sim_options.devices = devices;
  sim_options.start = 1714521600LL * kMicrosPerSecond;  // 2024-05-01T00:00:00Z
  sim_options.as_fast_as_possible = true;
  Simulator sim(sim_options);
  std::vector<RawBatch> batches;
  SimMessage msg;
  Symbol topic = Intern("sim");
  uint64_t messages = 0;
  while (messages < target_messages && sim.Next(msg)) {
    if (batches.empty() || batches.back().size() >= config->batch_size) batches.emplace_back();
    batches.back().Add(msg.payload, msg.arrival_time, topic, static_cast<int64_t>(msg.sequence), 0);
    ++messages;
  }
  double input_mb = 0;
  for (const RawBatch& b : batches) input_mb += static_cast<double>(b.data.size()) / 1e6;

  if (qc_compare) {
    RunResult best[2];
    for (int round = 0; round < 3; ++round) {
      for (int with_qc = 0; with_qc < 2; ++with_qc) {
        RunResult r = RunOnce(*config, batches, true, with_qc == 1);
        std::printf("round %d %-8s %.3f s (%.3f s in QC), %.0f readings/s, %llu flagged\n", round,
                    with_qc ? "qc" : "no qc", r.secs, r.qc_secs,
                    static_cast<double>(r.ledger.input) / r.secs,
                    static_cast<unsigned long long>(r.flagged));
        if (best[with_qc].secs == 0 || r.secs < best[with_qc].secs) best[with_qc] = r;
      }
    }
    double base = static_cast<double>(best[0].ledger.input) / best[0].secs;
    double with = static_cast<double>(best[1].ledger.input) / best[1].secs;
    double cost = 1.0 - with / base;
    std::printf(
        "messages %llu, readings %llu: without QC %.0f readings/s, with QC %.0f "
        "readings/s; QC costs %.1f %% of throughput; %llu readings flagged (%.2f %%)\n",
        static_cast<unsigned long long>(messages),
        static_cast<unsigned long long>(best[1].ledger.input), base, with, 100.0 * cost,
        static_cast<unsigned long long>(best[1].flagged),
        100.0 * static_cast<double>(best[1].flagged) /
            static_cast<double>(std::max<uint64_t>(best[1].ledger.accepted, 1)));
    std::printf(
        "{\"bench\":\"pipeline_qc\",\"messages\":%llu,\"readings\":%llu,"
        "\"readings_per_s_without_qc\":%.0f,\"readings_per_s_with_qc\":%.0f,"
        "\"qc_cost\":%.4f,\"flagged\":%llu,\"peak_rss_mb\":%.1f}\n",
        static_cast<unsigned long long>(messages),
        static_cast<unsigned long long>(best[1].ledger.input), base, with, cost,
        static_cast<unsigned long long>(best[1].flagged), PeakRssMb());
    return best[0].ledger.balanced() && best[1].ledger.balanced() ? 0 : 1;
  }

  RunResult r = RunOnce(*config, batches, false, false);
  const double secs = r.secs;
  const uint64_t windows = r.windows;
  const LedgerSnapshot& l = r.ledger;
  double readings_per_s = static_cast<double>(l.input) / secs;
  std::printf(
      "messages %llu (%.1f MB JSON), readings in %llu, accepted %llu, quarantined %llu, "
      "late %llu, duplicate %llu, windows %llu, balanced %s\n",
      static_cast<unsigned long long>(messages), input_mb, static_cast<unsigned long long>(l.input),
      static_cast<unsigned long long>(l.accepted), static_cast<unsigned long long>(l.quarantined),
      static_cast<unsigned long long>(l.late), static_cast<unsigned long long>(l.duplicate),
      static_cast<unsigned long long>(windows), l.balanced() ? "yes" : "NO");
  std::printf("%.3f s: %.0f readings/s, %.0f messages/s, %.1f MB/s of JSON, one core\n", secs,
              readings_per_s, static_cast<double>(messages) / secs, input_mb / secs);
  std::printf(
      "{\"bench\":\"pipeline\",\"messages\":%llu,\"readings\":%llu,\"seconds\":%.4f,"
      "\"readings_per_s\":%.0f,\"messages_per_s\":%.0f,\"windows\":%llu,\"peak_rss_mb\":%.1f}\n",
      static_cast<unsigned long long>(messages), static_cast<unsigned long long>(l.input), secs,
      readings_per_s, static_cast<double>(messages) / secs,
      static_cast<unsigned long long>(windows), PeakRssMb());
  return l.balanced() ? 0 : 1;
}
