#include "io/mqtt_reader.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <string_view>
#include <utility>

#include "core/time.h"

namespace tributary {
namespace {

constexpr size_t kReadSize = 64 * 1024;
// Gathering under load (ReadLoop): after a read of kGatherMinBytes to kGatherBytes (a
// few messages had piled up, but far from a full buffer), a read within kGatherAfterUs
// waits kGatherUs first. A stream of one message per read (10,000 messages/s) is not
// held up.
constexpr size_t kGatherMinBytes = 1024;
constexpr size_t kGatherBytes = 16 * 1024;
constexpr int64_t kGatherAfterUs = 1000;
constexpr int64_t kGatherUs = 200;

// Packet types (the high nibble of the first byte).
constexpr uint8_t kConnect = 1;
constexpr uint8_t kConnack = 2;
constexpr uint8_t kPublish = 3;
constexpr uint8_t kPubrel = 6;
constexpr uint8_t kSuback = 9;
constexpr uint8_t kPingresp = 13;
constexpr uint8_t kDisconnect = 14;

void PutU16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xFF));
}

void PutString(std::string& out, std::string_view s) {
  PutU16(out, static_cast<uint16_t>(s.size()));
  out.append(s);
}

void PutVarInt(std::string& out, uint32_t v) {
  do {
    auto byte = static_cast<uint8_t>(v % 128);
    v /= 128;
    if (v > 0) byte |= 0x80;
    out.push_back(static_cast<char>(byte));
  } while (v > 0);
}

// A whole packet: the first byte, the remaining length, the body.
std::string Packet(uint8_t first, const std::string& body) {
  std::string out;
  out.reserve(body.size() + 5);
  out.push_back(static_cast<char>(first));
  PutVarInt(out, static_cast<uint32_t>(body.size()));
  out.append(body);
  return out;
}

// A two-byte acknowledgement (PUBACK, PUBREC, PUBCOMP) of packet `id`.
void PutAck(std::string& out, uint8_t first, uint16_t id) {
  out.push_back(static_cast<char>(first));
  out.push_back(2);
  PutU16(out, id);
}

// Reads a packet's fields; every read checks the bounds and fails from then on.
struct Cursor {
  const uint8_t* p;
  const uint8_t* end;
  bool ok = true;

  size_t left() const { return static_cast<size_t>(end - p); }
  uint8_t U8() {
    if (!ok || p >= end) return Fail();
    return *p++;
  }
  uint16_t U16() {
    if (!ok || left() < 2) return Fail();
    auto v = static_cast<uint16_t>((p[0] << 8) | p[1]);
    p += 2;
    return v;
  }
  uint32_t VarInt() {
    uint32_t v = 0;
    for (int shift = 0; shift < 28; shift += 7) {
      uint8_t b = U8();
      if (!ok) return 0;
      v |= static_cast<uint32_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return v;
    }
    return Fail();
  }
  std::string_view Bytes(size_t n) {
    if (!ok || left() < n) {
      Fail();
      return {};
    }
    std::string_view s(reinterpret_cast<const char*>(p), n);
    p += n;
    return s;
  }
  // MQTT 5 properties: their length, then skipped.
  void SkipProperties() { Bytes(VarInt()); }
  uint8_t Fail() {
    ok = false;
    return 0;
  }
};

// The packet at the start of `bytes`.
struct PacketAt {
  enum Kind { kWhole, kIncomplete, kMalformed } kind = kIncomplete;
  uint8_t first = 0;
  Cursor body{nullptr, nullptr};
  size_t size = 0;  // whole packet (kWhole; kIncomplete once its length is all there)
};

PacketAt SplitPacket(std::string_view bytes) {
  PacketAt at;
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  uint32_t remaining = 0;
  for (size_t i = 1; i <= 4; ++i) {
    if (i >= n) return at;  // the length is not all there yet
    remaining |= static_cast<uint32_t>(p[i] & 0x7F) << (7 * (i - 1));
    if ((p[i] & 0x80) != 0) continue;
    at.size = i + 1 + remaining;
    if (n < at.size) return at;
    at.kind = PacketAt::kWhole;
    at.first = p[0];
    at.body = Cursor{p + i + 1, p + at.size};
    return at;
  }
  at.kind = PacketAt::kMalformed;
  return at;
}

std::string RandomClientId() {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "tributary-";
  for (int i = 0; i < 12; ++i) id.push_back(kHex[gen() % 16]);
  return id;
}

// Connect a TCP socket to host:port within `timeout`; -1 and `error` set otherwise.
int ConnectTcp(const std::string& host, const std::string& port, DurationUs timeout,
               std::string& error) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    error = std::string("cannot resolve the host: ") + ::gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  error = "no address";
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
      error = std::strerror(errno);
      continue;
    }
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd pfd{fd, POLLOUT, 0};
      rc = ::poll(&pfd, 1, static_cast<int>(std::max<DurationUs>(timeout / 1000, 1)));
      if (rc == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err == 0 ? 0 : -1;
        errno = err;
      } else {
        if (rc == 0) errno = ETIMEDOUT;
        rc = -1;
      }
    }
    if (rc == 0) break;
    error = std::strerror(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  if (fd < 0) return -1;
  // Blocking from here on: the reading thread waits in poll, and a write may wait for
  // the broker (bounded by SO_SNDTIMEO).
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout / 1'000'000);
  tv.tv_usec = static_cast<suseconds_t>(timeout % 1'000'000);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

}  // namespace

bool MqttReader::Supports(const MqttConnectOptions& options) {
  return options.broker.rfind("mqtt://", 0) == 0;
}

MqttReader::MqttReader(MqttConnectOptions options, MqttClient::MessageHandler on_message,
                       MqttClient::LostHandler on_lost, ReadEndHandler on_read_end)
    : options_(std::move(options)),
      on_message_(std::move(on_message)),
      on_lost_(std::move(on_lost)),
      on_read_end_(std::move(on_read_end)) {}

Result<std::unique_ptr<MqttReader>> MqttReader::Create(MqttConnectOptions options,
                                                       MqttClient::MessageHandler on_message,
                                                       MqttClient::LostHandler on_lost,
                                                       ReadEndHandler on_read_end) {
  if (!Supports(options)) {
    return Status::Invalid("mqtt: the built-in reader speaks plain TCP (mqtt://) only, not " +
                           options.broker);
  }
  TRIB_ASSIGN_OR_RETURN(std::string uri, MqttPahoUri(options.broker));  // tcp://host:port
  const std::string_view rest = std::string_view(uri).substr(6);
  const size_t colon = rest.rfind(':');
  std::unique_ptr<MqttReader> r(new MqttReader(std::move(options), std::move(on_message),
                                               std::move(on_lost), std::move(on_read_end)));
  r->host_ = std::string(rest.substr(0, colon));
  if (r->host_.size() >= 2 && r->host_.front() == '[' && r->host_.back() == ']') {
    r->host_ = r->host_.substr(1, r->host_.size() - 2);
  }
  r->port_ = std::string(rest.substr(colon + 1));
  if (r->options_.client_id.empty()) r->options_.client_id = RandomClientId();
  r->in_.resize(kReadSize);
  return r;
}

MqttReader::~MqttReader() {
  Disconnect(0);
}

void MqttReader::Teardown() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
  if (reader_.joinable()) reader_.join();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  connected_.store(false, std::memory_order_release);
}

bool MqttReader::Send(const std::string& bytes) {
  std::lock_guard<std::mutex> lock(write_mu_);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  last_send_us_.store(NowUs(), std::memory_order_relaxed);
  return true;
}

Status MqttReader::Connect() {
  Teardown();
  closing_.store(false);
  in_begin_ = in_end_ = 0;
  ping_outstanding_ = false;
  // QoS 2 ids belong to the session: a clean one starts without.
  if (options_.clean_session) qos2_received_.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    subacks_.clear();
  }
  const std::string where = "mqtt: cannot connect to " + options_.broker;
  std::string error;
  fd_ = ConnectTcp(host_, port_, options_.connect_timeout, error);
  if (fd_ < 0) return Status::Unavailable(where + ": " + error);

  const bool v5 = options_.protocol == 5;
  std::string body;
  PutString(body, "MQTT");
  body.push_back(static_cast<char>(v5 ? 5 : 4));
  uint8_t flags = options_.clean_session ? 0x02 : 0;
  if (!options_.username.empty()) flags |= 0x80;
  if (!options_.password.empty()) flags |= 0x40;
  body.push_back(static_cast<char>(flags));
  PutU16(body, static_cast<uint16_t>(std::clamp(options_.keepalive_s, 0, 65535)));
  if (v5) {
    if (options_.clean_session) {
      PutVarInt(body, 0);
    } else {
      // A persistent session outlives the connection (until the broker's own limit).
      PutVarInt(body, 5);
      body.push_back(0x11);  // session expiry interval
      body.append("\xFF\xFF\xFF\xFF", 4);
    }
  }
  PutString(body, options_.client_id);
  if (!options_.username.empty()) PutString(body, options_.username);
  if (!options_.password.empty()) PutString(body, options_.password);
  if (!Send(Packet(kConnect << 4, body))) {
    Teardown();
    return Status::Unavailable(where + ": the connection closed while sending CONNECT");
  }

  // CONNACK, read here; whatever follows it stays in in_ for the reading thread.
  const TimeUs deadline = NowUs() + options_.connect_timeout;
  while (true) {
    PacketAt at = SplitPacket(std::string_view(in_.data() + in_begin_, in_end_ - in_begin_));
    if (at.kind == PacketAt::kMalformed ||
        (in_end_ > in_begin_ && (static_cast<uint8_t>(in_[in_begin_]) >> 4) != kConnack)) {
      Teardown();
      return Status::Unavailable(where + ": the server's answer is not an MQTT CONNACK (is " +
                                 host_ + ":" + port_ + " an MQTT broker?)");
    }
    if (at.kind == PacketAt::kWhole) {
      at.body.U8();  // session present
      const uint8_t code = at.body.U8();
      in_begin_ += at.size;
      if (!at.body.ok) {
        Teardown();
        return Status::Unavailable(where + ": malformed CONNACK");
      }
      if (code != 0) {
        Teardown();
        // A server that is unavailable may come back; a refused login will not.
        if (!v5 && code == 3) return Status::Unavailable(where + ": " + MqttConnackText(code));
        return Status::Invalid(where +
                               ": refused: " + (v5 ? MqttReasonText(code) : MqttConnackText(code)));
      }
      break;
    }
    const TimeUs now = NowUs();
    if (now >= deadline) {
      Teardown();
      return Status::Timeout(where + ": no CONNACK within " +
                             FormatDuration(options_.connect_timeout));
    }
    pollfd pfd{fd_, POLLIN, 0};
    int rc = ::poll(&pfd, 1, static_cast<int>(std::max<int64_t>((deadline - now) / 1000, 1)));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) continue;
    if (in_end_ == in_.size()) in_.resize(in_.size() * 2);
    ssize_t got = ::recv(fd_, in_.data() + in_end_, in_.size() - in_end_, 0);
    if (got <= 0) {
      Teardown();
      return Status::Unavailable(where +
                                 ": connection failed (broker unreachable or it "
                                 "closed the connection)");
    }
    in_end_ += static_cast<size_t>(got);
  }
  connected_.store(true, std::memory_order_release);
  reader_ = std::thread([this] { ReadLoop(); });
  return Status::Ok();
}

Status MqttReader::Subscribe(const std::vector<std::string>& filters, int qos) {
  if (filters.empty()) return Status::Ok();
  if (!IsConnected()) return Status::Unavailable("mqtt: subscribe failed: not connected");
  subscribed_qos_.store(std::max(qos, subscribed_qos_.load()), std::memory_order_relaxed);
  uint16_t id = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_packet_id_++;
    if (next_packet_id_ == 0) next_packet_id_ = 1;
  }
  std::string body;
  PutU16(body, id);
  if (options_.protocol == 5) PutVarInt(body, 0);
  for (const std::string& f : filters) {
    PutString(body, f);
    body.push_back(static_cast<char>(qos));
  }
  if (!Send(Packet((8 << 4) | 0x02, body))) {
    return Status::Unavailable("mqtt: subscribe failed: the connection closed");
  }
  std::unique_lock<std::mutex> lock(mu_);
  const bool answered = cv_.wait_for(lock, std::chrono::microseconds(options_.connect_timeout),
                                     [&] { return subacks_.count(id) > 0 || !IsConnected(); });
  if (!answered) return Status::Timeout("mqtt: subscribe failed: no SUBACK");
  auto it = subacks_.find(id);
  if (it == subacks_.end()) {
    return Status::Unavailable("mqtt: subscribe failed: the connection closed");
  }
  const std::vector<uint8_t> codes = std::move(it->second);
  subacks_.erase(it);
  for (size_t i = 0; i < filters.size(); ++i) {
    if (i >= codes.size() || codes[i] >= 0x80) {
      return Status::Invalid("mqtt: the broker refused the subscription to '" + filters[i] + "'");
    }
  }
  return Status::Ok();
}

void MqttReader::Disconnect(DurationUs /*timeout*/) {
  closing_.store(true);
  if (fd_ >= 0 && IsConnected()) {
    (void)Send(Packet(kDisconnect << 4, options_.protocol == 5 ? std::string(1, '\0') : ""));
  }
  Teardown();
}

void MqttReader::Lost(const std::string& cause) {
  connected_.store(false, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  if (!closing_.load() && on_lost_) on_lost_(cause);
}

MqttWalk WalkMqttPackets(std::string_view bytes, bool v5, MqttPacketSink& sink) {
  MqttWalk walk;
  while (walk.consumed < bytes.size()) {
    PacketAt at = SplitPacket(bytes.substr(walk.consumed));
    if (at.kind == PacketAt::kMalformed) {
      walk.error = "malformed packet length from the broker";
      return walk;
    }
    if (at.kind == PacketAt::kIncomplete) {
      walk.next_size = at.size;
      return walk;
    }
    const uint8_t first = at.first;
    Cursor& c = at.body;
    const size_t size = at.size;
    switch (first >> 4) {
      case kPublish: {
        const int qos = (first >> 1) & 0x03;
        const std::string_view topic = c.Bytes(c.U16());
        const uint16_t id = qos > 0 ? c.U16() : 0;
        if (v5) c.SkipProperties();
        if (!c.ok || qos == 3 || (qos > 0 && id == 0)) {
          walk.error = "malformed PUBLISH from the broker";
          return walk;
        }
        sink.OnPublish(topic, std::string_view(reinterpret_cast<const char*>(c.p), c.left()), qos,
                       id);
        break;
      }
      case kPubrel: {
        const uint16_t id = c.U16();
        if (!c.ok) {
          walk.error = "malformed PUBREL from the broker";
          return walk;
        }
        sink.OnPubrel(id);
        break;
      }
      case kSuback: {
        const uint16_t id = c.U16();
        if (v5) c.SkipProperties();
        if (!c.ok) {
          walk.error = "malformed SUBACK from the broker";
          return walk;
        }
        sink.OnSuback(id, std::string_view(reinterpret_cast<const char*>(c.p), c.left()));
        break;
      }
      case kPingresp:
        sink.OnPingresp();
        break;
      case kDisconnect: {
        const uint8_t reason = c.left() > 0 ? c.U8() : 0;
        walk.error = "the broker disconnected" + (reason != 0 ? ": " + MqttReasonText(reason) : "");
        return walk;
      }
      default:
        break;  // PUBACK, PUBREC, PUBCOMP, UNSUBACK: nothing of ours is outstanding
    }
    walk.consumed += size;
  }
  return walk;
}

void MqttReader::OnPublish(std::string_view topic, std::string_view payload, int qos, uint16_t id) {
  if (qos == 2) {
    // A PUBLISH sent again before PUBREL was handed on already.
    if (qos2_received_.insert(id).second && on_message_) on_message_(topic, payload, qos);
    PutAck(acks_, 5 << 4, id);  // PUBREC
    return;
  }
  if (on_message_) on_message_(topic, payload, qos);
  if (qos == 1) PutAck(acks_, 4 << 4, id);  // PUBACK
}

void MqttReader::OnPubrel(uint16_t id) {
  qos2_received_.erase(id);
  PutAck(acks_, 7 << 4, id);  // PUBCOMP
}

void MqttReader::OnSuback(uint16_t id, std::string_view codes) {
  std::lock_guard<std::mutex> lock(mu_);
  subacks_[id].assign(codes.begin(), codes.end());
  cv_.notify_all();
}

bool MqttReader::HandlePackets(std::string& error) {
  const MqttWalk walk = WalkMqttPackets(
      std::string_view(in_.data() + in_begin_, in_end_ - in_begin_), options_.protocol == 5, *this);
  in_begin_ += walk.consumed;
  if (!walk.error.empty()) {
    error = walk.error;
    return false;
  }
  if (in_begin_ == in_end_) {
    in_begin_ = in_end_ = 0;
    return true;
  }
  // An incomplete packet: move it to the front and make room for the rest of it.
  const size_t n = in_end_ - in_begin_;
  std::memmove(in_.data(), in_.data() + in_begin_, n);
  in_begin_ = 0;
  in_end_ = n;
  if (walk.next_size > in_.size()) in_.resize(walk.next_size + kReadSize);
  return true;
}

void MqttReader::ReadLoop() {
  const int64_t keepalive_us = static_cast<int64_t>(options_.keepalive_s) * 1'000'000;
  std::string error;
  while (true) {
    acks_.clear();
    const size_t before = in_end_ - in_begin_;
    const bool ok = HandlePackets(error);
    if (on_read_end_ && before > 0) on_read_end_();
    // What was handled is acknowledged even when a later packet broke the protocol.
    if (!acks_.empty() && !Send(acks_)) {
      if (ok) error = "the connection closed while acknowledging";
      break;
    }
    if (!ok) break;
    int timeout_ms = 1000;
    if (keepalive_us > 0) {
      const int64_t now = NowUs();
      if (ping_outstanding_ && now - ping_sent_us_ > keepalive_us) {
        error = "no PINGRESP from the broker within the keep-alive interval";
        break;
      }
      const int64_t idle = now - last_send_us_.load(std::memory_order_relaxed);
      if (!ping_outstanding_ && idle >= keepalive_us) {
        if (!Send(Packet(12 << 4, ""))) {  // PINGREQ
          error = "the connection closed while sending PINGREQ";
          break;
        }
        ping_outstanding_ = true;
        ping_sent_us_ = now;
      }
      timeout_ms = static_cast<int>(
          std::clamp<int64_t>((keepalive_us - std::min(idle, keepalive_us)) / 1000, 10, 1000));
    }
    pollfd pfd{fd_, POLLIN, 0};
    int rc = ::poll(&pfd, 1, timeout_ms);
    if (closing_.load()) return;
    if (rc < 0 && errno != EINTR) {
      error = std::string("poll: ") + std::strerror(errno);
      break;
    }
    if (rc <= 0) continue;
    // Under load (the last read came less than kGatherAfterUs before, with a few messages
    // but far from a full buffer) let more arrive first: a read per few messages costs a thread
    // switch here and a batch of its own downstream, which on a small machine takes the CPU the
    // broker needs. A quiet stream is read at once. Only at QoS 0: at QoS 1 and 2 the
    // broker waits for the acknowledgements of its in-flight window, which would wait too.
    const int64_t before_read = NowUs();
    if (subscribed_qos_.load(std::memory_order_relaxed) == 0 && last_got_ >= kGatherMinBytes &&
        last_got_ < kGatherBytes && before_read - last_read_us_ < kGatherAfterUs) {
      std::this_thread::sleep_for(std::chrono::microseconds(kGatherUs));
    }
    ssize_t got = ::recv(fd_, in_.data() + in_end_, in_.size() - in_end_, 0);
    last_read_us_ = before_read;
    last_got_ = got > 0 ? static_cast<size_t>(got) : 0;
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (closing_.load()) return;
    if (got == 0) {
      error = "the broker closed the connection";
      break;
    }
    if (got < 0) {
      error = std::strerror(errno);
      break;
    }
    in_end_ += static_cast<size_t>(got);
  }
  Lost(error);
}

}  // namespace tributary
