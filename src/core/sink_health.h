// Health of remote sinks behind a circuit breaker, shared with the metrics endpoint.
//
// Threading: the breaker of each sink publishes from the sink thread; /metrics reads
// from the HTTP thread. Both go through one mutex (a few updates per commit).
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace tributary {

/// Circuit breaker states, as exported (0, 1, 2).
enum class BreakerState : int { kClosed = 0, kOpen = 1, kHalfOpen = 2 };

struct SinkHealth {
  BreakerState state = BreakerState::kClosed;
  uint64_t buffered_rows = 0;   ///< rows waiting in the local buffer
  double drain_rows_per_s = 0;  ///< rate of the last drain of the buffer
  uint64_t opened_total = 0;    ///< how often the breaker opened
  uint64_t drained_rows_total = 0;
  bool buffer_full = false;  ///< the local buffer refused a write (disk full or its size cap)
};

/// Publish the health of sink `name`.
void PublishSinkHealth(const std::string& name, const SinkHealth& health);
/// Every published sink's last health, by sink name.
std::map<std::string, SinkHealth> SinkHealthSnapshot();

}  // namespace tributary
