#include "cli/progress.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>

namespace tributary::cli {

void ProgressReporter::Start() {
  if (!enabled_ || thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void ProgressReporter::Stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  thread_.join();
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
}

void ProgressReporter::Loop() {
  using Clock = std::chrono::steady_clock;
  auto last_time = Clock::now();
  uint64_t last_input = 0;
  double rate = 0;
  while (!stop_.load()) {
    for (int i = 0; i < 5 && !stop_.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    RunProgress p = pipeline_.Progress();
    auto now = Clock::now();
    double secs = std::chrono::duration<double>(now - last_time).count();
    if (secs > 0) {
      double instant = static_cast<double>(p.ledger.input - last_input) / secs;
      rate = rate == 0 ? instant : 0.5 * rate + 0.5 * instant;
    }
    last_time = now;
    last_input = p.ledger.input;
    std::string wm = p.watermark > kMinTime ? FormatTime(p.watermark).substr(0, 19) : "-";
    std::string line = fmt::format(
        "\r\033[K{:>9.0f} ev/s | in {} | accepted {} | quarantined {} | late {} | dup {} | "
        "windows {} | watermark {}",
        rate, p.ledger.input, p.ledger.accepted, p.ledger.quarantined, p.ledger.late,
        p.ledger.duplicate, p.ledger.windows_emitted, wm);
    std::fputs(line.c_str(), stderr);
    std::fflush(stderr);
  }
}

}  // namespace tributary::cli
