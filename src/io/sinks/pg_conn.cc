#include "io/sinks/pg_conn.h"

#include <libpq-fe.h>

#include <cstdlib>
#include <cstring>

namespace tributary {

namespace {

void IgnoreNotice(void* /*arg*/, const char* /*message*/) {}

// SQLSTATE classes worth retrying: the transaction may pass when tried again.
bool RetryableSqlState(const char* state) {
  if (state == nullptr) return true;  // no server answer: a client or connection failure
  std::string_view s(state);
  return s.starts_with("08") ||   // connection exception
         s == "40001" ||          // serialization_failure
         s == "40P01" ||          // deadlock_detected
         s == "53300" ||          // too_many_connections
         s.starts_with("57P") ||  // admin/crash shutdown, cannot connect now
         s == "55P03";            // lock_not_available
}

}  // namespace

void PgResult::Free(pg_result* r) {
  if (r != nullptr) PQclear(r);
}

int PgResult::rows() const {
  return r_ ? PQntuples(r_.get()) : 0;
}

std::string PgResult::Value(int row, int col) const {
  if (!r_ || PQgetisnull(r_.get(), row, col)) return {};
  return std::string(PQgetvalue(r_.get(), row, col),
                     static_cast<size_t>(PQgetlength(r_.get(), row, col)));
}

bool PgResult::IsNull(int row, int col) const {
  return !r_ || PQgetisnull(r_.get(), row, col) != 0;
}

uint64_t PgResult::Affected() const {
  if (!r_) return 0;
  const char* n = PQcmdTuples(r_.get());
  return n == nullptr || *n == '\0' ? 0 : std::strtoull(n, nullptr, 10);
}

PgConnection::~PgConnection() {
  Close();
}

void PgConnection::Close() {
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
}

bool PgConnection::connected() const {
  return conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK;
}

int PgConnection::server_major() const {
  return conn_ == nullptr ? 0 : PQserverVersion(conn_) / 10000;
}

Status PgConnection::Connect(const std::string& conninfo, const std::string& application_name,
                             int connect_timeout_s) {
  Close();
  // Defaults first: with expand_dbname the connection string's own values override them.
  std::string timeout = std::to_string(connect_timeout_s);
  const char* keys[] = {"application_name", "connect_timeout", "dbname", nullptr};
  const char* values[] = {application_name.c_str(), timeout.c_str(), conninfo.c_str(), nullptr};
  conn_ = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (conn_ == nullptr) return Status::Unavailable("postgres: out of memory connecting");
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(conn_);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    Close();
    // A wrong password or database name does not heal by itself, but a server that is
    // starting up or down does; libpq does not tell them apart reliably, so retry both.
    return Status::Unavailable("postgres: cannot connect: " + msg);
  }
  PQsetNoticeProcessor(conn_, &IgnoreNotice, nullptr);
  return Status::Ok();
}

Status PgConnection::LastError(std::string_view what, pg_result* result) const {
  std::string msg;
  const char* state = nullptr;
  if (result != nullptr) {
    msg = PQresultErrorMessage(result);
    state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  }
  last_sqlstate_ = state != nullptr ? state : "";
  if (msg.empty() && conn_ != nullptr) msg = PQerrorMessage(conn_);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  bool broken = conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK;
  bool retryable = broken || RetryableSqlState(state);
  std::string text = "postgres " + std::string(what) + ": " + msg;
  if (state != nullptr) text += " (SQLSTATE " + std::string(state) + ")";
  if (broken) return Status::Unavailable(text);
  return Status(StatusCode::kIoError, text, retryable);
}

Result<PgResult> PgConnection::Query(std::string_view sql) {
  if (conn_ == nullptr) return Status::Unavailable("postgres: not connected");
  std::string text(sql);
  PgResult r(PQexec(conn_, text.c_str()));
  ExecStatusType st = r.get() == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    std::string head = text.substr(0, std::min<size_t>(text.find_first_of("\n("), 60));
    return LastError(head, r.get());
  }
  return r;
}

Status PgConnection::Exec(std::string_view sql) {
  TRIB_ASSIGN_OR_RETURN(PgResult r, Query(sql));
  (void)r;
  return Status::Ok();
}

Result<int64_t> PgConnection::QueryInt(std::string_view sql) {
  TRIB_ASSIGN_OR_RETURN(PgResult r, Query(sql));
  if (r.rows() < 1 || r.IsNull(0, 0)) return Status::NotFound("postgres: query returned no value");
  return static_cast<int64_t>(std::strtoll(r.Value(0, 0).c_str(), nullptr, 10));
}

Result<uint64_t> PgConnection::CopyIn(std::string_view copy_sql, std::string_view data,
                                      std::string_view tail) {
  if (conn_ == nullptr) return Status::Unavailable("postgres: not connected");
  std::string text(copy_sql);
  PgResult start(PQexec(conn_, text.c_str()));
  if (start.get() == nullptr || PQresultStatus(start.get()) != PGRES_COPY_IN) {
    return LastError("COPY", start.get());
  }
  // Send in pieces of at most 1 MiB: PQputCopyData takes an int length.
  constexpr size_t kChunk = 1 << 20;
  for (std::string_view piece : {data, tail}) {
    for (size_t off = 0; off < piece.size(); off += kChunk) {
      size_t n = std::min(kChunk, piece.size() - off);
      if (PQputCopyData(conn_, piece.data() + off, static_cast<int>(n)) != 1) {
        return LastError("COPY data");
      }
    }
  }
  if (PQputCopyEnd(conn_, nullptr) != 1) return LastError("COPY end");
  uint64_t rows = 0;
  Status failure;
  while (pg_result* raw = PQgetResult(conn_)) {
    PgResult r(raw);
    if (PQresultStatus(raw) != PGRES_COMMAND_OK) {
      if (failure.ok()) failure = LastError("COPY", raw);
    } else {
      rows += r.Affected();
    }
  }
  if (!failure.ok()) return failure;
  return rows;
}

std::string PgQuoteIdent(std::string_view ident) {
  std::string out = "\"";
  for (char c : ident) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string PgQuoteLiteral(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out.push_back('\'');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

}  // namespace tributary
