#include "alert/summary.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "alert/forecast.h"
#include "ingest/metrics.h"

namespace tributary {

namespace {

constexpr DurationUs kDay = 24 * 3600 * kMicrosPerSecond;
constexpr DurationUs kMinute = 60 * kMicrosPerSecond;
constexpr double kPm25Threshold = 35;  // µg/m³, seed 000

TimeUs ToLocal(const TimeZone& zone, TimeUs t) {
  return t + static_cast<TimeUs>(zone.OffsetAt(FloorDiv(t, kMicrosPerSecond))) * kMicrosPerSecond;
}

int LocalMinutes(const TimeZone& zone, TimeUs t) {
  TimeUs local = ToLocal(zone, t);
  return static_cast<int>(FloorDiv(local - FloorDiv(local, kDay) * kDay, kMinute));
}

std::string LocalClock(const TimeZone& zone, TimeUs t) {
  int m = LocalMinutes(zone, t);
  return fmt::format("{:02}:{:02}", m / 60, m % 60);
}

std::string Unit(const std::string& metric) {
  const MetricInfo* info = FindMetric(metric);
  return info != nullptr ? std::string(info->unit) : std::string();
}

std::string Num(double v) {
  return std::isfinite(v) ? fmt::format("{:.1f}", v) : std::string("n/a");
}

struct Agg {
  double min = INFINITY, max = -INFINITY, sum = 0, weight = 0;
  size_t windows = 0;
  void Add(const WindowResult& w) {
    if (!std::isfinite(w.mean)) return;
    double wt = w.count > 0 ? static_cast<double>(w.count) : 1.0;
    sum += w.mean * wt;
    weight += wt;
    min = std::min(min, std::isfinite(w.min) ? w.min : w.mean);
    max = std::max(max, std::isfinite(w.max) ? w.max : w.mean);
    ++windows;
  }
  double mean() const { return weight > 0 ? sum / weight : NAN; }
};

// The windows of the group, latest revision of each, one window definition per metric
// (the configured one, else the one with the most results), sorted by start.
std::map<std::string, std::vector<WindowResult>> SelectSeries(const SummaryInput& in,
                                                              const std::string& window) {
  std::map<std::string, std::map<std::string, std::map<TimeUs, WindowResult>>> by;
  for (const WindowResult& w : in.windows) {
    if (w.group_by.view() != in.kind || w.group.view() != in.name) continue;
    if (!window.empty() && w.window.view() != window) continue;
    auto& slot = by[std::string(w.metric.view())][std::string(w.window.view())];
    auto [it, fresh] = slot.try_emplace(w.start, w);
    if (!fresh && w.revision >= it->second.revision) it->second = w;
  }
  std::map<std::string, std::vector<WindowResult>> out;
  for (auto& [metric, defs] : by) {
    const std::map<TimeUs, WindowResult>* best = nullptr;
    for (const auto& [name, rows] : defs) {
      if (best == nullptr || rows.size() > best->size()) best = &rows;
    }
    std::vector<WindowResult>& v = out[metric];
    for (const auto& [t, w] : *best) v.push_back(w);
  }
  return out;
}

struct Digest {
  TimeUs ref = kMinTime;  ///< newest window end
  std::map<std::string, std::vector<WindowResult>> series;
  std::vector<std::pair<std::string, double>> current;  ///< metric → newest mean
};

Digest MakeDigest(const SummaryInput& in) {
  Digest d;
  d.series = SelectSeries(in, in.window);
  for (const auto& [metric, rows] : d.series) {
    if (rows.empty()) continue;
    d.ref = std::max(d.ref, rows.back().end);
    d.current.emplace_back(metric, rows.back().mean);
  }
  return d;
}

void AppendCurrent(std::string& t, const Digest& d, const TimeZone& zone) {
  t += "Current conditions";
  if (d.ref != kMinTime) t += " (data up to " + LocalClock(zone, d.ref) + ")";
  t += ":\n";
  if (d.current.empty()) t += "  no data for this subscription yet\n";
  for (const auto& [metric, rows] : d.series) {
    const WindowResult& w = rows.back();
    t += fmt::format("  {}: {} {} (min {}, max {})\n", metric, Num(w.mean), Unit(metric),
                     Num(std::isfinite(w.min) ? w.min : w.mean),
                     Num(std::isfinite(w.max) ? w.max : w.mean));
  }
}

void AppendAdvice(std::string& t, const Digest& d) {
  t += "\nAdvice:\n";
  for (const std::string& line : SummaryAdvice(d.current)) t += "  " + line + "\n";
}

std::string Subject(const SummaryInput& in) {
  return in.kind == "all" ? std::string("all sensors") : in.kind + " " + in.name;
}

}  // namespace

const SectionSpec& SummarySectionSpec() {
  static const SectionSpec spec{
      "alerts.summary",
      "Daily summary emails to the subscribers managed through the HTTP API "
      "(POST /api/subscriptions; stored in the `subscriptions` table of "
      "`<data_dir>/subscriptions.db`). "
      "Enabled when `url` is set: each subscriber gets a welcome mail with current "
      "conditions, then one summary a day for its zone or device — morning, evening and "
      "current windows, min/mean/max, exceedances, the forecast and advice — with a "
      "working unsubscribe link.",
      {
          {"url", OptionType::kString, "",
           "SMTP server: `smtp://host:587` (STARTTLS per `starttls`) or `smtps://host:465`; "
           "empty: no subscriptions (the API answers 404)."},
          {"from", OptionType::kString, "tributary@localhost", "Sender address."},
          {"username", OptionType::kString, "", "SMTP user (use `${VAR}`)."},
          {"password", OptionType::kString, "", "SMTP password (use `${VAR}`)."},
          {"starttls", OptionType::kEnum, "try", "STARTTLS on smtp:// URLs.", "none|try|required"},
          {"ca_file", OptionType::kString, "", "CA bundle for the TLS connection."},
          {"timeout", OptionType::kDuration, "30s", "Timeout of one SMTP delivery.", "1s..10m"},
          {"at", OptionType::kString, "07:00",
           "Local time (HH:MM) the summary is sent; a subscriber may choose its own."},
          {"time_zone", OptionType::kString, "UTC",
           "IANA time zone of `at` and of the morning/evening periods (e.g. Europe/Berlin)."},
          {"public_url", OptionType::kString, "",
           "Base URL of the server as subscribers reach it, for the unsubscribe link; empty: "
           "http://<listen address>."},
          {"database", OptionType::kString, "",
           "SQLite file of the subscribers; empty: `<data_dir>/subscriptions.db`."},
          {"window", OptionType::kString, "",
           "Window definition summarised; empty: per metric the one with the most results."},
      }};
  return spec;
}

Result<int> ParseClockTime(std::string_view text) {
  auto digit = [&](size_t i) { return text[i] >= '0' && text[i] <= '9'; };
  if (text.size() != 5 || text[2] != ':' || !digit(0) || !digit(1) || !digit(3) || !digit(4)) {
    return Status::Invalid("expected a time HH:MM, got '" + std::string(text) + "'");
  }
  int h = (text[0] - '0') * 10 + (text[1] - '0');
  int m = (text[3] - '0') * 10 + (text[4] - '0');
  if (h > 23 || m > 59) return Status::Invalid("no such time of day: '" + std::string(text) + "'");
  return h * 60 + m;
}

Result<SummaryOptions> ReadSummaryOptions(const PipelineConfig& config) {
  SummaryOptions o;
  YAML::Node node = config.alerts.Node("summary");
  if (!node.IsDefined() || node.IsNull()) return o;
  OptionReader r = config.alerts.Child("summary", &SummarySectionSpec());
  if (!node.IsMap()) return r.Error("", "expected a mapping");
  TRIB_RETURN_IF_ERROR(r.CheckKeys());
  TRIB_ASSIGN_OR_RETURN(o.smtp.url, r.GetString("url"));
  if (o.smtp.url.empty()) return o;
  if (o.smtp.url.rfind("smtp://", 0) != 0 && o.smtp.url.rfind("smtps://", 0) != 0) {
    return r.Error("url", "expected an smtp:// or smtps:// URL, got '" + o.smtp.url + "'");
  }
  o.enabled = true;
  TRIB_ASSIGN_OR_RETURN(o.smtp.from, r.GetString("from"));
  TRIB_ASSIGN_OR_RETURN(o.smtp.username, r.GetString("username"));
  TRIB_ASSIGN_OR_RETURN(o.smtp.password, r.GetString("password"));
  TRIB_ASSIGN_OR_RETURN(o.smtp.starttls, r.GetString("starttls"));
  TRIB_ASSIGN_OR_RETURN(o.smtp.ca_file, r.GetString("ca_file"));
  TRIB_ASSIGN_OR_RETURN(o.smtp.timeout, r.GetDuration("timeout"));
  TRIB_ASSIGN_OR_RETURN(o.at, r.GetString("at"));
  Result<int> at = ParseClockTime(o.at);
  if (!at.ok()) return r.Error("at", at.status().message());
  o.at_minutes = *at;
  TRIB_ASSIGN_OR_RETURN(o.time_zone, r.GetString("time_zone"));
  Result<std::shared_ptr<const TimeZone>> zone = TimeZone::Load(o.time_zone);
  if (!zone.ok()) return r.Error("time_zone", zone.status().message());
  o.zone = *zone;
  TRIB_ASSIGN_OR_RETURN(o.public_url, r.GetString("public_url"));
  while (!o.public_url.empty() && o.public_url.back() == '/') o.public_url.pop_back();
  TRIB_ASSIGN_OR_RETURN(o.database, r.GetString("database"));
  TRIB_ASSIGN_OR_RETURN(o.window, r.GetString("window"));
  return o;
}

std::string LocalDate(const TimeZone& zone, TimeUs t) {
  return FormatTime(FloorDiv(ToLocal(zone, t), kDay) * kDay).substr(0, 10);
}

bool SummaryDue(const TimeZone& zone, int send_minutes, TimeUs now, std::string_view last_sent) {
  // ISO dates order as text; "" (never) is before every date.
  return LocalDate(zone, now) > last_sent && LocalMinutes(zone, now) >= send_minutes;
}

std::vector<std::string> SummaryAdvice(const std::vector<std::pair<std::string, double>>& latest) {
  std::vector<std::string> out;
  for (const auto& [metric, v] : latest) {
    if (!std::isfinite(v)) continue;
    if (metric == "rainfall" && v > 0) {
      out.push_back("Rain: take an umbrella.");
    } else if (metric == "temperature" && v >= 30) {
      out.push_back(fmt::format(
          "Heat ({} degC): drink water, seek shade and avoid exertion at midday.", Num(v)));
    } else if (metric == "temperature" && v > 23) {
      out.push_back(fmt::format("Warm ({} degC): light clothes will do.", Num(v)));
    } else if (metric == "temperature" && v <= 0) {
      out.push_back(fmt::format("Frost ({} degC): dress warmly and watch for ice.", Num(v)));
    } else if (metric == "pm25" && v > 35.4) {
      out.push_back(fmt::format(
          "Poor air quality (PM2.5 {} ug/m3): limit strenuous outdoor activity; children, "
          "older people and those with heart or lung conditions should stay indoors.",
          Num(v)));
    } else if (metric == "wind_speed" && v >= 14) {
      out.push_back(fmt::format(
          "Strong wind ({} m/s): secure loose objects and take care outdoors.", Num(v)));
    }
  }
  if (out.empty()) out.push_back("No special precautions needed.");
  return out;
}

SummaryMail BuildDailySummary(const SummaryInput& in, const TimeZone& zone, TimeUs now) {
  Digest d = MakeDigest(in);
  SummaryMail mail;
  mail.subject = "Daily summary for " + Subject(in) + ", " + LocalDate(zone, now);
  std::string& t = mail.text;
  t += "Daily summary for " + Subject(in) + " (" + zone.name() + "), " + LocalDate(zone, now) +
       " " + LocalClock(zone, now) + ".\n\n";
  AppendCurrent(t, d, zone);
  TimeUs from = d.ref == kMinTime ? kMinTime : d.ref - kDay;
  struct Period {
    const char* name;
    int lo, hi;  // local minutes of the window start, [lo, hi)
  };
  for (const Period& p :
       {Period{"Morning (06:00-12:00)", 360, 720}, Period{"Evening (18:00-24:00)", 1080, 1440}}) {
    t += std::string("\n") + p.name + ", last 24 h:\n";
    bool any = false;
    for (const auto& [metric, rows] : d.series) {
      Agg a;
      for (const WindowResult& w : rows) {
        int m = LocalMinutes(zone, w.start);
        if (w.start >= from && m >= p.lo && m < p.hi) a.Add(w);
      }
      if (a.windows == 0) continue;
      any = true;
      t += fmt::format("  {}: min {}, mean {}, max {} {} ({} windows)\n", metric, Num(a.min),
                       Num(a.mean()), Num(a.max), Unit(metric), a.windows);
    }
    if (!any) t += "  no data\n";
  }
  t += "\nExceedances, last 24 h:\n";
  size_t listed = 0;
  for (const AlertEvent& e : in.alerts) {
    if (e.key.view() != in.name || e.fired_at < from) continue;
    ++listed;
    t += fmt::format("  {} ({}) fired at {}, {}{}\n", e.rule.view(), e.severity.view(),
                     LocalClock(zone, e.fired_at), AlertStateName(e.state),
                     e.message.empty() ? std::string() : ": " + e.message);
  }
  if (auto it = d.series.find("pm25"); it != d.series.end()) {
    size_t above = 0;
    for (const WindowResult& w : it->second) {
      if (w.start >= from && w.mean > kPm25Threshold) ++above;
    }
    ++listed;
    t += fmt::format("  PM2.5 windows with a mean above {:.0f} ug/m3: {}\n", kPm25Threshold, above);
  }
  if (listed == 0) t += "  none\n";
  t += "\nForecast:\n";
  if (d.series.empty()) t += "  not enough data\n";
  for (const auto& [metric, rows] : d.series) {
    std::vector<SeriesPoint> s;
    for (const WindowResult& w : rows) s.push_back({w.start, w.mean});
    Result<Forecast> f = HoltWintersForecast(s);
    if (!f.ok()) f = LinearTrendForecast(s, 50);
    if (!f.ok()) {
      t += "  " + metric + ": not enough data\n";
      continue;
    }
    if (const MetricInfo* info = FindMetric(metric)) ClampForecast(*f, info->min, info->max);
    t += fmt::format("  {}: next window {} {}, in a day {} ({}", metric, Num(f->next), Unit(metric),
                     Num(f->next_day), f->method);
    if (f->holdout_points > 0) t += ", holdout RMSE " + Num(f->holdout_rmse);
    t += ")\n";
  }
  AppendAdvice(t, d);
  if (!in.unsubscribe_url.empty()) {
    t += "\nTo stop these emails, open " + in.unsubscribe_url + "\n";
  }
  return mail;
}

SummaryMail BuildWelcomeMail(const SummaryInput& in, const TimeZone& zone, TimeUs now,
                             const std::string& send_at) {
  Digest d = MakeDigest(in);
  SummaryMail mail;
  mail.subject = "Subscribed to the daily summary for " + Subject(in);
  std::string& t = mail.text;
  t += "Welcome! You will receive a summary for " + Subject(in) + " every day at " + send_at +
       " (" + zone.name() + ").\n\n";
  (void)now;
  AppendCurrent(t, d, zone);
  AppendAdvice(t, d);
  if (!in.unsubscribe_url.empty()) {
    t += "\nTo unsubscribe, open " + in.unsubscribe_url + "\n";
  }
  return mail;
}

}  // namespace tributary
