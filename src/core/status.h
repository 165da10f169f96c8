// Status and Result<T>: expected failures as values.
//
// A bad payload, a broker that is down or a database timeout is not exceptional in
// a sensor pipeline; those travel as Status values. `retryable()` tells a sink or a
// source whether backing off and trying again can help (a lost connection) or not
// (a malformed record). Exceptions are kept for start-up failures the program
// cannot go on from (bad configuration), and library code never exits.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace tributary {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  ///< bad input from a user or a device
  kNotFound,
  kIoError,
  kUnavailable,  ///< a remote peer is down or refused; usually retryable
  kTimeout,
  kCorrupt,  ///< stored state or a file does not parse
  kCancelled,
  kInternal,
};

/// Name a status code in lower case ("invalid_argument").
const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message, bool retryable = false)
      : code_(code), retryable_(retryable), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status Invalid(std::string msg) { return {StatusCode::kInvalidArgument, std::move(msg)}; }
  static Status NotFound(std::string msg) { return {StatusCode::kNotFound, std::move(msg)}; }
  static Status Io(std::string msg, bool retryable = false) {
    return {StatusCode::kIoError, std::move(msg), retryable};
  }
  static Status Unavailable(std::string msg) {
    return {StatusCode::kUnavailable, std::move(msg), true};
  }
  static Status Timeout(std::string msg) { return {StatusCode::kTimeout, std::move(msg), true}; }
  static Status Corrupt(std::string msg) { return {StatusCode::kCorrupt, std::move(msg)}; }
  static Status Cancelled(std::string msg) { return {StatusCode::kCancelled, std::move(msg)}; }
  static Status Internal(std::string msg) { return {StatusCode::kInternal, std::move(msg)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  bool retryable() const { return retryable_; }
  const std::string& message() const { return message_; }
  /// Render as "io_error: message" (or "ok").
  std::string ToString() const;

  /// Prefix the message with context, e.g. the file and line being read.
  Status WithContext(const std::string& context) const {
    if (ok()) return *this;
    return Status(code_, context + ": " + message_, retryable_);
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  bool retryable_ = false;
  std::string message_;
};

/// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok());
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T value_or(T fallback) const { return ok() ? std::get<T>(v_) : fallback; }

 private:
  std::variant<T, Status> v_;
};

}  // namespace tributary

/// Return the Status of `expr` from the enclosing function when it is not ok.
#define TRIB_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::tributary::Status trib_status_ = (expr);   \
    if (!trib_status_.ok()) return trib_status_; \
  } while (0)

#define TRIB_CONCAT_INNER(a, b) a##b
#define TRIB_CONCAT(a, b) TRIB_CONCAT_INNER(a, b)
/// Assign the value of a Result expression to `lhs`, or return its Status.
#define TRIB_ASSIGN_OR_RETURN(lhs, expr) \
  TRIB_ASSIGN_OR_RETURN_IMPL(TRIB_CONCAT(trib_result_, __LINE__), lhs, expr)
#define TRIB_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
