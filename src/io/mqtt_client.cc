#include "io/mqtt_client.h"

#include <MQTTAsync.h>
#include <MQTTClient.h>
#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace tributary {
namespace {

MQTTClient Handle(void* h) {
  return static_cast<MQTTClient>(h);
}

int TimeoutMs(DurationUs d) {
  int64_t ms = d / 1000;
  if (ms < 1) ms = 1;
  if (ms > 3'600'000) ms = 3'600'000;
  return static_cast<int>(ms);
}

// Paho C 1.3 leaves Nagle's algorithm on and gives no access to its socket, so a small
// publish can wait for the broker's delayed ACK (40 ms on Linux) whenever an earlier
// segment is unacknowledged. After a connect, every TCP socket of this process whose peer
// is the broker gets TCP_NODELAY (this client's, and any other connection to the same
// broker, which wants it as well).
void DisableNagleTowards(const std::string& uri) {
  std::string_view rest = uri;
  if (size_t scheme = rest.find("://"); scheme != std::string_view::npos) {
    rest.remove_prefix(scheme + 3);
  }
  size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos) return;
  std::string host(rest.substr(0, colon));
  std::string port(rest.substr(colon + 1));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return;
  auto is_broker = [&](const sockaddr_storage& peer) {
    for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
      if (a->ai_family != peer.ss_family) continue;
      if (peer.ss_family == AF_INET) {
        const auto* x = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
        const auto* y = reinterpret_cast<const sockaddr_in*>(&peer);
        if (x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr) return true;
      } else if (peer.ss_family == AF_INET6) {
        const auto* x = reinterpret_cast<const sockaddr_in6*>(a->ai_addr);
        const auto* y = reinterpret_cast<const sockaddr_in6*>(&peer);
        if (x->sin6_port == y->sin6_port &&
            std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0) {
          return true;
        }
      }
    }
    return false;
  };
  if (DIR* fds = ::opendir("/proc/self/fd"); fds != nullptr) {
    while (const dirent* e = ::readdir(fds)) {
      char* end = nullptr;
      long fd = std::strtol(e->d_name, &end, 10);
      if (end == e->d_name || *end != '\0' || fd == ::dirfd(fds)) continue;
      struct stat st {};
      if (::fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      if (::getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &len) != 0 ||
          !is_broker(peer)) {
        continue;
      }
      int one = 1;
      (void)::setsockopt(static_cast<int>(fd), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    ::closedir(fds);
  }
  ::freeaddrinfo(found);
}

// Paho keeps an in-memory trace of its own, at level "minimum" unless told otherwise,
// and formats a protocol line (vsnprintf under a lock) for every packet it receives or
// sends, whether or not anyone reads it: in a profile of QoS 0 ingest that formatting
// was about 5 % of the receive thread. Only errors are traced, unless
// MQTT_C_CLIENT_TRACE / MQTT_C_CLIENT_TRACE_LEVEL ask for Paho's trace.
void QuietPahoTrace() {
  if (std::getenv("MQTT_C_CLIENT_TRACE") != nullptr ||
      std::getenv("MQTT_C_CLIENT_TRACE_LEVEL") != nullptr) {
    return;
  }
  MQTTClient_setTraceLevel(MQTTCLIENT_TRACE_ERROR);
  MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
}

// The text of a CONNACK return code of MQTT 3.1.1 (1..5), or Paho's own error text.
std::string ConnectError(int rc) {
  if (rc >= 1 && rc <= 5) return MqttConnackText(rc);
  if (rc == MQTTCLIENT_FAILURE) {
    return "connection failed (broker unreachable or it closed the connection)";
  }
  const char* text = MQTTClient_strerror(rc);
  return std::string(text != nullptr ? text : "error") + " (" + std::to_string(rc) + ")";
}

}  // namespace

std::string MqttConnackText(int code) {
  switch (code) {
    case 1:
      return "unacceptable protocol version";
    case 2:
      return "client identifier rejected";
    case 3:
      return "server unavailable";
    case 4:
      return "bad user name or password";
    case 5:
      return "not authorized (wrong user name or password, or no access)";
    default:
      return "connection refused (code " + std::to_string(code) + ")";
  }
}

std::string MqttReasonText(int code) {
  const char* text = MQTTReasonCode_toString(static_cast<MQTTReasonCodes>(code));
  return text != nullptr ? std::string(text) : "reason code " + std::to_string(code);
}

const std::vector<OptionSpec>& MqttConnectionOptionSpecs() {
  static const std::vector<OptionSpec> specs{
      {"broker",
       OptionType::kString,
       "",
       "Broker URL: `mqtt://host:port` (default port 1883), or `mqtts://host:port` for TLS "
       "(default port 8883).",
       {},
       true},
      {"client_id", OptionType::kString, "",
       "MQTT client id. Required for a persistent session (clean_session: false); the broker "
       "keeps that id's subscriptions and queued QoS 1/2 messages while it is away."},
      {"clean_session", OptionType::kBool, "false",
       "Start a fresh session on every connect (nothing queued while away is delivered)."},
      {"username", OptionType::kString, "", "User name for the broker."},
      {"password", OptionType::kString, "",
       "Password for the broker; write `${MQTT_PASSWORD}` to take it from the environment."},
      {"ca_file", OptionType::kString, "",
       "TLS: PEM file of the CA(s) that signed the broker's certificate (default: the "
       "system's)."},
      {"cert", OptionType::kString, "", "TLS: client certificate (PEM), for mutual TLS."},
      {"key", OptionType::kString, "", "TLS: client private key (PEM), for mutual TLS."},
      {"keepalive", OptionType::kDuration, "30s",
       "Keep-alive interval: a silent connection is probed (PINGREQ) after this long.", "1s.."},
      {"connect_timeout", OptionType::kDuration, "10s", "How long one connect attempt may take.",
       "1s.."},
      {"protocol", OptionType::kEnum, "3.1.1", "MQTT protocol version.", "3.1.1|5"},
  };
  return specs;
}

Result<MqttConnectOptions> ParseMqttConnectOptions(const OptionReader& r) {
  MqttConnectOptions o;
  TRIB_ASSIGN_OR_RETURN(o.broker, r.GetString("broker"));
  if (Result<std::string> uri = MqttPahoUri(o.broker); !uri.ok()) {
    return r.Error("broker", uri.status().message());
  }
  TRIB_ASSIGN_OR_RETURN(o.client_id, r.GetString("client_id"));
  TRIB_ASSIGN_OR_RETURN(o.clean_session, r.GetBool("clean_session"));
  if (!o.clean_session && o.client_id.empty()) {
    return r.Error("client_id", "is required with a persistent session (clean_session: false)");
  }
  TRIB_ASSIGN_OR_RETURN(o.username, r.GetString("username"));
  TRIB_ASSIGN_OR_RETURN(o.password, r.GetString("password"));
  TRIB_ASSIGN_OR_RETURN(o.ca_file, r.GetString("ca_file"));
  TRIB_ASSIGN_OR_RETURN(o.cert_file, r.GetString("cert"));
  TRIB_ASSIGN_OR_RETURN(o.key_file, r.GetString("key"));
  TRIB_ASSIGN_OR_RETURN(DurationUs keepalive, r.GetDuration("keepalive"));
  o.keepalive_s = static_cast<int>(keepalive / 1'000'000);
  TRIB_ASSIGN_OR_RETURN(o.connect_timeout, r.GetDuration("connect_timeout"));
  TRIB_ASSIGN_OR_RETURN(std::string protocol, r.GetString("protocol"));
  o.protocol = protocol == "5" ? 5 : 4;
  return o;
}

Result<std::string> MqttPahoUri(std::string_view broker) {
  std::string_view rest;
  std::string scheme;
  int default_port = 1883;
  if (broker.rfind("mqtt://", 0) == 0) {
    rest = broker.substr(7);
    scheme = "tcp://";
  } else if (broker.rfind("mqtts://", 0) == 0) {
    rest = broker.substr(8);
    scheme = "ssl://";
    default_port = 8883;
  } else {
    return Status::Invalid("'" + std::string(broker) +
                           "' is not an MQTT URL (mqtt://host:port or mqtts://host:port)");
  }
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty() || rest.find('/') != std::string_view::npos) {
    return Status::Invalid("'" + std::string(broker) + "' must be mqtt[s]://host[:port]");
  }
  std::string out = scheme + std::string(rest);
  // A port is present when the text after the last ':' (outside [IPv6]) is digits.
  size_t colon = rest.rfind(':');
  size_t bracket = rest.rfind(']');
  if (colon == std::string_view::npos || (bracket != std::string_view::npos && bracket > colon)) {
    out += ":" + std::to_string(default_port);
  }
  return out;
}

MqttClient::MqttClient(MqttConnectOptions options, MessageHandler on_message, LostHandler on_lost)
    : options_(std::move(options)),
      on_message_(std::move(on_message)),
      on_lost_(std::move(on_lost)) {}

Result<std::unique_ptr<MqttClient>> MqttClient::Create(MqttConnectOptions options,
                                                       MessageHandler on_message,
                                                       LostHandler on_lost) {
  TRIB_ASSIGN_OR_RETURN(std::string uri, MqttPahoUri(options.broker));
  std::unique_ptr<MqttClient> client(
      new MqttClient(std::move(options), std::move(on_message), std::move(on_lost)));
  client->uri_ = std::move(uri);
  MQTTClient_createOptions create = MQTTClient_createOptions_initializer;
  create.MQTTVersion = client->options_.protocol == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
  MQTTClient handle = nullptr;
  QuietPahoTrace();
  int rc = MQTTClient_createWithOptions(&handle, client->uri_.c_str(),
                                        client->options_.client_id.c_str(),
                                        MQTTCLIENT_PERSISTENCE_NONE, nullptr, &create);
  if (rc != MQTTCLIENT_SUCCESS) {
    return Status::Invalid("mqtt: cannot create a client for " + client->options_.broker + ": " +
                           ConnectError(rc));
  }
  client->handle_ = handle;
  rc = MQTTClient_setCallbacks(
      handle, client.get(), &MqttClient::OnLost,
      [](void* context, char* topic, int topic_len, MQTTClient_message* message) {
        return MqttClient::OnMessage(context, topic, topic_len, message);
      },
      nullptr);
  if (rc != MQTTCLIENT_SUCCESS) {
    return Status::Internal("mqtt: cannot set callbacks: " + ConnectError(rc));
  }
  return client;
}

MqttClient::~MqttClient() {
  if (handle_ != nullptr) {
    MQTTClient handle = Handle(handle_);
    if (MQTTClient_isConnected(handle)) MQTTClient_disconnect(handle, 100);
    MQTTClient_destroy(&handle);
  }
}

int MqttClient::OnMessage(void* context, char* topic, int topic_len, void* message) {
  auto* self = static_cast<MqttClient*>(context);
  auto* msg = static_cast<MQTTClient_message*>(message);
  std::string_view topic_view =
      topic_len > 0 ? std::string_view(topic, static_cast<size_t>(topic_len)) : topic;
  std::string_view payload(static_cast<const char*>(msg->payload),
                           static_cast<size_t>(msg->payloadlen));
  if (self->on_message_) self->on_message_(topic_view, payload, msg->qos);
  MQTTClient_freeMessage(&msg);
  MQTTClient_free(topic);
  return 1;
}

void MqttClient::OnLost(void* context, char* cause) {
  auto* self = static_cast<MqttClient*>(context);
  if (self->on_lost_) self->on_lost_(cause != nullptr ? cause : "connection lost");
  if (cause != nullptr) MQTTClient_free(cause);
}

Status MqttClient::Connect() {
  MQTTClient handle = Handle(handle_);
  const bool v5 = options_.protocol == 5;
  MQTTClient_connectOptions conn = MQTTClient_connectOptions_initializer;
  if (v5) {
    MQTTClient_connectOptions conn5 = MQTTClient_connectOptions_initializer5;
    conn = conn5;
    conn.cleanstart = options_.clean_session ? 1 : 0;
  } else {
    conn.cleansession = options_.clean_session ? 1 : 0;
  }
  conn.keepAliveInterval = options_.keepalive_s;
  conn.connectTimeout = static_cast<int>(options_.connect_timeout / 1'000'000);
  if (conn.connectTimeout < 1) conn.connectTimeout = 1;
  if (!options_.username.empty()) conn.username = options_.username.c_str();
  if (!options_.password.empty()) conn.password = options_.password.c_str();
  MQTTClient_SSLOptions ssl = MQTTClient_SSLOptions_initializer;
  if (uri_.rfind("ssl://", 0) == 0) {
    if (!options_.ca_file.empty()) ssl.trustStore = options_.ca_file.c_str();
    if (!options_.cert_file.empty()) ssl.keyStore = options_.cert_file.c_str();
    if (!options_.key_file.empty()) ssl.privateKey = options_.key_file.c_str();
    ssl.enableServerCertAuth = 1;
    ssl.verify = 1;
    conn.ssl = &ssl;
  }
  const std::string where = "mqtt: cannot connect to " + options_.broker;
  if (v5) {
    MQTTProperties props = MQTTProperties_initializer;
    if (!options_.clean_session) {
      // A persistent session outlives the connection (until the broker's own limit).
      MQTTProperty expiry;
      expiry.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
      expiry.value.integer4 = 0xFFFFFFFFu;
      MQTTProperties_add(&props, &expiry);
    }
    MQTTResponse response = MQTTClient_connect5(handle, &conn, &props, nullptr);
    MQTTProperties_free(&props);
    const int code = static_cast<int>(response.reasonCode);
    MQTTResponse_free(response);
    if (code < 0) return Status::Unavailable(where + ": " + ConnectError(code));
    if (code >= 0x80) {
      const char* text = MQTTReasonCode_toString(static_cast<MQTTReasonCodes>(code));
      return Status::Invalid(where + ": refused: " + (text != nullptr ? text : "error"));
    }
    DisableNagleTowards(uri_);
    return Status::Ok();
  }
  int rc = MQTTClient_connect(handle, &conn);
  if (rc == MQTTCLIENT_SUCCESS) {
    DisableNagleTowards(uri_);
    return Status::Ok();
  }
  // Refusals by the broker (bad credentials, not authorized, id rejected) will not fix
  // themselves; anything else (unreachable, timeout) may.
  if (rc == 1 || rc == 2 || rc == 4 || rc == 5) {
    return Status::Invalid(where + ": refused: " + ConnectError(rc));
  }
  return Status::Unavailable(where + ": " + ConnectError(rc));
}

bool MqttClient::IsConnected() const {
  return MQTTClient_isConnected(Handle(handle_)) != 0;
}

Status MqttClient::Subscribe(const std::vector<std::string>& filters, int qos) {
  if (filters.empty()) return Status::Ok();
  std::vector<char*> topics;
  std::vector<int> qoss(filters.size(), qos);
  for (const std::string& f : filters) topics.push_back(const_cast<char*>(f.c_str()));
  const int count = static_cast<int>(filters.size());
  if (options_.protocol == 5) {
    std::vector<MQTTSubscribe_options> sub_opts(filters.size());
    for (auto& so : sub_opts) {
      MQTTSubscribe_options init = MQTTSubscribe_options_initializer;
      so = init;
    }
    MQTTResponse response = MQTTClient_subscribeMany5(Handle(handle_), count, topics.data(),
                                                      qoss.data(), sub_opts.data(), nullptr);
    Status status = Status::Ok();
    if (static_cast<int>(response.reasonCode) < 0) {
      status = Status::Unavailable("mqtt: subscribe failed: " +
                                   ConnectError(static_cast<int>(response.reasonCode)));
    } else {
      // With one filter Paho reports its code in reasonCode alone (reasonCodes null).
      for (int i = 0; response.reasonCodes != nullptr && i < response.reasonCodeCount && i < count;
           ++i) {
        if (static_cast<int>(response.reasonCodes[i]) >= 0x80) {
          status = Status::Invalid("mqtt: the broker refused the subscription to '" +
                                   filters[static_cast<size_t>(i)] + "'");
          break;
        }
      }
      if (response.reasonCodes == nullptr && static_cast<int>(response.reasonCode) >= 0x80) {
        status =
            Status::Invalid("mqtt: the broker refused the subscription to '" + filters[0] + "'");
      }
    }
    MQTTResponse_free(response);
    return status;
  }
  int rc = MQTTClient_subscribeMany(Handle(handle_), count, topics.data(), qoss.data());
  if (rc != MQTTCLIENT_SUCCESS) {
    return Status::Unavailable("mqtt: subscribe failed: " + ConnectError(rc));
  }
  for (int i = 0; i < count; ++i) {
    if (qoss[static_cast<size_t>(i)] == 0x80) {
      return Status::Invalid("mqtt: the broker refused the subscription to '" +
                             filters[static_cast<size_t>(i)] + "'");
    }
  }
  return Status::Ok();
}

Result<int> MqttClient::Publish(const std::string& topic, std::string_view payload, int qos,
                                bool retain) {
  MQTTClient_deliveryToken token = 0;
  const int len = static_cast<int>(payload.size());
  void* data = const_cast<char*>(payload.data());
  if (options_.protocol == 5) {
    MQTTClient_message msg = MQTTClient_message_initializer;
    msg.payload = data;
    msg.payloadlen = len;
    msg.qos = qos;
    msg.retained = retain ? 1 : 0;
    MQTTResponse response =
        MQTTClient_publishMessage5(Handle(handle_), topic.c_str(), &msg, &token);
    const int code = static_cast<int>(response.reasonCode);
    MQTTResponse_free(response);
    if (code < 0 || code >= 0x80) {
      return Status::Unavailable("mqtt: publish to '" + topic + "' failed: " + ConnectError(code));
    }
    return static_cast<int>(token);
  }
  int rc =
      MQTTClient_publish(Handle(handle_), topic.c_str(), len, data, qos, retain ? 1 : 0, &token);
  if (rc != MQTTCLIENT_SUCCESS) {
    return Status::Unavailable("mqtt: publish to '" + topic + "' failed: " + ConnectError(rc));
  }
  return static_cast<int>(token);
}

Status MqttClient::WaitForDelivery(int token, DurationUs timeout) {
  int rc = MQTTClient_waitForCompletion(Handle(handle_), token,
                                        static_cast<unsigned long>(TimeoutMs(timeout)));
  if (rc != MQTTCLIENT_SUCCESS) {
    return Status::Unavailable("mqtt: publish not acknowledged by " + options_.broker + ": " +
                               ConnectError(rc));
  }
  return Status::Ok();
}

void MqttClient::Disconnect(DurationUs timeout) {
  MQTTClient handle = Handle(handle_);
  if (MQTTClient_isConnected(handle)) MQTTClient_disconnect(handle, TimeoutMs(timeout));
}

// ---------------------------------------------------------------------------
// MqttPublisher

namespace {

MQTTAsync AsyncHandle(void* h) {
  return static_cast<MQTTAsync>(h);
}

// The outcome of one asynchronous connect, filled in by Paho's callbacks.
struct ConnectWaiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool ok = false;
  int code = 0;         // Paho error or MQTT 3.1.1 CONNACK code
  int reason_code = 0;  // MQTT 5 reason code
  std::string message;

  void Finish(bool success, int c, int reason, const char* text) {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
    ok = success;
    code = c;
    reason_code = reason;
    if (text != nullptr) message = text;
    cv.notify_all();
  }
};

void OnConnectSuccess(void* context, MQTTAsync_successData* /*data*/) {
  static_cast<ConnectWaiter*>(context)->Finish(true, 0, 0, nullptr);
}
void OnConnectFailure(void* context, MQTTAsync_failureData* data) {
  static_cast<ConnectWaiter*>(context)->Finish(false, data != nullptr ? data->code : -1, 0,
                                               data != nullptr ? data->message : nullptr);
}
void OnConnectSuccess5(void* context, MQTTAsync_successData5* /*data*/) {
  static_cast<ConnectWaiter*>(context)->Finish(true, 0, 0, nullptr);
}
void OnConnectFailure5(void* context, MQTTAsync_failureData5* data) {
  static_cast<ConnectWaiter*>(context)->Finish(
      false, data != nullptr ? data->code : -1,
      data != nullptr ? static_cast<int>(data->reasonCode) : 0,
      data != nullptr ? data->message : nullptr);
}

// Connect an MQTTAsync handle and wait for the outcome; refusals name the reason.
Status AsyncConnect(MQTTAsync handle, const MqttConnectOptions& options, const std::string& uri) {
  const bool v5 = options.protocol == 5;
  ConnectWaiter waiter;
  MQTTAsync_connectOptions conn = MQTTAsync_connectOptions_initializer;
  MQTTProperties props = MQTTProperties_initializer;
  if (v5) {
    MQTTAsync_connectOptions conn5 = MQTTAsync_connectOptions_initializer5;
    conn = conn5;
    conn.cleanstart = options.clean_session ? 1 : 0;
    if (!options.clean_session) {
      MQTTProperty expiry;
      expiry.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
      expiry.value.integer4 = 0xFFFFFFFFu;
      MQTTProperties_add(&props, &expiry);
      conn.connectProperties = &props;
    }
    conn.onSuccess5 = &OnConnectSuccess5;
    conn.onFailure5 = &OnConnectFailure5;
  } else {
    conn.cleansession = options.clean_session ? 1 : 0;
    conn.onSuccess = &OnConnectSuccess;
    conn.onFailure = &OnConnectFailure;
  }
  conn.context = &waiter;
  conn.keepAliveInterval = options.keepalive_s;
  conn.connectTimeout = static_cast<int>(options.connect_timeout / 1'000'000);
  if (conn.connectTimeout < 1) conn.connectTimeout = 1;
  if (!options.username.empty()) conn.username = options.username.c_str();
  if (!options.password.empty()) conn.password = options.password.c_str();
  MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
  if (uri.rfind("ssl://", 0) == 0) {
    if (!options.ca_file.empty()) ssl.trustStore = options.ca_file.c_str();
    if (!options.cert_file.empty()) ssl.keyStore = options.cert_file.c_str();
    if (!options.key_file.empty()) ssl.privateKey = options.key_file.c_str();
    ssl.enableServerCertAuth = 1;
    ssl.verify = 1;
    conn.ssl = &ssl;
  }
  const std::string where = "mqtt: cannot connect to " + options.broker;
  int rc = MQTTAsync_connect(handle, &conn);
  if (rc != MQTTASYNC_SUCCESS) {
    MQTTProperties_free(&props);
    return Status::Unavailable(where + ": " + ConnectError(rc));
  }
  std::unique_lock<std::mutex> lock(waiter.mu);
  // Paho always reports the outcome, at the latest after connectTimeout; the margin only
  // guards against a lost callback.
  const bool finished = waiter.cv.wait_for(
      lock, std::chrono::microseconds(options.connect_timeout) + std::chrono::seconds(5),
      [&] { return waiter.done; });
  MQTTProperties_free(&props);
  if (!finished) return Status::Timeout(where + ": no answer");
  if (waiter.ok) {
    DisableNagleTowards(uri);
    return Status::Ok();
  }
  if (waiter.reason_code >= 0x80) {
    const char* text = MQTTReasonCode_toString(static_cast<MQTTReasonCodes>(waiter.reason_code));
    return Status::Invalid(where + ": refused: " + (text != nullptr ? text : "error"));
  }
  if (waiter.code >= 1 && waiter.code <= 5) {
    if (waiter.code == 3) return Status::Unavailable(where + ": " + ConnectError(waiter.code));
    return Status::Invalid(where + ": refused: " + ConnectError(waiter.code));
  }
  std::string detail = waiter.message.empty() ? ConnectError(waiter.code) : waiter.message;
  return Status::Unavailable(where + ": " + detail);
}

}  // namespace

Result<std::unique_ptr<MqttPublisher>> MqttPublisher::Create(MqttConnectOptions options) {
  TRIB_ASSIGN_OR_RETURN(std::string uri, MqttPahoUri(options.broker));
  std::unique_ptr<MqttPublisher> p(new MqttPublisher(std::move(options)));
  p->uri_ = std::move(uri);
  MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer;
  create.MQTTVersion = p->options_.protocol == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
  // Paho refuses a publish (-12, "no more messages can be buffered") once 100 commands
  // wait for its send thread, which a burst of alerts on a busy machine reaches: the
  // caller then backs off for its retry interval. Let bursts queue instead.
  create.maxBufferedMessages = 100000;
  MQTTAsync handle = nullptr;
  QuietPahoTrace();
  int rc = MQTTAsync_createWithOptions(&handle, p->uri_.c_str(), p->options_.client_id.c_str(),
                                       MQTTCLIENT_PERSISTENCE_NONE, nullptr, &create);
  if (rc != MQTTASYNC_SUCCESS) {
    return Status::Invalid("mqtt: cannot create a client for " + p->options_.broker + ": " +
                           ConnectError(rc));
  }
  p->handle_ = handle;
  return p;
}

MqttPublisher::~MqttPublisher() {
  if (handle_ != nullptr) {
    Disconnect(100'000);
    MQTTAsync handle = AsyncHandle(handle_);
    MQTTAsync_destroy(&handle);
  }
}

Status MqttPublisher::Connect() {
  return AsyncConnect(AsyncHandle(handle_), options_, uri_);
}

bool MqttPublisher::IsConnected() const {
  return MQTTAsync_isConnected(AsyncHandle(handle_)) != 0;
}

Result<int> MqttPublisher::Publish(const std::string& topic, std::string_view payload, int qos,
                                   bool retain) {
  MQTTAsync_message msg = MQTTAsync_message_initializer;
  msg.payload = const_cast<char*>(payload.data());
  msg.payloadlen = static_cast<int>(payload.size());
  msg.qos = qos;
  msg.retained = retain ? 1 : 0;
  MQTTAsync_responseOptions response = MQTTAsync_responseOptions_initializer;
  int rc = MQTTAsync_sendMessage(AsyncHandle(handle_), topic.c_str(), &msg, &response);
  if (rc != MQTTASYNC_SUCCESS) {
    const char* text = MQTTAsync_strerror(rc);
    return Status::Unavailable("mqtt: publish to '" + topic +
                               "' failed: " + (text != nullptr ? text : "error") + " (" +
                               std::to_string(rc) + ")");
  }
  return static_cast<int>(response.token);
}

Status MqttPublisher::WaitForDelivery(int token, DurationUs timeout) {
  int rc = MQTTAsync_waitForCompletion(AsyncHandle(handle_), token,
                                       static_cast<unsigned long>(TimeoutMs(timeout)));
  if (rc != MQTTASYNC_SUCCESS) {
    const char* text = MQTTAsync_strerror(rc);
    return Status::Unavailable("mqtt: publish not acknowledged by " + options_.broker + ": " +
                               (text != nullptr ? text : "error") + " (" + std::to_string(rc) +
                               ")");
  }
  return Status::Ok();
}

void MqttPublisher::Disconnect(DurationUs timeout) {
  MQTTAsync handle = AsyncHandle(handle_);
  if (!MQTTAsync_isConnected(handle)) return;
  MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer;
  opts.timeout = TimeoutMs(timeout);
  if (MQTTAsync_disconnect(handle, &opts) != MQTTASYNC_SUCCESS) return;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(timeout) +
                        std::chrono::milliseconds(100);
  while (MQTTAsync_isConnected(handle) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// ---------------------------------------------------------------------------
// MqttSubscriber

namespace {

// The outcome of one asynchronous subscribe.
struct SubscribeWaiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool ok = false;
  std::vector<int> granted;  // per filter: QoS or reason code (>= 0x80: refused)
  int code = 0;
  int expected = 1;  // filters asked for
  std::string message;

  void Finish(bool success, std::vector<int> g, int c, const char* text) {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
    ok = success;
    granted = std::move(g);
    code = c;
    if (text != nullptr) message = text;
    cv.notify_all();
  }
};

}  // namespace

MqttSubscriber::MqttSubscriber(MqttConnectOptions options, MqttClient::MessageHandler on_message,
                               MqttClient::LostHandler on_lost)
    : options_(std::move(options)),
      on_message_(std::move(on_message)),
      on_lost_(std::move(on_lost)) {}

Result<std::unique_ptr<MqttSubscriber>> MqttSubscriber::Create(
    MqttConnectOptions options, MqttClient::MessageHandler on_message,
    MqttClient::LostHandler on_lost, const std::string& persistence_dir) {
  TRIB_ASSIGN_OR_RETURN(std::string uri, MqttPahoUri(options.broker));
  std::unique_ptr<MqttSubscriber> c(
      new MqttSubscriber(std::move(options), std::move(on_message), std::move(on_lost)));
  c->uri_ = std::move(uri);
  c->persistence_dir_ = persistence_dir;
  MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer;
  create.MQTTVersion = c->options_.protocol == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
  MQTTAsync handle = nullptr;
  const bool persist = !c->persistence_dir_.empty();
  QuietPahoTrace();
  int rc = MQTTAsync_createWithOptions(
      &handle, c->uri_.c_str(), c->options_.client_id.c_str(),
      persist ? MQTTCLIENT_PERSISTENCE_DEFAULT : MQTTCLIENT_PERSISTENCE_NONE,
      persist ? const_cast<char*>(c->persistence_dir_.c_str()) : nullptr, &create);
  if (rc != MQTTASYNC_SUCCESS) {
    return Status::Invalid("mqtt: cannot create a client for " + c->options_.broker + ": " +
                           ConnectError(rc));
  }
  c->handle_ = handle;
  rc = MQTTAsync_setCallbacks(
      handle, c.get(),
      [](void* context, char* cause) {
        auto* self = static_cast<MqttSubscriber*>(context);
        if (self->on_lost_) self->on_lost_(cause != nullptr ? cause : "connection lost");
        if (cause != nullptr) MQTTAsync_free(cause);
      },
      [](void* context, char* topic, int topic_len, MQTTAsync_message* message) -> int {
        auto* self = static_cast<MqttSubscriber*>(context);
        std::string_view topic_view =
            topic_len > 0 ? std::string_view(topic, static_cast<size_t>(topic_len)) : topic;
        std::string_view payload(static_cast<const char*>(message->payload),
                                 static_cast<size_t>(message->payloadlen));
        // The acknowledgement (PUBACK; PUBCOMP for QoS 2) goes out once this returns.
        if (self->on_message_) self->on_message_(topic_view, payload, message->qos);
        MQTTAsync_freeMessage(&message);
        MQTTAsync_free(topic);
        return 1;
      },
      nullptr);
  if (rc != MQTTASYNC_SUCCESS) {
    return Status::Internal("mqtt: cannot set callbacks: " + ConnectError(rc));
  }
  return c;
}

MqttSubscriber::~MqttSubscriber() {
  if (handle_ != nullptr) {
    Disconnect(100'000);
    MQTTAsync handle = AsyncHandle(handle_);
    MQTTAsync_destroy(&handle);
  }
}

Status MqttSubscriber::Connect() {
  return AsyncConnect(AsyncHandle(handle_), options_, uri_);
}

bool MqttSubscriber::IsConnected() const {
  return MQTTAsync_isConnected(AsyncHandle(handle_)) != 0;
}

Status MqttSubscriber::Subscribe(const std::vector<std::string>& filters, int qos) {
  if (filters.empty()) return Status::Ok();
  std::vector<char*> topics;
  std::vector<int> qoss(filters.size(), qos);
  for (const std::string& f : filters) topics.push_back(const_cast<char*>(f.c_str()));
  const int count = static_cast<int>(filters.size());
  SubscribeWaiter waiter;
  waiter.expected = count;
  MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
  ro.context = &waiter;
  if (options_.protocol == 5) {
    ro.onSuccess5 = [](void* context, MQTTAsync_successData5* data) {
      std::vector<int> g;
      if (data != nullptr && data->alt.sub.reasonCodeCount > 0 &&
          data->alt.sub.reasonCodes != nullptr) {
        for (int i = 0; i < data->alt.sub.reasonCodeCount; ++i) {
          g.push_back(static_cast<int>(data->alt.sub.reasonCodes[i]));
        }
      } else if (data != nullptr) {
        g.push_back(static_cast<int>(data->reasonCode));
      }
      static_cast<SubscribeWaiter*>(context)->Finish(true, std::move(g), 0, nullptr);
    };
    ro.onFailure5 = [](void* context, MQTTAsync_failureData5* data) {
      static_cast<SubscribeWaiter*>(context)->Finish(false, {}, data != nullptr ? data->code : -1,
                                                     data != nullptr ? data->message : nullptr);
    };
  } else {
    ro.onSuccess = [](void* context, MQTTAsync_successData* data) {
      auto* w = static_cast<SubscribeWaiter*>(context);
      std::vector<int> g;
      if (data != nullptr && w->expected > 1 && data->alt.qosList != nullptr) {
        for (int i = 0; i < w->expected; ++i) g.push_back(data->alt.qosList[i]);
      } else if (data != nullptr) {
        g.push_back(data->alt.qos);
      }
      w->Finish(true, std::move(g), 0, nullptr);
    };
    ro.onFailure = [](void* context, MQTTAsync_failureData* data) {
      static_cast<SubscribeWaiter*>(context)->Finish(false, {}, data != nullptr ? data->code : -1,
                                                     data != nullptr ? data->message : nullptr);
    };
  }
  int rc = count == 1 ? MQTTAsync_subscribe(AsyncHandle(handle_), topics[0], qoss[0], &ro)
                      : MQTTAsync_subscribeMany(AsyncHandle(handle_), count, topics.data(),
                                                qoss.data(), &ro);
  if (rc != MQTTASYNC_SUCCESS) {
    return Status::Unavailable("mqtt: subscribe failed: " + ConnectError(rc));
  }
  std::unique_lock<std::mutex> lock(waiter.mu);
  if (!waiter.cv.wait_for(lock, std::chrono::microseconds(options_.connect_timeout),
                          [&] { return waiter.done; })) {
    return Status::Timeout("mqtt: no answer to the subscription from " + options_.broker);
  }
  if (!waiter.ok) {
    // Paho reports a refused single subscription (SUBACK 0x80) as a failure.
    if (waiter.code == 0x80 || (waiter.code >= 0x80 && options_.protocol == 5)) {
      return Status::Invalid("mqtt: the broker refused the subscription to '" + filters[0] + "'");
    }
    return Status::Unavailable("mqtt: subscribe failed: " + (waiter.message.empty()
                                                                 ? ConnectError(waiter.code)
                                                                 : waiter.message));
  }
  for (size_t i = 0; i < waiter.granted.size() && i < filters.size(); ++i) {
    if (waiter.granted[i] >= 0x80) {
      return Status::Invalid("mqtt: the broker refused the subscription to '" + filters[i] + "'");
    }
  }
  return Status::Ok();
}

void MqttSubscriber::Disconnect(DurationUs timeout) {
  MQTTAsync handle = AsyncHandle(handle_);
  if (!MQTTAsync_isConnected(handle)) return;
  MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer;
  opts.timeout = TimeoutMs(timeout);
  if (MQTTAsync_disconnect(handle, &opts) != MQTTASYNC_SUCCESS) return;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(timeout) +
                        std::chrono::milliseconds(100);
  while (MQTTAsync_isConnected(handle) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace tributary
