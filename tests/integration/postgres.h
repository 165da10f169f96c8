// A real PostgreSQL 15 server with PostGIS for tests: initdb into a temporary folder,
// postgres on a free loopback port (and a Unix socket in the folder), stopped with a
// fast shutdown on destruction. PostgreSQL refuses to run as root; when the tests run
// as root, the server runs as the `postgres` system user, which owns the folder.
#pragma once

#include <sys/types.h>

#include <string>

#include "test_util.h"

namespace tributary::testing {

class PostgresServer {
 public:
  /// The folder of the server binaries, or "" when PostgreSQL 15 is not installed.
  static std::string BinDir();

  PostgresServer();
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  /// initdb (the first time), start and wait until it accepts connections; then create
  /// the database `tributary` with PostGIS. "" or an error text.
  std::string Start();
  /// Fast shutdown (SIGINT) and wait for exit. The data folder is kept for a Start.
  void Stop();
  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  /// libpq connection string of the test database.
  std::string conninfo() const;
  /// The server log.
  std::string Log() const;

 private:
  TempDir dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  bool initialized_ = false;
  uid_t uid_ = 0;  // the user the server runs as
  gid_t gid_ = 0;
};

}  // namespace tributary::testing
