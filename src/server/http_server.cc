#include "server/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>

#include "server/api.h"
#include "server/metrics.h"
#include "server/subscription_service.h"
#include "spatial/surface.h"
#include "spatial/zones.h"
#include "stream/runtime.h"

namespace tributary {

namespace {

constexpr size_t kWorkerThreads = 12;  // each open event stream holds one
constexpr size_t kSseBatch = 512;      // events per written chunk, at most
constexpr auto kSseWait = std::chrono::milliseconds(250);
constexpr DurationUs kSseKeepAlive = 15 * kMicrosPerSecond;
constexpr auto kStartTimeout = std::chrono::seconds(5);
constexpr const char* kJson = "application/json";

QueryParams FirstParams(const httplib::Request& req) {
  QueryParams out;
  for (const auto& [k, v] : req.params) out.emplace(k, v);  // emplace keeps the first
  return out;
}

// Compare without an early exit so the time taken does not reveal the matching prefix.
bool SameToken(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

void SendError(httplib::Response& res, int status, std::string_view message) {
  res.status = status;
  res.set_content(ErrorJson(message), kJson);
}

constexpr std::string_view kTokenCookie = "tributary_token";

// The value of cookie `name` in a Cookie header, or empty.
std::string CookieValue(const std::string& header, std::string_view name) {
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find(';', pos);
    if (end == std::string::npos) end = header.size();
    std::string_view part = std::string_view(header).substr(pos, end - pos);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (part.size() > name.size() && part.substr(0, name.size()) == name &&
        part[name.size()] == '=') {
      return std::string(part.substr(name.size() + 1));
    }
    pos = end + 1;
  }
  return {};
}

std::string BearerOf(const httplib::Request& req) {
  std::string auth = req.get_header_value("Authorization");
  constexpr std::string_view kBearer = "Bearer ";
  return auth.rfind(kBearer, 0) == 0 ? auth.substr(kBearer.size()) : std::string();
}

bool IsOpenPath(const std::string& path) {
  // The unsubscribe link of a summary mail carries its own secret.
  return path == "/healthz" || path == "/readyz" || path == "/metrics" ||
         path == "/api/unsubscribe";
}

const char kTokenPage[] =
    R"(<!doctype html><html><head><meta charset="utf-8"><title>tributary</title></head>
<body style="font-family:sans-serif;margin:3rem"><h1>tributary</h1>
<p>This server requires an access token.</p>
<form method="get" action="/"><input name="token" type="password" autofocus placeholder="token">
<button>Open the dashboard</button></form></body></html>
)";

const char kNotBuiltPage[] =
    R"(<!doctype html><html><head><meta charset="utf-8"><title>tributary</title></head>
<body style="font-family:sans-serif;margin:3rem"><h1>tributary</h1>
<p>The dashboard is not built: no index.html in <code>%DIR%</code>.
Run <code>scripts/setup.sh</code> (or <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code>),
or point <code>server.static_dir</code> at a built dashboard.
The API answers at <a href="/api/openapi.json">/api/openapi.json</a>.</p></body></html>
)";

std::string HtmlEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(pos, end - pos);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.push_back(item);
    pos = end + 1;
  }
  return out;
}

}  // namespace

const SectionSpec& ServerSectionSpec() {
  static const SectionSpec spec{
      "server",
      "HTTP API, live events (Server-Sent Events) and Prometheus metrics of a running "
      "pipeline. Read-only.",
      {
          {"listen", OptionType::kString, "127.0.0.1:8080",
           "host:port to listen on; `off` disables the server. `tributary run --listen` "
           "overrides it."},
          {"token", OptionType::kString, "",
           "Bearer token required by /api/* (use `${VAR}` to keep it out of the file); empty: "
           "no authentication. /healthz, /readyz and /metrics stay open."},
          {"replay_buffer", OptionType::kInt, "10000",
           "Live events kept for clients reconnecting with Last-Event-ID.", "1..10000000"},
          {"max_body_bytes", OptionType::kInt, "65536",
           "Largest request body accepted, bytes; larger requests get 413.", "0..1073741824"},
          {"write_token", OptionType::kString, "",
           "Bearer token for write requests (POST, PUT, PATCH, DELETE: subscriptions, "
           "ingest), separate from `token`; empty: the server is read-only and answers "
           "them 405."},
          {"static_dir", OptionType::kString, "",
           "Folder of the built dashboard served at /; empty: web/dist of the source tree "
           "this binary was built from."},
          {"cors_origins", OptionType::kString, "",
           "Comma-separated origins allowed to call the API from a browser (CORS), or `*`; "
           "empty: no CORS headers."},
          {"rate_limit", OptionType::kDouble, "100",
           "Requests per second allowed per client address (bursts up to twice that); "
           "more get 429. 0: unlimited.",
           "0..1000000"},
          {"expected_interval", OptionType::kDuration, "60s",
           "Expected reporting interval of a sensor; without data for 3× this long it is "
           "`stale`.",
           "1s..30d"},
          {"max_windows", OptionType::kInt, "10000", "Recent window results kept for /api/windows.",
           "1..10000000"},
          {"max_quarantine", OptionType::kInt, "1000",
           "Recent quarantine records kept for /api/quarantine.", "1..1000000"},
          {"summary_interval", OptionType::kDuration, "1s",
           "Processing time coalesced into one `summary` live event (reading counts and "
           "every sensor that reported, with its status and latest values); 0s: one per "
           "batch.",
           "0s..1h"},
          {"zone_max_vertices", OptionType::kInt, "400",
           "Zone outlines in /api/zones with more vertices are simplified (topology "
           "preserving) to at most about this many; 0: never simplify.",
           "0..10000000"},
      }};
  return spec;
}

Status ParseListen(std::string_view text, ServerOptions& options) {
  if (text == "off") {
    options.enabled = false;
    return Status::Ok();
  }
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return Status::Invalid("listen address '" + std::string(text) + "': expected host:port or off");
  }
  std::string_view host = text.substr(0, colon);
  std::string_view port_text = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = -1;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port < 0 || port > 65535) {
    return Status::Invalid("listen address '" + std::string(text) +
                           "': port must be a number in 0..65535");
  }
  options.enabled = true;
  options.host = host.empty() ? "0.0.0.0" : std::string(host);
  options.port = port;
  return Status::Ok();
}

Result<ServerOptions> ReadServerOptions(const PipelineConfig& config,
                                        std::string_view listen_override) {
  const OptionReader& raw = config.server;
  OptionReader r(raw.node(), raw.file().empty() ? config.file : raw.file(), "server",
                 {&ServerSectionSpec()});
  TRIB_RETURN_IF_ERROR(r.CheckKeys());
  ServerOptions o;
  TRIB_ASSIGN_OR_RETURN(std::string listen, r.GetString("listen"));
  if (!listen_override.empty()) {
    TRIB_RETURN_IF_ERROR(ParseListen(listen_override, o).WithContext("--listen"));
  } else {
    Status st = ParseListen(listen, o);
    if (!st.ok()) return r.Error("listen", st.message());
  }
  o.listen_explicit = !listen_override.empty() || r.Has("listen");
  TRIB_ASSIGN_OR_RETURN(o.token, r.GetString("token"));
  TRIB_ASSIGN_OR_RETURN(o.write_token, r.GetString("write_token"));
  TRIB_ASSIGN_OR_RETURN(o.static_dir, r.GetString("static_dir"));
  TRIB_ASSIGN_OR_RETURN(std::string cors, r.GetString("cors_origins"));
  o.cors_origins = SplitList(cors);
  TRIB_ASSIGN_OR_RETURN(o.rate_limit, r.GetDouble("rate_limit"));
  TRIB_ASSIGN_OR_RETURN(int64_t replay, r.GetInt("replay_buffer"));
  TRIB_ASSIGN_OR_RETURN(int64_t max_body, r.GetInt("max_body_bytes"));
  TRIB_ASSIGN_OR_RETURN(o.live.expected_interval, r.GetDuration("expected_interval"));
  TRIB_ASSIGN_OR_RETURN(int64_t max_windows, r.GetInt("max_windows"));
  TRIB_ASSIGN_OR_RETURN(int64_t max_quarantine, r.GetInt("max_quarantine"));
  TRIB_ASSIGN_OR_RETURN(o.live.summary_interval, r.GetDuration("summary_interval"));
  TRIB_ASSIGN_OR_RETURN(int64_t zone_max_vertices, r.GetInt("zone_max_vertices"));
  o.zone_max_vertices = static_cast<size_t>(zone_max_vertices);
  o.replay_buffer = static_cast<size_t>(replay);
  o.max_body_bytes = static_cast<size_t>(max_body);
  o.live.max_windows = static_cast<size_t>(max_windows);
  o.live.max_quarantine = static_cast<size_t>(max_quarantine);
  return o;
}

ApiServer::ApiServer(Pipeline& pipeline, const ServerOptions& options)
    : pipeline_(pipeline),
      options_(options),
      events_(options.replay_buffer),
      live_(options.live, &events_),
      http_(std::make_unique<httplib::Server>()) {}

ApiServer::~ApiServer() {
  events_.Close();  // event streams see it within kSseWait and end
  if (thread_.joinable()) {
    http_->stop();
    thread_.join();
  }
}

Result<std::unique_ptr<ApiServer>> ApiServer::Start(Pipeline& pipeline,
                                                    const ServerOptions& options) {
  if (!options.enabled) return Status::Invalid("the HTTP server is disabled (listen: off)");
  std::unique_ptr<ApiServer> s(new ApiServer(pipeline, options));
  // The zone index is loaded again here (it is immutable and small next to the
  // readings): /api/zones draws the outlines the enrichment step assigns readings to.
  const PipelineConfig& config = pipeline.config();
  std::string base_dir;
  if (!config.file.empty() && config.file.front() != '<') {
    base_dir = std::filesystem::path(config.file).parent_path().string();
  }
  TRIB_ASSIGN_OR_RETURN(ZoneOptions zone_options, ReadZoneOptions(config.zones, base_dir));
  if (!zone_options.layers.empty()) {
    TRIB_ASSIGN_OR_RETURN(std::shared_ptr<const ZoneSet> zones, ZoneSet::Load(zone_options.layers));
    TRIB_ASSIGN_OR_RETURN(s->zone_outlines_, BuildZoneOutlines(*zones, options.zone_max_vertices));
  }
  httplib::Server& http = *s->http_;
  http.new_task_queue = [] { return new httplib::ThreadPool(kWorkerThreads); };
  http.set_keep_alive_timeout(1);
  http.set_payload_max_length(options.max_body_bytes);
  s->Route();
  if (options.port == 0) {
    s->port_ = http.bind_to_any_port(options.host);
  } else if (http.bind_to_port(options.host, options.port)) {
    s->port_ = options.port;
  } else {
    s->port_ = -1;
  }
  if (s->port_ <= 0) {
    return Status::Io("cannot listen on " + options.host + ":" + std::to_string(options.port) +
                      " (address in use or not local?)");
  }
  Result<SummaryOptions> summary = ReadSummaryOptions(pipeline.config());
  if (!summary.ok()) return summary.status();
  if (summary->enabled) {
    std::string host = options.host == "0.0.0.0" ? "127.0.0.1" : options.host;
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    TRIB_ASSIGN_OR_RETURN(
        s->subscriptions_,
        SubscriptionService::Start(std::move(summary).value(), s->live_, pipeline.config().data_dir,
                                   "http://" + host + ":" + std::to_string(s->port_)));
  }
  s->thread_ = std::thread([&http] { http.listen_after_bind(); });
  // stop() is only effective once the accept loop runs: wait for it.
  auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (!http.is_running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  pipeline.SetObserver(&s->live_);
  spdlog::info("HTTP API on http://{}:{}/ ({})", options.host, s->port_,
               options.token.empty() ? "no token" : "bearer token required");
  return s;
}

bool ApiServer::Admit(const std::string& client) {
  auto now = std::chrono::steady_clock::now();
  double burst = std::max(10.0, 2 * options_.rate_limit);
  std::lock_guard<std::mutex> lock(rate_mu_);
  if (buckets_.size() > 10000) {
    // Forget clients whose bucket has refilled: they lose nothing.
    std::erase_if(buckets_, [&](const auto& kv) {
      return std::chrono::duration<double>(now - kv.second.last).count() * options_.rate_limit >=
             burst;
    });
  }
  auto [it, fresh] = buckets_.try_emplace(client, Bucket{burst, now});
  Bucket& b = it->second;
  if (!fresh) {
    double elapsed = std::chrono::duration<double>(now - b.last).count();
    b.tokens = std::min(burst, b.tokens + elapsed * options_.rate_limit);
    b.last = now;
  }
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

void ApiServer::Route() {
  httplib::Server& http = *http_;
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    using HR = httplib::Server::HandlerResponse;
    // Debian's cpp-httplib compresses responses a client accepts compressed, brotli at
    // its slowest quality: seconds of CPU for the dashboard's script and the 2,000-sensor
    // /api/sensors (measured: 10 s and 40 s on a busy machine, against 0.4 s plain). The
    // API serves a local dashboard; send it uncompressed. The request is the server's
    // own (non-const) object, handed to handlers as const.
    const_cast<httplib::Request&>(req).headers.erase("Accept-Encoding");
    if (options_.rate_limit > 0 && !Admit(req.remote_addr)) {
      res.set_header("Retry-After", "1");
      SendError(res, 429, "too many requests from " + req.remote_addr + " (server.rate_limit)");
      return HR::Handled;
    }
    std::string origin = req.get_header_value("Origin");
    bool cors = !origin.empty() &&
                std::any_of(options_.cors_origins.begin(), options_.cors_origins.end(),
                            [&](const std::string& o) { return o == "*" || o == origin; });
    if (cors) {
      res.set_header("Access-Control-Allow-Origin", origin);
      res.set_header("Vary", "Origin");
    }
    if (req.method == "OPTIONS") {  // CORS preflight
      if (!cors) {
        SendError(res, 403, "origin '" + origin + "' is not in server.cors_origins");
        return HR::Handled;
      }
      res.status = 204;
      res.set_header("Access-Control-Allow-Methods", "GET, HEAD, POST, DELETE");
      res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID");
      res.set_header("Access-Control-Max-Age", "600");
      return HR::Handled;
    }
    // The subscriber list holds email addresses: reading it is a write-token matter.
    bool read = (req.method == "GET" || req.method == "HEAD") && req.path != "/api/subscriptions";
    if (!read) {
      // Writes are authorised by their own token, never by the read token.
      if (options_.write_token.empty()) {
        res.set_header("Allow", "GET, HEAD");
        SendError(res, 405,
                  "method " + req.method + " not allowed: the API is read-only (no write_token)");
        return HR::Handled;
      }
      if (!SameToken(BearerOf(req), options_.write_token)) {
        res.set_header("WWW-Authenticate", "Bearer");
        SendError(res, 401, "missing or wrong write token");
        return HR::Handled;
      }
      return HR::Unhandled;
    }
    if (options_.token.empty() || IsOpenPath(req.path)) return HR::Unhandled;
    bool api = req.path.rfind("/api/", 0) == 0;
    if (!api && req.has_param("token")) {
      // The dashboard's sign-in: the token once in the address, then a cookie.
      if (!SameToken(req.get_param_value("token"), options_.token)) {
        res.status = 401;
        res.set_content(kTokenPage, "text/html; charset=utf-8");
        return HR::Handled;
      }
      res.set_header("Set-Cookie", std::string(kTokenCookie) + "=" + options_.token +
                                       "; Path=/; HttpOnly; SameSite=Strict");
      res.set_redirect(req.path, 303);
      return HR::Handled;
    }
    std::string given = BearerOf(req);
    if (given.empty()) given = CookieValue(req.get_header_value("Cookie"), kTokenCookie);
    if (!SameToken(given, options_.token)) {
      res.status = 401;
      if (api) {
        res.set_header("WWW-Authenticate", "Bearer");
        SendError(res, 401, "missing or wrong bearer token");
      } else {
        res.set_content(kTokenPage, "text/html; charset=utf-8");
      }
      return HR::Handled;
    }
    return HR::Unhandled;
  });

  // The dashboard. httplib refuses paths with `..` segments (after %-decoding) and sets
  // the content type from the extension.
  std::string dir = options_.static_dir.empty() ? std::string(TRIBUTARY_SOURCE_DIR) + "/web/dist"
                                                : options_.static_dir;
  std::error_code fs_error;
  if (std::filesystem::is_regular_file(dir + "/index.html", fs_error)) {
    http.set_mount_point("/", dir);
  } else {
    spdlog::warn("dashboard not built: no index.html in {}", dir);
    std::string page = kNotBuiltPage;
    page.replace(page.find("%DIR%"), 5, dir);
    http.Get("/", [page](const httplib::Request&, httplib::Response& res) {
      res.status = 503;
      res.set_content(page, "text/html; charset=utf-8");
    });
  }
  http.Get("/api/zones", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(zone_outlines_.empty() ? ZonesJson(live_) : ZonesJson(live_, zone_outlines_),
                    "application/geo+json");
  });

  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  http.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    if (pipeline_.running()) {
      res.set_content("ready\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content("not running\n", "text/plain");
    }
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    MetricsInput in;
    in.running = pipeline_.running();
    if (in.running) {
      RunProgress p = pipeline_.Progress();
      in.ledger = p.ledger;
      in.raw_queue_depth = p.raw_queue_depth;
      in.sink_queue_depth = p.sink_queue_depth;
      in.watermark = p.watermark;
    } else {
      in.ledger = pipeline_.LedgerNow();
      in.watermark = live_.Totals().watermark;
    }
    in.now = NowUs();
    in.last_event_id = events_.last_id();
    in.rss_bytes = ProcessRssBytes();
    res.set_content(RenderPrometheus(in), "text/plain; version=0.0.4");
  });
  http.Get("/api/sensors", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(SensorsJson(live_, NowUs()), kJson);
  });
  http.Get("/api/windows", [this](const httplib::Request& req, httplib::Response& res) {
    Result<WindowQuery> q = ParseWindowQuery(FirstParams(req));
    if (!q.ok()) return SendError(res, 400, q.status().message());
    res.set_content(WindowsJson(live_, *q), kJson);
  });
  http.Get("/api/quarantine", [this](const httplib::Request& req, httplib::Response& res) {
    Result<size_t> limit = ParseLimit(FirstParams(req), 100, 1000);
    if (!limit.ok()) return SendError(res, 400, limit.status().message());
    res.set_content(QuarantineJson(live_, *limit), kJson);
  });
  http.Get("/api/alerts", [this](const httplib::Request& req, httplib::Response& res) {
    Result<std::string> body = AlertsJson(live_, FirstParams(req));
    if (!body.ok()) return SendError(res, 400, body.status().message());
    res.set_content(*body, kJson);
  });
  http.Get("/api/forecast", [this](const httplib::Request& req, httplib::Response& res) {
    Result<std::string> body = ForecastJson(live_, FirstParams(req));
    if (!body.ok()) return SendError(res, 400, body.status().message());
    res.set_content(*body, kJson);
  });
  http.Get("/api/ledger", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(LedgerJson(pipeline_), kJson);
  });
  http.Get("/api/health", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(HealthJson(pipeline_, live_, events_, NowUs()), kJson);
  });
  http.Get("/api/surface/latest", [](const httplib::Request& req, httplib::Response& res) {
    std::shared_ptr<const Surface> s = LatestSurface(req.get_param_value("name"));
    if (s == nullptr) return SendError(res, 404, "no surface has been computed yet");
    res.set_content(SurfaceToJson(*s), kJson);
  });
  auto no_subscriptions = [](httplib::Response& res) {
    SendError(res, 404, "subscriptions are not configured on this server (alerts.summary.url)");
  };
  http.Post("/api/subscriptions",
            [this, no_subscriptions](const httplib::Request& req, httplib::Response& res) {
              if (!subscriptions_) return no_subscriptions(res);
              bool created = false;
              Result<Subscription> s = subscriptions_->Subscribe(req.body, created);
              if (!s.ok()) {
                return SendError(res, s.status().code() == StatusCode::kInvalidArgument ? 400 : 500,
                                 s.status().message());
              }
              res.status = created ? 201 : 200;
              res.set_content(SubscriptionService::OneJson(*s, created), kJson);
            });
  http.Get("/api/subscriptions",
           [this, no_subscriptions](const httplib::Request&, httplib::Response& res) {
             if (!subscriptions_) return no_subscriptions(res);
             Result<std::vector<Subscription>> subs = subscriptions_->List();
             if (!subs.ok()) return SendError(res, 500, subs.status().message());
             res.set_content(SubscriptionService::ListJson(*subs), kJson);
           });
  http.Delete(R"(/api/subscriptions/(\d{1,18}))",
              [this, no_subscriptions](const httplib::Request& req, httplib::Response& res) {
                if (!subscriptions_) return no_subscriptions(res);
                Result<bool> removed = subscriptions_->Remove(std::stoll(req.matches[1]));
                if (!removed.ok()) return SendError(res, 500, removed.status().message());
                if (!*removed) return SendError(res, 404, "no such subscription");
                res.status = 204;
              });
  http.Get("/api/unsubscribe", [this](const httplib::Request& req, httplib::Response& res) {
    auto page = [&](int status, const std::string& text) {
      res.status = status;
      res.set_content(
          "<!doctype html><html><head><meta charset=\"utf-8\"><title>tributary</title></head>"
          "<body style=\"font-family:sans-serif;margin:3rem\"><h1>tributary</h1><p>" +
              text + "</p></body></html>\n",
          "text/html; charset=utf-8");
    };
    if (!subscriptions_) return page(404, "Subscriptions are not configured on this server.");
    Result<std::optional<Subscription>> gone =
        subscriptions_->Unsubscribe(req.get_param_value("token"));
    if (!gone.ok()) {
      spdlog::warn("unsubscribe link: {}", gone.status().ToString());
      return page(500, "The unsubscription failed; please try again later.");
    }
    if (!gone->has_value()) {
      return page(404, "This unsubscribe link is not valid (already used, or mistyped).");
    }
    spdlog::info("subscription {} removed by its unsubscribe link", (*gone)->id);
    page(200, "Unsubscribed: no more daily summaries for " + HtmlEscape((*gone)->kind) + " " +
                  HtmlEscape((*gone)->zone) + " will be sent to this address.");
  });
  http.Get("/api/openapi.json", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(OpenApiJson(), kJson);
  });
  http.Get("/api/events", [this](const httplib::Request& req, httplib::Response& res) {
    // Without Last-Event-ID a client gets live events only; with it, every kept event
    // after that id first.
    uint64_t after = events_.last_id();
    std::string last = req.get_header_value("Last-Event-ID");
    if (last.empty() && req.has_param("last_event_id")) last = req.get_param_value("last_event_id");
    if (!last.empty()) {
      uint64_t id = 0;
      auto [ptr, ec] = std::from_chars(last.data(), last.data() + last.size(), id);
      if (ec != std::errc() || ptr != last.data() + last.size()) {
        return SendError(res, 400, "Last-Event-ID must be an event id, got '" + last + "'");
      }
      after = id;
    }
    // ?types=&group_by=&groups= narrow the stream (a dashboard of thousands of sensors
    // asks for summaries instead of every per-device window); ids stay those of the log,
    // so Last-Event-ID resumes a filtered stream as well.
    Result<SseFilter> filter = ParseSseFilter(FirstParams(req));
    if (!filter.ok()) return SendError(res, 400, filter.status().message());
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    TimeUs last_write = NowUs();
    bool first = true;
    res.set_chunked_content_provider(
        "text/event-stream", [this, after, last_write, first, filter = *filter](
                                 size_t, httplib::DataSink& sink) mutable {
          std::string out;
          if (first) {
            out = "retry: 1000\n\n";  // reconnect after a second
            first = false;
          }
          SseFilteredRead read = events_.ReadMatching(after, kSseBatch, kSseWait, filter);
          if (events_.closed()) {
            sink.done();
            return true;
          }
          for (const SseEvent& e : read.events) out += FormatSseEvent(e);
          after = read.last_id;
          TimeUs now = NowUs();
          if (out.empty() && now - last_write >= kSseKeepAlive) out = ": keep-alive\n\n";
          if (out.empty()) return true;
          last_write = now;
          return sink.write(out.data(), out.size());
        });
  });
}

}  // namespace tributary
