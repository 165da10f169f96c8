// End-to-end alert latency through a real broker: a device publishes a reading to a
// local Mosquitto, tributary's `mqtt` source receives it, ingestion, the window stage and
// the alert operator raise an alert, the `mqtt` alert channel publishes it to the same
// broker, and a subscriber receives it. Latency = receive time − publish time, both
// CLOCK_REALTIME on this machine.
//
//   build/ci/bench/alert_mqtt_latency_bench [readings=50000] [rate=10000] [alert_every=1]
//
// The benchmark starts its own mosquitto (from PATH or /usr/sbin) on a free loopback
// port in a temporary folder. Readings go to `dev/<device>` at `rate` per second (paced
// against the steady clock; 200 devices); every `alert_every`-th reading of a device
// crosses the PM2.5 threshold one way or the other (35 up, 30 down), so it produces
// exactly one alert event. One warm-up alert opens the channel's connection before the
// clock starts. The subscriber runs in a child process (Paho's synchronous
// client shares one receive thread per process, which the source also uses). Prints
// the achieved publish rate, alerts received and p50/p99/p999/max in µs.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/pipeline_config.h"
#include "io/mqtt_client.h"
#include "stream/runtime.h"

using namespace tributary;

namespace {

constexpr int kDevices = 200;

int64_t RealNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

bool PortOpen(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string Mosquitto() {
  for (const char* p : {"/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return {};
}

// The subscriber process: writes "<event_time_us> <receive_ns>\n" per alert to `fd`.
// With `direct`, it subscribes to the readings themselves (the broker-only baseline) and
// writes their sensor_ts instead.
[[noreturn]] void Subscriber(const std::string& broker, bool direct, int fd, int ready_fd) {
  MqttConnectOptions o;
  o.broker = broker;
  o.client_id = "bench-subscriber";
  o.clean_session = true;
  std::string buf;
  auto client = MqttClient::Create(
      o,
      [&](std::string_view, std::string_view payload, int) {
        int64_t now = RealNs();
        if (direct) {  // "sensor_ts":<ms>,
          size_t p = payload.find("\"sensor_ts\":");
          if (p == std::string_view::npos) return;
          std::string line = std::to_string(std::atoll(payload.data() + p + 12) * 1000) + " " +
                             std::to_string(now) + "\n";
          (void)!::write(fd, line.data(), line.size());
          return;
        }
        // "event_time":"2024-...Z"
        size_t p = payload.find("\"event_time\":\"");
        if (p == std::string_view::npos) return;
        p += 14;
        size_t e = payload.find('"', p);
        Result<TimeUs> t = ParseTime(payload.substr(p, e - p));
        if (!t.ok()) return;
        std::string line = std::to_string(*t) + " " + std::to_string(now) + "\n";
        (void)!::write(fd, line.data(), line.size());
      },
      [](const std::string&) {});
  if (!client.ok() || !(*client)->Connect().ok() ||
      !(*client)->Subscribe({direct ? "dev/+" : "alerts/#"}, 0).ok()) {
    std::fprintf(stderr, "subscriber: cannot connect to %s\n", broker.c_str());
    _exit(1);
  }
  (void)!::write(ready_fd, "r", 1);
  while (true) ::pause();  // killed by the parent
}

// The devices' process: one warm-up alert, then `n` readings at `rate` to `dev/<device>`;
// once `go_fd` gives a byte; writes the publish time (CLOCK_REALTIME ns) of each reading, then the
// publishing seconds in ns, to `fd`.
[[noreturn]] void Devices(const std::string& broker, int n, double rate, int every, int64_t t0_ms,
                          int go_fd, int fd) {
  MqttConnectOptions po;
  po.broker = broker;
  po.client_id = "bench-device";
  po.clean_session = true;
  auto publisher = MqttClient::Create(po, nullptr, nullptr);
  if (!publisher.ok() || !(*publisher)->Connect().ok()) {
    std::fprintf(stderr, "publisher cannot connect\n");
    _exit(1);
  }
  char g = 0;
  if (::read(go_fd, &g, 1) != 1) _exit(1);
  std::this_thread::sleep_for(std::chrono::seconds(2));  // the source subscribes
  // Warm-up: one alert before the clock starts, so the channel's connection (opened on
  // its first delivery) is up; its event time lies before t0 and is not counted.
  std::string warm = "{\"device_id\":\"warm-up\",\"sensor_ts\":" + std::to_string(t0_ms - 1000) +
                     ",\"lat\":52.5,\"lon\":13.4,\"pm25\":40}";
  if (!(*publisher)->Publish("dev/warm-up", warm, 0, false).ok()) _exit(1);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  std::vector<int64_t> sent_ns(static_cast<size_t>(n) + 1);
  std::vector<int> count(kDevices, 0);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    auto due = start + std::chrono::nanoseconds(static_cast<int64_t>(i * 1e9 / rate));
    // Sleep rather than spin: on two cores a spinning publisher takes the core the
    // broker and tributary need. Due times are absolute, so the rate holds.
    std::this_thread::sleep_until(due);
    int d = i % kDevices;
    int c = count[static_cast<size_t>(d)]++;
    // The value flips every `every` readings of the device: the flip is the alert.
    bool high = (c / every) % 2 == 0;
    std::string payload = "{\"device_id\":\"dev-" + std::to_string(d) +
                          "\",\"sensor_ts\":" + std::to_string(t0_ms + i) +
                          ",\"lat\":52.5,\"lon\":13.4,\"pm25\":" + (high ? "40" : "20") + "}";
    sent_ns[static_cast<size_t>(i)] = RealNs();
    Result<int> tok = (*publisher)->Publish("dev/dev-" + std::to_string(d), payload, 0, false);
    if (!tok.ok()) {
      std::fprintf(stderr, "publish: %s\n", tok.status().ToString().c_str());
      _exit(1);
    }
  }
  sent_ns[static_cast<size_t>(n)] =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count();
  (*publisher)->Disconnect(kMicrosPerSecond);
  const char* p = reinterpret_cast<const char*>(sent_ns.data());
  size_t left = sent_ns.size() * sizeof(int64_t);
  while (left > 0) {
    ssize_t k = ::write(fd, p, left);
    if (k <= 0) _exit(1);
    p += k;
    left -= static_cast<size_t>(k);
  }
  _exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 50000;
  const double rate = argc > 2 ? std::atof(argv[2]) : 10000;
  const int every = argc > 3 ? std::max(1, std::atoi(argv[3])) : 1;
  // `direct`: no tributary; the subscriber takes the readings from the broker (the two
  // broker hops alone, the floor under the full path).
  const bool direct = argc > 4 && std::strcmp(argv[4], "direct") == 0;
  std::string mosquitto = Mosquitto();
  if (mosquitto.empty()) {
    std::fprintf(stderr, "mosquitto is not installed\n");
    return 1;
  }
  std::string dir = std::filesystem::temp_directory_path() /
                    ("tributary_alert_mqtt_bench_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  int port = FreePort();
  std::ofstream(dir + "/mosquitto.conf")
      << "listener " << port << " 127.0.0.1\nallow_anonymous true\npersistence false\n"
      << "max_queued_messages 1000000\nmax_inflight_messages 0\nset_tcp_nodelay true\n";
  pid_t broker_pid = ::fork();
  if (broker_pid == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::execl(mosquitto.c_str(), mosquitto.c_str(), "-c", (dir + "/mosquitto.conf").c_str(),
            static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 500 && !PortOpen(port); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const std::string broker = "mqtt://127.0.0.1:" + std::to_string(port);

  int results[2], ready[2];
  if (::pipe(results) != 0 || ::pipe(ready) != 0) return 1;
  pid_t sub_pid = ::fork();
  if (sub_pid == 0) {
    ::close(results[0]);
    ::close(ready[0]);
    Subscriber(broker, direct, results[1], ready[1]);
  }
  ::close(results[1]);
  ::close(ready[1]);
  char r = 0;
  if (::read(ready[0], &r, 1) != 1) {
    std::fprintf(stderr, "the subscriber did not start\n");
    ::kill(broker_pid, SIGTERM);
    return 1;
  }
  // The devices publish from a process of their own, as real ones would (in this process
  // they would share Paho's receive thread and global lock with the source). Forked
  // before this process starts any thread; it waits for the pipeline on `go`.
  const int64_t t0_ms = NowUs() / 1000 - 120000;
  int sent_pipe[2], go[2];
  if (::pipe(sent_pipe) != 0 || ::pipe(go) != 0) return 1;
  pid_t pub_pid = ::fork();
  if (pub_pid == 0) {
    ::close(sent_pipe[0]);
    ::close(go[1]);
    Devices(broker, n, rate, every, t0_ms, go[0], sent_pipe[1]);
  }
  ::close(sent_pipe[1]);
  ::close(go[0]);
  // Collect the subscriber's lines on a thread.
  std::vector<std::pair<TimeUs, int64_t>> received;
  std::thread reader([&] {
    std::string buf;
    char tmp[65536];
    ssize_t k;
    while ((k = ::read(results[0], tmp, sizeof tmp)) > 0) {
      buf.append(tmp, static_cast<size_t>(k));
      size_t pos = 0, nl;
      while ((nl = buf.find('\n', pos)) != std::string::npos) {
        long long t = 0, ns = 0;
        if (std::sscanf(buf.c_str() + pos, "%lld %lld", &t, &ns) == 2) received.emplace_back(t, ns);
        pos = nl + 1;
      }
      buf.erase(0, pos);
    }
  });

  std::unique_ptr<Pipeline> pipeline;
  Status run_status;
  std::thread runner;
  if (!direct) {
    Result<PipelineConfig> config = ParsePipelineConfig(
        "pipeline: {name: alert-mqtt-bench, data_dir: " + dir + "/data}\n" +
            "sources:\n  - {name: dev, type: mqtt, broker: '" + broker +
            "', client_id: bench-source, clean_session: true, topics: ['dev/+'], qos: 0, "
            "buffer: 100000}\n"
            "windows: [{name: m1, type: tumbling, size: 1m, aggregates: [mean]}]\n"
            "alerts:\n"
            "  rules: [{name: pm_high, kind: reading_threshold, metric: pm25, level: 35, clear: "
            "30}]\n"
            "  channels:\n    - {name: mq, type: mqtt, broker: '" +
            broker +
            "', clean_session: true, topic: 'alerts/{rule}/{key}', qos: 0, max_pending: 1000000}\n"
            "sinks: []\n",
        "bench.yaml");
    if (!config.ok()) {
      std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
      return 1;
    }
    Result<std::unique_ptr<Pipeline>> built = Pipeline::Build(*config);
    if (!built.ok()) {
      std::fprintf(stderr, "%s\n", built.status().ToString().c_str());
      return 1;
    }
    pipeline = std::move(*built);
    runner = std::thread([&] { run_status = pipeline->Run(0); });
  }

  if (::write(go[1], "g", 1) != 1) return 1;  // the pipeline runs: the devices start
  ::close(go[1]);
  std::vector<int64_t> sent_ns(static_cast<size_t>(n) + 1);
  {
    char* p = reinterpret_cast<char*>(sent_ns.data());
    size_t want = sent_ns.size() * sizeof(int64_t), got = 0;
    ssize_t k;
    while (got < want && (k = ::read(sent_pipe[0], p + got, want - got)) > 0)
      got += static_cast<size_t>(k);
    ::close(sent_pipe[0]);
    int status = 0;
    ::waitpid(pub_pid, &status, 0);
    if (got != want || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "the publishing process failed\n");
      return 1;
    }
  }
  const double seconds = static_cast<double>(sent_ns[static_cast<size_t>(n)]) / 1e9;
  size_t expected = 0;
  {
    std::vector<int> count(kDevices, 0);
    for (int i = 0; i < n; ++i) {
      if (direct || count[static_cast<size_t>(i % kDevices)]++ % every == 0) ++expected;
    }
  }
  std::this_thread::sleep_for(std::chrono::seconds(3));  // the last alerts arrive
  if (pipeline) {
    pipeline->Stop();
    runner.join();
  }
  ::kill(sub_pid, SIGTERM);
  ::waitpid(sub_pid, nullptr, 0);
  reader.join();
  ::kill(broker_pid, SIGTERM);
  ::waitpid(broker_pid, nullptr, 0);

  std::vector<double> lat_us;
  for (const auto& [t, ns] : received) {
    int64_t i = t / 1000 - t0_ms;
    if (i < 0 || i >= n) continue;
    lat_us.push_back(static_cast<double>(ns - sent_ns[static_cast<size_t>(i)]) / 1000.0);
  }
  std::sort(lat_us.begin(), lat_us.end());
  auto pct = [&](double q) {
    return lat_us.empty()
               ? NAN
               : lat_us[std::min(lat_us.size() - 1, static_cast<size_t>(q * lat_us.size()))];
  };
  std::printf(
      "MQTT publish -> mosquitto -> %s -> subscriber: %d readings at "
      "%.0f/s (asked %.0f/s), %zu of %zu %s received\n"
      "  latency p50 %.1f us  p99 %.1f us  p999 %.1f us  max %.1f us\n",
      direct ? "(direct)" : "tributary -> mosquitto", n, n / seconds, rate, lat_us.size(), expected,
      direct ? "readings" : "alerts", pct(0.50), pct(0.99), pct(0.999),
      lat_us.empty() ? NAN : lat_us.back());
  if (!run_status.ok()) std::fprintf(stderr, "run: %s\n", run_status.ToString().c_str());
  std::filesystem::remove_all(dir);
  return lat_us.size() == expected ? 0 : 1;
}
