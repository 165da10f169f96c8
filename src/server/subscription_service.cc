#include "server/subscription_service.h"

#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <limits>

#include "core/json_writer.h"

namespace tributary {

namespace {

constexpr int kWelcomeAttempts = 5;
constexpr DurationUs kSummaryRetry = 60 * kMicrosPerSecond;
constexpr auto kTick = std::chrono::seconds(1);

bool ValidGroupText(const std::string& s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s) {
    if (static_cast<unsigned char>(c) < ' ' || c == 0x7f) return false;
  }
  return true;
}

void WriteSubscription(JsonWriter& w, const Subscription& s) {
  w.BeginObject();
  w.Key("id").Int(s.id);
  w.Key("email").String(s.email);
  w.Key("kind").String(s.kind);
  w.Key("zone").String(s.zone);
  w.Key("time").String(s.send_at);
  w.Key("created_at").String(FormatTime(s.created_at));
  w.Key("last_sent_day");
  if (s.last_sent_day.empty()) {
    w.Null();
  } else {
    w.String(s.last_sent_day);
  }
  w.EndObject();
}

}  // namespace

SubscriptionService::SubscriptionService(SummaryOptions options, const LiveState& live,
                                         std::string base_url)
    : options_(std::move(options)),
      live_(live),
      base_url_(std::move(base_url)),
      sender_(options_.smtp) {}

Result<std::unique_ptr<SubscriptionService>> SubscriptionService::Start(SummaryOptions options,
                                                                        const LiveState& live,
                                                                        const std::string& data_dir,
                                                                        std::string base_url) {
  if (!options.enabled || options.zone == nullptr) {
    return Status::Invalid("daily summaries are not configured (alerts.summary.url)");
  }
  std::string path = options.database;
  // A file of its own: the local sink holds the store's write lock between its commits (a
  // whole checkpoint interval with checkpoints on), which a subscriber must not wait for.
  if (path.empty()) path = (data_dir.empty() ? std::string(".") : data_dir) + "/subscriptions.db";
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (!options.public_url.empty()) base_url = options.public_url;
  std::unique_ptr<SubscriptionService> s(
      new SubscriptionService(std::move(options), live, std::move(base_url)));
  TRIB_RETURN_IF_ERROR(s->store_.Open(path).WithContext("subscriptions"));
  s->thread_ = std::thread([p = s.get()] { p->Loop(); });
  spdlog::info("daily summaries at {} ({}) via {}; subscribers in {}", s->options_.at,
               s->options_.time_zone, s->options_.smtp.url, path);
  return s;
}

SubscriptionService::~SubscriptionService() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string SubscriptionService::UnsubscribeUrl(const Subscription& s) const {
  return base_url_ + "/api/unsubscribe?token=" + s.token;
}

Result<Subscription> SubscriptionService::Subscribe(const std::string& json_body, bool& created) {
  YAML::Node body;
  try {
    body = YAML::Load(json_body);
  } catch (const YAML::Exception& e) {
    return Status::Invalid(std::string("the body is not JSON: ") + e.what());
  }
  if (!body.IsMap()) return Status::Invalid("expected a JSON object {email, kind, zone, time}");
  auto field = [&](const char* key) -> Result<std::string> {
    YAML::Node n = body[key];
    if (!n.IsDefined() || n.IsNull()) return std::string();
    if (!n.IsScalar()) return Status::Invalid(std::string("'") + key + "' must be a string");
    return n.as<std::string>();
  };
  TRIB_ASSIGN_OR_RETURN(std::string email, field("email"));
  TRIB_ASSIGN_OR_RETURN(std::string kind, field("kind"));
  TRIB_ASSIGN_OR_RETURN(std::string zone, field("zone"));
  TRIB_ASSIGN_OR_RETURN(std::string time, field("time"));
  if (email.empty()) return Status::Invalid("'email' is required");
  if (!ValidSubscriberEmail(email)) {
    return Status::Invalid("'email' is not an email address: '" + email + "'");
  }
  if (kind.empty()) kind = "zone";
  if (kind == "all" && zone.empty()) zone = "all";
  if (!ValidGroupText(kind, 32)) return Status::Invalid("'kind' must be a short group name");
  if (!ValidGroupText(zone, 200)) {
    return Status::Invalid("'zone' is required: the zone, device or cell to summarise");
  }
  if (time.empty()) time = options_.at;
  Result<int> minutes = ParseClockTime(time);
  if (!minutes.ok()) return Status::Invalid("'time': " + minutes.status().message());
  TimeUs now = NowUs();
  // A subscriber whose time of day has already passed gets today's welcome mail only.
  std::string last = SummaryDue(*options_.zone, *minutes, now, "") ? LocalDate(*options_.zone, now)
                                                                   : std::string();
  TRIB_ASSIGN_OR_RETURN(Subscription s, store_.Add(email, kind, zone, time, last, now, created));
  if (created) {
    {
      std::lock_guard lock(mu_);
      welcome_.push_back({s, 0, 0});
    }
    cv_.notify_all();
    spdlog::info("subscription {}: {} for {} {} at {}", s.id, s.email, s.kind, s.zone, s.send_at);
  }
  return s;
}

SummaryInput SubscriptionService::InputFor(const Subscription& s) const {
  SummaryInput in;
  in.kind = s.kind;
  in.name = s.zone;
  in.window = options_.window;
  WindowQuery q;
  q.group = s.zone;
  q.window = options_.window;
  q.limit = std::numeric_limits<size_t>::max();
  in.windows = live_.Windows(q);
  for (AlertEvent& e : live_.Alerts(false, 100000)) {
    if (e.key.view() == s.zone) in.alerts.push_back(std::move(e));
  }
  in.unsubscribe_url = UnsubscribeUrl(s);
  return in;
}

Status SubscriptionService::SendMail(const Subscription& s, const SummaryMail& mail) {
  return sender_.Send({s.email}, mail.subject, mail.text,
                      {"List-Unsubscribe: <" + UnsubscribeUrl(s) + ">"});
}

size_t SubscriptionService::RunDue(TimeUs now) {
  std::lock_guard due_lock(due_mu_);
  Result<std::vector<Subscription>> subs = store_.List();
  if (!subs.ok()) {
    spdlog::warn("summaries: {}", subs.status().message());
    return 0;
  }
  size_t sent = 0;
  for (const Subscription& s : *subs) {
    Result<int> minutes = ParseClockTime(s.send_at);
    int at = minutes.ok() ? *minutes : options_.at_minutes;
    if (!SummaryDue(*options_.zone, at, now, s.last_sent_day)) continue;
    {
      std::lock_guard lock(mu_);
      auto it = retry_after_.find(s.id);
      if (it != retry_after_.end() && it->second > now) continue;
    }
    SummaryMail mail = BuildDailySummary(InputFor(s), *options_.zone, now);
    Status st = SendMail(s, mail);
    if (st.ok()) st = store_.MarkSent(s.id, LocalDate(*options_.zone, now));
    std::lock_guard lock(mu_);
    if (st.ok()) {
      retry_after_.erase(s.id);
      ++sent;
    } else {
      retry_after_[s.id] = now + kSummaryRetry;
      spdlog::warn("summary for {} ({} {}): {}; retrying in a minute", s.email, s.kind, s.zone,
                   st.message());
    }
  }
  return sent;
}

void SubscriptionService::Loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, kTick);
    if (stop_) break;
    TimeUs now = NowUs();
    // Welcome mails first: they are what a person who just subscribed waits for.
    std::deque<PendingWelcome> ready;
    for (auto it = welcome_.begin(); it != welcome_.end();) {
      if (it->next_try <= now) {
        ready.push_back(std::move(*it));
        it = welcome_.erase(it);
      } else {
        ++it;
      }
    }
    lock.unlock();
    for (PendingWelcome& p : ready) {
      SummaryMail mail = BuildWelcomeMail(InputFor(p.sub), *options_.zone, now, p.sub.send_at);
      Status st = SendMail(p.sub, mail);
      if (st.ok()) continue;
      if (++p.attempts >= kWelcomeAttempts) {
        spdlog::error("welcome mail to {} given up after {} attempts: {}", p.sub.email, p.attempts,
                      st.message());
        continue;
      }
      p.next_try = now + (kMicrosPerSecond << p.attempts);
      spdlog::warn("welcome mail to {}: {}; retrying", p.sub.email, st.message());
      std::lock_guard relock(mu_);
      welcome_.push_back(std::move(p));
    }
    RunDue(now);
    lock.lock();
  }
}

std::string SubscriptionService::ListJson(const std::vector<Subscription>& subs) {
  JsonWriter w;
  w.BeginObject();
  w.Key("count").UInt(subs.size());
  w.Key("subscriptions").BeginArray();
  for (const Subscription& s : subs) WriteSubscription(w, s);
  w.EndArray();
  w.EndObject();
  return w.Take();
}

std::string SubscriptionService::OneJson(const Subscription& s, bool created) {
  JsonWriter w;
  w.BeginObject();
  w.Key("created").Bool(created);
  w.Key("message").String(created
                              ? "subscribed: a welcome email is on its way to " + s.email
                              : s.email + " was already subscribed to " + s.kind + " " + s.zone);
  w.Key("subscription");
  WriteSubscription(w, s);
  w.EndObject();
  return w.Take();
}

}  // namespace tributary
