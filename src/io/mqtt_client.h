// Thin RAII wrappers around the Eclipse Paho C clients, shared by the `mqtt` source
// (MqttClient, on the synchronous MQTTClient library, for mqtts:// without checkpoints;
// MqttSubscriber with checkpoints) and sink (MqttPublisher, on the asynchronous MQTTAsync
// library), plus the connection options all declare. A plain-TCP source without
// checkpoints uses MqttReader (io/mqtt_reader.h) instead, for speed.
//
// Library choice: Paho C (libpaho-mqtt-dev 1.3) rather than libmosquitto 2.0.11.
// Neither lets the application send the PUBACK/PUBREC of an incoming QoS 1/2 message
// itself. Paho's two clients differ in when they send it (checked against Mosquitto's
// log with Paho 1.3.12): the synchronous MQTTClient sends PUBACK while reading the
// packet, before the messageArrived callback runs; the asynchronous MQTTAsync calls
// messageArrived while it handles the packet and sends PUBACK after it returned (for
// QoS 2 both send PUBREC on receipt, and MQTTAsync sends PUBCOMP after the callback).
// The `mqtt` source without checkpoints uses MqttClient: its callback runs on the thread
// that reads the sockets, one packet per turn, so while the callback blocks nothing more
// is read or acknowledged and the broker keeps the rest (in its in-flight window and,
// with a persistent session, its queue); the source blocks the callback while its
// bounded buffer is full, so at most `buffer` + 2 acknowledged messages (the buffer, the
// one in the callback, one read ahead) exist only in tributary's memory at any time.
// With checkpoints it uses MqttSubscriber (below), whose callback appends to the ingest
// log, so nothing acknowledged exists only in memory. Paho also speaks MQTT 5 and TLS
// (libpaho-mqtt3cs and libpaho-mqtt3as) through the same API.
//
// The synchronous library runs ONE receive thread for all its clients in the process:
// while one source blocks it, other mqtt sources receive nothing either (they resume
// when it drains). Publishers therefore use MQTTAsync, whose threads are separate.
//
// Paho's own trace is kept to errors (its default level formats a line per packet);
// MQTT_C_CLIENT_TRACE / MQTT_C_CLIENT_TRACE_LEVEL in the environment still turn it on.
//
// Threading (MqttClient): the callbacks run on Paho's receive thread. Connect, Subscribe,
// Publish, WaitForDelivery and Disconnect may be called from any one other thread at a
// time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "core/time.h"

namespace tributary {

/// How to reach and log in to a broker.
struct MqttConnectOptions {
  std::string broker;     ///< mqtt://host:port, or mqtts://host:port for TLS
  std::string client_id;  ///< empty: a random id (only with clean_session)
  bool clean_session = false;
  std::string username;
  std::string password;
  std::string ca_file;    ///< TLS: CA bundle to verify the broker (empty: system default)
  std::string cert_file;  ///< TLS client certificate (PEM), optional
  std::string key_file;   ///< TLS client key (PEM), optional
  int keepalive_s = 30;   ///< seconds between PINGREQs when idle
  int protocol = 4;       ///< 4 = MQTT 3.1.1, 5 = MQTT 5
  DurationUs connect_timeout = 10'000'000;
};

/// The connection options shared by `sources[] (type: mqtt)` and `sinks[] (type: mqtt)`;
/// each connector's table starts with these.
const std::vector<OptionSpec>& MqttConnectionOptionSpecs();
/// Read the shared connection options; errors name the key.
Result<MqttConnectOptions> ParseMqttConnectOptions(const OptionReader& reader);
/// mqtt://h:p → tcp://h:p, mqtts://h:p → ssl://h:p (default ports 1883 and 8883).
Result<std::string> MqttPahoUri(std::string_view broker);

/// What the `mqtt` source needs of a subscribing client (MqttClient, MqttSubscriber, or
/// MqttReader in io/mqtt_reader.h).
class MqttReceiver {
 public:
  virtual ~MqttReceiver() = default;
  /// Connect (or reconnect). Refusals name the reason ("bad user name or password").
  virtual Status Connect() = 0;
  virtual bool IsConnected() const = 0;
  /// Subscribe to every filter with `qos`; an error when the broker refuses one.
  virtual Status Subscribe(const std::vector<std::string>& filters, int qos) = 0;
  /// Disconnect politely, giving in-flight work up to `timeout`.
  virtual void Disconnect(DurationUs timeout) = 0;
};

/// The text of an MQTT 3.1.1 CONNACK return code (1..5).
std::string MqttConnackText(int code);
/// The text of an MQTT 5 reason code.
std::string MqttReasonText(int code);

class MqttClient : public MqttReceiver {
 public:
  /// Called for each incoming message on the receive thread; the views are valid only
  /// during the call. Blocking here stops the client from reading further messages.
  using MessageHandler =
      std::function<void(std::string_view topic, std::string_view payload, int qos)>;
  /// Called on the receive thread when an established connection drops.
  using LostHandler = std::function<void(const std::string& cause)>;

  static Result<std::unique_ptr<MqttClient>> Create(MqttConnectOptions options,
                                                    MessageHandler on_message, LostHandler on_lost);
  ~MqttClient() override;
  MqttClient(const MqttClient&) = delete;
  MqttClient& operator=(const MqttClient&) = delete;

  Status Connect() override;
  bool IsConnected() const override;
  Status Subscribe(const std::vector<std::string>& filters, int qos) override;
  /// Publish; for QoS 1/2 the returned token is waited on with WaitForDelivery.
  Result<int> Publish(const std::string& topic, std::string_view payload, int qos, bool retain);
  /// Wait until the publish `token` is acknowledged (PUBACK / PUBCOMP).
  Status WaitForDelivery(int token, DurationUs timeout);
  void Disconnect(DurationUs timeout) override;
  const MqttConnectOptions& options() const { return options_; }

 private:
  MqttClient(MqttConnectOptions options, MessageHandler on_message, LostHandler on_lost);
  static int OnMessage(void* context, char* topic, int topic_len, void* message);
  static void OnLost(void* context, char* cause);

  MqttConnectOptions options_;
  std::string uri_;
  MessageHandler on_message_;
  LostHandler on_lost_;
  void* handle_ = nullptr;  // MQTTClient; destroyed in the destructor
};

/// A subscriber on Paho's asynchronous library (MQTTAsync), for the `mqtt` source with an
/// ingest log (stream/ingest_log.h). Unlike MqttClient, MQTTAsync calls the message
/// handler while it processes the incoming packet and sends the acknowledgement of a
/// QoS 1 message (PUBACK) only when the handler returns: a handler that appends the
/// message durably before it returns acknowledges only what is safe. For QoS 2 Paho
/// sends PUBREC on receipt and calls the handler when PUBREL arrives (PUBCOMP follows
/// the handler); between the two the message is Paho's: with `persistence_dir` set,
/// Paho stores it there before PUBREC and delivers it after a restart of the process,
/// so it is not lost either. The handler must not block for long: MQTTAsync runs one
/// receive thread for all its clients in the process, publishers included.
///
/// Threading: the callbacks run on Paho's receive thread; the other calls from one
/// thread at a time.
class MqttSubscriber : public MqttReceiver {
 public:
  static Result<std::unique_ptr<MqttSubscriber>> Create(MqttConnectOptions options,
                                                        MqttClient::MessageHandler on_message,
                                                        MqttClient::LostHandler on_lost,
                                                        const std::string& persistence_dir);
  ~MqttSubscriber() override;
  MqttSubscriber(const MqttSubscriber&) = delete;
  MqttSubscriber& operator=(const MqttSubscriber&) = delete;

  /// Connect (or reconnect) and wait for the outcome; refusals name the reason.
  Status Connect() override;
  bool IsConnected() const override;
  Status Subscribe(const std::vector<std::string>& filters, int qos) override;
  void Disconnect(DurationUs timeout) override;

 private:
  MqttSubscriber(MqttConnectOptions options, MqttClient::MessageHandler on_message,
                 MqttClient::LostHandler on_lost);

  MqttConnectOptions options_;
  std::string uri_;
  std::string persistence_dir_;
  MqttClient::MessageHandler on_message_;
  MqttClient::LostHandler on_lost_;
  void* handle_ = nullptr;  // MQTTAsync; destroyed in the destructor
};

/// A publish-only client on Paho's asynchronous library (MQTTAsync). The synchronous
/// library runs one receive thread for all its clients in the process, so a source that
/// blocks it for backpressure would also hold up a synchronous publisher's
/// acknowledgements; MQTTAsync has threads of its own.
///
/// Threading: all calls from one thread at a time.
class MqttPublisher {
 public:
  static Result<std::unique_ptr<MqttPublisher>> Create(MqttConnectOptions options);
  ~MqttPublisher();
  MqttPublisher(const MqttPublisher&) = delete;
  MqttPublisher& operator=(const MqttPublisher&) = delete;

  /// Connect (or reconnect) and wait for the outcome; refusals name the reason.
  Status Connect();
  bool IsConnected() const;
  /// Queue a publish; for QoS 1/2 the returned token is waited on with WaitForDelivery.
  Result<int> Publish(const std::string& topic, std::string_view payload, int qos, bool retain);
  /// Wait until the publish `token` is acknowledged (PUBACK / PUBCOMP).
  Status WaitForDelivery(int token, DurationUs timeout);
  /// Disconnect, giving in-flight publishes up to `timeout`.
  void Disconnect(DurationUs timeout);

 private:
  explicit MqttPublisher(MqttConnectOptions options) : options_(std::move(options)) {}

  MqttConnectOptions options_;
  std::string uri_;
  void* handle_ = nullptr;  // MQTTAsync; destroyed in the destructor
};

}  // namespace tributary
