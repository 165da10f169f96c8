// Scaling out: 1 against 2 `tributary run` worker processes in one consumer group on a
// librdkafka mock cluster (3 brokers inside this process, loopback TCP).
//
//   build/ci/bench/kafka_scale_bench [messages] [partitions] [tributary binary] [state]
//
// With `state` the workers keep partition-owned state (docs/SCALING.md): checkpoints
// every second, each one Kafka transaction with the output, the offsets and the state of
// every partition on a changelog topic.
// The input (JSON readings keyed by device, 1000 devices) is produced once, untimed.
// For each worker count the workers start together with a fresh group and a pipeline
// of kafka source → decode/validate/dedup → 1-minute windows per device → kafka sink;
// the time counted runs from the group's first committed offset to the moment its
// committed offsets cover every message (joining the group is not counted). Prints
// records/s per worker count and the ratio 2 workers / 1 worker, and as the last line
// one JSON object. Figures from a machine shared with other work are depressed; the
// ratio is what to read.
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/time.h"
#include "io/kafka_client.h"

extern char** environ;

using namespace tributary;

namespace {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "kafka_scale_bench: %s\n", what.c_str());
  std::exit(1);
}

int64_t CommittedTotal(const std::string& bootstrap, const std::string& group, int partitions) {
  Result<KafkaConf> conf = MakeKafkaConf({{"bootstrap.servers", bootstrap}, {"group.id", group}});
  if (!conf.ok()) Die(conf.status().ToString());
  Result<KafkaHandle> rk = MakeKafkaHandle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!rk.ok()) Die(rk.status().ToString());
  KafkaPartitionList list(rd_kafka_topic_partition_list_new(partitions));
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list.get(), "scale.in", p);
  int64_t total = 0;
  if (rd_kafka_committed(rk->get(), list.get(), 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < list->cnt; ++i) total += std::max<int64_t>(list->elems[i].offset, 0);
  }
  rd_kafka_consumer_close(rk->get());
  return total;
}

pid_t Spawn(const std::string& binary, const std::string& config, const std::string& data_dir,
            const std::string& log) {
  std::vector<std::string> args{binary,   "run",      config, "--data-dir",
                                data_dir, "--listen", "off",  "--quiet"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

struct Figures {
  double seconds = 0;
  double records_per_s = 0;
};

Figures RunWorkers(int workers, const std::string& binary, const std::string& bootstrap,
                   long messages, int partitions, const std::string& dir, bool state) {
  const std::string group = "scale-" + std::to_string(workers) + (state ? "-state" : "");
  std::vector<pid_t> pids;
  for (int w = 0; w < workers; ++w) {
    const std::string config = dir + "/" + group + "-" + std::to_string(w) + ".yaml";
    std::ofstream(config) << "pipeline:\n  name: " << group << "\n  batch_size: 4096\n"
                          << "  commit_interval: 200ms\n"
                          << "sources:\n  - name: in\n    type: kafka\n    brokers: " << bootstrap
                          << "\n    topics: [scale.in]\n    group_id: " << group
                          << "\n    poll_records: 4000\n    poll_records_min: 1000\n"
                          << "    max_uncommitted: 2000000\n"
                          << "    properties: [partition.assignment.strategy=cooperative-sticky]\n"
                          << "windows:\n  - name: m1\n    size: 1m\n    group_by: device\n"
                          << "sinks:\n  - name: out\n    type: kafka\n    brokers: " << bootstrap
                          << "\n    readings_topic: scale.out\n    windows_topic: ''\n"
                          << "    properties: [linger.ms=20, batch.num.messages=10000]\n";
    if (state) {
      // Partition-owned state (docs/SCALING.md): checkpoints every second, each one
      // transaction with the output, the offsets and every partition's state.
      std::ofstream(config, std::ios::app)
          << "    breaker: false\n    transactional_id: " << group << "-" << w
          << "\n    checkpoint_topic: " << group << ".checkpoints\n    state_topic: " << group
          << ".state\nqc:\n  enabled: false\ncheckpoint:\n  enabled: true\n  interval: 1s\n";
    }
    pids.push_back(Spawn(binary, config, dir + "/" + group + "-" + std::to_string(w),
                         dir + "/" + group + "-" + std::to_string(w) + ".log"));
    if (pids.back() < 0) Die("cannot start " + binary);
  }
  TimeUs first = 0;
  TimeUs last = 0;
  const TimeUs deadline = NowUs() + 600 * kMicrosPerSecond;
  while (NowUs() < deadline) {
    const int64_t committed = CommittedTotal(bootstrap, group, partitions);
    const TimeUs now = NowUs();
    if (first == 0 && committed > 0) first = now;
    if (committed >= messages) {
      last = now;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (pid_t pid : pids) ::kill(pid, SIGTERM);
  for (pid_t pid : pids) waitpid(pid, nullptr, 0);
  if (last == 0) Die(group + ": the group did not commit every message within 600 s");
  Figures f;
  f.seconds = static_cast<double>(last - first) / kMicrosPerSecond;
  f.records_per_s = static_cast<double>(messages) / f.seconds;
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const long messages = argc > 1 ? std::atol(argv[1]) : 300'000;
  const int partitions = argc > 2 ? std::atoi(argv[2]) : 12;
  const std::string binary = argc > 3 ? argv[3] : "build/ci/tributary";
  // "state": workers keep partition-owned state in a changelog topic.
  const bool state = argc > 4 && std::string(argv[4]) == "state";
  if (access(binary.c_str(), X_OK) != 0) Die(binary + " is not an executable (third argument)");

  Result<KafkaConf> owner_conf = MakeKafkaConf({{"log_level", "3"}});
  if (!owner_conf.ok()) Die(owner_conf.status().ToString());
  Result<KafkaHandle> owner = MakeKafkaHandle(RD_KAFKA_PRODUCER, std::move(*owner_conf));
  if (!owner.ok()) Die(owner.status().ToString());
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(owner->get(), 3);
  if (cluster == nullptr) Die("cannot start the mock cluster");
  const std::string bootstrap = rd_kafka_mock_cluster_bootstraps(cluster);
  rd_kafka_mock_topic_create(cluster, "scale.in", partitions, 3);
  rd_kafka_mock_topic_create(cluster, "scale.out", partitions, 3);
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
                 rk->get(), RD_KAFKA_V_TOPIC("scale.in"), RD_KAFKA_V_KEY(key.data(), key.size()),
                 RD_KAFKA_V_VALUE(v.data(), v.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(rk->get(), 10);
      }
    }
    if (rd_kafka_flush(rk->get(), 120000) != RD_KAFKA_RESP_ERR_NO_ERROR) Die("input flush");
  }
  std::fprintf(stderr, "kafka_scale_bench: %ld messages in scale.in (%d partitions)\n", messages,
               partitions);
  char dir_template[] = "/tmp/kafka_scale_bench_XXXXXX";
  if (mkdtemp(dir_template) == nullptr) Die("mkdtemp");
  Figures one = RunWorkers(1, binary, bootstrap, messages, partitions, dir_template, state);
  std::printf("1 worker:  %ld records in %.2f s: %.0f records/s\n", messages, one.seconds,
              one.records_per_s);
  Figures two = RunWorkers(2, binary, bootstrap, messages, partitions, dir_template, state);
  std::printf("2 workers: %ld records in %.2f s: %.0f records/s\n", messages, two.seconds,
              two.records_per_s);
  const double ratio = two.records_per_s / one.records_per_s;
  std::printf("ratio 2 workers / 1 worker: %.2f\n", ratio);
  std::printf(
      "{\"bench\":\"kafka_scale\",\"state\":%s,\"messages\":%ld,\"partitions\":%d,\"one_worker_per_"
      "s\":%.0f,"
      "\"two_workers_per_s\":%.0f,\"ratio\":%.3f}\n",
      state ? "true" : "false", messages, partitions, one.records_per_s, two.records_per_s, ratio);
  rd_kafka_mock_cluster_destroy(cluster);
  return 0;
}
