// The publisher of bench/mqtt_bench.sh: publishes every line of stdin as one message to
// TOPIC at QOS and, for QoS 1 and 2, waits for every acknowledgement before it exits
// (Debian 12's `mosquitto_pub -l` disconnects at the end of its input with QoS 1
// messages still unsent, so a consumer never gets them all).
//   mqtt_pub_bench mqtt://127.0.0.1:PORT TOPIC QOS < lines
// Prints "published N messages in S s (R msg/s)" on stderr; exit 1 on any failure.
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <string>

#include "core/time.h"
#include "io/mqtt_client.h"

using namespace tributary;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s BROKER TOPIC QOS < lines\n", argv[0]);
    return 2;
  }
  const std::string topic = argv[2];
  const int qos = std::atoi(argv[3]);
  MqttConnectOptions o;
  o.broker = argv[1];
  o.clean_session = true;
  Result<std::unique_ptr<MqttPublisher>> pub = MqttPublisher::Create(o);
  if (!pub.ok() || !(*pub)->Connect().ok()) {
    std::fprintf(stderr, "cannot connect to %s\n", argv[1]);
    return 1;
  }
  constexpr size_t kWindow = 2000;  // publishes awaiting their acknowledgement
  std::deque<int> tokens;
  auto wait_front = [&]() -> bool {
    Status st = (*pub)->WaitForDelivery(tokens.front(), 60 * kMicrosPerSecond);
    tokens.pop_front();
    if (!st.ok()) std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return st.ok();
  };
  const TimeUs t0 = NowUs();
  uint64_t n = 0;
  std::string line;
  while (std::getline(std::cin, line)) {
    Result<int> token = (*pub)->Publish(topic, line, qos, false);
    if (!token.ok()) {
      std::fprintf(stderr, "message %llu: %s\n", static_cast<unsigned long long>(n + 1),
                   token.status().ToString().c_str());
      return 1;
    }
    ++n;
    if (qos > 0) {
      tokens.push_back(*token);
      if (tokens.size() >= kWindow && !wait_front()) return 1;
    }
  }
  while (!tokens.empty()) {
    if (!wait_front()) return 1;
  }
  (*pub)->Disconnect(10 * kMicrosPerSecond);
  const double s = static_cast<double>(NowUs() - t0) / kMicrosPerSecond;
  std::fprintf(stderr, "published %llu messages in %.2f s (%.0f msg/s)\n",
               static_cast<unsigned long long>(n), s, static_cast<double>(n) / s);
  return 0;
}
