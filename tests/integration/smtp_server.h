// A small SMTP server on a free loopback port for tests, enough SMTP for libcurl
// (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT): it keeps every delivered message. Header
// only, so a test that needs it just includes it.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tributary::testing {

class SmtpServer {
 public:
  struct Mail {
    std::string from, auth;
    std::vector<std::string> rcpt;
    std::string data;
  };
  SmtpServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(fd_, 8);
    thread_ = std::thread([this] { Serve(); });
  }
  ~SmtpServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  std::vector<Mail> mails() {
    std::lock_guard lock(mu_);
    return mails_;
  }

 private:
  static bool ReadLine(int c, std::string& buf, std::string& line) {
    while (true) {
      size_t p = buf.find("\r\n");
      if (p != std::string::npos) {
        line = buf.substr(0, p);
        buf.erase(0, p + 2);
        return true;
      }
      char tmp[4096];
      ssize_t n = ::recv(c, tmp, sizeof tmp, 0);
      if (n <= 0) return false;
      buf.append(tmp, static_cast<size_t>(n));
    }
  }
  static void Send(int c, const std::string& s) {
    (void)!::send(c, s.data(), s.size(), MSG_NOSIGNAL);
  }
  void Serve() {
    while (!stop_) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      timeval tv{5, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      Send(c, "220 localhost test SMTP\r\n");
      std::string buf, line;
      Mail m;
      while (ReadLine(c, buf, line)) {
        std::string verb = line.substr(0, 4);
        if (verb == "EHLO" || verb == "HELO") {
          Send(c, "250-localhost\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n");
        } else if (verb == "AUTH") {
          if (line == "AUTH PLAIN") {  // no initial response: ask for it
            Send(c, "334 \r\n");
            if (!ReadLine(c, buf, line)) break;
            m.auth = line;
          } else {
            m.auth = line.substr(line.rfind(' ') + 1);
          }
          Send(c, "235 2.7.0 ok\r\n");
        } else if (verb == "MAIL") {
          m.from = line;
          Send(c, "250 ok\r\n");
        } else if (verb == "RCPT") {
          m.rcpt.push_back(line);
          Send(c, "250 ok\r\n");
        } else if (verb == "DATA") {
          Send(c, "354 go on\r\n");
          while (ReadLine(c, buf, line) && line != ".") m.data += line + "\n";
          {
            std::lock_guard lock(mu_);
            mails_.push_back(m);
          }
          m = Mail{};
          Send(c, "250 queued\r\n");
        } else if (verb == "QUIT") {
          Send(c, "221 bye\r\n");
          break;
        } else {
          Send(c, "250 ok\r\n");
        }
      }
      ::close(c);
    }
  }
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<Mail> mails_;
};

}  // namespace tributary::testing
