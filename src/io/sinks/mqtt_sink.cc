#include "io/sinks/mqtt_sink.h"

#include <cmath>
#include <utility>

#include "core/json_writer.h"
#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/registry.h"
#include "core/time.h"
#include "io/sinks/breaker_sink.h"

namespace tributary {
namespace {

// A topic level value: '/', '+' and '#' would change the topic's structure.
std::string TopicLevel(std::string_view value) {
  std::string out(value);
  for (char& c : out) {
    if (c == '/' || c == '+' || c == '#') c = '_';
  }
  return out;
}

void AddNumber(std::string& out, const char* key, double v) {
  if (!std::isfinite(v)) return;
  out += ",\"";
  out += key;
  out += "\":";
  AppendJsonNumber(out, v);
}

}  // namespace

const SectionSpec& MqttSinkSectionSpec() {
  static const SectionSpec spec = [] {
    SectionSpec s{"sinks[] (type: mqtt)",
                  "Publishes each window result as one JSON message to a topic made from a "
                  "template. Commit waits until the broker acknowledged every QoS 1/2 "
                  "publish.",
                  MqttConnectionOptionSpecs()};
    s.options.push_back({"topic", OptionType::kString,
                         "tributary/windows/{window}/{metric}/{group}",
                         "Topic template; {window}, {group_by}, {group} and {metric} are "
                         "replaced per result."});
    s.options.push_back({"qos", OptionType::kInt, "1", "Publish QoS.", "0..2"});
    s.options.push_back(
        {"retain", OptionType::kBool, "false", "Publish as retained messages (last value)."});
    s.options.push_back({"ack_timeout", OptionType::kDuration, "30s",
                         "How long a commit waits for the broker's acknowledgements.", "1s.."});
    for (OptionSpec& o : BreakerOptionSpecs()) s.options.push_back(o);
    return s;
  }();
  return spec;
}

Result<MqttSinkOptions> ParseMqttSinkOptions(const OptionReader& r) {
  MqttSinkOptions o;
  TRIB_ASSIGN_OR_RETURN(o.connect, ParseMqttConnectOptions(r));
  TRIB_ASSIGN_OR_RETURN(o.topic, r.GetString("topic"));
  if (o.topic.empty()) return r.Error("topic", "must not be empty");
  if (o.topic.find_first_of("+#") != std::string::npos) {
    return r.Error("topic", "must not contain the wildcards + or #");
  }
  TRIB_ASSIGN_OR_RETURN(int64_t qos, r.GetInt("qos"));
  o.qos = static_cast<int>(qos);
  TRIB_ASSIGN_OR_RETURN(o.retain, r.GetBool("retain"));
  TRIB_ASSIGN_OR_RETURN(o.ack_timeout, r.GetDuration("ack_timeout"));
  return o;
}

std::string MqttWindowTopic(const std::string& topic_template, const WindowResult& w) {
  std::string out;
  out.reserve(topic_template.size() + 32);
  size_t i = 0;
  while (i < topic_template.size()) {
    if (topic_template[i] == '{') {
      size_t close = topic_template.find('}', i);
      if (close != std::string::npos) {
        std::string_view key(topic_template.data() + i + 1, close - i - 1);
        bool known = true;
        if (key == "window") {
          out += TopicLevel(w.window.view());
        } else if (key == "group_by") {
          out += TopicLevel(w.group_by.view());
        } else if (key == "group") {
          out += TopicLevel(w.group.view());
        } else if (key == "metric") {
          out += TopicLevel(w.metric.view());
        } else {
          known = false;
        }
        if (known) {
          i = close + 1;
          continue;
        }
      }
    }
    out += topic_template[i++];
  }
  return out;
}

std::string MqttWindowJson(const WindowResult& w) {
  std::string out = "{\"window\":";
  AppendJsonString(out, w.window.view());
  out += ",\"group_by\":";
  AppendJsonString(out, w.group_by.view());
  out += ",\"group\":";
  AppendJsonString(out, w.group.view());
  out += ",\"metric\":";
  AppendJsonString(out, w.metric.view());
  out += ",\"start\":";
  AppendJsonString(out, FormatTime(w.start));
  out += ",\"end\":";
  AppendJsonString(out, FormatTime(w.end));
  out += ",\"count\":" + std::to_string(w.count);
  AddNumber(out, "mean", w.mean);
  AddNumber(out, "min", w.min);
  AddNumber(out, "max", w.max);
  AddNumber(out, "std", w.std);
  AddNumber(out, "median", w.median);
  AddNumber(out, "p95", w.p95);
  AddNumber(out, "trimmed_mean", w.trimmed_mean);
  AddNumber(out, "first", w.first);
  AddNumber(out, "last", w.last);
  AddNumber(out, "centroid_lat", w.centroid_lat);
  AddNumber(out, "centroid_lon", w.centroid_lon);
  AddNumber(out, "nowcast", w.nowcast);
  AddNumber(out, "aqi", w.aqi);
  for (const auto& [q, v] : w.quantiles) {
    if (!std::isfinite(v)) continue;
    out += ",\"q";
    out += std::to_string(static_cast<int>(std::lround(q * 100)));
    out += "\":";
    AppendJsonNumber(out, v);
  }
  out += ",\"distinct_sensors\":" + std::to_string(w.distinct_sensors);
  out += ",\"late_count\":" + std::to_string(w.late_count);
  if (!w.aggregation_method.empty()) {
    out += ",\"aggregation_method\":";
    AppendJsonString(out, w.aggregation_method.view());
  }
  out += ",\"flags\":";
  AppendJsonString(out, WindowFlagsToString(w.flags));
  out += ",\"revision\":" + std::to_string(w.revision);
  out += ",\"emitted_at\":";
  AppendJsonString(out, FormatTime(w.emitted_at));
  out += '}';
  return out;
}

MqttSink::MqttSink(MqttSinkOptions options) : options_(std::move(options)) {}

MqttSink::~MqttSink() {
  Close();
}

Status MqttSink::Open(RunContext& ctx) {
  ledger_ = ctx.ledger;
  ledger_key_ = options_.name + "/windows";
  TRIB_ASSIGN_OR_RETURN(client_, MqttPublisher::Create(options_.connect));
  return client_->Connect();
}

Status MqttSink::Write(const Batch& batch) {
  if (client_ == nullptr) return Status::Internal("mqtt sink: Write before Open");
  for (const WindowResult& w : batch.windows) {
    if (!client_->IsConnected()) TRIB_RETURN_IF_ERROR(client_->Connect());
    TRIB_ASSIGN_OR_RETURN(int token,
                          client_->Publish(MqttWindowTopic(options_.topic, w), MqttWindowJson(w),
                                           options_.qos, options_.retain));
    if (options_.qos > 0) pending_tokens_.push_back(token);
    ++pending_count_;
  }
  return Status::Ok();
}

Status MqttSink::Commit() {
  if (client_ == nullptr) return Status::Ok();
  for (size_t i = 0; i < pending_tokens_.size(); ++i) {
    Status s = client_->WaitForDelivery(pending_tokens_[i], options_.ack_timeout);
    if (!s.ok()) {
      pending_tokens_.erase(pending_tokens_.begin(),
                            pending_tokens_.begin() + static_cast<std::ptrdiff_t>(i));
      return s;
    }
  }
  pending_tokens_.clear();
  if (ledger_ != nullptr && pending_count_ > 0)
    ledger_->AddSinkCommitted(ledger_key_, pending_count_);
  pending_count_ = 0;
  return Status::Ok();
}

void MqttSink::Close() {
  if (client_ != nullptr) {
    client_->Disconnect(1'000'000);
    client_.reset();
  }
}

void RegisterMqttSink(Registry& registry) {
  registry.AddSink(
      "mqtt", &MqttSinkSectionSpec(), [](const SinkEntry& entry) -> Result<std::unique_ptr<Sink>> {
        TRIB_ASSIGN_OR_RETURN(MqttSinkOptions options, ParseMqttSinkOptions(entry.options));
        options.name = entry.name;
        TRIB_ASSIGN_OR_RETURN(BreakerOptions breaker, ReadBreakerOptions(entry.options));
        if (!breaker.enabled) {
          return std::unique_ptr<Sink>(std::make_unique<MqttSink>(std::move(options)));
        }
        std::string name = options.name;
        return MakeBreakerSink(name, std::move(breaker), [options]() -> std::unique_ptr<Sink> {
          return std::make_unique<MqttSink>(options);
        });
      });
}

}  // namespace tributary
