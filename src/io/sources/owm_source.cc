#include "io/sources/owm_source.h"

#include <curl/curl.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <utility>

#include "core/pipeline_config.h"
#include "core/registry.h"
#include "core/time.h"

namespace tributary {

namespace {

struct OwmCurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};

size_t OwmCollectBody(char* data, size_t size, size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  constexpr size_t kMaxBody = 1 << 20;  // a current-weather answer is < 2 KiB
  if (body->size() + size * n > kMaxBody) return 0;
  body->append(data, size * n);
  return size * n;
}

// Retry-After: <seconds> (the HTTP-date form is not used by OpenWeatherMap).
size_t OwmCollectHeader(char* data, size_t size, size_t n, void* user) {
  std::string_view line(data, size * n);
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    std::string head(line.substr(0, kName.size()));
    std::transform(head.begin(), head.end(), head.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (head == kName) {
      long seconds = std::strtol(std::string(line.substr(kName.size())).c_str(), nullptr, 10);
      if (seconds > 0) *static_cast<DurationUs*>(user) = seconds * kMicrosPerSecond;
    }
  }
  return size * n;
}

// The "message" of an OpenWeatherMap error body ({"cod":401,"message":"Invalid API key"}).
std::string OwmErrorMessage(const std::string& body) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(body);
  simdjson::dom::element doc;
  std::string_view message;
  if (parser.parse(padded).get(doc) == simdjson::SUCCESS &&
      doc["message"].get(message) == simdjson::SUCCESS) {
    return std::string(message);
  }
  return body.substr(0, 200);
}

std::string OwmUrlEscape(CURL* c, const std::string& s) {
  char* e = curl_easy_escape(c, s.c_str(), static_cast<int>(s.size()));
  std::string out = e != nullptr ? e : "";
  curl_free(e);
  return out;
}

}  // namespace

const SectionSpec& OwmSourceSectionSpec() {
  static const SectionSpec spec{
      "sources[] (type: owm)",
      "Polls OpenWeatherMap current weather (`format: owm` is this source's default) for "
      "each city every `interval`. The API key is `api_key` or the environment variable "
      "`api_key_env`. A 429, 5xx or network error pauses the round with exponential "
      "backoff; another 4xx skips that city until the next round. Records: topic = the "
      "city as configured.",
      {
          {"cities", OptionType::kStringList, "",
           "City queries (`q`), e.g. `[\"Berlin,DE\", \"London,GB\"]`."},
          {"city_ids", OptionType::kStringList, "", "OpenWeatherMap city ids (`id`)."},
          {"interval", OptionType::kDuration, "10m",
           "Time between two rounds over the cities (OpenWeatherMap updates about every 10 "
           "minutes).",
           "1s.."},
          {"api_key", OptionType::kString, "",
           "The API key; write `${OWM_API_KEY}` to take it from the environment."},
          {"api_key_env", OptionType::kString, "OWM_API_KEY",
           "Environment variable read for the key when `api_key` is empty."},
          {"base_url", OptionType::kString, "https://api.openweathermap.org/data/2.5/weather",
           "The current-weather endpoint (another for a proxy or a test server)."},
          {"timeout", OptionType::kDuration, "10s", "Longest time one request may take.", "1ms.."},
          {"backoff_min", OptionType::kDuration, "10s",
           "First wait after a 429, 5xx or network error.", "1ms.."},
          {"backoff_max", OptionType::kDuration, "10m", "The wait doubles up to this.", "1ms.."},
      }};
  return spec;
}

Result<OwmSourceOptions> ParseOwmSourceOptions(const OptionReader& r) {
  OwmSourceOptions o;
  TRIB_ASSIGN_OR_RETURN(o.cities, r.GetStringList("cities"));
  TRIB_ASSIGN_OR_RETURN(o.city_ids, r.GetStringList("city_ids"));
  if (o.cities.empty() && o.city_ids.empty()) {
    return r.Error("cities", "needs at least one city (or give `city_ids`)");
  }
  for (const std::string& c : o.cities) {
    if (c.empty()) return r.Error("cities", "contains an empty city");
  }
  for (const std::string& id : o.city_ids) {
    if (id.empty() ||
        !std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return r.Error("city_ids", "'" + id + "' is not a numeric city id");
    }
  }
  TRIB_ASSIGN_OR_RETURN(o.interval, r.GetDuration("interval"));
  TRIB_ASSIGN_OR_RETURN(o.api_key, r.GetString("api_key"));
  TRIB_ASSIGN_OR_RETURN(o.api_key_env, r.GetString("api_key_env"));
  TRIB_ASSIGN_OR_RETURN(o.base_url, r.GetString("base_url"));
  if (!o.base_url.starts_with("http://") && !o.base_url.starts_with("https://")) {
    return r.Error("base_url", "must be an http:// or https:// URL");
  }
  TRIB_ASSIGN_OR_RETURN(o.units, r.GetString("owm_units"));
  TRIB_ASSIGN_OR_RETURN(o.timeout, r.GetDuration("timeout"));
  TRIB_ASSIGN_OR_RETURN(o.backoff_min, r.GetDuration("backoff_min"));
  TRIB_ASSIGN_OR_RETURN(o.backoff_max, r.GetDuration("backoff_max"));
  if (o.backoff_max < o.backoff_min) {
    return r.Error("backoff_max", "must not be less than backoff_min");
  }
  if (r.Has("format")) {
    TRIB_ASSIGN_OR_RETURN(std::string format, r.GetString("format"));
    if (format != "owm") {
      return r.Error("format",
                     "the owm source delivers OpenWeatherMap payloads: use `owm` "
                     "(the default) or leave it out");
    }
  }
  return o;
}

OwmSource::OwmSource(OwmSourceOptions options) : options_(std::move(options)) {
  for (const std::string& c : options_.cities) targets_.push_back({c, "q=" + c});
  for (const std::string& id : options_.city_ids) targets_.push_back({id, "id=" + id});
  for (const Target& t : targets_) topics_.push_back(Intern(t.label));
}

OwmSource::~OwmSource() = default;

Status OwmSource::Open(RunContext& ctx) {
  if (ctx.checkpointing && ctx.config != nullptr) {
    TRIB_ASSIGN_OR_RETURN(log_, OpenSourceIngestLog(*ctx.config, options_.source_name));
  }
  key_ = options_.api_key;
  if (key_.empty() && !options_.api_key_env.empty()) {
    const char* env = std::getenv(options_.api_key_env.c_str());
    if (env != nullptr) key_ = env;
  }
  if (key_.empty()) {
    return Status::Invalid("owm source: no API key: set `api_key` or the environment variable " +
                           (options_.api_key_env.empty() ? std::string("named by api_key_env")
                                                         : options_.api_key_env));
  }
  static std::once_flag curl_once;
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  // Escape the city queries once; the value part only.
  std::unique_ptr<CURL, OwmCurlDeleter> c(curl_easy_init());
  if (!c) return Status::Internal("owm source: curl_easy_init failed");
  for (Target& t : targets_) {
    size_t eq = t.query.find('=');
    t.query = t.query.substr(0, eq + 1) + OwmUrlEscape(c.get(), t.query.substr(eq + 1));
  }
  spdlog::info("owm source: {} cities every {} from {}", targets_.size(),
               FormatDuration(options_.interval), options_.base_url);
  return Status::Ok();
}

int OwmSource::Abort(void* self, long long, long long, long long, long long) {
  return static_cast<OwmSource*>(self)->stop_flag_.load(std::memory_order_relaxed) ? 1 : 0;
}

OwmSource::Answer OwmSource::Fetch(const Target& target) {
  Answer a;
  std::unique_ptr<CURL, OwmCurlDeleter> curl(curl_easy_init());
  if (!curl) {
    a.error = "curl_easy_init failed";
    return a;
  }
  CURL* c = curl.get();
  std::string url = options_.base_url +
                    (options_.base_url.find('?') == std::string::npos ? "?" : "&") + target.query +
                    "&units=" + options_.units + "&appid=" + OwmUrlEscape(c, key_);
  const long timeout_ms = static_cast<long>(std::max<DurationUs>(1, options_.timeout / 1000));
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OwmCollectBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &a.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OwmCollectHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &a.retry_after);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &OwmSource::Abort);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, this);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "tributary");
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    a.error = curl_easy_strerror(rc);
    return a;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
  return a;
}

bool OwmSource::WaitUntil(TimeUs until) {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_flag_.load(std::memory_order_relaxed)) {
    TimeUs now = NowUs();
    if (now >= until) return true;
    cv_.wait_for(lock, std::chrono::microseconds(until - now));
  }
  return false;
}

Status OwmSource::Poll(RawBatch& out, size_t max_records, DurationUs wait) {
  if (log_ == nullptr) return FetchDue(out, max_records, wait);
  if (stop_flag_.load(std::memory_order_relaxed)) return Status::Ok();
  RawBatch fresh;
  TRIB_RETURN_IF_ERROR(FetchDue(fresh, max_records, log_->backlog() > 0 ? 0 : wait));
  if (!fresh.records.empty()) {
    std::vector<IngestLogEntry> entries;
    entries.reserve(fresh.records.size());
    for (const RawRecord& r : fresh.records) {
      entries.push_back(IngestLogEntry{r.topic.view(), fresh.Payload(r), r.arrival_time});
    }
    Result<int64_t> appended = log_->Append(entries);
    if (!appended.ok() && log_failures_++ % 100 == 0) {
      // Not taken in: the next round asks again.
      spdlog::error("owm source {}: the ingest log refused {} answers, not taken in: {}",
                    options_.source_name, entries.size(), appended.status().ToString());
    }
  }
  return log_->Read(out, max_records, 0);
}

Status OwmSource::RestorePosition(std::string_view position) {
  if (log_ == nullptr) return Source::RestorePosition(position);
  TRIB_RETURN_IF_ERROR(log_->Seek(position).WithContext("owm ingest log"));
  if (uint64_t n = log_->backlog(); n > 0) {
    spdlog::info(
        "owm source {}: {} answers taken after the checkpoint are replayed from the "
        "ingest log",
        options_.source_name, n);
  }
  return Status::Ok();
}

void OwmSource::OnCommitted(uint64_t checkpoint) {
  if (log_ != nullptr) log_->OnCommitted(checkpoint);
}

void OwmSource::Close() {
  Stop();
  if (log_ != nullptr) log_->Close();
}

Status OwmSource::FetchDue(RawBatch& out, size_t max_records, DurationUs wait) {
  if (stop_flag_.load(std::memory_order_relaxed)) return Status::Ok();
  const TimeUs now = NowUs();
  if (now < not_before_) {
    // Not due yet: wait at most `wait`, so the runtime stays responsive.
    WaitUntil(std::min(not_before_, now + std::max<DurationUs>(wait, 0)));
    return Status::Ok();
  }
  if (next_target_ == 0) {
    round_start_ = now;
    rounds_.fetch_add(1, std::memory_order_relaxed);
  }
  size_t added = 0;
  while (added < std::max<size_t>(max_records, 1) && next_target_ < targets_.size() &&
         !stop_flag_.load(std::memory_order_relaxed)) {
    const Target& t = targets_[next_target_];
    Answer a = Fetch(t);
    if (stop_flag_.load(std::memory_order_relaxed)) break;
    const bool retry = a.status == 0 || a.status == 429 || a.status >= 500;
    if (a.status == 200) {
      out.Add(a.body, NowUs(), topics_[next_target_], next_offset_++, -1);
      fetched_.fetch_add(1, std::memory_order_relaxed);
      backoff_.store(0, std::memory_order_relaxed);
      ++added;
      ++next_target_;
      continue;
    }
    failed_.fetch_add(1, std::memory_order_relaxed);
    if (retry) {
      // Stop the round; ask the same city again after the backoff.
      DurationUs b = backoff_.load(std::memory_order_relaxed);
      b = b == 0 ? options_.backoff_min : std::min(b * 2, options_.backoff_max);
      DurationUs wait_for = std::max(b, std::min(a.retry_after, options_.backoff_max));
      backoff_.store(b, std::memory_order_relaxed);
      not_before_ = NowUs() + wait_for;
      spdlog::warn(
          "owm source: {} for {}: {}; next attempt in {}",
          a.status == 0 ? std::string("request failed") : "HTTP " + std::to_string(a.status),
          t.label, a.status == 0 ? a.error : OwmErrorMessage(a.body), FormatDuration(wait_for));
      return Status::Ok();
    }
    spdlog::warn("owm source: HTTP {} for {}: {}; skipped until the next round", a.status, t.label,
                 OwmErrorMessage(a.body));
    ++next_target_;
  }
  if (next_target_ >= targets_.size()) {
    next_target_ = 0;
    not_before_ = round_start_ + options_.interval;
  }
  return Status::Ok();
}

void OwmSource::Stop() {
  stop_flag_.store(true, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  if (log_ != nullptr) log_->Wake();
}

void RegisterOwmSource(Registry& registry) {
  registry.AddSource(
      "owm", &OwmSourceSectionSpec(),
      [](const SourceEntry& entry) -> Result<std::unique_ptr<Source>> {
        TRIB_ASSIGN_OR_RETURN(OwmSourceOptions options, ParseOwmSourceOptions(entry.options));
        if (!entry.name.empty()) options.source_name = entry.name;
        return std::unique_ptr<Source>(std::make_unique<OwmSource>(std::move(options)));
      });
}

}  // namespace tributary
