// Server-Sent Events: a bounded, numbered log of live events.
//
// Every published event gets the next id (1, 2, 3, ...). The log keeps the last
// `capacity` events so that a client reconnecting with `Last-Event-ID: n` receives every
// event after n that is still kept, then the live ones; events older than the buffer are
// gone (the client sees the jump in ids). Thread-safe: publishers (the sink thread) and
// readers (HTTP worker threads) share one mutex held only to copy events.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace tributary {

struct SseEvent {
  uint64_t id = 0;
  std::string type;  ///< the `event:` field ("window", "quarantine", ...)
  std::string data;  ///< one line of JSON
  /// For `window` events: the result's group_by and group, so a filtered stream can
  /// pass some windows without parsing the JSON. Empty for other events.
  std::string group_by;
  std::string group;
};

/// Which events one client wants (the query of /api/events). Empty sets pass everything:
/// the default stream is every event. `group_bys` and `groups` only narrow `window`
/// events: a window passes when its group_by is in `group_bys` or its group in `groups`
/// (when both are empty every window passes).
struct SseFilter {
  std::set<std::string> types;
  std::set<std::string> group_bys;
  std::set<std::string> groups;

  bool Matches(const SseEvent& event) const;
};

/// What a filtered read returns: the matching events and the newest id it looked at
/// (the next read starts after it, so skipped events are not examined again).
struct SseFilteredRead {
  std::vector<SseEvent> events;
  uint64_t last_id = 0;
};

/// Render one event in the text/event-stream format (id, event, data, blank line).
std::string FormatSseEvent(const SseEvent& event);

class EventLog {
 public:
  explicit EventLog(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  /// Append an event and wake waiting readers; returns its id.
  uint64_t Publish(std::string_view type, std::string data);
  /// Publish a `window`-like event tagged with its group_by and group (see SseFilter).
  uint64_t Publish(std::string_view type, std::string data, std::string_view group_by,
                   std::string_view group);
  /// Events with id > `after` still kept, oldest first, at most `max_events`. Waits up to
  /// `timeout` when there are none yet; returns empty on timeout or after Close().
  std::vector<SseEvent> ReadAfter(uint64_t after, size_t max_events,
                                  std::chrono::milliseconds timeout);
  /// Like ReadAfter, but only events matching `filter`, at most `max_events` of them.
  /// Non-matching events are skipped under the lock, without copying.
  SseFilteredRead ReadMatching(uint64_t after, size_t max_events, std::chrono::milliseconds timeout,
                               const SseFilter& filter);
  /// Wake every reader and make further reads return at once.
  void Close();
  bool closed() const;
  /// Id of the newest event (0 when none was published).
  uint64_t last_id() const;
  /// Id of the oldest kept event (0 when empty).
  uint64_t first_id() const;

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<SseEvent> events_;
  uint64_t next_id_ = 1;
  bool closed_ = false;
};

}  // namespace tributary
