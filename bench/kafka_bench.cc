// Kafka consume → process → produce: JSON readings on a 3-broker librdkafka mock cluster
// (loopback TCP, real Kafka protocol) go through a `kafka` source, the whole pipeline
// (decode, normalise, validate, dedup, 1-minute windows) and a `kafka` sink producing
// every reading keyed by its H3 cell. Producing the input is not timed.
//
//   build/ci/bench/kafka_bench [messages] [partitions]
//
// Prints readings/s from the first consumed record until the final commit (every reading
// acknowledged by the brokers) and, as the last line, one JSON object with the figures
// and peak RSS.
//
// The mock cluster appears to keep only about 5 MB per partition (6 partitions held
// ~290,000 of 500,000 messages) and drops older ones, so the input
// must stay below that per partition (1,000,000 messages of ~110 bytes need 24
// partitions); with fewer, the run waits for records that are gone.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "core/pipeline_config.h"
#include "core/time.h"
#include "io/kafka_client.h"
#include "stream/runtime.h"

using namespace tributary;

namespace {

double PeakRssMb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "kafka_bench: %s\n", what.c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  const long messages = argc > 1 ? std::atol(argv[1]) : 1'000'000;
  const int partitions = argc > 2 ? std::atoi(argv[2]) : 24;

  Result<KafkaConf> owner_conf = MakeKafkaConf({{"log_level", "3"}});
  if (!owner_conf.ok()) Die(owner_conf.status().ToString());
  Result<KafkaHandle> owner = MakeKafkaHandle(RD_KAFKA_PRODUCER, std::move(*owner_conf));
  if (!owner.ok()) Die(owner.status().ToString());
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(owner->get(), 3);
  if (cluster == nullptr) Die("cannot start the mock cluster");
  const std::string bootstrap = rd_kafka_mock_cluster_bootstraps(cluster);
  rd_kafka_mock_topic_create(cluster, "bench.in", partitions, 3);
  rd_kafka_mock_topic_create(cluster, "bench.out", partitions, 3);

  {
    Result<KafkaConf> conf = MakeKafkaConf({{"bootstrap.servers", bootstrap},
                                            {"linger.ms", "20"},
                                            {"batch.num.messages", "10000"},
                                            {"queue.buffering.max.messages", "1000000"}});
    if (!conf.ok()) Die(conf.status().ToString());
    Result<KafkaHandle> rk = MakeKafkaHandle(RD_KAFKA_PRODUCER, std::move(*conf));
    if (!rk.ok()) Die(rk.status().ToString());
    const int64_t base_ms = NowUs() / 1000 - 24LL * 3600 * 1000;
    for (long i = 0; i < messages; ++i) {
      const long device = i % 1000;
      std::string v = "{\"device_id\":\"dev-" + std::to_string(device) +
                      "\",\"sensor_ts\":" + std::to_string(base_ms + 1000 * (i / 1000)) +
                      ",\"lat\":" + std::to_string(45.0 + 0.01 * static_cast<double>(device)) +
                      ",\"lon\":9.5,\"pm25\":" + std::to_string(i % 300) + "}";
      std::string key = "dev-" + std::to_string(device);
      while (rd_kafka_producev(
                 rk->get(), RD_KAFKA_V_TOPIC("bench.in"), RD_KAFKA_V_KEY(key.data(), key.size()),
                 RD_KAFKA_V_VALUE(v.data(), v.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(rk->get(), 10);
      }
    }
    if (rd_kafka_flush(rk->get(), 120000) != RD_KAFKA_RESP_ERR_NO_ERROR) Die("input flush");
  }
  std::fprintf(stderr, "kafka_bench: %ld messages in bench.in (%d partitions)\n", messages,
               partitions);

  char dir_template[] = "/tmp/kafka_bench_XXXXXX";
  if (mkdtemp(dir_template) == nullptr) Die("mkdtemp");
  const std::string yaml =
      "pipeline:\n  name: kafka-bench\n  data_dir: " + std::string(dir_template) +
      "\n  batch_size: 4096\n"
      "sources:\n  - name: in\n    type: kafka\n    brokers: " +
      bootstrap +
      "\n    topics: [bench.in]\n    poll_records: 4000\n    poll_records_min: 1000\n"
      "    max_uncommitted: 2000000\n"
      "windows:\n  - name: m1\n    size: 1m\n    group_by: device\n"
      "sinks:\n  - name: out\n    type: kafka\n    brokers: " +
      bootstrap +
      "\n    readings_topic: bench.out\n    windows_topic: ''\n"
      "    properties: [linger.ms=20, batch.num.messages=10000, "
      "queue.buffering.max.messages=1000000]\n";
  Result<PipelineConfig> config = ParsePipelineConfig(yaml, "kafka_bench.yaml");
  if (!config.ok()) Die(config.status().ToString());
  Result<std::unique_ptr<Pipeline>> pipeline = Pipeline::Build(*config);
  if (!pipeline.ok()) Die(pipeline.status().ToString());
  Pipeline& p = **pipeline;

  TimeUs first = 0;
  TimeUs last = 0;
  std::thread watcher([&] {
    while (!p.running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    while (p.running()) {
      LedgerSnapshot s = p.LedgerNow();
      if (first == 0 && s.input > 0) first = NowUs();
      if (s.input >= static_cast<uint64_t>(messages)) {
        last = NowUs();
        p.Stop();
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  Status st = p.Run(600 * kMicrosPerSecond);
  const TimeUs done = NowUs();
  watcher.join();
  if (!st.ok()) Die(st.ToString());
  LedgerSnapshot s = p.LedgerNow();
  // Until the final commit: every reading is acknowledged by the brokers by then.
  const double seconds = static_cast<double>(done - first) / kMicrosPerSecond;
  const double consumed_s = static_cast<double>(last - first) / kMicrosPerSecond;
  std::printf(
      "consumed %llu records in %.2f s; consumed, processed and produced %llu readings "
      "in %.2f s: %.0f readings/s (peak RSS %.0f MB)\n",
      static_cast<unsigned long long>(s.input), consumed_s,
      static_cast<unsigned long long>(s.accepted), seconds,
      static_cast<double>(s.accepted) / seconds, PeakRssMb());
  std::printf(
      "{\"bench\":\"kafka\",\"messages\":%ld,\"accepted\":%llu,\"seconds\":%.3f,"
      "\"readings_per_s\":%.0f,\"peak_rss_mb\":%.0f}\n",
      messages, static_cast<unsigned long long>(s.accepted), seconds,
      static_cast<double>(s.accepted) / seconds, PeakRssMb());
  rd_kafka_mock_cluster_destroy(cluster);
  return 0;
}
