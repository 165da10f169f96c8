#include "alert/dispatch.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <set>

#include "alert/rules.h"
#include "io/mqtt_client.h"
#include "io/sinks/sqlite_util.h"

namespace tributary {

namespace {

// How long one turn of a channel's worker may deliver alerts straight from memory before
// it writes the rest to its queue file.
constexpr DurationUs kDirectBudget = 50 * kMicrosPerMilli;

const std::vector<OptionSpec>& MqttChannelOptions() {
  static const std::vector<OptionSpec> specs = [] {
    std::vector<OptionSpec> v = MqttConnectionOptionSpecs();
    v.push_back({"topic", OptionType::kString, "tributary/alerts/{rule}/{key}",
                 "Topic of each alert; `{rule}`, `{key}`, `{severity}` and `{state}` are "
                 "replaced."});
    v.push_back({"qos", OptionType::kInt, "1",
                 "QoS of alert messages; with 1 or 2 a message counts as delivered once the "
                 "broker acknowledged it.",
                 "0..2"});
    v.push_back({"retain", OptionType::kBool, "false", "Publish alerts as retained messages."});
    return v;
  }();
  return specs;
}

}  // namespace

const SectionSpec& AlertChannelCommonSpec() {
  static const SectionSpec spec{
      "alerts.channels[]",
      "Every delivery channel has these keys; the keys of each type follow. Each channel "
      "has its own worker thread and persistent retry queue: a slow or failing channel "
      "never delays the others or the pipeline.",
      {
          {"name", OptionType::kString, "", "Unique channel name (rules route by it).", {}, true},
          {"type", OptionType::kEnum, "", "`mqtt`, `webhook` or `email`.", "mqtt|webhook|email",
           true},
          {"retry_initial", OptionType::kDuration, "1s",
           "Wait before the second attempt; doubled after each failure (±20 % jitter).", "1ms..1h"},
          {"retry_max", OptionType::kDuration, "5m", "Longest wait between attempts.", "1ms..1d"},
          {"max_pending", OptionType::kInt, "10000",
           "Most messages kept for this channel; past it the oldest are dropped (logged and "
           "counted).",
           "1..10000000"},
          {"severities", OptionType::kStringList, "",
           "Only alerts of these severities (empty: all)."},
          {"resolved", OptionType::kBool, "true", "Also deliver `resolved` events."},
      }};
  return spec;
}

const SectionSpec& AlertMqttChannelSpec() {
  static const SectionSpec spec{"alerts.channels[] (type: mqtt)",
                                "Publish each alert event as JSON to an MQTT topic.",
                                MqttChannelOptions()};
  return spec;
}

const SectionSpec& AlertWebhookChannelSpec() {
  static const SectionSpec spec{
      "alerts.channels[] (type: webhook)",
      "POST each alert event as JSON (`Content-Type: application/json`). A 2xx answer is "
      "delivered; anything else, or no answer within `timeout`, is retried.",
      {
          {"url", OptionType::kString, "", "http:// or https:// URL.", {}, true},
          {"headers", OptionType::kStringList, "",
           "Extra headers, `Name: value` each (e.g. `Authorization: Bearer ${HOOK_TOKEN}`)."},
          {"timeout", OptionType::kDuration, "10s", "Longest time one request may take.",
           "10ms..10m"},
      }};
  return spec;
}

const SectionSpec& AlertEmailChannelSpec() {
  static const SectionSpec spec{
      "alerts.channels[] (type: email)",
      "Send each alert as a plain-text email over SMTP (libcurl).",
      {
          {"url",
           OptionType::kString,
           "",
           "SMTP server: `smtp://host:587` (STARTTLS per `starttls`) or `smtps://host:465`.",
           {},
           true},
          {"from", OptionType::kString, "", "Sender address.", {}, true},
          {"to", OptionType::kStringList, "", "Recipient addresses.", {}, true},
          {"username", OptionType::kString, "",
           "SMTP user; write `${SMTP_USER}` to take it from the environment."},
          {"password", OptionType::kString, "",
           "SMTP password; write `${SMTP_PASSWORD}` to take it from the environment."},
          {"starttls", OptionType::kEnum, "try",
           "`required`: fail unless the server upgrades to TLS; `try`: upgrade when offered; "
           "`off`: never.",
           "required|try|off"},
          {"ca_file", OptionType::kString, "", "CA bundle to verify the server (default: system)."},
          {"timeout", OptionType::kDuration, "30s", "Longest time one message may take.",
           "100ms..10m"},
      }};
  return spec;
}

AlertMessage MakeAlertMessage(const AlertEvent& e) {
  AlertMessage m;
  m.rule = e.rule.str();
  m.key = e.key.str();
  m.severity = e.severity.str();
  m.state = AlertStateName(e.state);
  m.json = AlertEventJson(e);
  const char* state = e.state == AlertState::kResolved   ? "RESOLVED"
                      : e.state == AlertState::kRenotify ? "STILL FIRING"
                                                         : "FIRING";
  m.subject = fmt::format("[{}] {} {}: {}", m.severity, state, m.rule, m.key);
  m.text = fmt::format(
      "{}\n\nRule:       {}\nKey:        {}\nSeverity:   {}\nState:      {}\nFiring "
      "since: {}\nEvent time: {}\nValue:      {}\nLevel:      {}\n",
      e.message, m.rule, m.key, m.severity, m.state, FormatTime(e.fired_at),
      FormatTime(e.event_time), e.value, e.level);
  return m;
}

namespace {

// ---- curl helpers ----------------------------------------------------------------

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

void CurlGlobalInit() {
  static const bool done = [] {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return true;
  }();
  (void)done;
}

size_t DiscardBody(char*, size_t size, size_t n, void*) {
  return size * n;
}

long TimeoutMs(DurationUs d) {
  return static_cast<long>(std::max<DurationUs>(1, d / 1000));
}

class WebhookChannel final : public AlertChannel {
 public:
  WebhookChannel(std::string url, std::vector<std::string> headers, DurationUs timeout)
      : url_(std::move(url)), headers_(std::move(headers)), timeout_(timeout) {}

  Status Deliver(const AlertMessage& m) override {
    CurlGlobalInit();
    if (!curl_) curl_.reset(curl_easy_init());
    if (!curl_) return Status::Internal("webhook: curl_easy_init failed");
    CURL* c = curl_.get();
    curl_easy_reset(c);
    curl_slist* list = curl_slist_append(nullptr, "Content-Type: application/json");
    for (const std::string& h : headers_) list = curl_slist_append(list, h.c_str());
    SlistPtr headers(list);
    curl_easy_setopt(c, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, m.json.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(m.json.size()));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, TimeoutMs(timeout_));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, TimeoutMs(timeout_));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, DiscardBody);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
      return Status::Unavailable(fmt::format("webhook {}: {}", url_, curl_easy_strerror(rc)));
    }
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (code < 200 || code >= 300) {
      return Status(StatusCode::kUnavailable, fmt::format("webhook {}: HTTP {}", url_, code),
                    code >= 500 || code == 429 || code == 408);
    }
    return Status::Ok();
  }

 private:
  std::string url_;
  std::vector<std::string> headers_;
  DurationUs timeout_;
  CurlPtr curl_;
};

struct UploadState {
  const std::string* data;
  size_t pos;
};

size_t ReadUpload(char* buf, size_t size, size_t n, void* user) {
  auto* u = static_cast<UploadState*>(user);
  size_t want = size * n;
  size_t left = u->data->size() - u->pos;
  size_t take = std::min(want, left);
  std::memcpy(buf, u->data->data() + u->pos, take);
  u->pos += take;
  return take;
}

std::string RfcDate(TimeUs t) {
  std::time_t s = static_cast<std::time_t>(FloorDiv(t, kMicrosPerSecond));
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

}  // namespace

Status SmtpSender::Send(const std::vector<std::string>& to, const std::string& subject,
                        const std::string& text, const std::vector<std::string>& extra_headers) {
  CurlGlobalInit();
  CurlPtr curl(curl_easy_init());
  if (!curl) return Status::Internal("email: curl_easy_init failed");
  CURL* c = curl.get();
  static std::atomic<uint64_t> seq{0};
  std::string msg;
  msg += "Date: " + RfcDate(NowUs()) + "\r\n";
  msg += "From: " + o_.from + "\r\n";
  std::string to_line;
  for (const std::string& r : to) to_line += (to_line.empty() ? "" : ", ") + r;
  msg += "To: " + to_line + "\r\n";
  msg += "Subject: " + subject + "\r\n";
  msg += fmt::format("Message-ID: <{}.{}@tributary>\r\n", NowUs(), seq.fetch_add(1));
  for (const std::string& h : extra_headers) msg += h + "\r\n";
  msg +=
      "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Content-Transfer-Encoding: 8bit\r\n\r\n";
  // Body lines end with CRLF; a line starting with '.' is dot-stuffed by curl.
  for (char ch : text) {
    if (ch == '\n') {
      msg += "\r\n";
    } else {
      msg.push_back(ch);
    }
  }
  if (msg.size() < 2 || msg.compare(msg.size() - 2, 2, "\r\n") != 0) msg += "\r\n";
  UploadState up{&msg, 0};
  curl_slist* rcpt = nullptr;
  for (const std::string& r : to) rcpt = curl_slist_append(rcpt, ("<" + r + ">").c_str());
  SlistPtr rcpts(rcpt);
  std::string from = "<" + o_.from + ">";
  curl_easy_setopt(c, CURLOPT_URL, o_.url.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_FROM, from.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadUpload);
  curl_easy_setopt(c, CURLOPT_READDATA, &up);
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, TimeoutMs(o_.timeout));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (!o_.username.empty()) curl_easy_setopt(c, CURLOPT_USERNAME, o_.username.c_str());
  if (!o_.password.empty()) curl_easy_setopt(c, CURLOPT_PASSWORD, o_.password.c_str());
  if (!o_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, o_.ca_file.c_str());
  long ssl = o_.starttls == "required" ? CURLUSESSL_ALL
             : o_.starttls == "try"    ? CURLUSESSL_TRY
                                       : CURLUSESSL_NONE;
  curl_easy_setopt(c, CURLOPT_USE_SSL, ssl);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    return Status::Unavailable(fmt::format("email via {}: {}", o_.url, curl_easy_strerror(rc)));
  }
  return Status::Ok();
}

namespace {

class EmailChannel final : public AlertChannel {
 public:
  EmailChannel(SmtpSender::Options o, std::vector<std::string> to)
      : sender_(std::move(o)), to_(std::move(to)) {}
  Status Deliver(const AlertMessage& m) override { return sender_.Send(to_, m.subject, m.text); }

 private:
  SmtpSender sender_;
  std::vector<std::string> to_;
};

std::string Expand(std::string topic, const AlertMessage& m) {
  auto rep = [&](std::string_view from, const std::string& to) {
    for (size_t p = topic.find(from); p != std::string::npos; p = topic.find(from, p + to.size())) {
      topic.replace(p, from.size(), to);
    }
  };
  rep("{rule}", m.rule);
  rep("{key}", m.key);
  rep("{severity}", m.severity);
  rep("{state}", m.state);
  return topic;
}

class MqttChannel final : public AlertChannel {
 public:
  MqttChannel(MqttConnectOptions o, std::string topic, int qos, bool retain)
      : options_(std::move(o)), topic_(std::move(topic)), qos_(qos), retain_(retain) {}
  ~MqttChannel() override {
    if (client_) client_->Disconnect(kMicrosPerSecond);
  }
  Status Deliver(const AlertMessage& m) override {
    if (!client_) {
      TRIB_ASSIGN_OR_RETURN(client_, MqttPublisher::Create(options_));
    }
    if (!client_->IsConnected()) TRIB_RETURN_IF_ERROR(client_->Connect());
    TRIB_ASSIGN_OR_RETURN(int token, client_->Publish(Expand(topic_, m), m.json, qos_, retain_));
    if (qos_ > 0) TRIB_RETURN_IF_ERROR(client_->WaitForDelivery(token, options_.connect_timeout));
    return Status::Ok();
  }

 private:
  MqttConnectOptions options_;
  std::string topic_;
  int qos_;
  bool retain_;
  std::unique_ptr<MqttPublisher> client_;
};

}  // namespace

// ---- the worker ------------------------------------------------------------------

struct AlertDispatcher::Worker {
  ChannelOptions options;
  std::unique_ptr<AlertChannel> channel;
  std::string queue_file;
  std::thread thread;
  // Lock order: db_mu, then mu. db_mu guards the queue file (db and its statements) and
  // `count`; it is held for database work only, never while a channel delivers.
  std::mutex db_mu;
  SqliteDb db;
  SqliteStatement insert, due, next, begin, commit, del, fail, trim;
  int64_t count = 0;  // rows of this channel in the queue file
  bool db_ready = false;
  // mu guards the inbox, the message being delivered straight from memory and stats.
  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<AlertMessage> inbox;
  bool in_flight = false;  // `flight` is being delivered straight from memory
  AlertMessage flight;
  int64_t flight_row = 0;  // its row, once Persist wrote one
  bool stop = false;
  TimeUs drain_deadline = kMaxTime;  // stop once the queue is empty or this passes
  ChannelStats stats;
  std::atomic<uint64_t> queued_rows{0};
  std::mt19937_64 rng{std::random_device{}()};

  Status OpenQueue();
  void Run();
  Status Loop();
  Status Persist();
  // Under db_mu: several statements in one transaction (one WAL commit).
  Status InTransaction(const std::function<Status()>& body);
  // Under db_mu: insert one row (attempts 1 and a retry time when `error` is set).
  Status Insert(const AlertMessage& m, TimeUs now, const std::string* error);
  DurationUs Backoff(int64_t attempts) {
    double d = static_cast<double>(options.retry_initial);
    for (int64_t i = 1; i < attempts && d < static_cast<double>(options.retry_max); ++i) d *= 2;
    d = std::min(d, static_cast<double>(options.retry_max));
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    return static_cast<DurationUs>(d * jitter(rng));
  }
};

Status AlertDispatcher::Worker::OpenQueue() {
  std::lock_guard dl(db_mu);
  TRIB_RETURN_IF_ERROR(db.Open(queue_file));
  TRIB_RETURN_IF_ERROR(db.Exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL"));
  TRIB_RETURN_IF_ERROR(db.Exec(
      "CREATE TABLE IF NOT EXISTS alert_queue (id INTEGER PRIMARY KEY, channel TEXT NOT "
      "NULL, rule TEXT, key TEXT, severity TEXT, state TEXT, json TEXT NOT NULL, subject "
      "TEXT, body TEXT, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_us INTEGER NOT "
      "NULL, created_us INTEGER NOT NULL, last_error TEXT);"
      "CREATE INDEX IF NOT EXISTS alert_queue_due ON alert_queue (channel, next_attempt_us)"));
  TRIB_ASSIGN_OR_RETURN(
      insert,
      db.Prepare("INSERT INTO alert_queue (channel, rule, key, severity, state, json, subject, "
                 "body, next_attempt_us, created_us, attempts, last_error) VALUES "
                 "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)"));
  TRIB_ASSIGN_OR_RETURN(due, db.Prepare("SELECT id, rule, key, severity, state, json, subject, "
                                        "body, attempts FROM alert_queue WHERE channel = ?1 AND "
                                        "next_attempt_us <= ?2 AND id < COALESCE((SELECT MIN(id) "
                                        "FROM alert_queue WHERE channel = ?1 AND next_attempt_us "
                                        "> ?2), 9223372036854775807) ORDER BY id LIMIT 64"));
  // The pending count is kept in memory (counted once here): a COUNT(*) per turn costs
  // O(backlog) and made a burst of alerts quadratic.
  TRIB_ASSIGN_OR_RETURN(next, db.Prepare("SELECT next_attempt_us FROM alert_queue WHERE "
                                         "channel = ?1 ORDER BY id LIMIT 1"));
  TRIB_ASSIGN_OR_RETURN(SqliteStatement count_all,
                        db.Prepare("SELECT COUNT(*) FROM alert_queue WHERE channel = ?1"));
  TRIB_ASSIGN_OR_RETURN(begin, db.Prepare("BEGIN IMMEDIATE"));
  TRIB_ASSIGN_OR_RETURN(commit, db.Prepare("COMMIT"));
  TRIB_ASSIGN_OR_RETURN(del, db.Prepare("DELETE FROM alert_queue WHERE id = ?1"));
  TRIB_ASSIGN_OR_RETURN(fail, db.Prepare("UPDATE alert_queue SET attempts = ?2, next_attempt_us "
                                         "= ?3, last_error = ?4 WHERE id = ?1"));
  TRIB_ASSIGN_OR_RETURN(trim, db.Prepare("DELETE FROM alert_queue WHERE id IN (SELECT id FROM "
                                         "alert_queue WHERE channel = ?1 ORDER BY id LIMIT ?2)"));
  count_all.BindText(1, options.name);
  TRIB_ASSIGN_OR_RETURN(bool counted, count_all.Step());
  count = counted ? count_all.ColumnInt(0) : 0;
  queued_rows.store(static_cast<uint64_t>(count));
  db_ready = true;
  return Status::Ok();
}

Status AlertDispatcher::Worker::InTransaction(const std::function<Status()>& body) {
  TRIB_RETURN_IF_ERROR(begin.Run());
  Status st = body();
  if (st.ok()) return commit.Run();
  if (!db.autocommit()) (void)db.Exec("ROLLBACK");
  return st;
}

Status AlertDispatcher::Worker::Insert(const AlertMessage& m, TimeUs now,
                                       const std::string* error) {
  insert.BindText(1, options.name);
  insert.BindText(2, m.rule);
  insert.BindText(3, m.key);
  insert.BindText(4, m.severity);
  insert.BindText(5, m.state);
  insert.BindText(6, m.json);
  insert.BindText(7, m.subject);
  insert.BindText(8, m.text);
  insert.BindInt(9, error != nullptr ? now + Backoff(1) : now);
  insert.BindInt(10, now);
  insert.BindInt(11, error != nullptr ? 1 : 0);
  insert.BindTextOrNull(12, error != nullptr ? std::string_view(*error) : std::string_view());
  return insert.Run();
}

// Everything only in memory (the inbox, and the message being delivered from memory)
// goes into the queue file, in order, in one transaction synced to disk: a checkpoint
// taken after this covers no alert that a crash could lose.
Status AlertDispatcher::Worker::Persist() {
  std::lock_guard dl(db_mu);
  if (!db_ready) return Status::Ok();
  std::deque<AlertMessage> taken;
  std::optional<AlertMessage> delivering;
  {
    std::lock_guard lock(mu);
    taken.swap(inbox);
    if (in_flight && flight_row == 0) delivering = flight;
  }
  if (taken.empty() && !delivering) return Status::Ok();
  const TimeUs now = NowUs();
  int64_t row = 0;
  TRIB_RETURN_IF_ERROR(db.Exec("PRAGMA synchronous = FULL"));
  Status st = InTransaction([&]() -> Status {
    if (delivering) {
      TRIB_RETURN_IF_ERROR(Insert(*delivering, now, nullptr));
      row = sqlite3_last_insert_rowid(db.get());
    }
    for (const AlertMessage& m : taken) TRIB_RETURN_IF_ERROR(Insert(m, now, nullptr));
    return Status::Ok();
  });
  (void)db.Exec("PRAGMA synchronous = NORMAL");
  if (!st.ok()) {
    // Not written: back to the front of the inbox, in order.
    std::lock_guard lock(mu);
    inbox.insert(inbox.begin(), std::make_move_iterator(taken.begin()),
                 std::make_move_iterator(taken.end()));
    return st;
  }
  count += static_cast<int64_t>(taken.size()) + (delivering ? 1 : 0);
  queued_rows.store(static_cast<uint64_t>(count));
  std::lock_guard lock(mu);
  if (delivering) flight_row = row;
  return Status::Ok();
}

void AlertDispatcher::Worker::Run() {
  Status st = Loop();
  if (!st.ok()) {
    spdlog::error("alert channel {}: {}; its alerts are no longer delivered", options.name,
                  st.ToString());
    std::lock_guard lock(mu);
    stats.last_error = st.ToString();
  }
}

Status AlertDispatcher::Worker::Loop() {
  const std::string& name = options.name;
  while (true) {
    // Nothing queued before these: deliver them straight from memory, one at a time, in
    // order, and keep in the queue file only what is left when a delivery fails or the
    // turn has taken kDirectBudget (a slow channel). On a healthy channel an alert then
    // costs no database write (the WAL's commits and checkpoint fsyncs were most of its
    // latency). Persist may write the inbox and the message in flight meanwhile; the
    // outcome of the delivery then goes to that row.
    const TimeUs turn = NowUs();
    std::string direct_error;
    std::unique_lock dl(db_mu);
    while (count == 0 && NowUs() - turn < kDirectBudget) {
      {
        std::lock_guard lock(mu);
        if (inbox.empty()) break;
        flight = std::move(inbox.front());
        inbox.pop_front();
        in_flight = true;
        flight_row = 0;
      }
      dl.unlock();
      Status sent = channel->Deliver(flight);
      dl.lock();
      int64_t row = 0;
      {
        std::lock_guard lock(mu);
        row = flight_row;
        in_flight = false;
        flight_row = 0;
        if (sent.ok()) ++stats.delivered;
      }
      if (sent.ok()) {
        if (row != 0) {
          del.BindInt(1, row);
          TRIB_RETURN_IF_ERROR(del.Run());
          --count;
        }
        continue;
      }
      direct_error = sent.ToString();
      spdlog::warn("alert channel {}: attempt 1 failed: {} (kept, retried)", name, direct_error);
      {
        std::lock_guard lock(mu);
        ++stats.failed_attempts;
        stats.last_error = direct_error;
      }
      if (row != 0) {
        fail.BindInt(1, row);
        fail.BindInt(2, 1);
        fail.BindInt(3, NowUs() + Backoff(1));
        fail.BindText(4, direct_error);
        TRIB_RETURN_IF_ERROR(fail.Run());
      } else {
        // It waits for its retry ahead of the inbox.
        std::lock_guard lock(mu);
        inbox.push_front(std::move(flight));
      }
      break;
    }
    // Move what is left into the queue file (no transaction when nothing is left).
    std::deque<AlertMessage> taken;
    {
      std::lock_guard lock(mu);
      taken.swap(inbox);
    }
    const TimeUs now = NowUs();
    const bool first_failed = !direct_error.empty() && count == 0;
    Status txn = taken.empty() ? Status::Ok() : InTransaction([&]() -> Status {
      for (const AlertMessage& m : taken) {
        // The first one failed its direct delivery: it waits for its retry.
        const bool failed = first_failed && &m == &taken.front();
        TRIB_RETURN_IF_ERROR(Insert(m, now, failed ? &direct_error : nullptr));
      }
      return Status::Ok();
    });
    TRIB_RETURN_IF_ERROR(txn);
    count += static_cast<int64_t>(taken.size());
    // Bound the queue: drop the oldest beyond max_pending.
    if (count > options.max_pending) {
      int64_t over = count - options.max_pending;
      trim.BindText(1, name);
      trim.BindInt(2, over);
      TRIB_RETURN_IF_ERROR(trim.Run());
      count -= db.Changes();
      spdlog::warn("alert channel {}: queue full ({} pending), dropped the {} oldest", name, count,
                   over);
      std::lock_guard lock(mu);
      stats.dropped += static_cast<uint64_t>(over);
    }
    // Deliver what is due, oldest first, strictly in order: nothing passes an older alert
    // that waits for its retry (a resolved alert never arrives before its firing).
    bool delivered_any = true;
    while (delivered_any) {
      delivered_any = false;
      due.BindText(1, name);
      due.BindInt(2, NowUs());
      struct Row {
        int64_t id, attempts;
        AlertMessage m;
      };
      std::vector<Row> rows;
      while (true) {
        TRIB_ASSIGN_OR_RETURN(bool has, due.Step());
        if (!has) break;
        Row r;
        r.id = due.ColumnInt(0);
        r.m.rule = due.ColumnText(1);
        r.m.key = due.ColumnText(2);
        r.m.severity = due.ColumnText(3);
        r.m.state = due.ColumnText(4);
        r.m.json = due.ColumnText(5);
        r.m.subject = due.ColumnText(6);
        r.m.text = due.ColumnText(7);
        r.attempts = due.ColumnInt(8);
        rows.push_back(std::move(r));
      }
      due.Reset();
      std::vector<int64_t> done;
      // Delivered rows are deleted together after the batch (a crash before that
      // delivers them again: at least once, as before).
      auto forget_done = [&]() -> Status {
        if (done.empty()) return Status::Ok();
        Status deleted = InTransaction([&]() -> Status {
          for (int64_t id : done) {
            del.BindInt(1, id);
            TRIB_RETURN_IF_ERROR(del.Run());
          }
          return Status::Ok();
        });
        TRIB_RETURN_IF_ERROR(deleted);
        count -= static_cast<int64_t>(done.size());
        std::lock_guard lock(mu);
        stats.delivered += done.size();
        done.clear();
        return Status::Ok();
      };
      for (Row& r : rows) {
        dl.unlock();
        Status st = channel->Deliver(r.m);
        dl.lock();
        if (st.ok()) {
          done.push_back(r.id);
          delivered_any = true;
          continue;
        }
        int64_t attempts = r.attempts + 1;
        std::string err = st.ToString();
        fail.BindInt(1, r.id);
        fail.BindInt(2, attempts);
        fail.BindInt(3, NowUs() + Backoff(attempts));
        fail.BindText(4, err);
        TRIB_RETURN_IF_ERROR(fail.Run());
        if (attempts == 1 || attempts % 10 == 0) {
          spdlog::warn("alert channel {}: attempt {} failed: {} (kept, retried)", name, attempts,
                       err);
        }
        std::lock_guard lock(mu);
        ++stats.failed_attempts;
        stats.last_error = err;
        break;  // keep order: later rows wait for this one's retry
      }
      TRIB_RETURN_IF_ERROR(forget_done());
    }
    next.BindText(1, name);
    TRIB_ASSIGN_OR_RETURN(bool row, next.Step());
    TimeUs next_due = row && !next.ColumnIsNull(0) ? next.ColumnInt(0) : kMaxTime;
    next.Reset();
    queued_rows.store(static_cast<uint64_t>(count));
    const int64_t pending_rows = count;
    dl.unlock();
    std::unique_lock lock(mu);
    if (stop && (NowUs() >= drain_deadline || (pending_rows == 0 && inbox.empty()))) break;
    if (!inbox.empty()) continue;
    TimeUs wake = std::min(next_due, stop ? drain_deadline : kMaxTime);
    TimeUs wait_us =
        wake == kMaxTime ? 1000 * kMicrosPerMilli : std::max<TimeUs>(wake - NowUs(), 0);
    wait_us = std::min<TimeUs>(wait_us, 1000 * kMicrosPerMilli);
    if (wait_us > 0) {
      cv.wait_for(lock, std::chrono::microseconds(wait_us),
                  [&] { return !inbox.empty() || (stop && drain_deadline <= NowUs()); });
    }
  }
  return Status::Ok();
}

// ---- the dispatcher --------------------------------------------------------------

namespace {

Result<std::unique_ptr<AlertChannel>> MakeChannel(const OptionReader& o, const std::string& type) {
  if (type == "mqtt") {
    TRIB_ASSIGN_OR_RETURN(MqttConnectOptions c, ParseMqttConnectOptions(o));
    if (c.client_id.empty()) c.clean_session = true;
    TRIB_ASSIGN_OR_RETURN(std::string topic, o.GetString("topic"));
    TRIB_ASSIGN_OR_RETURN(int64_t qos, o.GetInt("qos"));
    TRIB_ASSIGN_OR_RETURN(bool retain, o.GetBool("retain"));
    return std::unique_ptr<AlertChannel>(
        new MqttChannel(std::move(c), topic, static_cast<int>(qos), retain));
  }
  if (type == "webhook") {
    TRIB_ASSIGN_OR_RETURN(std::string url, o.GetString("url"));
    if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
      return o.Error("url", "expected an http:// or https:// URL, got '" + url + "'");
    }
    TRIB_ASSIGN_OR_RETURN(std::vector<std::string> headers, o.GetStringList("headers"));
    for (const std::string& h : headers) {
      if (h.find(':') == std::string::npos) {
        return o.Error("headers", "expected 'Name: value', got '" + h + "'");
      }
    }
    TRIB_ASSIGN_OR_RETURN(DurationUs timeout, o.GetDuration("timeout"));
    return std::unique_ptr<AlertChannel>(new WebhookChannel(url, headers, timeout));
  }
  SmtpSender::Options s;
  TRIB_ASSIGN_OR_RETURN(s.url, o.GetString("url"));
  if (s.url.rfind("smtp://", 0) != 0 && s.url.rfind("smtps://", 0) != 0) {
    return o.Error("url", "expected an smtp:// or smtps:// URL, got '" + s.url + "'");
  }
  TRIB_ASSIGN_OR_RETURN(s.from, o.GetString("from"));
  TRIB_ASSIGN_OR_RETURN(std::vector<std::string> to, o.GetStringList("to"));
  if (to.empty()) return o.Error("to", "needs at least one recipient");
  TRIB_ASSIGN_OR_RETURN(s.username, o.GetString("username"));
  TRIB_ASSIGN_OR_RETURN(s.password, o.GetString("password"));
  TRIB_ASSIGN_OR_RETURN(s.starttls, o.GetString("starttls"));
  TRIB_ASSIGN_OR_RETURN(s.ca_file, o.GetString("ca_file"));
  TRIB_ASSIGN_OR_RETURN(s.timeout, o.GetDuration("timeout"));
  return std::unique_ptr<AlertChannel>(new EmailChannel(std::move(s), std::move(to)));
}

}  // namespace

Result<std::unique_ptr<AlertDispatcher>> AlertDispatcher::Make(
    const PipelineConfig& config, const std::vector<std::string>& rule_names,
    const std::vector<std::vector<std::string>>& rule_channels) {
  std::unique_ptr<AlertDispatcher> d(new AlertDispatcher());
  const OptionReader& alerts = config.alerts;
  YAML::Node list = alerts.Node("channels");
  std::set<std::string> names;
  if (list.IsDefined() && !list.IsNull()) {
    if (!list.IsSequence()) return alerts.Error("channels", "expected a list");
    size_t i = 0;
    for (const YAML::Node& item : list) {
      std::string path = "alerts.channels[" + std::to_string(i++) + "]";
      OptionReader common(item, alerts.file(), path, {&AlertChannelCommonSpec()});
      if (!item.IsMap()) return common.Error("", "expected a mapping with name and type");
      TRIB_ASSIGN_OR_RETURN(std::string type, common.GetString("type"));
      const SectionSpec* spec = type == "mqtt"      ? &AlertMqttChannelSpec()
                                : type == "webhook" ? &AlertWebhookChannelSpec()
                                                    : &AlertEmailChannelSpec();
      OptionReader o(item, alerts.file(), path, {&AlertChannelCommonSpec(), spec});
      TRIB_RETURN_IF_ERROR(o.CheckKeys());
      auto w = std::make_unique<Worker>();
      ChannelOptions& co = w->options;
      co.type = type;
      TRIB_ASSIGN_OR_RETURN(co.name, o.GetString("name"));
      if (!names.insert(co.name).second) {
        return o.Error("name", "duplicate channel name '" + co.name + "'");
      }
      TRIB_ASSIGN_OR_RETURN(co.retry_initial, o.GetDuration("retry_initial"));
      TRIB_ASSIGN_OR_RETURN(co.retry_max, o.GetDuration("retry_max"));
      TRIB_ASSIGN_OR_RETURN(co.max_pending, o.GetInt("max_pending"));
      TRIB_ASSIGN_OR_RETURN(co.severities, o.GetStringList("severities"));
      TRIB_ASSIGN_OR_RETURN(co.resolved, o.GetBool("resolved"));
      TRIB_ASSIGN_OR_RETURN(w->channel, MakeChannel(o, type));
      w->stats.name = co.name;
      d->workers_.push_back(std::move(w));
    }
  }
  for (size_t i = 0; i < rule_names.size(); ++i) {
    for (const std::string& c : rule_channels[i]) {
      if (names.count(c) == 0) {
        return alerts.Error("rules", "rule '" + rule_names[i] + "' names channel '" + c +
                                         "', which is not in alerts.channels");
      }
    }
    d->routes_.emplace_back(rule_names[i], rule_channels[i]);
  }
  return d;
}

std::unique_ptr<AlertDispatcher> AlertDispatcher::FromChannels(
    std::vector<std::pair<ChannelOptions, std::unique_ptr<AlertChannel>>> channels) {
  std::unique_ptr<AlertDispatcher> d(new AlertDispatcher());
  for (auto& [o, c] : channels) {
    auto w = std::make_unique<Worker>();
    w->options = o;
    w->channel = std::move(c);
    w->stats.name = o.name;
    d->workers_.push_back(std::move(w));
  }
  return d;
}

AlertDispatcher::~AlertDispatcher() {
  Stop(0);
}

Status AlertDispatcher::Open(const std::string& queue_file) {
  for (auto& w : workers_) {
    w->queue_file = queue_file;
    Status st = w->OpenQueue();
    if (!st.ok()) {
      spdlog::error("alert channel {}: {}; its alerts are no longer delivered", w->options.name,
                    st.ToString());
      std::lock_guard lock(w->mu);
      w->stats.last_error = st.ToString();
      continue;
    }
    Worker* raw = w.get();
    w->thread = std::thread([raw] { raw->Run(); });
  }
  return Status::Ok();
}

Status AlertDispatcher::Persist() {
  Status first;
  for (auto& w : workers_) {
    Status st = w->Persist();
    if (!st.ok() && first.ok()) first = st.WithContext("alert channel " + w->options.name);
  }
  return first;
}

void AlertDispatcher::Submit(const AlertEvent& e) {
  if (workers_.empty()) return;
  const std::vector<std::string>* route = nullptr;
  for (const auto& [rule, channels] : routes_) {
    if (rule == e.rule.view()) route = &channels;
  }
  std::optional<AlertMessage> msg;
  for (auto& w : workers_) {
    const ChannelOptions& o = w->options;
    if (route != nullptr && !route->empty() &&
        std::find(route->begin(), route->end(), o.name) == route->end()) {
      continue;
    }
    if (!o.severities.empty() && std::find(o.severities.begin(), o.severities.end(),
                                           e.severity.view()) == o.severities.end()) {
      continue;
    }
    if (!o.resolved && e.state == AlertState::kResolved) continue;
    if (!msg) msg = MakeAlertMessage(e);
    {
      std::lock_guard lock(w->mu);
      w->inbox.push_back(*msg);
    }
    w->cv.notify_one();
  }
}

void AlertDispatcher::Stop(DurationUs wait) {
  for (auto& w : workers_) {
    std::lock_guard lock(w->mu);
    w->stop = true;
    w->drain_deadline = NowUs() + wait;
  }
  for (auto& w : workers_) {
    w->cv.notify_all();
    if (w->thread.joinable()) w->thread.join();
    // What came in after the worker's last turn stays in the queue file.
    Status st = w->Persist();
    if (!st.ok()) spdlog::error("alert channel {}: {}", w->options.name, st.ToString());
  }
}

std::vector<ChannelStats> AlertDispatcher::Stats() const {
  std::vector<ChannelStats> out;
  for (const auto& w : workers_) {
    std::lock_guard lock(w->mu);
    ChannelStats s = w->stats;
    s.pending = w->queued_rows.load() + w->inbox.size();
    out.push_back(s);
  }
  return out;
}

}  // namespace tributary
