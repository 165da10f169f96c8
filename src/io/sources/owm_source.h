// The `owm` source: polls OpenWeatherMap's current weather for a list of cities (the
// seed paper's generator), one request per city every `interval`.
//
// Requests: GET <base_url>?q=<city>&appid=<key>&units=<owm_units> (or id=<city id>),
// the units being the source's `owm_units` option, which the `owm` decoder reads too, so
// the two cannot disagree. The key comes from `api_key` (write `${OWM_API_KEY}`) or, when
// that is empty, from the environment variable named by `api_key_env`; without one the
// source does not open. The response body of a 200 is handed on as one record and
// decoded by the `owm` format (the default of this source type); a city whose `dt` has
// not changed since the last round gives the same reading again, which the dedup stage
// counts as a duplicate.
//
// Errors: a 429 (rate limit), a 5xx or a network failure stops the round; the remaining
// cities are asked after a backoff that starts at `backoff_min` (or the server's
// Retry-After, when longer) and doubles up to `backoff_max`, and resets after a success.
// Any other 4xx (401 bad key, 404 unknown city) is logged with the server's message and
// that city is skipped until the next round. Failed requests are no records: nothing
// enters the ledger for them.
//
// Records: topic = the city as configured, offset = a per-source sequence, partition =
// -1, arrival time = the wall clock when the answer arrived.
//
// With checkpoints on, each answer is appended to the source's ingest log
// (stream/ingest_log.h) and handed on from there, so a crash replays the answers taken
// after the last checkpoint (offset = the log's sequence number then).
//
// Threading: Poll (which makes the requests) on the source thread; Stop from any thread
// aborts a request in flight and ends a wait.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/intern.h"
#include "io/connector.h"
#include "stream/ingest_log.h"

namespace tributary {

class Registry;

struct OwmSourceOptions {
  std::string source_name = "owm";    ///< the configured name (its ingest log's folder)
  std::vector<std::string> cities;    ///< `q` queries: "Berlin,DE"
  std::vector<std::string> city_ids;  ///< OpenWeatherMap city ids
  DurationUs interval = 600'000'000;
  std::string api_key;
  std::string api_key_env = "OWM_API_KEY";
  std::string base_url = "https://api.openweathermap.org/data/2.5/weather";
  std::string units = "standard";  ///< the source's owm_units
  DurationUs timeout = 10'000'000;
  DurationUs backoff_min = 10'000'000;
  DurationUs backoff_max = 600'000'000;
};

/// The option table of `sources[] (type: owm)`.
const SectionSpec& OwmSourceSectionSpec();
/// Read and validate owm source options; errors name the key.
Result<OwmSourceOptions> ParseOwmSourceOptions(const OptionReader& reader);

class OwmSource : public Source {
 public:
  explicit OwmSource(OwmSourceOptions options);
  ~OwmSource() override;
  /// Resolves the API key; no request is made here.
  Status Open(RunContext& ctx) override;
  Status Poll(RawBatch& out, size_t max_records, DurationUs wait) override;
  void Stop() override;
  /// With checkpoints on, every answer goes to the ingest log before it is handed on (an
  /// API answer cannot be asked for again), so the source resumes from its position in
  /// the log.
  bool SupportsCheckpoints() const override { return log_ != nullptr; }
  Status RestorePosition(std::string_view position) override;
  void OnCommitted(uint64_t checkpoint) override;
  void Close() override;

  /// Requests answered 200, answered otherwise (or failed), and rounds started.
  uint64_t fetched() const { return fetched_.load(std::memory_order_relaxed); }
  uint64_t failed() const { return failed_.load(std::memory_order_relaxed); }
  uint64_t rounds() const { return rounds_.load(std::memory_order_relaxed); }
  /// The wait before the next attempt after the last error (0 after a success).
  DurationUs current_backoff() const { return backoff_.load(std::memory_order_relaxed); }

 private:
  // The requests that are due, their answers added to `out` (Poll without the log).
  Status FetchDue(RawBatch& out, size_t max_records, DurationUs wait);

  std::unique_ptr<IngestLog> log_;
  uint64_t log_failures_ = 0;
  struct Target {
    std::string label;  ///< as configured (the record's topic)
    std::string query;  ///< q=... or id=...
  };
  struct Answer {
    long status = 0;  ///< 0: no HTTP answer (network error)
    std::string body;
    std::string error;           ///< curl's message for a network error
    DurationUs retry_after = 0;  ///< from a Retry-After header, if any
  };
  Answer Fetch(const Target& target);
  // Wait until `until` (wall clock) or Stop; false when stopped.
  bool WaitUntil(TimeUs until);
  static int Abort(void* self, long long, long long, long long, long long);

  OwmSourceOptions options_;
  std::vector<Target> targets_;
  std::vector<Symbol> topics_;
  std::string key_;
  size_t next_target_ = 0;  ///< next city of the current round
  TimeUs round_start_ = 0;  ///< when the current round began (0: none yet)
  TimeUs not_before_ = 0;   ///< no request before this (interval or backoff)
  int64_t next_offset_ = 1;
  std::atomic<DurationUs> backoff_{0};
  std::atomic<uint64_t> fetched_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<uint64_t> rounds_{0};

  std::atomic<bool> stop_flag_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

/// Register the `owm` source type.
void RegisterOwmSource(Registry& registry);

}  // namespace tributary
