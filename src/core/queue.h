// A bounded blocking queue joining two pipeline stages.
//
// Push blocks while the queue is full: a slow consumer pushes back on its producer
// instead of growing memory, and nothing is ever dropped. Close() wakes everyone:
// after it, Push fails and Pop drains what is left, then reports end of stream.
// Any number of producers and consumers may use one queue concurrently.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>

namespace tributary {

template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  /// Enqueue, blocking while full. Returns false (and drops nothing: the item is
  /// left with the caller) when the queue was closed.
  bool Push(T& item) {
    std::unique_lock lock(mu_);
    if (items_.size() >= capacity_) {
      ++full_waits_;
      not_full_.wait(lock, [&] { return items_.size() < capacity_ || closed_; });
    }
    if (closed_) return false;
    items_.push_back(std::move(item));
    not_empty_.notify_one();
    return true;
  }
  bool Push(T&& item) { return Push(item); }

  /// Dequeue, blocking while empty; nullopt once closed and drained.
  std::optional<T> Pop() {
    std::unique_lock lock(mu_);
    not_empty_.wait(lock, [&] { return !items_.empty() || closed_; });
    return TakeLocked();
  }

  /// Dequeue, waiting at most `timeout`; nullopt on timeout or closed-and-drained
  /// (tell them apart with closed()).
  template <typename Rep, typename Period>
  std::optional<T> PopFor(std::chrono::duration<Rep, Period> timeout) {
    std::unique_lock lock(mu_);
    not_empty_.wait_for(lock, timeout, [&] { return !items_.empty() || closed_; });
    return TakeLocked();
  }

  void Close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  bool closed() const {
    std::lock_guard lock(mu_);
    return closed_ && items_.empty();
  }
  size_t size() const {
    std::lock_guard lock(mu_);
    return items_.size();
  }
  size_t capacity() const { return capacity_; }
  /// How many pushes had to wait for room (a backpressure indicator).
  uint64_t full_waits() const {
    std::lock_guard lock(mu_);
    return full_waits_;
  }

 private:
  std::optional<T> TakeLocked() {
    if (items_.empty()) return std::nullopt;
    std::optional<T> out(std::move(items_.front()));
    items_.pop_front();
    not_full_.notify_one();
    return out;
  }

  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  std::deque<T> items_;
  bool closed_ = false;
  uint64_t full_waits_ = 0;
};

}  // namespace tributary
