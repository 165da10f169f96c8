// libFuzzer target for the packets a broker sends to the MQTT reader (io/mqtt_reader.h):
// the first byte of the input picks MQTT 3.1.1 or 5 and the size of the pieces the rest
// arrives in, the rest is what the broker sent. Checks what must hold for any input:
// nothing crashes or reads outside the bytes, a walk consumes whole packets only, and
// walking the stream piece by piece (as recv hands it over) finds the same packets and
// the same error as walking it whole.
//
// Under GCC the target runs through tests/fuzz/fuzz_driver.cc (ctest
// `fuzz_mqtt_packets`); with clang, configure with -DTRIBUTARY_LIBFUZZER=ON (see
// tests/fuzz/README.md).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "io/mqtt_reader.h"

namespace {

using namespace tributary;

// Every packet as one line of text, so two walks can be compared.
class Recorder : public MqttPacketSink {
 public:
  explicit Recorder(std::string_view bytes) : bytes_(bytes) {}
  std::string events;

  void OnPublish(std::string_view topic, std::string_view payload, int qos, uint16_t id) override {
    Inside(topic);
    Inside(payload);
    events += "P" + std::to_string(qos) + ":" + std::to_string(id) + ":" + std::string(topic) +
              "=" + std::string(payload) + "\n";
  }
  void OnPubrel(uint16_t id) override { events += "R" + std::to_string(id) + "\n"; }
  void OnSuback(uint16_t id, std::string_view codes) override {
    Inside(codes);
    events += "S" + std::to_string(id) + ":" + std::string(codes) + "\n";
  }
  void OnPingresp() override { events += "I\n"; }
  // The walked bytes of the current call.
  void SetBytes(std::string_view bytes) { bytes_ = bytes; }

 private:
  void Inside(std::string_view v) const {
    if (v.empty()) return;
    if (v.data() < bytes_.data() || v.data() + v.size() > bytes_.data() + bytes_.size()) {
      std::abort();
    }
  }
  std::string_view bytes_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool v5 = (data[0] & 1) != 0;
  const size_t piece = 1 + (data[0] >> 1);
  const std::string stream(reinterpret_cast<const char*>(data + 1), size - 1);

  Recorder whole(stream);
  const MqttWalk all = WalkMqttPackets(stream, v5, whole);
  if (all.consumed > stream.size()) std::abort();
  if (all.error.empty() && all.next_size != 0 && (all.next_size <= stream.size() - all.consumed)) {
    std::abort();  // a complete packet was left unwalked
  }

  // As recv would hand it over: `piece` bytes at a time, unwalked bytes kept.
  Recorder pieces(stream);
  std::string buffer;
  std::string error;
  size_t fed = 0;
  size_t walked = 0;
  while (fed < stream.size() && error.empty()) {
    const size_t n = std::min(piece, stream.size() - fed);
    buffer.append(stream, fed, n);
    fed += n;
    pieces.SetBytes(buffer);
    const MqttWalk w = WalkMqttPackets(buffer, v5, pieces);
    if (w.consumed > buffer.size()) std::abort();
    walked += w.consumed;
    buffer.erase(0, w.consumed);
    error = w.error;
  }
  if (pieces.events != whole.events || error != all.error || walked != all.consumed) {
    std::abort();
  }
  return 0;
}
