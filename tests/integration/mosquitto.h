// A real Mosquitto broker for tests: writes a mosquitto.conf into a temporary folder,
// listens on a free loopback port, and is stopped (SIGTERM, which also saves its
// persistence file) on destruction.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "test_util.h"

namespace tributary::testing {

class MosquittoBroker {
 public:
  struct Options {
    /// Empty: anonymous clients allowed. Otherwise only this user, with `password`.
    std::string username;
    std::string password;
    /// Keep sessions and queued messages across a restart (persistence file).
    bool persistence = true;
    /// Listen with TLS: a throw-away CA and a server certificate for 127.0.0.1 are made
    /// with the openssl tool; ca_file() is the CA to trust.
    bool tls = false;
  };

  /// The mosquitto binary's path, or "" when it is not installed.
  static std::string BinaryPath();

  explicit MosquittoBroker(Options options);
  MosquittoBroker() : MosquittoBroker(Options{}) {}
  ~MosquittoBroker();
  MosquittoBroker(const MosquittoBroker&) = delete;
  MosquittoBroker& operator=(const MosquittoBroker&) = delete;

  /// Start and wait until the port accepts connections; "" or an error text.
  std::string Start();
  /// SIGTERM and wait for exit.
  void Stop();
  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  /// "mqtt://127.0.0.1:<port>" (mqtts:// with TLS)
  std::string url() const;
  /// The CA certificate that signed the broker's certificate (TLS only).
  std::string ca_file() const { return dir_.File("ca.crt"); }
  /// Publish one message per line of `lines` with mosquitto_pub.
  CommandResult Publish(const std::string& topic, const std::vector<std::string>& lines, int qos,
                        const std::string& client_id = {}) const;
  /// The broker's log (stderr and stdout).
  std::string Log() const;

 private:
  Options options_;
  TempDir dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::string setup_error_;  // certificates or password file could not be made
};

}  // namespace tributary::testing
