// The daily-summary subscriptions of a running server: the API's side (subscribe, list,
// remove, unsubscribe by token) and the schedule that mails the summaries.
//
// Built by ApiServer when `alerts.summary.url` is set (alert/summary.h describes the
// mails and the schedule). One worker thread sends the welcome mails (queued by
// Subscribe, so a slow SMTP server never holds an HTTP request; a failed one is retried
// 5 times with backoff, then logged) and, every second, the summaries that are due. A
// summary that fails is retried a minute later; the day is marked done only once the
// SMTP server accepted the mail.
//
// Threading: the public methods are thread-safe (HTTP worker threads call them).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "alert/subscriptions.h"
#include "alert/summary.h"
#include "server/live_state.h"

namespace tributary {

class SubscriptionService {
 public:
  /// Open the store and start the worker. `base_url` prefixes the unsubscribe links.
  static Result<std::unique_ptr<SubscriptionService>> Start(SummaryOptions options,
                                                            const LiveState& live,
                                                            const std::string& data_dir,
                                                            std::string base_url);
  ~SubscriptionService();
  SubscriptionService(const SubscriptionService&) = delete;
  SubscriptionService& operator=(const SubscriptionService&) = delete;

  /// Subscribe from a JSON body {"email", "kind" (default zone), "zone", "time" (HH:MM,
  /// optional)}. `created` is false when the subscriber was already there.
  Result<Subscription> Subscribe(const std::string& json_body, bool& created);
  Result<std::vector<Subscription>> List() { return store_.List(); }
  Result<std::optional<Subscription>> Unsubscribe(const std::string& token) {
    return store_.RemoveByToken(token);
  }
  Result<bool> Remove(int64_t id) { return store_.RemoveById(id); }
  /// Send every summary due at `now`; returns how many were accepted by the SMTP server.
  size_t RunDue(TimeUs now);
  std::string UnsubscribeUrl(const Subscription& s) const;
  const SummaryOptions& options() const { return options_; }
  /// Subscriptions as the API lists them (without their tokens).
  static std::string ListJson(const std::vector<Subscription>& subs);
  static std::string OneJson(const Subscription& s, bool created);

 private:
  SubscriptionService(SummaryOptions options, const LiveState& live, std::string base_url);
  void Loop();
  SummaryInput InputFor(const Subscription& s) const;
  Status SendMail(const Subscription& s, const SummaryMail& mail);

  const SummaryOptions options_;
  const LiveState& live_;
  const std::string base_url_;
  SmtpSender sender_;
  SubscriptionStore store_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  struct PendingWelcome {
    Subscription sub;
    int attempts = 0;
    TimeUs next_try = 0;
  };
  std::deque<PendingWelcome> welcome_;
  std::unordered_map<int64_t, TimeUs> retry_after_;  ///< summaries that failed, by id
  std::mutex due_mu_;                                ///< one RunDue at a time
  std::thread thread_;
};

}  // namespace tributary
