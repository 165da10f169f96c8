#include "server/sse.h"

namespace tributary {

std::string FormatSseEvent(const SseEvent& event) {
  std::string out;
  out.reserve(event.data.size() + event.type.size() + 32);
  out += "id: ";
  out += std::to_string(event.id);
  out += "\nevent: ";
  out += event.type;
  // A data line must not contain a newline; JSON written by JsonWriter never does, but
  // split defensively so the stream cannot be corrupted.
  size_t begin = 0;
  while (true) {
    size_t nl = event.data.find('\n', begin);
    out += "\ndata: ";
    out.append(event.data, begin, nl == std::string::npos ? std::string::npos : nl - begin);
    if (nl == std::string::npos) break;
    begin = nl + 1;
  }
  out += "\n\n";
  return out;
}

bool SseFilter::Matches(const SseEvent& event) const {
  if (!types.empty() && types.count(event.type) == 0) return false;
  if (event.group_by.empty() || (group_bys.empty() && groups.empty())) return true;
  return group_bys.count(event.group_by) > 0 || groups.count(event.group) > 0;
}

uint64_t EventLog::Publish(std::string_view type, std::string data) {
  return Publish(type, std::move(data), {}, {});
}

uint64_t EventLog::Publish(std::string_view type, std::string data, std::string_view group_by,
                           std::string_view group) {
  uint64_t id;
  {
    std::lock_guard lock(mu_);
    id = next_id_++;
    events_.push_back(SseEvent{id, std::string(type), std::move(data), std::string(group_by),
                               std::string(group)});
    while (events_.size() > capacity_) events_.pop_front();
  }
  cv_.notify_all();
  return id;
}

std::vector<SseEvent> EventLog::ReadAfter(uint64_t after, size_t max_events,
                                          std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return closed_ || next_id_ - 1 > after; });
  std::vector<SseEvent> out;
  if (closed_ || events_.empty()) return out;
  // Ids in the deque are consecutive, so the first wanted one is found by arithmetic.
  uint64_t first = events_.front().id;
  size_t start = after < first ? 0 : static_cast<size_t>(after - first + 1);
  for (size_t i = start; i < events_.size() && out.size() < max_events; ++i) {
    out.push_back(events_[i]);
  }
  return out;
}

SseFilteredRead EventLog::ReadMatching(uint64_t after, size_t max_events,
                                       std::chrono::milliseconds timeout, const SseFilter& filter) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return closed_ || next_id_ - 1 > after; });
  SseFilteredRead out;
  out.last_id = after;
  if (closed_ || events_.empty()) return out;
  uint64_t first = events_.front().id;
  size_t start = after < first ? 0 : static_cast<size_t>(after - first + 1);
  for (size_t i = start; i < events_.size() && out.events.size() < max_events; ++i) {
    const SseEvent& e = events_[i];
    out.last_id = e.id;
    if (filter.Matches(e)) out.events.push_back(e);
  }
  return out;
}

void EventLog::Close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

bool EventLog::closed() const {
  std::lock_guard lock(mu_);
  return closed_;
}

uint64_t EventLog::last_id() const {
  std::lock_guard lock(mu_);
  return next_id_ - 1;
}

uint64_t EventLog::first_id() const {
  std::lock_guard lock(mu_);
  return events_.empty() ? 0 : events_.front().id;
}

}  // namespace tributary
