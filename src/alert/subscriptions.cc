#include "alert/subscriptions.h"

#include <cctype>
#include <random>

namespace tributary {

namespace {

std::string NewToken() {
  std::random_device rd;  // /dev/urandom on Linux
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 4; ++i) {
    uint32_t v = rd();
    for (int j = 0; j < 8; ++j) {
      out.push_back(kHex[v & 15]);
      v >>= 4;
    }
  }
  return out;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Local part as given, domain in lower case.
std::string NormalEmail(const std::string& email) {
  size_t at = email.rfind('@');
  return email.substr(0, at + 1) + Lower(email.substr(at + 1));
}

}  // namespace

bool ValidSubscriberEmail(std::string_view email) {
  if (email.size() < 5 || email.size() > 254) return false;
  size_t at = email.rfind('@');
  if (at == std::string_view::npos || at == 0 || email.find('@') != at) return false;
  std::string_view domain = email.substr(at + 1);
  size_t dot = domain.find('.');
  if (dot == std::string_view::npos || dot == 0 || domain.back() == '.') return false;
  for (char c : email) {
    auto u = static_cast<unsigned char>(c);
    if (u <= ' ' || u == 0x7f || c == '<' || c == '>' || c == ',' || c == ';' || c == '"' ||
        c == '(' || c == ')' || c == '\\') {
      return false;
    }
  }
  return true;
}

Status SubscriptionStore::Open(const std::string& path) {
  std::lock_guard lock(mu_);
  TRIB_RETURN_IF_ERROR(db_.Open(path));
  (void)db_.QueryText("PRAGMA journal_mode = WAL");
  return db_.Exec(R"(
CREATE TABLE IF NOT EXISTS subscriptions (
  id INTEGER PRIMARY KEY,
  email TEXT NOT NULL,
  kind TEXT NOT NULL,
  zone TEXT NOT NULL,
  send_at TEXT NOT NULL,
  token TEXT NOT NULL UNIQUE,
  created_at_us INTEGER NOT NULL,
  last_sent_day TEXT NOT NULL DEFAULT '',
  UNIQUE (email, kind, zone)
))");
}

Result<std::vector<Subscription>> SubscriptionStore::Select(const std::string& where) {
  TRIB_ASSIGN_OR_RETURN(
      SqliteStatement st,
      db_.Prepare("SELECT id, email, kind, zone, send_at, token, created_at_us, last_sent_day "
                  "FROM subscriptions " +
                  where + " ORDER BY id"));
  std::vector<Subscription> out;
  while (true) {
    TRIB_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    Subscription s;
    s.id = st.ColumnInt(0);
    s.email = st.ColumnText(1);
    s.kind = st.ColumnText(2);
    s.zone = st.ColumnText(3);
    s.send_at = st.ColumnText(4);
    s.token = st.ColumnText(5);
    s.created_at = st.ColumnInt(6);
    s.last_sent_day = st.ColumnText(7);
    out.push_back(std::move(s));
  }
  return out;
}

Result<Subscription> SubscriptionStore::Add(const std::string& email, const std::string& kind,
                                            const std::string& zone, const std::string& send_at,
                                            const std::string& last_sent_day, TimeUs now,
                                            bool& created) {
  if (!ValidSubscriberEmail(email)) return Status::Invalid("not an email address: '" + email + "'");
  std::lock_guard lock(mu_);
  std::string normal = NormalEmail(email);
  TRIB_ASSIGN_OR_RETURN(
      SqliteStatement ins,
      db_.Prepare("INSERT INTO subscriptions (email, kind, zone, send_at, token, created_at_us, "
                  "last_sent_day) VALUES (?, ?, ?, ?, ?, ?, ?) "
                  "ON CONFLICT (email, kind, zone) DO NOTHING"));
  std::string token = NewToken();
  ins.BindText(1, normal);
  ins.BindText(2, kind);
  ins.BindText(3, zone);
  ins.BindText(4, send_at);
  ins.BindText(5, token);
  ins.BindInt(6, now);
  ins.BindText(7, last_sent_day);
  TRIB_RETURN_IF_ERROR(ins.Run());
  created = db_.Changes() > 0;
  TRIB_ASSIGN_OR_RETURN(SqliteStatement sel,
                        db_.Prepare("SELECT id FROM subscriptions WHERE email = ? AND kind = ? "
                                    "AND zone = ?"));
  sel.BindText(1, normal);
  sel.BindText(2, kind);
  sel.BindText(3, zone);
  TRIB_ASSIGN_OR_RETURN(bool row, sel.Step());
  if (!row) return Status::Internal("subscription vanished after insert");
  int64_t id = sel.ColumnInt(0);
  TRIB_ASSIGN_OR_RETURN(std::vector<Subscription> rows, Select("WHERE id = " + std::to_string(id)));
  if (rows.empty()) return Status::Internal("subscription vanished after insert");
  return rows.front();
}

Result<std::vector<Subscription>> SubscriptionStore::List() {
  std::lock_guard lock(mu_);
  return Select("");
}

Result<std::optional<Subscription>> SubscriptionStore::RemoveByToken(const std::string& token) {
  std::lock_guard lock(mu_);
  // Tokens are hex: anything else cannot match and never reaches the SQL text.
  if (token.empty() || token.size() > 64 ||
      token.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return std::optional<Subscription>();
  }
  TRIB_ASSIGN_OR_RETURN(std::vector<Subscription> rows, Select("WHERE token = '" + token + "'"));
  if (rows.empty()) return std::optional<Subscription>();
  TRIB_RETURN_IF_ERROR(
      db_.Exec("DELETE FROM subscriptions WHERE id = " + std::to_string(rows.front().id)));
  return std::optional<Subscription>(rows.front());
}

Result<bool> SubscriptionStore::RemoveById(int64_t id) {
  std::lock_guard lock(mu_);
  TRIB_RETURN_IF_ERROR(db_.Exec("DELETE FROM subscriptions WHERE id = " + std::to_string(id)));
  return db_.Changes() > 0;
}

Status SubscriptionStore::MarkSent(int64_t id, const std::string& day) {
  std::lock_guard lock(mu_);
  TRIB_ASSIGN_OR_RETURN(SqliteStatement st,
                        db_.Prepare("UPDATE subscriptions SET last_sent_day = ? WHERE id = ?"));
  st.BindText(1, day);
  st.BindInt(2, id);
  return st.Run();
}

}  // namespace tributary
