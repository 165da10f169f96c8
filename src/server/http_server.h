// The HTTP server of a running pipeline: JSON API, Server-Sent Events and metrics.
//
// Configured by the top-level `server` section of the pipeline file (see
// ServerSectionSpec); `tributary run --listen` overrides `listen`, and `off` disables it.
// The server attaches a LiveState to the pipeline as its observer and answers on its own
// worker threads. /api/* and the dashboard (web/dist, served at /) require the token when
// one is configured, as `Authorization: Bearer <token>` or the `tributary_token` cookie
// that `/?token=<token>` sets; /healthz, /readyz and /metrics stay open. Reads are GET
// (and HEAD); any other method needs `server.write_token` (405 when none is set, so the
// server is read-only by default). Each client address is rate limited; CORS answers only
// the configured origins. With `alerts.summary.url`, /api/subscriptions manages the
// daily-summary subscribers (POST and GET need the write token: the list holds email
// addresses) and /api/unsubscribe?token= is open, authorised by the subscriber's secret.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/config.h"
#include "core/pipeline_config.h"
#include "core/status.h"
#include "server/live_state.h"
#include "server/sse.h"
#include "spatial/zone_outlines.h"

namespace httplib {
class Server;
}

namespace tributary {

class Pipeline;
class SubscriptionService;

/// The `server` section spec (registered in io/builtins.cc).
const SectionSpec& ServerSectionSpec();

struct ServerOptions {
  bool enabled = true;
  std::string host = "127.0.0.1";
  int port = 8080;  ///< 0 picks a free port
  /// True when `listen` was given (file or flag): failing to bind is then an error;
  /// otherwise the run goes on without the server.
  bool listen_explicit = false;
  std::string token;             ///< empty: no authentication
  size_t replay_buffer = 10000;  ///< SSE events kept for reconnecting clients
  size_t max_body_bytes = 65536;
  std::string write_token;  ///< empty: every method but GET/HEAD is refused (405)
  std::string static_dir;   ///< the built dashboard; empty: <source>/web/dist
  /// Allowed CORS origins (`*` for any); empty: no CORS headers are sent.
  std::vector<std::string> cors_origins;
  double rate_limit = 100;         ///< requests per second per client address; 0: unlimited
  size_t zone_max_vertices = 400;  ///< /api/zones simplifies larger zone outlines
  LiveStateOptions live;
};

/// Parse "host:port" (or "off"); `port` may be 0.
Status ParseListen(std::string_view text, ServerOptions& options);
/// Read the `server` section of `config`; a non-empty `listen_override` (the --listen
/// flag) replaces its `listen`.
Result<ServerOptions> ReadServerOptions(const PipelineConfig& config,
                                        std::string_view listen_override = {});

class ApiServer {
 public:
  /// Bind the port, attach the live state to `pipeline` (which must outlive the server)
  /// and start answering. Call before Pipeline::Run().
  static Result<std::unique_ptr<ApiServer>> Start(Pipeline& pipeline, const ServerOptions& options);
  /// Stops the server: open event streams end, worker threads are joined.
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  /// The bound port (the real one when 0 was asked for).
  int port() const { return port_; }
  const std::string& host() const { return options_.host; }
  LiveState& live() { return live_; }
  EventLog& events() { return events_; }
  /// The daily-summary subscriptions; null unless `alerts.summary.url` is set.
  SubscriptionService* subscriptions() { return subscriptions_.get(); }

 private:
  ApiServer(Pipeline& pipeline, const ServerOptions& options);
  void Route();
  /// True when `client` may make one more request now (token bucket per address).
  bool Admit(const std::string& client);

  Pipeline& pipeline_;
  const ServerOptions options_;
  EventLog events_;
  LiveState live_;
  std::unique_ptr<SubscriptionService> subscriptions_;
  std::vector<ZoneOutline> zone_outlines_;  ///< of the pipeline's zone layers; built at Start
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point last;
  };
  std::mutex rate_mu_;
  std::unordered_map<std::string, Bucket> buckets_;  ///< by client address
};

}  // namespace tributary
