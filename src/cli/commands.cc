#include "cli/commands.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cctype>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cli/backfill_command.h"
#include "cli/progress.h"
#include "core/config.h"
#include "core/pipeline_config.h"
#include "ingest/replay_quarantine.h"
#include "io/kafka_rekey.h"
#include "io/sources/simulator.h"
#include "io/weather_etl.h"
#include "server/http_server.h"
#include "spatial/h3.h"
#include "stream/runtime.h"

namespace tributary {
extern const char* const kVersion;
extern const char* const kGitCommit;
}  // namespace tributary

namespace tributary::cli {
namespace {

std::atomic<Pipeline*> g_running{nullptr};
std::atomic<int> g_signals{0};

void OnSignal(int) {
  // A first signal asks for a clean stop (flushing open windows); a second one ends
  // the process at once.
  if (g_signals.fetch_add(1) >= 1) _exit(130);
  if (Pipeline* p = g_running.load()) p->Stop();
}

void InstallSignalHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// Load the pipeline from CONFIG, or the embedded default when none is given.
Result<PipelineConfig> LoadConfig(const std::string& path) {
  if (path.empty()) return ParsePipelineConfig(EmbeddedDefaultConfig(), "<embedded default>");
  return LoadPipelineConfig(path);
}

struct RunOptions {
  std::string config;
  std::string data_dir;
  std::string duration;
  std::string listen;
  bool quiet = false;
  bool no_progress = false;
};

int RunCommand(const RunOptions& opt) {
  Result<PipelineConfig> config = LoadConfig(opt.config);
  if (!config.ok()) {
    std::cerr << "error: " << config.status().message() << "\n";
    return 2;
  }
  if (!opt.data_dir.empty()) config->data_dir = opt.data_dir;
  DurationUs duration = config->duration;
  if (!opt.duration.empty()) {
    Result<DurationUs> d = ParseDuration(opt.duration);
    if (!d.ok()) {
      std::cerr << "error: --duration: " << d.status().message() << "\n";
      return 2;
    }
    duration = *d;
  }
  Result<std::unique_ptr<Pipeline>> pipeline = Pipeline::Build(*config);
  if (!pipeline.ok()) {
    std::cerr << "error: " << pipeline.status().message() << "\n";
    return 2;
  }
  Pipeline& p = **pipeline;
  spdlog::info("running pipeline '{}' from {} (data in {})", config->name, config->file,
               config->data_dir);
  Result<ServerOptions> server_options = ReadServerOptions(*config, opt.listen);
  if (!server_options.ok()) {
    std::cerr << "error: " << server_options.status().message() << "\n";
    return 2;
  }
  std::unique_ptr<ApiServer> server;
  if (server_options->enabled) {
    Result<std::unique_ptr<ApiServer>> started = ApiServer::Start(p, *server_options);
    if (started.ok()) {
      server = std::move(started).value();
    } else if (server_options->listen_explicit) {
      std::cerr << "error: " << started.status().message() << "\n";
      return 2;
    } else {
      spdlog::warn("{}; running without the HTTP API", started.status().message());
    }
  }
  g_running = &p;
  InstallSignalHandlers();
  ProgressReporter progress(p, !opt.no_progress && !opt.quiet && isatty(STDERR_FILENO));
  progress.Start();
  Status st = p.Run(duration);
  progress.Stop();
  g_running = nullptr;
  LedgerSnapshot ledger = p.LedgerNow();
  if (!opt.quiet) {
    std::cout << ledger.ToText();
    std::cout << "ledger written to " << p.LedgerPath() << "\n";
  }
  if (!st.ok()) {
    std::cerr << "error: " << st.message() << "\n";
    return 1;
  }
  return 0;
}

int CheckCommand(const std::string& path) {
  Result<PipelineConfig> config = LoadConfig(path);
  if (!config.ok()) {
    std::cerr << "error: " << config.status().message() << "\n";
    return 2;
  }
  Result<std::unique_ptr<Pipeline>> pipeline = Pipeline::Build(*config);
  if (!pipeline.ok()) {
    std::cerr << "error: " << pipeline.status().message() << "\n";
    return 2;
  }
  std::cout << config->file << ": ok (" << config->sources.size() << " source(s), "
            << config->windows.size() << " window definition(s), " << config->sinks.size()
            << " sink(s))\n";
  return 0;
}

struct SimulateOptions {
  std::string output;
  std::map<std::string, std::string> values;  // simulator option → value from flags
};

// Write the simulator's messages as NDJSON. The options are the simulator source's
// own (same table, same validation), given as flags.
int SimulateCommand(const SimulateOptions& opt) {
  YAML::Node node(YAML::NodeType::Map);
  for (const auto& [k, v] : opt.values) node[k] = v;
  if (!node["duration"]) node["duration"] = "1h";
  if (!node["as_fast_as_possible"]) node["as_fast_as_possible"] = "true";
  OptionReader reader(node, "<command line>", "simulate", {&SimulatorSectionSpec()});
  Status st = reader.CheckKeys();
  Result<SimulatorOptions> options =
      st.ok() ? ParseSimulatorOptions(reader) : Result<SimulatorOptions>(st);
  if (!options.ok()) {
    std::cerr << "error: " << options.status().message() << "\n";
    return 2;
  }
  if (options->duration <= 0) {
    std::cerr << "error: simulate needs a bounded --duration\n";
    return 2;
  }
  std::FILE* out = stdout;
  std::string tmp;
  if (!opt.output.empty() && opt.output != "-") {
    tmp = opt.output + ".tmp";
    out = std::fopen(tmp.c_str(), "wb");
    if (out == nullptr) {
      std::cerr << "error: cannot write " << tmp << ": " << std::strerror(errno) << "\n";
      return 1;
    }
  }
  Simulator sim(*options);
  SimMessage msg;
  while (sim.Next(msg)) {
    msg.payload.push_back('\n');
    if (std::fwrite(msg.payload.data(), 1, msg.payload.size(), out) != msg.payload.size()) {
      std::cerr << "error: write failed: " << std::strerror(errno) << "\n";
      return 1;
    }
  }
  if (out != stdout) {
    if (std::fclose(out) != 0 || std::rename(tmp.c_str(), opt.output.c_str()) != 0) {
      std::cerr << "error: cannot finish " << opt.output << ": " << std::strerror(errno) << "\n";
      return 1;
    }
  } else {
    std::fflush(stdout);
  }
  const SimulatorStats& stats = sim.stats();
  std::cerr << "simulated " << stats.messages << " messages from " << sim.devices().size()
            << " devices (" << stats.burst_messages << " late bursts, " << stats.duplicate_messages
            << " duplicates, " << stats.malformed_messages << " malformed)\n";
  return 0;
}

// Read "lat,lon" lines (degrees) from stdin and print the H3 cell of each at `res`. A bad
// line is reported on stderr with its number and skipped; blank lines are ignored. Exit
// status 1 when no line could be converted.
struct ReplayOptions {
  std::string config;
  std::string data_dir = "./tributary-data";
};

// Re-run the store's quarantined records through ingestion (e.g. after a mapping or
// CRS fix) and move the recovered ones in the ledger.
int ReplayQuarantineCommand(const ReplayOptions& opt) {
  Result<PipelineConfig> config = LoadConfig(opt.config);
  if (!config.ok()) {
    std::cerr << "error: " << config.status().message() << "\n";
    return 2;
  }
  std::string store = opt.data_dir + "/tributary.gpkg";
  std::string ledger_path = opt.data_dir + "/ledger.json";
  if (!std::filesystem::exists(store)) {
    std::cerr << "error: no local store at " << store << " (use --data-dir)\n";
    return 2;
  }
  std::optional<LedgerSnapshot> ledger;
  if (std::filesystem::exists(ledger_path)) {
    std::ifstream in(ledger_path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    Result<LedgerSnapshot> parsed = ParseLedgerJson(text.str());
    if (!parsed.ok()) {
      std::cerr << "error: " << ledger_path << ": " << parsed.status().message() << "\n";
      return 1;
    }
    ledger = *parsed;
  }
  Result<ReplayReport> report = ReplayQuarantine(*config, store, ledger ? &*ledger : nullptr);
  if (!report.ok()) {
    std::cerr << "error: " << report.status().message() << "\n";
    return 1;
  }
  if (ledger) {
    Status st = WriteFileAtomic(ledger_path, ledger->ToJson());
    if (!st.ok()) {
      std::cerr << "error: " << st.message() << "\n";
      return 1;
    }
  }
  std::cout << "quarantine rows " << report->rows << ": recovered " << report->recovered << " ("
            << report->readings << " readings stored, " << report->duplicates
            << " duplicates), still quarantined " << report->still_quarantined << "\n";
  for (const auto& [reason, n] : report->recovered_by_reason) {
    std::cout << "  recovered from " << reason << ": " << n << "\n";
  }
  if (ledger) std::cout << ledger->ToText();
  return 0;
}

int H3Command(int res) {
  std::string line;
  size_t line_no = 0;
  size_t converted = 0;
  auto parse = [](std::string_view text, double* out) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
      text.remove_prefix(1);
    }
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
      text.remove_suffix(1);
    }
    if (text.empty()) return false;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
    return ec == std::errc() && end == text.data() + text.size();
  };
  while (std::getline(std::cin, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::string_view text(line);
    size_t comma = text.find(',');
    double lat = 0;
    double lon = 0;
    if (comma == std::string_view::npos || !parse(text.substr(0, comma), &lat) ||
        !parse(text.substr(comma + 1), &lon)) {
      std::cerr << "line " << line_no << ": expected \"lat,lon\" in degrees, got \"" << line
                << "\"\n";
      continue;
    }
    uint64_t cell = h3::LatLngToCell(lat, lon, res);
    if (cell == h3::kNullCell) {
      std::cerr << "line " << line_no << ": coordinates out of range: " << line << "\n";
      continue;
    }
    std::cout << h3::CellToString(cell) << '\n';
    ++converted;
  }
  std::cout.flush();
  return converted > 0 ? 0 : 1;
}

int RekeyCommand(RekeyOptions opt, const std::vector<std::string>& cells,
                 const std::vector<std::string>& properties) {
  for (const std::string& c : cells) {
    const uint64_t cell = h3::StringToCell(c);
    if (cell == h3::kNullCell || !h3::IsValidCell(cell)) {
      std::cerr << "error: --cells: '" << c << "' is not an H3 cell\n";
      return 2;
    }
    if (h3::GetResolution(cell) > opt.resolution) {
      std::cerr << "error: --cells: " << c << " is finer than --resolution " << opt.resolution
                << "\n";
      return 2;
    }
    opt.cells.insert(cell);
  }
  for (const std::string& p : properties) {
    const size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "error: --property: '" << p << "' is not key=value\n";
      return 2;
    }
    opt.properties.emplace_back(p.substr(0, eq), p.substr(eq + 1));
  }
  Result<RekeyReport> report = RekeyTopic(opt);
  if (!report.ok()) {
    std::cerr << "error: " << report.status().message() << "\n";
    return 1;
  }
  std::cout << report->ToText();
  return 0;
}

}  // namespace

int Main(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("tributary");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  CLI::App app{
      "tributary: a stream processor for environmental sensor networks.\n"
      "Turns raw, late, bursty, malformed telemetry into windowed statistics per zone,\n"
      "regulatory averages and alerts, without ever silently losing a reading."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("tributary ") + kVersion + " (" + kGitCommit + ")");
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "Log level: debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));

  RunOptions run;
  CLI::App* run_cmd = app.add_subcommand(
      "run",
      "Run a pipeline. Without CONFIG, runs the embedded default: a simulated sensor network "
      "→ processing → the local store in the data folder.");
  run_cmd->add_option("config", run.config, "Pipeline YAML file (default: the embedded default)");
  run_cmd->add_option("--data-dir", run.data_dir,
                      "Folder for the local store and ledger (default ./tributary-data)");
  run_cmd->add_option("--duration", run.duration, "Stop after this long, e.g. 30s, 5m");
  run_cmd->add_option("--listen", run.listen,
                      "HTTP API address host:port, or off (overrides server.listen)");
  run_cmd->add_flag("--quiet", run.quiet, "Print nothing but errors");
  run_cmd->add_flag("--no-progress", run.no_progress, "No live progress line");

  std::string check_path;
  CLI::App* check_cmd = app.add_subcommand(
      "check", "Validate a pipeline file without running it (errors name the line and key).");
  check_cmd->add_option("config", check_path, "Pipeline YAML file")->required();

  SimulateOptions sim;
  CLI::App* sim_cmd = app.add_subcommand(
      "simulate",
      "Write the simulator's messages as NDJSON (to stdout or -o FILE) for replay with a "
      "file source. Deterministic for a fixed --start and --seed.");
  sim_cmd->add_option("-o,--output", sim.output, "Output file (default: stdout)");
  for (const char* key : {"seed", "devices", "start", "duration", "interval", "malformed_rate",
                          "duplicate_rate", "center_lat", "center_lon", "extent_km"}) {
    sim_cmd->add_option_function<std::string>(
        std::string("--") + key, [&sim, key](const std::string& v) { sim.values[key] = v; },
        std::string("Simulator option ") + key + " (see docs/CONFIGURATION.md)");
  }

  CLI::App* default_cmd =
      app.add_subcommand("default-config", "Print the embedded default pipeline as YAML.");
  CLI::App* doc_cmd = app.add_subcommand(
      "config-doc", "Print the configuration reference (docs/CONFIGURATION.md) in Markdown.");

  int h3_res = 0;
  ReplayOptions replay;
  CLI::App* replay_cmd = app.add_subcommand(
      "replay-quarantine",
      "Re-run the quarantined records of a local store through ingestion with the sources of "
      "CONFIG (e.g. after fixing a mapping or CRS) and move the recovered ones in the ledger.");
  replay_cmd->add_option("config", replay.config, "Pipeline YAML file (default: embedded)");
  replay_cmd->add_option("--data-dir", replay.data_dir, "Folder of the store and ledger");

  CLI::App* h3_cmd = app.add_subcommand(
      "h3", "Print the H3 cell of each \"lat,lon\" line of stdin (degrees), one per line.");
  h3_cmd->add_option("--res", h3_res, "H3 resolution, 0-15")->required()->check(CLI::Range(0, 15));

  RekeyOptions rekey;
  std::vector<std::string> rekey_cells;
  std::vector<std::string> rekey_properties;
  CLI::App* rekey_cmd = app.add_subcommand(
      "rekey",
      "Copy a Kafka topic to another, keying the messages in the given hot H3 cells by their "
      "cell at a finer resolution (the rest by their resolution-5 cell), so a hot partition's "
      "load spreads over several partitions.");
  rekey_cmd->add_option("--brokers", rekey.brokers, "Bootstrap servers host:port,...")->required();
  rekey_cmd->add_option("--from", rekey.from, "Topic to read (from its start to its current end)")
      ->required();
  rekey_cmd->add_option("--to", rekey.to, "Topic to write")->required();
  rekey_cmd
      ->add_option("--cells", rekey_cells,
                   "H3 cells to split (e.g. the hot partition's cells from the log or "
                   "/api/health), comma separated")
      ->delimiter(',')
      ->required();
  rekey_cmd
      ->add_option("--resolution", rekey.resolution,
                   "Resolution of the new keys in those cells (the suggested one), 6-15")
      ->check(CLI::Range(6, 15));
  rekey_cmd->add_option("--property", rekey_properties,
                        "Extra librdkafka property key=value (repeatable)");

  BackfillCliOptions backfill;
  CLI::App* backfill_cmd = AddBackfillCommand(app, backfill);

  WeatherEtlOptions etl;
  CLI::App* etl_cmd = app.add_subcommand(
      "etl",
      "Load historical readings (NDJSON or CSV: `tributary simulate` output, the "
      "OpenWeatherMap shape, or flat rows) into PostgreSQL's weather_readings table with the "
      "derived columns (mod_high_temp, low_temp, temp_message); a re-run adds nothing twice.");
  etl_cmd->add_option("inputs", etl.inputs, "Input files (.ndjson/.jsonl/.json or .csv)")
      ->required();
  etl_cmd->add_option("--postgres", etl.conninfo,
                      "libpq connection string or postgresql:// URI (default: the PG* "
                      "environment variables)");
  etl_cmd->add_option("--table", etl.table, "Target table (default weather_readings)");
  etl_cmd->add_option("--city", etl.city, "City of the records that name none");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  spdlog::set_level(spdlog::level::from_str(log_level));

  if (run_cmd->parsed()) return RunCommand(run);
  if (backfill_cmd->parsed()) return BackfillCommand(backfill);
  if (etl_cmd->parsed()) {
    Result<WeatherEtlReport> report = RunWeatherEtl(etl);
    if (!report.ok()) {
      std::cerr << "error: " << report.status().message() << "\n";
      return 1;
    }
    std::cout << report->ToText();
    return 0;
  }
  if (check_cmd->parsed()) return CheckCommand(check_path);
  if (sim_cmd->parsed()) return SimulateCommand(sim);
  if (replay_cmd->parsed()) return ReplayQuarantineCommand(replay);
  if (h3_cmd->parsed()) return H3Command(h3_res);
  if (rekey_cmd->parsed()) return RekeyCommand(rekey, rekey_cells, rekey_properties);
  if (default_cmd->parsed()) {
    std::cout << EmbeddedDefaultConfig();
    return 0;
  }
  if (doc_cmd->parsed()) {
    std::cout << GenerateConfigurationDoc();
    return 0;
  }
  return 2;
}

}  // namespace tributary::cli
