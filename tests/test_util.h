// Helpers shared by tests: temporary folders, running the built binary, files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tributary::testing {

/// A fresh temporary folder, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

/// The first column of the first row of `sql` on the SQLite file `db_path` (read-only),
/// or -1 with a test failure naming the query when it cannot be read.
int64_t QueryInt(const std::string& db_path, const std::string& sql);

/// Result of running a program to completion.
struct CommandResult {
  int exit_code = -1;  ///< -1 when it did not exit normally
  std::string out;     ///< stdout
  std::string err;     ///< stderr
};

/// Run `args` (args[0] is the program) with optional stdin, capturing output.
CommandResult RunCommand(const std::vector<std::string>& args, const std::string& stdin_text = {},
                         const std::vector<std::string>& extra_env = {});
/// Run the built tributary binary with `args`.
CommandResult RunTributary(const std::vector<std::string>& args, const std::string& stdin_text = {},
                           const std::vector<std::string>& extra_env = {});
/// Start `tributary run <args...> --listen off` in the background, its stdout and stderr
/// appended to `log`, for tests that kill and restart it; its pid, or -1.
int SpawnTributaryRun(const std::vector<std::string>& args, const std::string& log);

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& content);
/// A TCP port on 127.0.0.1 that was free a moment ago.
int FreeLoopbackPort();

}  // namespace tributary::testing
