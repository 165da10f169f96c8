// The JSON documents of the read-only HTTP API, rendered from the live state and the
// pipeline. Independent of the HTTP library: each function returns a body.
//
//   GET /api/sensors      every sensor seen: position, latest value per metric, status
//   GET /api/windows      recent window results; ?window=&group=&metric=&from=&to=&limit=
//   GET /api/quarantine   recent quarantine records; ?limit=
//   GET /api/alerts       alerts (latest event of each life); ?state=firing|all&limit=
//   GET /api/forecast     forecast of one window series; ?window=&group=&metric=
//                         &method=linear|seasonal_naive|holt_winters&points=50
//                         &period=1d&alpha=&beta=&gamma= (Holt-Winters; fitted when absent)
//                         clamped to the metric's bounds, with holdout RMSE/MAE
//   GET /api/ledger       the ledger (same JSON as ledger.json)
//   GET /api/health       events/s, watermark, queue depths, running
//   GET /api/zones        zones as a GeoJSON FeatureCollection with their latest windows
//   GET /api/openapi.json the OpenAPI 3 description of all of the above
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "server/live_state.h"
#include "server/sse.h"
#include "spatial/zone_outlines.h"

namespace tributary {

class Pipeline;
class EventLog;

/// Query parameters of one request (first value of each key).
using QueryParams = std::map<std::string, std::string>;

/// Parse the /api/windows query; `from`/`to` are ISO-8601, `limit` 1..10000.
Result<WindowQuery> ParseWindowQuery(const QueryParams& params);
/// Parse a positive `limit` (default `fallback`, at most `max`).
Result<size_t> ParseLimit(const QueryParams& params, size_t fallback, size_t max);

std::string SensorsJson(const LiveState& live, TimeUs now);
std::string WindowsJson(const LiveState& live, const WindowQuery& query);
std::string QuarantineJson(const LiveState& live, size_t limit);
/// `state`: "firing" (default) or "all".
Result<std::string> AlertsJson(const LiveState& live, const QueryParams& params);
/// Forecast of the mean of one (window, group, metric) series from the kept results.
Result<std::string> ForecastJson(const LiveState& live, const QueryParams& params);
std::string LedgerJson(const Pipeline& pipeline);
std::string HealthJson(const Pipeline& pipeline, const LiveState& live, const EventLog& events,
                       TimeUs now);
/// Zones as GeoJSON: one Feature per group of the window results grouped by `zone`, with
/// properties {zone, window, end, metrics: {metric: {mean, aqi}}, metric, value, aqi} (the
/// headline metric is pm25 when present), and a Point at the window centroid (null when
/// the window carries none). Empty collection when no zone windows were seen.
std::string ZonesJson(const LiveState& live);
/// Zones as GeoJSON with their outlines (polygons from the zone index, simplified for the
/// wire): one Feature per outline, id "<zone>" for the first layer (the one windows group
/// by) and "<layer>:<zone>" for others, properties {zone, name, layer, simplified,
/// vertices} plus, when a zone window was seen for it, those of ZonesJson above. Zones
/// with windows but no outline follow as Points at their centroid.
std::string ZonesJson(const LiveState& live, const std::vector<ZoneOutline>& outlines);
/// Parse the filter of /api/events: `types` (comma-separated: window|windows,
/// alert|alerts, quarantine, summary, reading_summary; empty: all), `group_by` and
/// `groups` (comma-separated; narrow `window` events, see SseFilter).
Result<SseFilter> ParseSseFilter(const QueryParams& params);
/// The OpenAPI 3.0 document of the API.
std::string OpenApiJson();
/// A JSON error body: {"error": message}.
std::string ErrorJson(std::string_view message);

}  // namespace tributary
