// The `mqtt` sink: publishes every window result as one JSON message.
//
// The topic comes from a template whose placeholders {window}, {group_by}, {group} and
// {metric} are replaced per result (characters `+`, `#` and `/` inside a value become
// `_`, so a value cannot add levels or wildcards). The payload is a JSON object with the
// window name, group_by, group, metric, start and end (ISO 8601 UTC), count and every
// configured aggregate (absent aggregates are left out), flags, revision and emitted_at.
//
// Write publishes at once; Commit waits until every QoS 1/2 publish since the last
// Commit is acknowledged by the broker, then counts them in the ledger
// ("<sink name>/windows"). QoS 0 publishes count as committed when handed to the client.
// The sink publishes through MqttPublisher (Paho's asynchronous library), so an mqtt
// source pausing for backpressure in the same process does not delay its acknowledgements.
// A lost connection is re-established at the next Write; publishes that were not
// acknowledged make Commit fail (retryable), so the run reports them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "io/connector.h"
#include "io/mqtt_client.h"

namespace tributary {

class Registry;
class Ledger;

struct MqttSinkOptions {
  std::string name;  ///< the sink's configured name (ledger key prefix)
  MqttConnectOptions connect;
  std::string topic = "tributary/windows/{window}/{metric}/{group}";
  int qos = 1;
  bool retain = false;
  DurationUs ack_timeout = 30'000'000;  ///< how long Commit waits for acknowledgements
};

/// The option table of `sinks[] (type: mqtt)`.
const SectionSpec& MqttSinkSectionSpec();
/// Read and validate mqtt sink options; errors name the key.
Result<MqttSinkOptions> ParseMqttSinkOptions(const OptionReader& reader);

/// The topic of one result: `topic_template` with its placeholders filled in.
std::string MqttWindowTopic(const std::string& topic_template, const WindowResult& w);
/// The JSON payload of one window result.
std::string MqttWindowJson(const WindowResult& w);

class MqttSink : public Sink {
 public:
  explicit MqttSink(MqttSinkOptions options);
  ~MqttSink() override;
  Status Open(RunContext& ctx) override;
  Status Write(const Batch& batch) override;
  Status Commit() override;
  void Close() override;

 private:
  MqttSinkOptions options_;
  std::unique_ptr<MqttPublisher> client_;
  Ledger* ledger_ = nullptr;
  std::string ledger_key_;
  std::vector<int> pending_tokens_;  // QoS 1/2 publishes not yet known acknowledged
  uint64_t pending_count_ = 0;       // published since the last Commit
};

/// Register the `mqtt` sink type.
void RegisterMqttSink(Registry& registry);

}  // namespace tributary
