#include "integration/postgres.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "io/sinks/pg_conn.h"

namespace tributary::testing {

std::string PostgresServer::BinDir() {
  const std::string dir = "/usr/lib/postgresql/15/bin";
  return ::access((dir + "/postgres").c_str(), X_OK) == 0 ? dir : "";
}

PostgresServer::PostgresServer() {
  port_ = FreeLoopbackPort();
  uid_ = ::getuid();
  gid_ = ::getgid();
  if (uid_ == 0) {
    if (const passwd* pw = ::getpwnam("postgres"); pw != nullptr) {
      uid_ = pw->pw_uid;
      gid_ = pw->pw_gid;
    }
    // The folder and everything the server writes in it belong to that user.
    if (::chown(dir_.path().c_str(), uid_, gid_) != 0) uid_ = 0;
  }
}

PostgresServer::~PostgresServer() {
  Stop();
}

std::string PostgresServer::conninfo() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=tributary user=tributary";
}

std::string PostgresServer::Log() const {
  return ReadFile(dir_.File("postgres.log"));
}

namespace {

// Run `args` as (uid, gid) and wait; stdout and stderr go to `log`. Returns the exit code.
pid_t Spawn(const std::vector<std::string>& args, uid_t uid, gid_t gid, const std::string& log) {
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
  }
  if (::getuid() == 0 && uid != 0) {
    if (::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(126);
  }
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv(argv[0], argv.data());
  ::_exit(127);
}

int Wait(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

std::string PostgresServer::Start() {
  if (pid_ > 0) return "";
  const std::string bin = BinDir();
  if (bin.empty()) return "PostgreSQL 15 is not installed";
  const std::string data = dir_.File("data");
  const std::string log = dir_.File("postgres.log");
  if (!initialized_) {
    pid_t p = Spawn({bin + "/initdb", "-D", data, "-U", "tributary", "--auth=trust", "-E", "UTF8",
                     "--no-sync", "--locale=C"},
                    uid_, gid_, log);
    if (p < 0 || Wait(p) != 0) return "initdb failed: " + Log();
    initialized_ = true;
  }
  // fsync off: the tests check the sink's logic, not the disk's durability.
  pid_ = Spawn({bin + "/postgres", "-D", data, "-p", std::to_string(port_), "-k", dir_.path(), "-c",
                "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off"},
               uid_, gid_, log);
  if (pid_ < 0) return "fork failed";
  for (int i = 0; i < 400; ++i) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return "postgres exited: " + Log();
    }
    PgConnection c;
    std::string admin =
        "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=postgres user=tributary";
    if (c.Connect(admin, "tributary-tests", 2).ok()) {
      Result<int64_t> n =
          c.QueryInt("SELECT count(*) FROM pg_database WHERE datname = 'tributary'");
      if (n.ok() && *n == 0) {
        Status st = c.Exec("CREATE DATABASE tributary");
        if (!st.ok()) return st.ToString();
      }
      return "";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  Stop();
  return "postgres did not accept connections within 10 s: " + Log();
}

void PostgresServer::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGINT);  // fast shutdown: aborts open transactions, disconnects clients
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

}  // namespace tributary::testing
