// Subscribers of the daily summary, kept in a SQLite table of the local database.
//
//   subscriptions(id INTEGER PRIMARY KEY, email, kind, zone, send_at 'HH:MM',
//                 token UNIQUE, created_at_us, last_sent_day 'YYYY-MM-DD' or '')
//   UNIQUE (email, kind, zone): subscribing twice keeps one row.
//
// The token is a per-subscriber secret (128 random bits, hex) that the unsubscribe link
// carries; it is never shown by the API's listing. Email addresses are stored as given
// but compared case-insensitively in the domain part.
//
// Threading: every method takes the store's mutex; the connection is used by one thread
// at a time.
#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/time.h"
#include "io/sinks/sqlite_util.h"

namespace tributary {

struct Subscription {
  int64_t id = 0;
  std::string email;
  std::string kind;  ///< group_by: zone, device, h3, all
  std::string zone;  ///< the group key
  std::string send_at;
  std::string token;
  TimeUs created_at = 0;
  std::string last_sent_day;
};

/// Whether `email` looks like a deliverable address (local@domain.tld, no spaces, no
/// header-breaking characters).
bool ValidSubscriberEmail(std::string_view email);

class SubscriptionStore {
 public:
  /// Open (creating) the table in the SQLite file `path`.
  Status Open(const std::string& path);
  /// Add a subscriber; `created` is false when (email, kind, zone) was already there
  /// (its row is returned unchanged). `last_sent_day` starts as given (the caller marks
  /// today as done when the send time has already passed).
  Result<Subscription> Add(const std::string& email, const std::string& kind,
                           const std::string& zone, const std::string& send_at,
                           const std::string& last_sent_day, TimeUs now, bool& created);
  Result<std::vector<Subscription>> List();
  /// Remove the subscriber holding `token`; nullopt when none does.
  Result<std::optional<Subscription>> RemoveByToken(const std::string& token);
  /// Remove by id; false when there was none.
  Result<bool> RemoveById(int64_t id);
  /// Record that the summary of local date `day` went out.
  Status MarkSent(int64_t id, const std::string& day);

 private:
  Result<std::vector<Subscription>> Select(const std::string& where);
  std::mutex mu_;
  SqliteDb db_;
};

}  // namespace tributary
