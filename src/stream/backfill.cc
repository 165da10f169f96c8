#include "stream/backfill.h"

#include <glob.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "core/config.h"
#include "core/json_writer.h"
#include "core/registry.h"
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

bool IsDataFile(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".ndjson" || ext == ".jsonl" || ext == ".json" || ext == ".csv" || ext == ".tsv";
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
          if (e.is_regular_file() && IsDataFile(e.path())) files.insert(e.path().string());
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
                             " holds no .ndjson, .jsonl, .json, .csv or .tsv file");
    }
    if (candidates.empty()) return Status::Invalid("input " + input + " matches no file");
  }
  return std::vector<std::string>(files.begin(), files.end());
}

Result<BackfillReport> RunBackfill(const PipelineConfig& config, const BackfillOptions& options,
                                   const std::function<void(Pipeline&)>& on_start,
                                   const std::function<void(Pipeline&)>& on_end) {
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

  PipelineBuildOptions build;
  const TimeUs as_of = report.as_of;
  build.processing_clock = [as_of] { return as_of; };
  build.idle_ticks = false;
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<Pipeline> pipeline, Pipeline::Build(run_config, build));
  if (on_start) on_start(*pipeline);
  Status st = pipeline->Run();
  if (on_end) on_end(*pipeline);
  report.ledger = pipeline->LedgerNow();
  pipeline.reset();  // every sink closed before its files move
  if (!st.ok()) {
    fs::remove_all(staging, ec);
    return st;
  }
  // Publish: each staged file replaces its namesake (rename is atomic per file).
  for (const fs::directory_entry& e : fs::directory_iterator(staging, ec)) {
    fs::path target = fs::path(output) / e.path().filename();
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

}  // namespace tributary
