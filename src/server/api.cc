#include "server/api.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <set>

#include "alert/forecast.h"
#include "alert/rules.h"
#include "core/json_writer.h"
#include "ingest/metrics.h"
#include "server/metrics.h"
#include "server/sse.h"
#include "stream/runtime.h"

namespace tributary {

namespace {

std::string Param(const QueryParams& params, const std::string& key) {
  auto it = params.find(key);
  return it == params.end() ? std::string() : it->second;
}

Result<TimeUs> TimeParam(const QueryParams& params, const std::string& key, TimeUs fallback) {
  std::string v = Param(params, key);
  if (v.empty()) return fallback;
  Result<TimeUs> t = ParseTime(v);
  if (!t.ok()) return Status::Invalid("parameter '" + key + "': " + t.status().message());
  return *t;
}

void WriteTimeOrNull(JsonWriter& w, std::string_view key, TimeUs t) {
  w.Key(key);
  if (t == kMinTime || t == 0) {
    w.Null();
  } else {
    w.String(FormatTime(t));
  }
}

void WriteNumberOrNull(JsonWriter& w, std::string_view key, double v) {
  w.Key(key);
  if (std::isnan(v)) {
    w.Null();
  } else {
    w.Number(v);
  }
}

}  // namespace

Result<size_t> ParseLimit(const QueryParams& params, size_t fallback, size_t max) {
  std::string v = Param(params, "limit");
  if (v.empty()) return fallback;
  size_t n = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || ptr != v.data() + v.size() || n == 0 || n > max) {
    return Status::Invalid("parameter 'limit': expected an integer in 1.." + std::to_string(max) +
                           ", got '" + v + "'");
  }
  return n;
}

Result<WindowQuery> ParseWindowQuery(const QueryParams& params) {
  WindowQuery q;
  q.window = Param(params, "window");
  q.group = Param(params, "group");
  q.metric = Param(params, "metric");
  TRIB_ASSIGN_OR_RETURN(q.from, TimeParam(params, "from", kMinTime));
  TRIB_ASSIGN_OR_RETURN(q.to, TimeParam(params, "to", kMaxTime));
  TRIB_ASSIGN_OR_RETURN(q.limit, ParseLimit(params, 1000, 10000));
  return q;
}

std::string SensorsJson(const LiveState& live, TimeUs now) {
  std::vector<SensorView> sensors = live.Sensors(now);
  JsonWriter w;
  w.BeginObject();
  w.Key("count").UInt(sensors.size());
  w.Key("sensors").BeginArray();
  for (const SensorView& s : sensors) WriteSensorJson(w, s);
  w.EndArray();
  w.EndObject();
  return w.Take();
}

std::string WindowsJson(const LiveState& live, const WindowQuery& query) {
  std::vector<WindowResult> results = live.Windows(query);
  JsonWriter w;
  w.BeginObject();
  w.Key("count").UInt(results.size());
  w.Key("windows").BeginArray();
  for (const WindowResult& r : results) WriteWindowJson(w, r);
  w.EndArray();
  w.EndObject();
  return w.Take();
}

std::string QuarantineJson(const LiveState& live, size_t limit) {
  std::vector<QuarantineView> records = live.Quarantine(limit);
  JsonWriter w;
  w.BeginObject();
  w.Key("count").UInt(records.size());
  w.Key("records").BeginArray();
  for (const QuarantineView& q : records) WriteQuarantineJson(w, q);
  w.EndArray();
  w.EndObject();
  return w.Take();
}

Result<std::string> AlertsJson(const LiveState& live, const QueryParams& params) {
  std::string state = "firing";
  if (auto it = params.find("state"); it != params.end()) state = it->second;
  if (state != "firing" && state != "all") {
    return Status::Invalid("state must be 'firing' or 'all', got '" + state + "'");
  }
  TRIB_ASSIGN_OR_RETURN(size_t limit, ParseLimit(params, 100, 1000));
  std::vector<AlertEvent> alerts = live.Alerts(state == "firing", limit);
  std::string out = "{\"count\":" + std::to_string(alerts.size()) + ",\"alerts\":[";
  for (size_t i = 0; i < alerts.size(); ++i) {
    if (i > 0) out += ',';
    out += AlertEventJson(alerts[i]);
  }
  out += "]}";
  return out;
}

Result<std::string> ForecastJson(const LiveState& live, const QueryParams& params) {
  WindowQuery q;
  auto get = [&](const char* k) {
    auto it = params.find(k);
    return it == params.end() ? std::string() : it->second;
  };
  q.window = get("window");
  q.group = get("group");
  q.metric = get("metric");
  if (q.window.empty() || q.group.empty() || q.metric.empty()) {
    return Status::Invalid("window, group and metric are required");
  }
  std::string method = get("method").empty() ? "linear" : get("method");
  if (method != "linear" && method != "seasonal_naive" && method != "holt_winters") {
    return Status::Invalid("method must be 'linear', 'seasonal_naive' or 'holt_winters', got '" +
                           method + "'");
  }
  size_t points = 50;
  if (!get("points").empty()) {
    QueryParams lp{{"limit", get("points")}};
    TRIB_ASSIGN_OR_RETURN(points, ParseLimit(lp, 50, 10000));
  }
  DurationUs period = 24 * 3600 * kMicrosPerSecond;
  if (!get("period").empty()) {
    Result<DurationUs> d = ParseDuration(get("period"));
    if (!d.ok() || *d <= 0)
      return Status::Invalid("parameter 'period': expected a duration such as 1d");
    period = *d;
  }
  HoltWintersParams hw;
  for (auto [key, slot] : {std::pair<const char*, double*>{"alpha", &hw.alpha},
                           {"beta", &hw.beta},
                           {"gamma", &hw.gamma}}) {
    std::string v = get(key);
    if (v.empty()) continue;
    char* end = nullptr;
    double x = std::strtod(v.c_str(), &end);
    if (end != v.c_str() + v.size() || !(x >= 0 && x <= 1)) {
      return Status::Invalid(std::string("parameter '") + key +
                             "': expected a number in 0..1, got '" + v + "'");
    }
    *slot = x;
  }
  q.limit = 10000;
  std::vector<WindowResult> rows = live.Windows(q);  // newest first, revisions included
  std::map<TimeUs, double> by_start;                 // the latest revision of each window
  for (auto it = rows.rbegin(); it != rows.rend(); ++it) by_start[it->start] = it->mean;
  std::vector<SeriesPoint> series;
  for (const auto& [t, v] : by_start) series.push_back({t, v});
  Result<Forecast> f = method == "linear"         ? LinearTrendForecast(series, points)
                       : method == "holt_winters" ? HoltWintersForecast(series, period, hw)
                                                  : SeasonalNaiveForecast(series, period);
  if (!f.ok()) return f.status();
  // A trend can run through a physical bound (negative PM2.5, humidity over 100 %).
  if (const MetricInfo* info = FindMetric(q.metric)) ClampForecast(*f, info->min, info->max);
  JsonWriter w;
  w.BeginObject();
  w.Key("window").String(q.window);
  w.Key("group").String(q.group);
  w.Key("metric").String(q.metric);
  w.Key("method").String(f->method);
  w.Key("points").UInt(f->points);
  w.Key("next_time").String(FormatTime(f->next_time));
  w.Key("next").Number(f->next);
  w.Key("next_day_time").String(FormatTime(f->next_day_time));
  w.Key("next_day").Number(f->next_day);
  if (f->method != "seasonal_naive") w.Key("slope_per_hour").Number(f->slope_per_hour);
  WriteNumberOrNull(w, "rmse", f->rmse);
  w.Key("clamped").Bool(f->clamped);
  w.Key("holdout").BeginObject();
  w.Key("points").UInt(f->holdout_points);
  WriteNumberOrNull(w, "rmse", f->holdout_rmse);
  WriteNumberOrNull(w, "mae", f->holdout_mae);
  w.EndObject();
  if (f->method == "holt_winters") {
    w.Key("season_points").UInt(f->season_points);
    w.Key("alpha").Number(f->alpha);
    w.Key("beta").Number(f->beta);
    w.Key("gamma").Number(f->gamma);
  }
  w.EndObject();
  return w.Take();
}

std::string LedgerJson(const Pipeline& pipeline) {
  return pipeline.LedgerNow().ToJson();
}

std::string HealthJson(const Pipeline& pipeline, const LiveState& live, const EventLog& events,
                       TimeUs now) {
  bool running = pipeline.running();
  RunProgress progress;
  if (running) progress = pipeline.Progress();
  LiveTotals totals = live.Totals();
  TimeUs watermark = running ? progress.watermark : totals.watermark;
  if (watermark == kMinTime) watermark = totals.watermark;
  JsonWriter w;
  w.BeginObject();
  w.Key("running").Bool(running);
  w.Key("events_per_second").Number(live.ReadingsPerSecond(now));
  WriteTimeOrNull(w, "watermark", watermark);
  w.Key("watermark_lag_seconds");
  if (watermark == kMinTime) {
    w.Null();
  } else {
    w.Number(static_cast<double>(now - watermark) / kMicrosPerSecond);
  }
  w.Key("queues").BeginObject();
  w.Key("raw").UInt(progress.raw_queue_depth);
  w.Key("sink").UInt(progress.sink_queue_depth);
  w.EndObject();
  w.Key("batches").UInt(totals.batches);
  w.Key("last_event_id").UInt(events.last_id());
  // The memory ceiling (stream/memory_guard.h) and hot partitions (partition_monitor.h).
  w.Key("memory").BeginObject();
  w.Key("limit_bytes").UInt(progress.memory.limit_bytes);
  w.Key("rss_bytes").UInt(ProcessRssBytes());
  w.Key("peak_rss_bytes").UInt(progress.memory.peak_rss_bytes);
  w.Key("level").Number(progress.memory.level);
  w.Key("paused").Bool(progress.memory.paused);
  w.Key("shedding").Bool(progress.memory.shedding);
  w.Key("pauses").UInt(progress.memory.pauses);
  w.EndObject();
  const PartitionReport& parts = progress.partitions;
  w.Key("partitions").BeginObject();
  w.Key("active").UInt(parts.active);
  w.Key("median_rate").Number(parts.median_rate);
  w.Key("hot").BeginArray();
  for (const PartitionRate* p : parts.Hot()) {
    w.BeginObject();
    w.Key("partition").String(p->partition);
    w.Key("rate").Number(p->rate);
    w.Key("lag_seconds").Number(p->lag_seconds);
    w.Key("h3_cells").BeginArray();
    for (const std::string& c : p->h3_cells) w.String(c);
    w.EndArray();
    w.Key("suggested_resolution").Int(p->suggested_resolution);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  w.EndObject();
  return w.Take();
}

namespace {

using LatestZoneWindows = std::map<std::string, std::map<std::string, const WindowResult*>>;

// The newest result per (zone, metric) among `results` (newest first).
LatestZoneWindows LatestByZone(const std::vector<WindowResult>& results) {
  LatestZoneWindows latest;
  for (const WindowResult& r : results) {
    if (r.group_by.view() != "zone") continue;
    latest[std::string(r.group.view())].try_emplace(std::string(r.metric.view()), &r);
  }
  return latest;
}

// The window properties of one zone: window, end, metric, value, aqi, metrics{}.
void WriteZoneWindowProperties(JsonWriter& w,
                               const std::map<std::string, const WindowResult*>& metrics) {
  const WindowResult* head = metrics.count("pm25") ? metrics.at("pm25") : metrics.begin()->second;
  w.Key("window").String(head->window.view());
  w.Key("end").String(FormatTime(head->end));
  w.Key("metric").String(head->metric.view());
  WriteNumberOrNull(w, "value", head->mean);
  WriteNumberOrNull(w, "aqi", head->aqi);
  w.Key("metrics").BeginObject();
  for (const auto& [metric, r] : metrics) {
    w.Key(metric).BeginObject();
    WriteNumberOrNull(w, "mean", r->mean);
    WriteNumberOrNull(w, "aqi", r->aqi);
    w.EndObject();
  }
  w.EndObject();
}

void WriteCentroidZones(JsonWriter& w, const LatestZoneWindows& latest,
                        const std::set<std::string>& skip) {
  for (const auto& [zone, metrics] : latest) {
    if (skip.count(zone) > 0) continue;
    const WindowResult* head = metrics.count("pm25") ? metrics.at("pm25") : metrics.begin()->second;
    w.BeginObject();
    w.Key("type").String("Feature");
    w.Key("id").String(zone);
    w.Key("geometry");
    if (std::isnan(head->centroid_lat) || std::isnan(head->centroid_lon)) {
      w.Null();
    } else {
      w.BeginObject();
      w.Key("type").String("Point");
      w.Key("coordinates").BeginArray().Number(head->centroid_lon).Number(head->centroid_lat);
      w.EndArray();
      w.EndObject();
    }
    w.Key("properties").BeginObject();
    w.Key("zone").String(zone);
    WriteZoneWindowProperties(w, metrics);
    w.EndObject();
    w.EndObject();
  }
}

std::vector<WindowResult> AllWindows(const LiveState& live) {
  WindowQuery q;
  q.limit = std::numeric_limits<size_t>::max();
  return live.Windows(q);  // newest first
}

}  // namespace

std::string ZonesJson(const LiveState& live) {
  // Without a zone index a zone is placed at the centroid of its latest window.
  std::vector<WindowResult> results = AllWindows(live);
  LatestZoneWindows latest = LatestByZone(results);
  JsonWriter w;
  w.BeginObject();
  w.Key("type").String("FeatureCollection");
  w.Key("features").BeginArray();
  WriteCentroidZones(w, latest, {});
  w.EndArray();
  w.EndObject();
  return w.Take();
}

std::string ZonesJson(const LiveState& live, const std::vector<ZoneOutline>& outlines) {
  std::vector<WindowResult> results = AllWindows(live);
  LatestZoneWindows latest = LatestByZone(results);
  std::set<std::string> drawn;
  JsonWriter w;
  w.BeginObject();
  w.Key("type").String("FeatureCollection");
  w.Key("features").BeginArray();
  for (const ZoneOutline& o : outlines) {
    bool first_layer = o.layer_index == 0;
    w.BeginObject();
    w.Key("type").String("Feature");
    w.Key("id").String(first_layer ? o.id : o.layer + ":" + o.id);
    w.Key("geometry").Raw(o.geometry);
    w.Key("properties").BeginObject();
    w.Key("zone").String(o.id);
    w.Key("name").String(o.name.empty() ? o.id : o.name);
    w.Key("layer").String(o.layer);
    w.Key("vertices").UInt(o.vertices);
    w.Key("simplified").Bool(o.simplified);
    auto it = first_layer ? latest.find(o.id) : latest.end();
    if (it != latest.end()) {
      WriteZoneWindowProperties(w, it->second);
      drawn.insert(o.id);
    } else {
      w.Key("value").Null();
      w.Key("aqi").Null();
    }
    w.EndObject();
    w.EndObject();
  }
  WriteCentroidZones(w, latest, drawn);
  w.EndArray();
  w.EndObject();
  return w.Take();
}

Result<SseFilter> ParseSseFilter(const QueryParams& params) {
  auto items = [&](const char* key) {
    std::set<std::string> out;
    std::string v = Param(params, key);
    size_t pos = 0;
    while (pos <= v.size()) {
      size_t end = v.find(',', pos);
      if (end == std::string::npos) end = v.size();
      std::string item = v.substr(pos, end - pos);
      if (!item.empty()) out.insert(item);
      pos = end + 1;
    }
    return out;
  };
  static const std::map<std::string, std::string> kTypes = {{"window", "window"},
                                                            {"windows", "window"},
                                                            {"alert", "alert"},
                                                            {"alerts", "alert"},
                                                            {"quarantine", "quarantine"},
                                                            {"summary", "summary"},
                                                            {"reading_summary", "reading_summary"}};
  SseFilter f;
  for (const std::string& t : items("types")) {
    auto it = kTypes.find(t);
    if (it == kTypes.end()) {
      return Status::Invalid("parameter 'types': unknown event type '" + t +
                             "' (expected window, alert, quarantine, summary, reading_summary)");
    }
    f.types.insert(it->second);
  }
  f.group_bys = items("group_by");
  f.groups = items("groups");
  return f;
}

std::string ErrorJson(std::string_view message) {
  JsonWriter w;
  w.BeginObject();
  w.Key("error").String(message);
  w.EndObject();
  return w.Take();
}

std::string OpenApiJson() {
  // Written by hand: small, and each path is checked by the server tests.
  static const char kDoc[] = R"({
"openapi": "3.0.3",
"info": {"title": "tributary API", "version": "1",
  "description": "Live view of a running tributary pipeline, read-only but for the daily-summary subscriptions. When a token is configured, /api/* require 'Authorization: Bearer <token>'; writes and the subscriber list need server.write_token instead; /api/unsubscribe is authorised by its own secret."},
"components": {
  "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
    "write_token": {"type": "http", "scheme": "bearer", "description": "server.write_token"}},
  "schemas": {
    "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
    "Window": {"type": "object", "properties": {
      "window": {"type": "string"}, "group_by": {"type": "string"}, "group": {"type": "string"},
      "metric": {"type": "string"}, "start": {"type": "string", "format": "date-time"},
      "end": {"type": "string", "format": "date-time"}, "count": {"type": "integer"},
      "mean": {"type": "number", "nullable": true}, "min": {"type": "number", "nullable": true},
      "max": {"type": "number", "nullable": true}, "std": {"type": "number", "nullable": true},
      "median": {"type": "number", "nullable": true}, "p95": {"type": "number", "nullable": true},
      "nowcast": {"type": "number", "nullable": true}, "aqi": {"type": "number", "nullable": true},
      "centroid_lat": {"type": "number", "nullable": true},
      "centroid_lon": {"type": "number", "nullable": true},
      "distinct_sensors": {"type": "integer"}, "late_count": {"type": "integer"},
      "flags": {"type": "string"}, "revision": {"type": "integer"}}},
    "Subscription": {"type": "object", "properties": {
      "id": {"type": "integer"}, "email": {"type": "string"}, "kind": {"type": "string"},
      "zone": {"type": "string"}, "time": {"type": "string"},
      "created_at": {"type": "string", "format": "date-time"},
      "last_sent_day": {"type": "string", "format": "date", "nullable": true}}},
    "Quarantine": {"type": "object", "properties": {
      "reason": {"type": "string"}, "detail": {"type": "string"},
      "arrival_time": {"type": "string", "format": "date-time"}, "device": {"type": "string"},
      "metric": {"type": "string"}, "source": {"type": "string"}}}
  }
},
"security": [{"bearer": []}],
"paths": {
  "/api/sensors": {"get": {"summary": "Every sensor seen, with position, latest value per metric with its QC score and flags (qc_score, qc_flags), readings QC flagged (qc_flagged) and status (ok, stale, quarantining).",
    "responses": {"200": {"description": "Sensors", "content": {"application/json": {"schema": {"type": "object", "properties": {
      "count": {"type": "integer"}, "sensors": {"type": "array", "items": {"type": "object"}}}}}}},
      "401": {"description": "Missing or wrong bearer token"}}}},
  "/api/windows": {"get": {"summary": "Recent window results, newest first.",
    "parameters": [
      {"name": "window", "in": "query", "schema": {"type": "string"}, "description": "Window definition name."},
      {"name": "group", "in": "query", "schema": {"type": "string"}, "description": "Group key (device id, zone, H3 cell, all)."},
      {"name": "metric", "in": "query", "schema": {"type": "string"}},
      {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}, "description": "Window start >= from (ISO-8601)."},
      {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}, "description": "Window start < to (ISO-8601)."},
      {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000}}],
    "responses": {"200": {"description": "Window results", "content": {"application/json": {"schema": {"type": "object", "properties": {
      "count": {"type": "integer"}, "windows": {"type": "array", "items": {"$ref": "#/components/schemas/Window"}}}}}}},
      "400": {"description": "Bad parameter", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "401": {"description": "Missing or wrong bearer token"}}}},
  "/api/quarantine": {"get": {"summary": "Recent quarantine records, newest first.",
    "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
    "responses": {"200": {"description": "Quarantine records", "content": {"application/json": {"schema": {"type": "object", "properties": {
      "count": {"type": "integer"}, "records": {"type": "array", "items": {"$ref": "#/components/schemas/Quarantine"}}}}}}},
      "401": {"description": "Missing or wrong bearer token"}}}},
  "/api/alerts": {"get": {"summary": "Alerts: the latest event of each alert life, newest first.",
    "parameters": [{"name": "state", "in": "query", "schema": {"type": "string", "enum": ["firing", "all"]}},
      {"name": "limit", "in": "query", "schema": {"type": "integer"}}],
    "responses": {"200": {"description": "Alerts", "content": {"application/json": {"schema": {"type": "object"}}}},
      "400": {"description": "Bad parameter"}, "401": {"description": "Missing or wrong bearer token"}}}},
  "/api/forecast": {"get": {"summary": "Forecast of the mean of one window series: linear trend over the last points, seasonal-naive or additive Holt-Winters (season `period`, default 1 day), clamped to the metric's physical bounds, with the in-sample RMSE and the RMSE/MAE over a holdout (`holdout`).",
    "parameters": [{"name": "window", "in": "query", "required": true, "schema": {"type": "string"}},
      {"name": "group", "in": "query", "required": true, "schema": {"type": "string"}},
      {"name": "metric", "in": "query", "required": true, "schema": {"type": "string"}},
      {"name": "method", "in": "query", "schema": {"type": "string", "enum": ["linear", "seasonal_naive", "holt_winters"]}},
      {"name": "points", "in": "query", "schema": {"type": "integer"}},
      {"name": "period", "in": "query", "schema": {"type": "string", "default": "1d"}, "description": "Season length (seasonal_naive, holt_winters)."},
      {"name": "alpha", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 1}, "description": "Holt-Winters level smoothing; fitted when absent."},
      {"name": "beta", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 1}, "description": "Holt-Winters trend smoothing; fitted when absent."},
      {"name": "gamma", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 1}, "description": "Holt-Winters seasonal smoothing; fitted when absent."}],
    "responses": {"200": {"description": "Forecast", "content": {"application/json": {"schema": {"type": "object"}}}},
      "400": {"description": "Bad parameter or too few results"}, "401": {"description": "Missing or wrong bearer token"}}}},
  "/api/subscriptions": {
    "get": {"summary": "Daily-summary subscribers (without their secret tokens). Needs the write token: the list holds email addresses. 404 unless alerts.summary.url is set.",
      "security": [{"write_token": []}],
      "responses": {"200": {"description": "Subscribers", "content": {"application/json": {"schema": {"type": "object", "properties": {
        "count": {"type": "integer"}, "subscriptions": {"type": "array", "items": {"$ref": "#/components/schemas/Subscription"}}}}}}},
        "401": {"description": "Missing or wrong write token"}, "404": {"description": "Subscriptions not configured"}, "405": {"description": "No write_token configured"}}},
    "post": {"summary": "Subscribe an email address to the daily summary of a zone, device or all; a welcome email with current conditions and the unsubscribe link follows.",
      "security": [{"write_token": []}],
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["email", "zone"], "properties": {
        "email": {"type": "string", "format": "email"},
        "kind": {"type": "string", "description": "Group kind of the windows: zone (default), device, h3, all."},
        "zone": {"type": "string", "description": "The zone, device or cell (\"all\" for kind all)."},
        "time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$", "description": "Local send time in alerts.summary.time_zone; default alerts.summary.at."}}}}}},
      "responses": {"201": {"description": "Subscribed", "content": {"application/json": {"schema": {"type": "object", "properties": {
        "created": {"type": "boolean"}, "message": {"type": "string"}, "subscription": {"$ref": "#/components/schemas/Subscription"}}}}}},
        "200": {"description": "Already subscribed: nothing changed"},
        "400": {"description": "Bad body", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "401": {"description": "Missing or wrong write token"}, "404": {"description": "Subscriptions not configured"},
        "405": {"description": "No write_token configured: the API is read-only"}}}},
  "/api/subscriptions/{id}": {"delete": {"summary": "Remove a subscriber.", "security": [{"write_token": []}],
    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
    "responses": {"204": {"description": "Removed"}, "404": {"description": "No such subscription"}, "401": {"description": "Missing or wrong write token"}}}},
  "/api/unsubscribe": {"get": {"summary": "The unsubscribe link of the summary emails: removes the subscriber holding the secret token. Needs no other token.", "security": [],
    "parameters": [{"name": "token", "in": "query", "required": true, "schema": {"type": "string"}}],
    "responses": {"200": {"description": "Unsubscribed: an HTML page", "content": {"text/html": {}}},
      "404": {"description": "Unknown or already used token", "content": {"text/html": {}}}}}},
  "/api/ledger": {"get": {"summary": "The ledger: input = accepted + quarantined + late + duplicate (+ in flight).",
    "responses": {"200": {"description": "Ledger", "content": {"application/json": {"schema": {"type": "object"}}}},
      "401": {"description": "Missing or wrong bearer token"}}}},
  "/api/health": {"get": {"summary": "Pipeline health: readings per second, watermark, queue depths, the memory ceiling (memory) and hot partitions with their H3 cells (partitions.hot).",
    "responses": {"200": {"description": "Health", "content": {"application/json": {"schema": {"type": "object"}}}},
      "401": {"description": "Missing or wrong bearer token"}}}},
  "/api/events": {"get": {"summary": "Server-Sent Events with increasing ids: window, alert, quarantine, reading_summary (one per batch) and summary (readings coalesced per server.summary_interval, with every sensor that reported: device, lat, lon, status, last_arrival_time, values). Send Last-Event-ID (or last_event_id) to resume from the replay buffer; a filtered stream resumes the same way.",
    "parameters": [{"name": "Last-Event-ID", "in": "header", "schema": {"type": "integer"}},
      {"name": "last_event_id", "in": "query", "schema": {"type": "integer"}, "description": "Like the Last-Event-ID header, for clients that cannot set it."},
      {"name": "types", "in": "query", "schema": {"type": "string"}, "description": "Comma-separated event types to receive: window (or windows), alert (alerts), quarantine, summary, reading_summary; default all.", "example": "windows,alerts,summary"},
      {"name": "group_by", "in": "query", "schema": {"type": "string"}, "description": "Comma-separated: pass window events of these group_by values (device, zone, h3, all)."},
      {"name": "groups", "in": "query", "schema": {"type": "string"}, "description": "Comma-separated: pass window events of these groups (device ids, zone ids) too. Without group_by and groups every window passes."}],
    "responses": {"200": {"description": "Event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
      "400": {"description": "Bad parameter", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "401": {"description": "Missing or wrong bearer token"}}}},
  "/api/surface/latest": {"get": {"summary": "The newest interpolated surface (IDW grid, values row by row from the north), of the named surfaces[] entry or of any.",
    "parameters": [{"name": "name", "in": "query", "schema": {"type": "string"}}],
    "responses": {"200": {"description": "Surface", "content": {"application/json": {"schema": {"type": "object"}}}},
      "404": {"description": "No surface yet"}, "401": {"description": "Missing or wrong bearer token"}}}},
  "/api/zones": {"get": {"summary": "Zones as a GeoJSON FeatureCollection: the polygons of the configured zone layers (simplified above server.zone_max_vertices), with properties zone, name, layer, vertices, simplified and, once a window grouped by zone closed, window, end, metric, value (the headline mean, pm25 when present), aqi and metrics {metric: {mean, aqi}}. Without zone layers, zones seen in windows are Points at their centroid.",
    "responses": {"200": {"description": "FeatureCollection", "content": {"application/geo+json": {"schema": {"type": "object", "properties": {
      "type": {"type": "string", "enum": ["FeatureCollection"]}, "features": {"type": "array", "items": {"type": "object"}}}}}}},
      "401": {"description": "Missing or wrong bearer token"}}}},
  "/api/openapi.json": {"get": {"summary": "This document.",
    "responses": {"200": {"description": "OpenAPI 3 document", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
  "/healthz": {"get": {"summary": "Liveness: 200 while the process is up.", "security": [],
    "responses": {"200": {"description": "Up"}}}},
  "/readyz": {"get": {"summary": "Readiness: 200 while the pipeline runs, 503 otherwise.", "security": [],
    "responses": {"200": {"description": "Running"}, "503": {"description": "Not running"}}}},
  "/metrics": {"get": {"summary": "Prometheus text exposition: ledger counters, events per stage, queue depths, watermark lag, late and quarantine fractions, sink write/commit latency histograms, sink breaker states, RSS and connector gauges.", "security": [],
    "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
}
}
)";
  return kDoc;
}

}  // namespace tributary
