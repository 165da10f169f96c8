#include "io/sinks/influx_sink.h"

#include <httplib.h>

#include <charconv>
#include <cmath>
#include <utility>
#include <vector>

#include "core/ledger.h"
#include "core/registry.h"
#include "io/sinks/breaker_sink.h"
#include "spatial/enrich.h"
#include "spatial/h3.h"
#include "spatial/s2cell.h"

namespace tributary {

namespace {

// Tag keys and values, and measurement names: escape comma, equals sign and space.
void AppendTag(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == ',' || c == '=' || c == ' ') out.push_back('\\');
    if (c == '\n') {
      out.push_back(' ');
      continue;
    }
    out.push_back(c);
  }
}

// String field values: double quotes and backslashes are escaped.
void AppendStringField(std::string& out, std::string_view v) {
  out.push_back('"');
  for (char c : v) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
}

void AppendNumber(std::string& out, double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Fields: comma separated, NaN and infinite values left out (line protocol has none).
class Fields {
 public:
  explicit Fields(std::string& out) : out_(out) {}
  void Num(std::string_view key, double v) {
    if (!std::isfinite(v)) return;
    Sep(key);
    AppendNumber(out_, v);
  }
  void Int(std::string_view key, int64_t v) {
    Sep(key);
    out_ += std::to_string(v);
    out_.push_back('i');
  }
  void Str(std::string_view key, std::string_view v) {
    Sep(key);
    AppendStringField(out_, v);
  }

 private:
  void Sep(std::string_view key) {
    out_.push_back(first_ ? ' ' : ',');
    first_ = false;
    out_ += key;
    out_.push_back('=');
  }
  std::string& out_;
  bool first_ = true;
};

class InfluxSink final : public Sink {
 public:
  explicit InfluxSink(InfluxSinkOptions options) : options_(std::move(options)) {}
  ~InfluxSink() override { Close(); }

  Status Open(RunContext& ctx) override {
    ledger_ = ctx.ledger;
    if (ctx.config != nullptr) zone_layers_ = ExtraZoneLayerNames(*ctx.config);
    client_ = std::make_unique<httplib::Client>(options_.url);
    auto secs = std::chrono::microseconds(options_.timeout);
    client_->set_connection_timeout(std::chrono::duration_cast<std::chrono::seconds>(secs));
    client_->set_read_timeout(std::chrono::duration_cast<std::chrono::seconds>(secs));
    client_->set_write_timeout(std::chrono::duration_cast<std::chrono::seconds>(secs));
    if (!options_.username.empty()) {
      client_->set_basic_auth(options_.username, options_.password);
    }
    std::string q = "CREATE DATABASE \"" + options_.database + "\"";
    httplib::Params params{{"q", q}};
    auto res = client_->Post("/query", params);
    return Check(res, "CREATE DATABASE");
  }

  Status Write(const Batch& batch) override {
    if (options_.readings) {
      for (const Reading& r : batch.readings) {
        lines_[0] += InfluxReadingLine(r, zone_layers_);
        lines_[0].push_back('\n');
        ++count_[0];
      }
    }
    if (options_.windows) {
      for (const WindowResult& w : batch.windows) {
        lines_[1] += InfluxWindowLine(w);
        lines_[1].push_back('\n');
        ++count_[1];
      }
    }
    return Status::Ok();
  }

  Status Commit() override {
    if (!client_) return Status::Internal("influx sink " + options_.name + ": Commit before Open");
    for (int t = 0; t < 2; ++t) {
      while (count_[t] > 0) {
        // Take up to batch_lines lines from the front.
        size_t pos = 0;
        uint64_t n = 0;
        while (n < static_cast<uint64_t>(options_.batch_lines) && pos < lines_[t].size()) {
          pos = lines_[t].find('\n', pos) + 1;
          ++n;
        }
        std::string path =
            "/write?db=" + httplib::detail::encode_query_param(options_.database) + "&precision=u";
        auto res = client_->Post(path, lines_[t].data(), pos, "text/plain; charset=utf-8");
        TRIB_RETURN_IF_ERROR(Check(res, "write"));
        lines_[t].erase(0, pos);
        count_[t] -= n;
        if (ledger_ != nullptr) {
          ledger_->AddSinkCommitted(options_.name + (t == 0 ? "/readings" : "/windows"), n);
        }
      }
    }
    return Status::Ok();
  }

  void Close() override { client_.reset(); }

 private:
  Status Check(const httplib::Result& res, const char* what) const {
    std::string prefix = "influx sink " + options_.name + " " + what + " (" + options_.url + ")";
    if (!res) {
      return Status::Unavailable(prefix + ": " + httplib::to_string(res.error()));
    }
    if (res->status >= 200 && res->status < 300) return Status::Ok();
    std::string msg = prefix + ": HTTP " + std::to_string(res->status) + ": " + res->body;
    if (res->status >= 500 || res->status == 429) return Status::Unavailable(msg);
    return Status::Invalid(msg);
  }

  InfluxSinkOptions options_;
  Ledger* ledger_ = nullptr;
  std::unique_ptr<httplib::Client> client_;
  std::string lines_[2];                  // readings, windows: buffered line protocol
  std::vector<std::string> zone_layers_;  // zones.layers after the first
  uint64_t count_[2] = {};
};

}  // namespace

std::string InfluxReadingLine(const Reading& r, const std::vector<std::string>& zone_layers) {
  std::string out = "readings,device=";
  AppendTag(out, r.device.view());
  out += ",metric=";
  AppendTag(out, r.metric.view());
  if (r.zone) {
    out += ",zone=";
    AppendTag(out, r.zone.view());
  }
  for (size_t i = 0; i < zone_layers.size() && i < r.extra_zones.size(); ++i) {
    if (!r.extra_zones[i]) continue;
    out += ",zone_";
    AppendTag(out, zone_layers[i]);
    out += '=';
    AppendTag(out, r.extra_zones[i].view());
  }
  Fields f(out);
  f.Num("value", r.value);
  f.Num("lat", r.lat);
  f.Num("lon", r.lon);
  if (r.h3 != 0) f.Str("h3", h3::CellToString(r.h3));
  if (r.s2 != 0) f.Str("s2", S2CellToken(r.s2));
  // The QC score only when QC scored the reading above 0 (absent reads as 0).
  if (r.qc_score != 0.0f) f.Num("qc_score", r.qc_score);
  f.Str("qc_flags", QcFlagsToString(r.flags));
  f.Str("provenance", ProvenanceToJson(r.prov, r.device, r.flags));
  out.push_back(' ');
  out += std::to_string(r.event_time);
  return out;
}

std::string InfluxWindowLine(const WindowResult& w) {
  std::string out = "windows,window=";
  AppendTag(out, w.window.view());
  out += ",group_by=";
  AppendTag(out, w.group_by.view());
  out += ",group=";
  AppendTag(out, w.group.view());
  out += ",metric=";
  AppendTag(out, w.metric.view());
  out += ",revision=" + std::to_string(w.revision);
  Fields f(out);
  f.Int("count", static_cast<int64_t>(w.count));
  f.Num("mean", w.mean);
  f.Num("min", w.min);
  f.Num("max", w.max);
  f.Num("std", w.std);
  f.Num("median", w.median);
  f.Num("p95", w.p95);
  f.Num("trimmed_mean", w.trimmed_mean);
  f.Num("nowcast", w.nowcast);
  f.Num("aqi", w.aqi);
  f.Num("centroid_lat", w.centroid_lat);
  f.Num("centroid_lon", w.centroid_lon);
  f.Int("distinct_sensors", w.distinct_sensors);
  f.Int("late_arrival_count", static_cast<int64_t>(w.late_count));
  f.Str("quality_flags", WindowFlagsToString(w.flags));
  out.push_back(' ');
  out += std::to_string(w.start);
  return out;
}

const SectionSpec& InfluxSinkSpec() {
  static const SectionSpec spec = [] {
    SectionSpec s{
        "sinks[] (type: influx)",
        "InfluxDB 1.x: readings and window results as line protocol over HTTP, sent at "
        "every pipeline commit; a point with the same tags and time replaces the stored one, "
        "so replayed input is stored once.",
        {
            {"url", OptionType::kString, "http://127.0.0.1:8086", "Where influxd listens."},
            {"database", OptionType::kString, "", "Database; created if missing. Required."},
            {"username", OptionType::kString, "", "User for HTTP basic authentication."},
            {"password", OptionType::kString, "", "Its password (use `${ENV}` substitution)."},
            {"tables", OptionType::kStringList, "readings, windows",
             "What is sent: any of `readings`, `windows`."},
            {"batch_lines", OptionType::kInt, "5000", "Points per HTTP request.", "1.."},
            {"timeout", OptionType::kDuration, "10s", "Connect and request timeout.", "1s..10m"},
        }};
    for (OptionSpec& o : BreakerOptionSpecs()) s.options.push_back(o);
    return s;
  }();
  return spec;
}

Result<InfluxSinkOptions> ReadInfluxSinkOptions(const SinkEntry& entry) {
  const OptionReader& o = entry.options;
  InfluxSinkOptions out;
  out.name = entry.name.empty() ? std::string("influx") : entry.name;
  TRIB_ASSIGN_OR_RETURN(out.url, o.GetString("url"));
  TRIB_ASSIGN_OR_RETURN(out.database, o.GetString("database"));
  if (out.database.empty()) return o.Error("database", "is required");
  TRIB_ASSIGN_OR_RETURN(out.username, o.GetString("username"));
  TRIB_ASSIGN_OR_RETURN(out.password, o.GetString("password"));
  TRIB_ASSIGN_OR_RETURN(std::vector<std::string> tables, o.GetStringList("tables"));
  out.readings = out.windows = false;
  for (const std::string& t : tables) {
    if (t == "readings") {
      out.readings = true;
    } else if (t == "windows") {
      out.windows = true;
    } else {
      return o.Error("tables", "unknown table '" + t + "' (known: readings, windows)");
    }
  }
  if (!out.readings && !out.windows) return o.Error("tables", "lists no table");
  TRIB_ASSIGN_OR_RETURN(out.batch_lines, o.GetInt("batch_lines"));
  TRIB_ASSIGN_OR_RETURN(out.timeout, o.GetDuration("timeout"));
  return out;
}

std::unique_ptr<Sink> MakeInfluxSink(InfluxSinkOptions options) {
  return std::make_unique<InfluxSink>(std::move(options));
}

void RegisterInfluxSink(Registry& registry) {
  registry.AddSink(
      "influx", &InfluxSinkSpec(), [](const SinkEntry& entry) -> Result<std::unique_ptr<Sink>> {
        TRIB_ASSIGN_OR_RETURN(InfluxSinkOptions options, ReadInfluxSinkOptions(entry));
        TRIB_ASSIGN_OR_RETURN(BreakerOptions breaker, ReadBreakerOptions(entry.options));
        if (!breaker.enabled) return MakeInfluxSink(std::move(options));
        std::string name = options.name;
        return MakeBreakerSink(name, std::move(breaker),
                               [options] { return MakeInfluxSink(options); });
      });
}

}  // namespace tributary
