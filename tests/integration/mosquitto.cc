#include "integration/mosquitto.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace tributary::testing {
namespace {

bool PortAccepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

// The full path of an installed program (RunCommand does not search PATH).
std::string FindProgram(const std::string& name) {
  for (const char* dir : {"/usr/sbin/", "/usr/bin/", "/usr/local/sbin/", "/usr/local/bin/"}) {
    std::string p = dir + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return name;
}

}  // namespace

std::string MosquittoBroker::BinaryPath() {
  std::string p = FindProgram("mosquitto");
  return p == "mosquitto" ? "" : p;
}

MosquittoBroker::MosquittoBroker(Options options) : options_(std::move(options)) {
  port_ = FreeLoopbackPort();
  std::string conf;
  conf += "listener " + std::to_string(port_) + " 127.0.0.1\n";
  if (options_.tls) {
    const std::string openssl = FindProgram("openssl");
    const std::string ext = dir_.File("san.ext");
    WriteFile(ext, "subjectAltName=IP:127.0.0.1\n");
    for (const std::vector<std::string>& cmd : std::vector<std::vector<std::string>>{
             {openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
              dir_.File("ca.key"), "-out", dir_.File("ca.crt"), "-days", "2", "-subj",
              "/CN=tributary-test-ca"},
             {openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", dir_.File("server.key"),
              "-out", dir_.File("server.csr"), "-subj", "/CN=127.0.0.1"},
             {openssl, "x509", "-req", "-in", dir_.File("server.csr"), "-CA", dir_.File("ca.crt"),
              "-CAkey", dir_.File("ca.key"), "-CAcreateserial", "-out", dir_.File("server.crt"),
              "-days", "2", "-extfile", ext}}) {
      CommandResult r = RunCommand(cmd);
      if (r.exit_code != 0) setup_error_ = "openssl failed: " + r.err;
    }
    conf += "cafile " + dir_.File("ca.crt") + "\ncertfile " + dir_.File("server.crt") +
            "\nkeyfile " + dir_.File("server.key") + "\n";
  }
  if (options_.username.empty()) {
    conf += "allow_anonymous true\n";
  } else {
    const std::string pwfile = dir_.File("passwd");
    RunCommand({FindProgram("mosquitto_passwd"), "-b", "-c", pwfile, options_.username,
                options_.password});
    conf += "allow_anonymous false\npassword_file " + pwfile + "\n";
  }
  if (options_.persistence) {
    conf += "persistence true\npersistence_location " + dir_.path() + "/\n";
    conf += "autosave_interval 1\n";
  }
  conf += "max_queued_messages 100000\n";
  // Running as root, mosquitto would switch to the `mosquitto` user and lose access to
  // the temporary folder.
  if (const passwd* pw = ::getpwuid(::getuid()); pw != nullptr) {
    conf += std::string("user ") + pw->pw_name + "\n";
  }
  conf += "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n";
  WriteFile(dir_.File("mosquitto.conf"), conf);
}

MosquittoBroker::~MosquittoBroker() {
  Stop();
}

std::string MosquittoBroker::url() const {
  return std::string(options_.tls ? "mqtts" : "mqtt") + "://127.0.0.1:" + std::to_string(port_);
}

std::string MosquittoBroker::Start() {
  if (pid_ > 0) return "";
  const std::string binary = BinaryPath();
  if (binary.empty()) return "mosquitto is not installed";
  if (!setup_error_.empty()) return setup_error_;
  const std::string conf = dir_.File("mosquitto.conf");
  const std::string log = dir_.File("mosquitto.log");
  pid_t pid = ::fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execl(binary.c_str(), binary.c_str(), "-c", conf.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  pid_ = pid;
  for (int i = 0; i < 200; ++i) {
    if (PortAccepts(port_)) return "";
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return "mosquitto exited: " + Log();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  Stop();
  return "mosquitto did not accept connections within 5 s: " + Log();
}

void MosquittoBroker::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

CommandResult MosquittoBroker::Publish(const std::string& topic,
                                       const std::vector<std::string>& lines, int qos,
                                       const std::string& client_id) const {
  std::vector<std::string> args{FindProgram("mosquitto_pub"), "-h", "127.0.0.1", "-p",
                                std::to_string(port_),        "-t", topic,       "-q",
                                std::to_string(qos),          "-l"};
  if (options_.tls) args.insert(args.end(), {"--cafile", ca_file()});
  if (!client_id.empty()) {
    args.push_back("-i");
    args.push_back(client_id);
  }
  if (!options_.username.empty()) {
    args.insert(args.end(), {"-u", options_.username, "-P", options_.password});
  }
  std::string input;
  for (const std::string& l : lines) input += l + "\n";
  return RunCommand(args, input);
}

std::string MosquittoBroker::Log() const {
  return ReadFile(dir_.File("mosquitto.log"));
}

}  // namespace tributary::testing
