#include "io/sources/http_source.h"

#include <httplib.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "core/json_writer.h"
#include "core/pipeline_config.h"
#include "core/registry.h"
#include "core/time.h"

namespace tributary {

namespace {

constexpr int kHttpIngestWorkers = 4;
constexpr auto kHttpIngestStartTimeout = std::chrono::seconds(5);

void SendIngestError(httplib::Response& res, int status, std::string_view reason) {
  std::string body = "{\"error\":";
  AppendJsonString(body, reason);
  body += "}";
  res.status = status;
  res.set_content(body, "application/json");
}

// The media type of a Content-Type header, lower case, without parameters.
std::string MediaType(std::string_view header) {
  std::string_view t = header.substr(0, header.find(';'));
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
  std::string out(t);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool IsBlank(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

// Compare without an early exit, so the time taken does not reveal a token's prefix.
bool SameToken(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

const SectionSpec& HttpIngestSectionSpec() {
  static const SectionSpec spec{
      "sources[] (type: http)",
      "Readings POSTed over HTTP to `path` on the source's own `listen` address: "
      "`application/json` (one record) or `application/x-ndjson` (one record per line), "
      "decoded by the source's `format` and `mapping`. Answers 202 with the counts of "
      "records taken and of those that are not JSON (quarantined as malformed_json); "
      "their final outcome is in the ledger. 401, 413, 415, 400 name the reason; 503 with "
      "Retry-After while the buffer is full or the run pauses the source.",
      {
          {"listen", OptionType::kString, "127.0.0.1:8081",
           "host:port to listen on (port 0 picks a free one)."},
          {"path", OptionType::kString, "/ingest", "Path that takes POST requests."},
          {"tokens", OptionType::kStringList, "",
           "Bearer tokens accepted in `Authorization: Bearer <token>` (e.g. one per device "
           "group, `${INGEST_TOKEN}`); empty: no authentication (logged at start)."},
          {"max_body_bytes", OptionType::kInt, "1048576",
           "Largest request body, bytes; larger requests get 413.", "1..1073741824"},
          {"buffer", OptionType::kInt, "10000",
           "Records held for the pipeline; a request that does not fit gets 503.", "1..10000000"},
          {"retry_after", OptionType::kDuration, "1s",
           "Retry-After sent with 503 (whole seconds, at least 1)."},
          {"respond", OptionType::kEnum, "queued",
           "`queued`: answer once the records are taken (with checkpoints: written to the "
           "ingest log); `logged` (needs checkpoints): once the ingest log has them on disk "
           "(fsynced); `committed`: once every sink committed them (at most "
           "`commit_timeout`).",
           "queued|logged|committed"},
          {"commit_timeout", OptionType::kDuration, "30s",
           "With `respond: committed`, the longest an answer waits for the commit."},
      }};
  return spec;
}

Result<HttpIngestOptions> ParseHttpIngestOptions(const OptionReader& r) {
  HttpIngestOptions o;
  TRIB_ASSIGN_OR_RETURN(std::string listen, r.GetString("listen"));
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return r.Error("listen", "expected host:port, got '" + listen + "'");
  }
  o.host = listen.substr(0, colon);
  std::string port = listen.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoi(port) > 65535) {
    return r.Error("listen", "port '" + port + "' is not a number in 0..65535");
  }
  o.port = std::stoi(port);
  TRIB_ASSIGN_OR_RETURN(o.path, r.GetString("path"));
  if (o.path.empty() || o.path.front() != '/') return r.Error("path", "must start with '/'");
  TRIB_ASSIGN_OR_RETURN(o.tokens, r.GetStringList("tokens"));
  for (const std::string& t : o.tokens) {
    if (t.empty()) return r.Error("tokens", "contains an empty token");
  }
  TRIB_ASSIGN_OR_RETURN(int64_t max_body, r.GetInt("max_body_bytes"));
  o.max_body_bytes = static_cast<size_t>(max_body);
  TRIB_ASSIGN_OR_RETURN(int64_t buffer, r.GetInt("buffer"));
  o.buffer = static_cast<size_t>(buffer);
  TRIB_ASSIGN_OR_RETURN(DurationUs retry_after, r.GetDuration("retry_after"));
  o.retry_after_s = static_cast<int>(
      std::max<DurationUs>(1, (retry_after + kMicrosPerSecond - 1) / kMicrosPerSecond));
  TRIB_ASSIGN_OR_RETURN(std::string respond, r.GetString("respond"));
  o.respond = respond == "committed" ? HttpIngestRespond::kCommitted
              : respond == "logged"  ? HttpIngestRespond::kLogged
                                     : HttpIngestRespond::kQueued;
  TRIB_ASSIGN_OR_RETURN(o.commit_timeout, r.GetDuration("commit_timeout"));
  if (o.commit_timeout <= 0) return r.Error("commit_timeout", "must be positive");
  return o;
}

HttpIngestSource::HttpIngestSource(HttpIngestOptions options)
    : options_(std::move(options)),
      topic_(Intern(options_.path)),
      http_(std::make_unique<httplib::Server>()) {}

HttpIngestSource::~HttpIngestSource() {
  Close();
}

Status HttpIngestSource::Open(RunContext& ctx) {
  if (ctx.checkpointing && ctx.config != nullptr) {
    TRIB_ASSIGN_OR_RETURN(log_, OpenSourceIngestLog(*ctx.config, options_.name));
  } else if (options_.respond == HttpIngestRespond::kLogged) {
    return Status::Invalid(
        "http: respond: logged needs checkpoints (checkpoint.enabled: true), "
        "which give the source its ingest log");
  }
  httplib::Server& http = *http_;
  http.new_task_queue = [] { return new httplib::ThreadPool(kHttpIngestWorkers); };
  http.set_keep_alive_timeout(5);
  http.set_payload_max_length(options_.max_body_bytes);
  // Requests httplib refuses itself (a body over the limit, a bad request line) get a
  // reason too; answers that already carry one are left alone.
  httplib::Server::HandlerWithResponse on_error = [this](const httplib::Request&,
                                                         httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    if (res.status == 413) {
      SendIngestError(res, 413,
                      "request body over max_body_bytes (" +
                          std::to_string(options_.max_body_bytes) + " bytes)");
    } else if (res.status == 404) {
      SendIngestError(res, 404, "no such path; POST readings to " + options_.path);
    } else {
      SendIngestError(res, res.status, "request refused (HTTP " + std::to_string(res.status) + ")");
    }
    return httplib::Server::HandlerResponse::Handled;
  };
  http.set_error_handler(std::move(on_error));
  auto handler = [this](const httplib::Request& req, httplib::Response& res) { Handle(req, res); };
  http.Post(options_.path, handler);
  auto not_post = [this](const httplib::Request&, httplib::Response& res) {
    res.set_header("Allow", "POST");
    SendIngestError(res, 405, "only POST is accepted on " + options_.path);
  };
  http.Get(options_.path, not_post);
  http.Put(options_.path, not_post);
  http.Delete(options_.path, not_post);
  http.Patch(options_.path, not_post);
  if (options_.port == 0) {
    port_ = http.bind_to_any_port(options_.host);
  } else if (http.bind_to_port(options_.host, options_.port)) {
    port_ = options_.port;
  } else {
    port_ = -1;
  }
  if (port_ <= 0) {
    port_ = 0;
    return Status::Io("http source cannot listen on " + options_.host + ":" +
                      std::to_string(options_.port) + " (address in use or not local?)");
  }
  thread_ = std::thread([&http] { http.listen_after_bind(); });
  auto deadline = std::chrono::steady_clock::now() + kHttpIngestStartTimeout;
  while (!http.is_running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  spdlog::info("http source: POST readings to http://{}:{}{} ({})", options_.host, port_,
               options_.path,
               options_.tokens.empty() ? "no authentication" : "bearer token required");
  return Status::Ok();
}

void HttpIngestSource::Handle(const httplib::Request& req, httplib::Response& res) {
  if (!options_.tokens.empty()) {
    std::string auth = req.get_header_value("Authorization");
    constexpr std::string_view kBearer = "Bearer ";
    bool ok = false;
    if (auth.size() > kBearer.size() && auth.compare(0, kBearer.size(), kBearer) == 0) {
      std::string_view given = std::string_view(auth).substr(kBearer.size());
      for (const std::string& t : options_.tokens) ok = SameToken(given, t) || ok;
    }
    if (!ok) {
      res.set_header("WWW-Authenticate", "Bearer");
      SendIngestError(res, 401,
                      auth.empty() ? "missing Authorization: Bearer <token>"
                                   : "the bearer token is not one of this source's tokens");
      return;
    }
  }
  const std::string type = MediaType(req.get_header_value("Content-Type"));
  const bool ndjson = type == "application/x-ndjson" || type == "application/ndjson" ||
                      type == "application/jsonl" || type == "application/x-jsonlines";
  if (!ndjson && type != "application/json") {
    SendIngestError(res, 415,
                    "Content-Type '" + type +
                        "' is not application/json (one reading) or application/x-ndjson "
                        "(one reading per line)");
    return;
  }
  // Split into records.
  std::vector<std::string_view> records;
  std::string_view body = req.body;
  if (ndjson) {
    size_t pos = 0;
    while (pos < body.size()) {
      size_t nl = body.find('\n', pos);
      if (nl == std::string_view::npos) nl = body.size();
      std::string_view line = body.substr(pos, nl - pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (!IsBlank(line)) records.push_back(line);
      pos = nl + 1;
    }
  } else if (!IsBlank(body)) {
    records.push_back(body);
  }
  if (records.empty()) {
    SendIngestError(res, 400, "the request body holds no record");
    return;
  }
  if (records.size() > options_.buffer) {
    SendIngestError(res, 413,
                    std::to_string(records.size()) +
                        " records in one request, more than the "
                        "source's buffer of " +
                        std::to_string(options_.buffer) + "; split the batch");
    return;
  }
  // Records that are not JSON at all are known to end in quarantine (malformed_json);
  // everything else is decided downstream.
  size_t malformed = 0;
  {
    simdjson::dom::parser parser;
    for (std::string_view r : records) {
      simdjson::padded_string padded(r);
      if (parser.parse(padded).error() != simdjson::SUCCESS) ++malformed;
    }
  }
  const TimeUs now = NowUs();
  uint64_t request = 0;
  int64_t first_offset = 0;
  {
    std::unique_lock<std::mutex> lock(mu_);
    const char* busy = nullptr;
    if (stop_) {
      busy = "the pipeline is stopping";
    } else if (paused_.load(std::memory_order_relaxed)) {
      busy = "the pipeline paused ingest (memory ceiling); retry later";
    } else if ((log_ != nullptr ? static_cast<size_t>(log_->backlog()) : queue_.size()) +
                   records.size() >
               options_.buffer) {
      busy = "the ingest buffer is full (the pipeline is behind); retry later";
    }
    if (busy != nullptr) {
      lock.unlock();
      res.set_header("Retry-After", std::to_string(options_.retry_after_s));
      SendIngestError(res, 503, busy);
      return;
    }
    if (log_ == nullptr) {
      request = next_request_++;
      first_offset = next_offset_;
      for (size_t i = 0; i < records.size(); ++i) {
        queue_.push_back(Pending{std::string(records[i]), now, next_offset_++, request,
                                 i + 1 == records.size()});
      }
      data_cv_.notify_one();
    }
  }
  int64_t last_seq = 0;
  if (log_ != nullptr) {
    std::vector<IngestLogEntry> entries;
    entries.reserve(records.size());
    for (std::string_view r : records) entries.push_back(IngestLogEntry{options_.path, r, now});
    Result<int64_t> first = log_->Append(entries, options_.respond == HttpIngestRespond::kLogged);
    if (!first.ok()) {
      spdlog::error("http ingest: the ingest log refused a request: {}", first.status().ToString());
      res.set_header("Retry-After", std::to_string(options_.retry_after_s));
      SendIngestError(res, 503, "the ingest log cannot take the request; retry later");
      return;
    }
    first_offset = *first;
    last_seq = *first + static_cast<int64_t>(records.size()) - 1;
  }
  bool committed = false;
  if (options_.respond == HttpIngestRespond::kCommitted) {
    std::unique_lock<std::mutex> lock(mu_);
    auto done = [&] {
      return log_ != nullptr ? log_->committed_sequence() >= last_seq
                             : committed_request_ >= request;
    };
    commit_cv_.wait_for(lock, std::chrono::microseconds(options_.commit_timeout),
                        [&] { return done() || closed_; });
    committed = done();
  }
  std::string out =
      "{\"received\":" + std::to_string(records.size()) +
      ",\"queued\":" + std::to_string(records.size()) +
      ",\"malformed\":" + std::to_string(malformed) +
      ",\"first_offset\":" + std::to_string(first_offset) +
      ",\"committed\":" + (committed ? "true" : "false") +
      (log_ != nullptr ? std::string(",\"logged\":") +
                             (options_.respond == HttpIngestRespond::kQueued ? "false" : "true")
                       : std::string()) +
      "}";
  res.status = 202;
  res.set_content(out, "application/json");
}

Status HttpIngestSource::Poll(RawBatch& out, size_t max_records, DurationUs wait) {
  if (log_ != nullptr) {
    {
      // After Stop what is not read yet stays in the log for the next run.
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return Status::Ok();
    }
    return log_->Read(out, max_records, wait);
  }
  std::unique_lock<std::mutex> lock(mu_);
  data_cv_.wait_for(lock, std::chrono::microseconds(std::max<DurationUs>(wait, 0)),
                    [&] { return stop_ || !queue_.empty(); });
  size_t n = 0;
  uint64_t complete = 0;  // the last request whose every record is in this batch or before
  while (n < max_records && !queue_.empty()) {
    Pending& p = queue_.front();
    out.Add(p.payload, p.arrival, topic_, p.offset, -1);
    complete = p.last_of_request ? p.request : p.request - 1;
    queue_.pop_front();
    ++n;
  }
  if (n > 0) out.checkpoint = complete;
  return Status::Ok();
}

Status HttpIngestSource::RestorePosition(std::string_view position) {
  if (log_ == nullptr) return Source::RestorePosition(position);
  TRIB_RETURN_IF_ERROR(log_->Seek(position).WithContext("http ingest log"));
  if (uint64_t n = log_->backlog(); n > 0) {
    spdlog::info(
        "http {}: {} records answered after the checkpoint are replayed from the "
        "ingest log",
        options_.name, n);
  }
  return Status::Ok();
}

void HttpIngestSource::OnCommitted(uint64_t checkpoint) {
  if (log_ != nullptr) log_->OnCommitted(checkpoint);
  std::lock_guard<std::mutex> lock(mu_);
  committed_request_ = std::max(committed_request_, checkpoint);
  commit_cv_.notify_all();
}

void HttpIngestSource::SetPaused(bool paused) {
  paused_.store(paused, std::memory_order_relaxed);
}

void HttpIngestSource::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    data_cv_.notify_all();
    commit_cv_.notify_all();
  }
  if (log_ != nullptr) log_->Wake();
}

size_t HttpIngestSource::buffered() const {
  if (log_ != nullptr) return static_cast<size_t>(log_->backlog());
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

void HttpIngestSource::Close() {
  Stop();
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    commit_cv_.notify_all();
  }
  if (thread_.joinable()) {
    http_->stop();
    thread_.join();
  }
  if (log_ != nullptr) log_->Close();
}

void RegisterHttpIngestSource(Registry& registry) {
  registry.AddSource(
      "http", &HttpIngestSectionSpec(),
      [](const SourceEntry& entry) -> Result<std::unique_ptr<Source>> {
        TRIB_ASSIGN_OR_RETURN(HttpIngestOptions options, ParseHttpIngestOptions(entry.options));
        options.name = entry.name;
        return std::unique_ptr<Source>(std::make_unique<HttpIngestSource>(std::move(options)));
      });
}

}  // namespace tributary
