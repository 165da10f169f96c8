// A subscribe-only MQTT 3.1.1 / 5 client over plain TCP, for the `mqtt` source without
// an ingest log. It exists for speed: Paho and libmosquitto read every packet with
// separate small reads (header byte, length, body) and wait in poll between them, which
// on a small machine costs as much CPU per message as all of tributary's processing of
// it. This reader takes whatever the socket holds in one recv (up to 64 KiB, hundreds of
// messages) and walks the packets in memory. At QoS 0 under load (reads of a few messages
// in quick succession) it waits 200 µs before the next read so that each carries more, and
// its handler's consumer is woken once per read (on_read_end) rather than per message.
//
// What it speaks: CONNECT (clean or persistent session, user name and password, keep
// alive; for MQTT 5 a session expiry of "never" when persistent), SUBSCRIBE with one QoS
// for all filters (shared subscriptions are filters like any other), incoming PUBLISH at
// QoS 0, 1 and 2, PINGREQ when the connection has been silent for the keep-alive
// interval, DISCONNECT. TLS (mqtts://) stays with Paho (io/mqtt_client.h).
//
// Acknowledgement: a QoS 1 PUBACK is sent after the message handler returned, and the
// PUBACKs of everything handled from one read go out together before the next read. A
// handler that blocks (the source's buffer is full) therefore stops reading and leaves
// that message and the rest with the broker. QoS 2: the handler runs when PUBLISH
// arrives, the packet id is kept until PUBREL so a redelivered PUBLISH is not handed on
// twice, and PUBREC / PUBCOMP follow the handler; the ids live in memory, as with Paho's
// synchronous client without persistence.
//
// Threading: after Connect, one thread of its own reads the socket and runs the handlers.
// Connect, Subscribe and Disconnect are called from one other thread at a time.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "io/mqtt_client.h"

namespace tributary {

/// What a walk over received bytes hands on, packet by packet.
class MqttPacketSink {
 public:
  virtual ~MqttPacketSink() = default;
  /// PUBLISH; `id` is 0 at QoS 0. The views point into the walked bytes.
  virtual void OnPublish(std::string_view topic, std::string_view payload, int qos,
                         uint16_t id) = 0;
  virtual void OnPubrel(uint16_t id) = 0;
  /// SUBACK: one return / reason code per filter.
  virtual void OnSuback(uint16_t id, std::string_view codes) = 0;
  virtual void OnPingresp() = 0;
};

/// The outcome of WalkMqttPackets.
struct MqttWalk {
  size_t consumed = 0;   ///< bytes of the whole packets handled
  size_t next_size = 0;  ///< an incomplete packet follows: its whole size, when known
  std::string error;     ///< non-empty: the packet at `consumed` breaks the protocol
};

/// Walk the whole packets a broker sent at the start of `bytes` (MQTT 5 when `v5`),
/// handing each to `sink`; stops at an incomplete packet, at a malformed one, or at the
/// broker's DISCONNECT (an error naming its reason).
MqttWalk WalkMqttPackets(std::string_view bytes, bool v5, MqttPacketSink& sink);

class MqttReader : public MqttReceiver, private MqttPacketSink {
 public:
  /// Whether the reader can reach this broker (plain TCP: mqtt://).
  static bool Supports(const MqttConnectOptions& options);
  /// Called on the reading thread after the messages of one read were handled.
  using ReadEndHandler = std::function<void()>;
  /// `on_read_end` (optional) lets a handler that queues messages wake its consumer once
  /// per read, hundreds of messages, instead of per message.
  static Result<std::unique_ptr<MqttReader>> Create(MqttConnectOptions options,
                                                    MqttClient::MessageHandler on_message,
                                                    MqttClient::LostHandler on_lost,
                                                    ReadEndHandler on_read_end = {});
  ~MqttReader() override;
  MqttReader(const MqttReader&) = delete;
  MqttReader& operator=(const MqttReader&) = delete;

  /// Connect (or reconnect after a loss) and wait for CONNACK; refusals name the reason.
  Status Connect() override;
  bool IsConnected() const override { return connected_.load(std::memory_order_acquire); }
  /// Subscribe to every filter with `qos` and wait for SUBACK; an error names a refused
  /// filter.
  Status Subscribe(const std::vector<std::string>& filters, int qos) override;
  void Disconnect(DurationUs timeout) override;

 private:
  MqttReader(MqttConnectOptions options, MqttClient::MessageHandler on_message,
             MqttClient::LostHandler on_lost, ReadEndHandler on_read_end);

  // Close the socket and join the reading thread (after a loss or a Disconnect).
  void Teardown();
  // Send bytes; false when the connection is gone.
  bool Send(const std::string& bytes);
  // The reading thread: recv, walk the packets, acknowledge, keep alive.
  void ReadLoop();
  // Handle every complete packet in in_[in_begin_, in_end_), collecting acknowledgements
  // in acks_; false and `error` set on a packet that breaks the protocol.
  bool HandlePackets(std::string& error);
  void Lost(const std::string& cause);
  // MqttPacketSink, on the reading thread.
  void OnPublish(std::string_view topic, std::string_view payload, int qos, uint16_t id) override;
  void OnPubrel(uint16_t id) override;
  void OnSuback(uint16_t id, std::string_view codes) override;
  void OnPingresp() override { ping_outstanding_ = false; }

  MqttConnectOptions options_;
  std::string host_;
  std::string port_;
  MqttClient::MessageHandler on_message_;
  MqttClient::LostHandler on_lost_;
  ReadEndHandler on_read_end_;
  std::atomic<int> subscribed_qos_{0};  // the highest QoS subscribed to
  int64_t last_read_us_ = 0;            // when the reading thread last called recv
  size_t last_got_ = 0;                 // and how many bytes it got

  int fd_ = -1;
  std::thread reader_;
  std::atomic<bool> connected_{false};
  std::atomic<bool> closing_{false};
  std::mutex write_mu_;  // one packet at a time onto the socket
  std::atomic<int64_t> last_send_us_{0};

  // Received bytes not yet handled (the reading thread's, and Connect's before it starts).
  std::vector<char> in_;
  size_t in_begin_ = 0;
  size_t in_end_ = 0;
  std::string acks_;  // PUBACK / PUBREC / PUBCOMP of what was handled, sent after a walk
  std::unordered_set<uint16_t> qos2_received_;  // QoS 2 ids handed on, awaiting PUBREL
  bool ping_outstanding_ = false;
  int64_t ping_sent_us_ = 0;

  // SUBSCRIBE waits for its SUBACK, which the reading thread hands over here.
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint16_t, std::vector<uint8_t>> subacks_;
  uint16_t next_packet_id_ = 1;
};

}  // namespace tributary
