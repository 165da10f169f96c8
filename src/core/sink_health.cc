#include "core/sink_health.h"

#include <mutex>

namespace tributary {

namespace {
std::mutex& Mu() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, SinkHealth>& Map() {
  static std::map<std::string, SinkHealth> m;
  return m;
}
}  // namespace

void PublishSinkHealth(const std::string& name, const SinkHealth& health) {
  std::lock_guard lock(Mu());
  Map()[name] = health;
}

std::map<std::string, SinkHealth> SinkHealthSnapshot() {
  std::lock_guard lock(Mu());
  return Map();
}

}  // namespace tributary
