// A live one-line progress display for `tributary run` on a terminal.
#pragma once

#include <atomic>
#include <thread>

#include "stream/runtime.h"

namespace tributary::cli {

class ProgressReporter {
 public:
  /// `enabled` false makes Start/Stop no-ops (not a terminal, or --quiet).
  ProgressReporter(const Pipeline& pipeline, bool enabled)
      : pipeline_(pipeline), enabled_(enabled) {}
  ~ProgressReporter() { Stop(); }
  void Start();
  /// Stop updating and clear the line. Idempotent.
  void Stop();

 private:
  void Loop();
  const Pipeline& pipeline_;
  bool enabled_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace tributary::cli
