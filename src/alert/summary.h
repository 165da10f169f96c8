// Daily summaries for people: what the seed paper's daily email says, built from window
// results and alerts of one subscribed group (a zone, a device, or `all`).
//
// Configured by `alerts.summary` (SummarySectionSpec): the SMTP server, the time of day
// and the time zone. Subscribers are stored by SubscriptionStore (subscriptions.h) and
// served by the HTTP API (server/subscription_service.h), which runs the schedule.
//
// Periods. A summary describes the 24 h of DATA ending at the newest window end of the
// group (not the wall clock, so replayed or simulated data read the same): "morning" are
// the windows starting between 06:00 and 12:00 local time, "evening" between 18:00 and
// 24:00, "current" the newest window of each metric. For each period and metric: the
// minimum (of the windows' minima), the mean (weighted by sample counts) and the maximum.
// Exceedances are the alert lives of the group that fired within those 24 h, plus the
// count of windows whose PM2.5 mean was above 35 µg/m³ (seed 000's threshold). The
// forecast per metric is Holt-Winters when two days of windows exist, else the linear
// trend, clamped to the metric's physical bounds. Advice follows the current values:
// rain → take an umbrella; ≥ 30 °C → heat; ≤ 0 °C → frost; PM2.5 above 35.4 µg/m³ (AQI
// "unhealthy for sensitive groups" or worse) → poor air quality; wind ≥ 14 m/s → wind.
//
// Schedule. A subscriber is due once per local calendar day, at or after its send time
// (HH:MM, default `at`) in `time_zone`; the local date of the last summary is stored, so
// a restart neither repeats nor skips a day's mail (a missed time is sent when the
// server is up again that day).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "alert/dispatch.h"
#include "core/model.h"
#include "core/pipeline_config.h"
#include "ingest/time_zone.h"

namespace tributary {

/// The `alerts.summary` section.
const SectionSpec& SummarySectionSpec();

struct SummaryOptions {
  bool enabled = false;  ///< true when `alerts.summary.url` is set
  int at_minutes = 7 * 60;
  std::string at = "07:00";
  std::string time_zone = "UTC";
  std::shared_ptr<const TimeZone> zone;
  SmtpSender::Options smtp;
  std::string public_url;  ///< base of links in mails; empty: the server's own address
  std::string database;    ///< empty: <data_dir>/tributary.gpkg
  std::string window;      ///< window definition summarised; empty: any
};

/// Read `alerts.summary` of `config` (disabled when absent or without `url`).
Result<SummaryOptions> ReadSummaryOptions(const PipelineConfig& config);
/// Parse "HH:MM" (00:00..23:59) into minutes after midnight.
Result<int> ParseClockTime(std::string_view text);
/// The local calendar date "YYYY-MM-DD" of `t` in `zone`.
std::string LocalDate(const TimeZone& zone, TimeUs t);
/// Whether a summary at local `send_minutes` is due at `now` when the last one went out
/// on local date `last_sent` ("" for never): once per local day after `last_sent`.
bool SummaryDue(const TimeZone& zone, int send_minutes, TimeUs now, std::string_view last_sent);

/// What a summary is built from.
struct SummaryInput {
  std::string kind;    ///< group_by of the windows: zone, device, h3, all
  std::string name;    ///< the group key
  std::string window;  ///< window definition; empty: per metric the one with most results
  std::vector<WindowResult> windows;
  std::vector<AlertEvent> alerts;  ///< alert lives (latest event each); filtered by key
  std::string unsubscribe_url;
};

struct SummaryMail {
  std::string subject;
  std::string text;
};

/// Plain advice lines for the latest values (metric → value).
std::vector<std::string> SummaryAdvice(const std::vector<std::pair<std::string, double>>& latest);
/// The daily summary mail (`now` is the send time, shown in the zone's local time).
SummaryMail BuildDailySummary(const SummaryInput& in, const TimeZone& zone, TimeUs now);
/// The welcome mail with current conditions; `send_at` is the subscriber's time.
SummaryMail BuildWelcomeMail(const SummaryInput& in, const TimeZone& zone, TimeUs now,
                             const std::string& send_at);

}  // namespace tributary
