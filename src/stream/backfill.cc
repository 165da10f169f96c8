#include "stream/backfill.h"

#include <glob.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "core/config.h"
#include "core/json_writer.h"
#include "core/registry.h"
#include "spatial/netcdf_export.h"
#include "stream/backfill_input.h"
#include "stream/backfill_runner.h"
#include "stream/runtime.h"

namespace tributary {
extern const char* const kVersion;
extern const char* const kGitCommit;

namespace {

namespace fs = std::filesystem;

constexpr const char* kManifestName = "backfill-manifest.json";
constexpr const char* kStagingName = ".backfill-staging";

struct EvpCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using EvpCtx = std::unique_ptr<EVP_MD_CTX, EvpCtxDeleter>;

std::string Hex(const unsigned char* d, unsigned n) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (unsigned i = 0; i < n; ++i) {
    out += kDigits[d[i] >> 4];
    out += kDigits[d[i] & 15];
  }
  return out;
}

bool HasGlobChars(const std::string& s) {
  return s.find_first_of("*?[") != std::string::npos;
}

struct GlobDeleter {
  void operator()(glob_t* g) const {
    globfree(g);
    delete g;
  }
};

Result<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Io("cannot read " + path + ": " + std::strerror(errno));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The pipeline text that defines the run (the file, or the embedded default).
Result<std::string> ConfigText(const PipelineConfig& config) {
  if (config.file == "<embedded default>") return std::string(EmbeddedDefaultConfig());
  return ReadWholeFile(config.file);
}

// The device registry file named by processing.registry, resolved like ingestion does
// (relative to the pipeline file); empty when none.
Result<std::string> RegistryPath(const PipelineConfig& config) {
  if (!config.processing_options.Has("registry")) return std::string();
  TRIB_ASSIGN_OR_RETURN(std::string path, config.processing_options.GetString("registry"));
  if (path.empty()) return path;
  fs::path p(path);
  if (p.is_relative() && config.file != "<embedded default>") {
    p = fs::path(config.file).parent_path() / p;
  }
  return p.string();
}

// Replace the sources by one `file` source over `paths` that keeps the first source's
// name and common options.
Result<SourceEntry> BackfillSource(const PipelineConfig& config,
                                   const std::vector<std::string>& paths, TimeUs as_of) {
  YAML::Node node(YAML::NodeType::Map);
  std::string name = "backfill";
  if (!config.sources.empty()) {
    const SourceEntry& first = config.sources.front();
    name = first.name;
    for (const OptionSpec& spec : SourceCommonSpec().options) {
      if (first.options.Has(spec.key)) {
        node[std::string(spec.key)] = YAML::Clone(first.options.Node(spec.key));
      }
    }
  }
  node["name"] = name;
  node["type"] = "file";
  YAML::Node list(YAML::NodeType::Sequence);
  for (const std::string& p : paths) list.push_back(p);
  node["paths"] = list;
  node["arrival_time"] = FormatTime(as_of);
  const SectionSpec* spec = Registry::Get().SourceSpec("file");
  if (spec == nullptr) return Status::Internal("the file source is not registered");
  SourceEntry entry{
      name, "file",
      OptionReader(node, config.file, "backfill source", {&SourceCommonSpec(), spec})};
  TRIB_RETURN_IF_ERROR(entry.options.CheckKeys());
  return entry;
}

std::string RunKey(const std::string& config_sha, const std::string& registry_sha,
                   const std::vector<BackfillInput>& inputs, TimeUs as_of) {
  std::string text = "config " + config_sha + "\nregistry " + registry_sha + "\nas_of " +
                     std::to_string(as_of) + "\n";
  for (const BackfillInput& in : inputs) text += "input " + in.sha256 + "\n";
  return Sha256Hex(text);
}

std::string ManifestJson(const BackfillReport& r, const std::string& config_file,
                         const std::string& config_sha, const std::string& registry_path,
                         const std::string& registry_sha, TimeUs started, TimeUs ended) {
  JsonWriter w;
  w.BeginObject();
  w.Key("tributary_version").String(kVersion);
  w.Key("git_commit").String(kGitCommit);
  w.Key("run_key").String(r.run_key);
  w.Key("config").BeginObject();
  w.Key("file").String(config_file);
  w.Key("sha256").String(config_sha);
  w.EndObject();
  w.Key("registry").BeginObject();
  w.Key("file").String(registry_path);
  w.Key("sha256").String(registry_sha);
  w.EndObject();
  w.Key("as_of").String(FormatTime(r.as_of));
  w.Key("inputs").BeginArray();
  for (const BackfillInput& in : r.inputs) {
    w.BeginObject();
    w.Key("path").String(in.path);
    w.Key("bytes").UInt(in.bytes);
    w.Key("sha256").String(in.sha256);
    w.EndObject();
  }
  w.EndArray();
  // Wall-clock start and end of the run: the manifest describes the run; the output
  // rows never carry wall-clock time.
  w.Key("started").String(FormatTime(started));
  w.Key("ended").String(FormatTime(ended));
  w.Key("ledger").Raw(r.ledger.ToJson());
  w.EndObject();
  return w.Take() + "\n";
}

}  // namespace

std::string Sha256Hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &n, EVP_sha256(), nullptr);
  return Hex(md, n);
}

Result<std::string> Sha256OfFile(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return Status::Io("cannot read " + path + ": " + std::strerror(errno));
  EvpCtx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return Status::Internal("SHA-256 unavailable");
  }
  std::vector<char> buf(1 << 20);
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) {
    EVP_DigestUpdate(ctx.get(), buf.data(), n);
  }
  if (std::ferror(f.get())) return Status::Io("cannot read " + path + ": " + std::strerror(errno));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return Hex(md, len);
}

Result<std::vector<std::string>> ExpandBackfillInputs(const std::vector<std::string>& inputs) {
  std::set<std::string> files;
  for (const std::string& input : inputs) {
    size_t before = files.size();
    std::vector<std::string> candidates;
    if (HasGlobChars(input)) {
      std::unique_ptr<glob_t, GlobDeleter> g(new glob_t{});
      int rc = glob(input.c_str(), 0, nullptr, g.get());
      if (rc != 0 && rc != GLOB_NOMATCH) return Status::Io("cannot expand " + input);
      for (size_t i = 0; rc == 0 && i < g->gl_pathc; ++i) candidates.emplace_back(g->gl_pathv[i]);
    } else {
      candidates.push_back(input);
    }
    for (const std::string& c : candidates) {
      std::error_code ec;
      fs::file_status st = fs::status(c, ec);
      if (ec || !fs::exists(st)) return Status::Invalid("input " + c + ": no such file or folder");
      if (fs::is_directory(st)) {
        for (const fs::directory_entry& e : fs::directory_iterator(c, ec)) {
          if (e.is_regular_file() && IsBackfillDataFile(e.path().string()))
            files.insert(e.path().string());
        }
        if (ec) return Status::Io("cannot list " + c + ": " + ec.message());
      } else if (fs::is_regular_file(st)) {
        files.insert(c);
      } else {
        return Status::Invalid("input " + c + ": not a regular file or folder");
      }
    }
    if (files.size() == before && !HasGlobChars(input) && fs::is_directory(input)) {
      return Status::Invalid("input folder " + input +
                             " holds no .ndjson, .jsonl, .json, .csv, .tsv (plain, .gz or .zst) or "
                             ".parquet file");
    }
    if (candidates.empty()) return Status::Invalid("input " + input + " matches no file");
  }
  return std::vector<std::string>(files.begin(), files.end());
}

Result<BackfillReport> RunBackfill(const PipelineConfig& config, const BackfillOptions& options,
                                   const std::function<void(BackfillRunner&)>& on_start,
                                   const std::function<void(BackfillRunner&)>& on_end) {
  const TimeUs started = NowUs();
  BackfillReport report;
  TRIB_ASSIGN_OR_RETURN(std::vector<std::string> paths, ExpandBackfillInputs(options.inputs));
  if (paths.empty()) return Status::Invalid("backfill needs at least one input");
  TimeUs newest_mtime = 0;
  for (const std::string& p : paths) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0)
      return Status::Io("cannot stat " + p + ": " + std::strerror(errno));
    newest_mtime =
        std::max<TimeUs>(newest_mtime, static_cast<TimeUs>(st.st_mtime) * kMicrosPerSecond);
    TRIB_ASSIGN_OR_RETURN(std::string sha, Sha256OfFile(p));
    report.inputs.push_back({p, static_cast<uint64_t>(st.st_size), std::move(sha)});
  }
  report.as_of = options.as_of != kMinTime ? options.as_of : newest_mtime;

  TRIB_ASSIGN_OR_RETURN(std::string config_text, ConfigText(config));
  const std::string config_sha = Sha256Hex(config_text);
  TRIB_ASSIGN_OR_RETURN(std::string registry_path, RegistryPath(config));
  std::string registry_sha;
  if (!registry_path.empty()) {
    TRIB_ASSIGN_OR_RETURN(registry_sha, Sha256OfFile(registry_path));
  }
  report.run_key = RunKey(config_sha, registry_sha, report.inputs, report.as_of);

  const std::string output = options.output_dir.empty() ? config.data_dir : options.output_dir;
  report.manifest_path = output + "/" + kManifestName;
  if (!options.force && fs::exists(report.manifest_path)) {
    Result<std::string> previous = ReadWholeFile(report.manifest_path);
    if (previous.ok() &&
        previous->find("\"run_key\":\"" + report.run_key + "\"") != std::string::npos) {
      report.skipped = true;
      return report;
    }
  }

  std::error_code ec;
  fs::create_directories(output, ec);
  if (ec) return Status::Io("cannot create output folder " + output + ": " + ec.message());
  const std::string staging = output + "/" + kStagingName;
  fs::remove_all(staging, ec);
  fs::create_directories(staging, ec);
  if (ec) return Status::Io("cannot create " + staging + ": " + ec.message());

  PipelineConfig run_config = config;
  run_config.data_dir = staging;
  run_config.duration = 0;
  run_config.sources.clear();
  TRIB_ASSIGN_OR_RETURN(SourceEntry source, BackfillSource(config, paths, report.as_of));
  run_config.sources.push_back(std::move(source));

  BackfillRunnerOptions run_options;
  run_options.as_of = report.as_of;
  run_options.workers = options.workers;
  run_options.memory = PlanBackfillMemory(
      options.memory_ceiling,
      options.workers > 0 ? options.workers : std::max(1u, std::thread::hardware_concurrency()));
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<BackfillRunner> runner,
                        BackfillRunner::Build(run_config, run_options));
  spdlog::debug("backfill: {} worker(s), memory budget {} MiB ({}), chunks of {} KiB",
                runner->workers(), run_options.memory.budget_bytes >> 20, run_options.memory.basis,
                run_options.memory.chunk_bytes >> 10);
  if (on_start) on_start(*runner);
  Status st = runner->Run(paths);
  if (on_end) on_end(*runner);
  report.ledger = runner->LedgerNow();
  runner.reset();  // every sink closed before its files move
  if (!st.ok()) {
    fs::remove_all(staging, ec);
    return st;
  }
  // Gridded export: the surfaces of each surfaces[] entry as one CF NetCDF file.
  const fs::path staged_surfaces = fs::path(staging) / "surfaces";
  if (fs::is_directory(staged_surfaces)) {
    for (const fs::directory_entry& e : fs::directory_iterator(staged_surfaces, ec)) {
      if (!e.is_directory()) continue;
      const std::string name = e.path().filename().string();
      TRIB_ASSIGN_OR_RETURN(
          size_t steps,
          WriteSurfacesNetcdf(e.path().string(), (staged_surfaces / (name + ".nc")).string()));
      if (steps > 0) {
        report.netcdf_files.push_back((fs::path(output) / "surfaces" / (name + ".nc")).string());
      }
    }
  }
  // Publish: each staged file replaces its namesake (rename is atomic per file; a folder
  // such as surfaces/ replaces the previous one).
  for (const fs::directory_entry& e : fs::directory_iterator(staging, ec)) {
    fs::path target = fs::path(output) / e.path().filename();
    if (e.is_directory() && fs::is_directory(target)) fs::remove_all(target, ec);
    fs::rename(e.path(), target, ec);
    if (ec)
      return Status::Io("cannot move " + e.path().string() + " to " + target.string() + ": " +
                        ec.message());
  }
  fs::remove_all(staging, ec);
  TRIB_RETURN_IF_ERROR(WriteFileAtomic(report.manifest_path,
                                       ManifestJson(report, config.file, config_sha, registry_path,
                                                    registry_sha, started, NowUs())));
  return report;
}

namespace {

// A landing-folder file as last listed.
struct WatchedFileState {
  uintmax_t size = 0;
  fs::file_time_type mtime;
  int stable_polls = 0;
};

// Move `from` into `folder` (created when missing), keeping its name; a name already
// taken there gets a numeric suffix. Returns the new path.
Result<std::string> MoveInto(const fs::path& from, const fs::path& folder) {
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) return Status::Io("cannot create " + folder.string() + ": " + ec.message());
  fs::path target = folder / from.filename();
  for (int i = 1; fs::exists(target); ++i) {
    target = folder / (from.filename().string() + "." + std::to_string(i));
  }
  fs::rename(from, target, ec);
  if (ec) {
    return Status::Io("cannot move " + from.string() + " to " + target.string() + ": " +
                      ec.message());
  }
  return target.string();
}

std::string WatchManifestEntry(const BackfillWatchEvent& e, const std::string& sha,
                               const std::string& output) {
  JsonWriter w;
  w.BeginObject();
  w.Key("file").String(fs::path(e.file).filename().string());
  w.Key("sha256").String(sha);
  w.Key("status").String(e.ok ? (e.already_processed ? "already_processed" : "done") : "failed");
  w.Key("moved_to").String(e.moved);
  if (e.ok && !e.already_processed) w.Key("output").String(output);
  if (!e.ok) w.Key("reason").String(e.reason);
  w.Key("at").String(FormatTime(NowUs()));
  w.EndObject();
  return w.Take();
}

}  // namespace

Status WatchBackfillFolder(const PipelineConfig& config, const BackfillOptions& base,
                           const BackfillWatchOptions& watch, const std::atomic<bool>& stop,
                           const std::function<void(const BackfillWatchEvent&)>& on_file) {
  std::error_code ec;
  if (!fs::is_directory(watch.dir, ec)) {
    return Status::Invalid("--watch " + watch.dir + ": not a folder");
  }
  const std::string output = base.output_dir.empty() ? config.data_dir : base.output_dir;
  fs::create_directories(output, ec);
  if (ec) return Status::Io("cannot create output folder " + output + ": " + ec.message());
  const std::string manifest_path = output + "/watch-manifest.json";
  // The manifest is a JSON array of one object per file handled.
  std::vector<std::string> entries;
  std::set<std::string> processed;  // SHA-256 of every file done
  if (fs::exists(manifest_path)) {
    TRIB_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(manifest_path));
    // One entry per line between "[" and "]", as written below.
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.empty() || line == "[" || line == "]") continue;
      if (line.back() == ',') line.pop_back();
      entries.push_back(line);
      const std::string key = "\"sha256\":\"";
      size_t at = line.find(key);
      if (at != std::string::npos && line.find("\"status\":\"failed\"") == std::string::npos) {
        processed.insert(line.substr(at + key.size(), 64));
      }
    }
  }
  auto save_manifest = [&]() -> Status {
    std::string text = "[\n";
    for (size_t i = 0; i < entries.size(); ++i) {
      text += entries[i] + (i + 1 < entries.size() ? ",\n" : "\n");
    }
    text += "]\n";
    return WriteFileAtomic(manifest_path, text);
  };

  std::map<std::string, WatchedFileState> seen;
  while (!stop.load()) {
    std::vector<fs::path> ready;
    bool waiting = false;  // a file is still settling
    std::map<std::string, WatchedFileState> now;
    for (const fs::directory_entry& e : fs::directory_iterator(watch.dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name.empty() || name[0] == '.' || !e.is_regular_file(ec)) continue;
      if (!IsBackfillDataFile(name)) continue;
      WatchedFileState st;
      st.size = e.file_size(ec);
      st.mtime = e.last_write_time(ec);
      if (ec) continue;  // vanished meanwhile
      auto it = seen.find(e.path().string());
      if (it != seen.end() && it->second.size == st.size && it->second.mtime == st.mtime) {
        st.stable_polls = it->second.stable_polls + 1;
      }
      if (st.stable_polls >= 1) {
        ready.push_back(e.path());
      } else {
        waiting = true;
      }
      now[e.path().string()] = st;
    }
    if (ec) return Status::Io("cannot list " + watch.dir + ": " + ec.message());
    seen = std::move(now);
    std::sort(ready.begin(), ready.end());
    for (const fs::path& file : ready) {
      if (stop.load()) break;
      BackfillWatchEvent event;
      event.file = file.string();
      Result<std::string> sha = Sha256OfFile(file.string());
      std::string out_dir = output + "/" + file.filename().string();
      if (!sha.ok()) {
        event.reason = sha.status().message();
      } else if (processed.count(*sha) > 0) {
        event.ok = true;
        event.already_processed = true;
      } else {
        BackfillOptions opts = base;
        opts.inputs = {file.string()};
        opts.output_dir = out_dir;
        Result<BackfillReport> report = RunBackfill(config, opts);
        if (report.ok()) {
          event.ok = true;
          event.report = std::move(*report);
        } else {
          event.reason = report.status().message();
          fs::remove(out_dir, ec);  // only when the failed run left it empty
        }
      }
      Result<std::string> moved =
          MoveInto(file, fs::path(watch.dir) / (event.ok ? "done" : "failed"));
      if (!moved.ok()) return moved.status();
      event.moved = *moved;
      if (!event.ok) {
        TRIB_RETURN_IF_ERROR(WriteFileAtomic(*moved + ".reason.txt", event.reason + "\n"));
        spdlog::warn("backfill --watch: {} failed: {}", file.string(), event.reason);
      } else {
        spdlog::info("backfill --watch: {} {}", file.string(),
                     event.already_processed ? "was already processed" : "processed");
      }
      seen.erase(file.string());
      const std::string sha_text = sha.ok() ? *sha : std::string();
      if (event.ok && !sha_text.empty()) processed.insert(sha_text);
      entries.push_back(WatchManifestEntry(event, sha_text, out_dir));
      TRIB_RETURN_IF_ERROR(save_manifest());
      if (on_file) on_file(event);
    }
    if (watch.once && ready.empty() && !waiting) break;
    // Sleep in short steps so a stop request is seen quickly.
    for (DurationUs slept = 0; slept < watch.poll && !stop.load(); slept += 50 * kMicrosPerMilli) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return Status::Ok();
}

}  // namespace tributary
