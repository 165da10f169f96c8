#include "stream/window.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "core/pipeline_config.h"
#include "test_util.h"

namespace tributary {
namespace {

// ---------------------------------------------------------------------------
// Helpers

Result<PipelineConfig> Config(const std::string& yaml) {
  return ParsePipelineConfig(yaml, "test.yaml");
}

struct Harness {
  explicit Harness(const std::string& yaml) {
    Result<PipelineConfig> c = Config(yaml);
    if (!c.ok()) {
      ADD_FAILURE() << c.status().ToString();
      return;
    }
    config = std::move(c).value();
    auto made = MakeWindowOperator(config, [this] { return wall; });
    if (!made.ok()) {
      ADD_FAILURE() << made.status().ToString();
      return;
    }
    op = std::move(made).value();
    ctx.config = &config;
    ctx.ledger = &ledger;
    EXPECT_TRUE(op->Open(ctx).ok());
  }

  Batch Run(std::vector<Reading> readings) {
    Batch b;
    b.readings = std::move(readings);
    EXPECT_TRUE(op->Process(b).ok());
    return b;
  }

  PipelineConfig config;
  Ledger ledger;
  RunContext ctx;
  TimeUs wall = 0;
  std::unique_ptr<WindowOperator> op;
};

Reading MakeReading(double event_s, double arrival_s, std::string_view device,
                    std::string_view metric, double value) {
  Reading r;
  r.event_time = std::llround(event_s * 1e6);
  r.arrival_time = std::llround(arrival_s * 1e6);
  r.device = Intern(device);
  r.metric = Intern(metric);
  r.value = value;
  r.prov.source = Intern("test");
  return r;
}

std::string Seconds(TimeUs t) {
  if (t == kMinTime) return "-inf";
  if (t % kMicrosPerSecond == 0) return std::to_string(t / kMicrosPerSecond);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", static_cast<double>(t) / 1e6);
  std::string s = buf;
  while (s.back() == '0') s.pop_back();
  return s;
}

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

std::string FormatWindow(const WindowResult& w) {
  std::string s = "window " + w.window.str() + " " + w.group_by.str() + "=" + w.group.str() + " " +
                  w.metric.str() + " [" + Seconds(w.start) + "," + Seconds(w.end) +
                  ") n=" + std::to_string(w.count);
  auto field = [&](const char* name, double v) {
    if (!std::isnan(v)) s += std::string(" ") + name + "=" + Num(v);
  };
  field("mean", w.mean);
  field("min", w.min);
  field("max", w.max);
  field("std", w.std);
  field("median", w.median);
  field("p95", w.p95);
  field("trimmed", w.trimmed_mean);
  for (const auto& [q, v] : w.quantiles) field(("q" + Num(q * 100)).c_str(), v);
  field("nowcast", w.nowcast);
  field("aqi", w.aqi);
  field("first", w.first);
  field("last", w.last);
  s += " sensors=" + std::to_string(w.distinct_sensors);
  if (!std::isnan(w.centroid_lat)) {
    s += " centroid=" + Num(w.centroid_lat) + "," + Num(w.centroid_lon);
  }
  if (w.late_count > 0) s += " late=" + std::to_string(w.late_count);
  if (w.aggregation_method.view() != "mean" && !w.aggregation_method.view().empty()) {
    s += " method=" + w.aggregation_method.str();
  }
  if (w.revision > 0) s += " rev=" + std::to_string(w.revision);
  if (w.flags != 0) s += " flags=" + WindowFlagsToString(w.flags);
  return s;
}

std::string FormatLate(const LateRecord& l) {
  return "late " + l.window.str() + " " + l.reading.device.str() + " " + l.reading.metric.str() +
         " t=" + Seconds(l.reading.event_time) + " lateness=" + Seconds(l.lateness) +
         " wm=" + Seconds(l.watermark);
}

// ---------------------------------------------------------------------------
// Golden files: tests/data/windows/*.golden
//
// A file is the pipeline YAML (processing + windows), a line "----", then a script:
//   reading <event s> <arrival s> <device> <metric> <value> [src=S] [part=N]
//           [lat=X] [lon=Y] [zone=Z] [h3=HEX]      queue a reading
//   batch          process the queued readings as one batch
//   idle <wall s>  set the fake wall clock and call OnIdle
//   watermark      print the operator watermark
//   finish         call Finish
//   ledger         print accepted, late and emitted-window counts
// Lines starting with '>' are the expected output of the command above them:
//   late ...       LateRecords, then "watermark <s>" when it moved, then window rows.
// Set TRIBUTARY_UPDATE_GOLDEN=1 to rewrite the files with the actual output (review
// the diff: the files are the specification).

struct GoldenRun {
  std::string transcript;
  std::string error;
};

GoldenRun RunGolden(const std::string& path, const std::string& text) {
  GoldenRun run;
  size_t sep = text.find("\n----\n");
  if (sep == std::string::npos) {
    run.error = "no ---- line between config and script";
    return run;
  }
  std::string yaml = text.substr(0, sep + 1);
  std::string script = text.substr(sep + 6);
  run.transcript = text.substr(0, sep + 6);

  Result<PipelineConfig> config = ParsePipelineConfig(yaml, path);
  if (!config.ok()) {
    run.error = config.status().ToString();
    return run;
  }
  TimeUs wall = 0;
  auto made = MakeWindowOperator(*config, [&wall] { return wall; });
  if (!made.ok()) {
    run.error = made.status().ToString();
    return run;
  }
  WindowOperator& op = **made;
  Ledger ledger;
  RunContext ctx;
  ctx.config = &*config;
  ctx.ledger = &ledger;
  if (!op.Open(ctx).ok()) {
    run.error = "Open failed";
    return run;
  }

  std::vector<Reading> pending;
  uint64_t fed = 0;
  TimeUs last_watermark = kMinTime;
  auto out = [&](const std::string& line) { run.transcript += "> " + line + "\n"; };
  auto report = [&](const Batch& b) {
    for (const LateRecord& l : b.late) {
      out(FormatLate(l));
      if (!l.reading.flags.Has(QcFlag::kLate)) run.error += "late record without LATE flag; ";
    }
    for (const Reading& r : b.readings) {
      if (r.flags.Has(QcFlag::kLateArrival)) {
        out("late_arrival " + r.device.str() + " " + r.metric.str() +
            " t=" + Seconds(r.event_time));
      }
    }
    if (b.watermark != last_watermark) {
      out("watermark " + Seconds(b.watermark));
      last_watermark = b.watermark;
    }
    for (const WindowResult& w : b.windows) out(FormatWindow(w));
  };

  std::istringstream in(script);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line[0] == '>') continue;  // expected output: regenerated
    run.transcript += line + "\n";
    std::istringstream words(line);
    std::string cmd;
    words >> cmd;
    if (cmd.empty() || cmd[0] == '#') continue;
    if (cmd != "reading" && !pending.empty() && cmd != "batch") {
      run.error += "line " + std::to_string(line_no) + ": readings queued without 'batch'; ";
    }
    if (cmd == "reading") {
      double event = 0, arrival = 0, value = 0;
      std::string device, metric, value_text;
      words >> event >> arrival >> device >> metric >> value_text;
      value = value_text == "nan" ? NAN : std::strtod(value_text.c_str(), nullptr);
      Reading r = MakeReading(event, arrival, device, metric, value);
      std::string extra;
      while (words >> extra) {
        size_t eq = extra.find('=');
        std::string key = extra.substr(0, eq), v = extra.substr(eq + 1);
        if (key == "src") {
          r.prov.source = Intern(v);
        } else if (key == "part") {
          r.prov.partition = std::stoi(v);
        } else if (key == "lat") {
          r.lat = std::stod(v);
        } else if (key == "lon") {
          r.lon = std::stod(v);
        } else if (key == "zone") {
          r.zone = Intern(v);
        } else if (key == "h3") {
          r.h3 = std::stoull(v, nullptr, 16);
        } else {
          run.error += "line " + std::to_string(line_no) + ": unknown field " + key + "; ";
        }
      }
      pending.push_back(r);
    } else if (cmd == "batch") {
      Batch b;
      b.readings = std::move(pending);
      pending.clear();
      const size_t n = b.readings.size();
      fed += n;
      const LedgerSnapshot before = ledger.Snapshot();
      if (!op.Process(b).ok()) run.error += "Process failed; ";
      const LedgerSnapshot after = ledger.Snapshot();
      if (after.accepted - before.accepted != b.readings.size()) {
        run.error += "line " + std::to_string(line_no) + ": accepted != readings passed on; ";
      }
      if (after.accepted + after.late != fed) {
        run.error += "line " + std::to_string(line_no) + ": accepted + late != readings in; ";
      }
      for (const Reading& r : b.readings) {
        if (r.flags.Has(QcFlag::kLate)) run.error += "accepted reading flagged LATE; ";
      }
      report(b);
    } else if (cmd == "idle") {
      double wall_s = 0;
      words >> wall_s;
      wall = std::llround(wall_s * 1e6);
      Batch b;
      if (!op.OnIdle(wall, b).ok()) run.error += "OnIdle failed; ";
      report(b);
    } else if (cmd == "watermark") {
      out("watermark " + Seconds(op.watermark()));
    } else if (cmd == "finish") {
      Batch b;
      if (!op.Finish(b).ok()) run.error += "Finish failed; ";
      b.watermark = last_watermark;  // Finish does not move it; print rows only
      report(b);
      if (op.Stats().open_windows != 0) run.error += "state left after Finish; ";
    } else if (cmd == "ledger") {
      LedgerSnapshot s = ledger.Snapshot();
      out("ledger accepted=" + std::to_string(s.accepted) + " late=" + std::to_string(s.late) +
          " windows=" + std::to_string(s.windows_emitted));
    } else {
      run.error += "line " + std::to_string(line_no) + ": unknown command " + cmd + "; ";
    }
  }
  if (!pending.empty()) run.error += "readings queued at the end without 'batch'; ";
  return run;
}

std::vector<std::string> GoldenFiles() {
  std::vector<std::string> files;
  std::filesystem::path dir = std::filesystem::path(TRIBUTARY_SOURCE_DIR) / "tests/data/windows";
  if (!std::filesystem::exists(dir)) return files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".golden") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(WindowGoldenTest, AllFilesMatch) {
  std::vector<std::string> files = GoldenFiles();
  ASSERT_GE(files.size(), 8u) << "golden files missing under tests/data/windows";
  const bool update = std::getenv("TRIBUTARY_UPDATE_GOLDEN") != nullptr;
  for (const std::string& path : files) {
    SCOPED_TRACE(path);
    std::string expected = testing::ReadFile(path);
    GoldenRun run = RunGolden(path, expected);
    EXPECT_EQ(run.error, "");
    if (update && run.transcript != expected) {
      testing::WriteFile(path, run.transcript);
      continue;
    }
    if (run.transcript != expected) {
      // Point at the first differing line, then show the whole actual output.
      std::istringstream a(expected), b(run.transcript);
      std::string la, lb;
      int n = 0;
      while (true) {
        bool ga = static_cast<bool>(std::getline(a, la));
        bool gb = static_cast<bool>(std::getline(b, lb));
        ++n;
        if (!ga && !gb) break;
        if (!ga || !gb || la != lb) {
          ADD_FAILURE() << "first difference at line " << n
                        << "\n  expected: " << (ga ? la : "<end>")
                        << "\n  actual:   " << (gb ? lb : "<end>") << "\nactual transcript:\n"
                        << run.transcript;
          break;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Configuration

std::string ErrorOf(const std::string& windows_yaml) {
  Result<PipelineConfig> c = Config("processing:\n  grace: 2m\nwindows:\n" + windows_yaml);
  if (!c.ok()) return c.status().message();
  auto op = MakeWindowOperator(*c);
  return op.ok() ? "" : op.status().message();
}

TEST(WindowConfigTest, DefaultsAndGrace) {
  Result<PipelineConfig> c = Config(
      "processing:\n  grace: 2m\nwindows:\n"
      "  - name: a\n    size: 1m\n"
      "  - name: b\n    size: 1h\n    offset: 30m\n    grace: 10s\n    group_by: zone\n"
      "    metrics: [pm25, pm10, pm25]\n    aggregates: [count, std]\n    min_samples: 45\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto defs = ParseWindowDefinitions(*c);
  ASSERT_TRUE(defs.ok()) << defs.status().ToString();
  ASSERT_EQ(defs->size(), 2u);
  const WindowDefinition& a = (*defs)[0];
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.type, WindowType::kTumbling);
  EXPECT_EQ(a.size, kMicrosPerMinute);
  EXPECT_EQ(a.step, kMicrosPerMinute);
  EXPECT_EQ(a.offset, 0);
  EXPECT_EQ(a.grace, 2 * kMicrosPerMinute);  // from processing.grace
  EXPECT_EQ(a.group_by, GroupBy::kDevice);
  EXPECT_TRUE(a.metrics.empty());
  EXPECT_TRUE(a.Accepts(Intern("anything")));
  EXPECT_TRUE(a.aggregates.Has(AggregateKind::kMean));
  EXPECT_TRUE(a.aggregates.Has(AggregateKind::kMax));
  EXPECT_FALSE(a.aggregates.Has(AggregateKind::kStd));
  EXPECT_EQ(a.aggregation_method.view(), "mean");
  EXPECT_EQ(a.min_samples, 1);
  const WindowDefinition& b = (*defs)[1];
  EXPECT_EQ(b.offset, 30 * kMicrosPerMinute);
  EXPECT_EQ(b.grace, 10 * kMicrosPerSecond);
  EXPECT_EQ(b.group_by, GroupBy::kZone);
  EXPECT_EQ(b.group_by_symbol.view(), "zone");
  EXPECT_EQ(b.metrics.size(), 2u);
  EXPECT_TRUE(b.Accepts(Intern("pm10")));
  EXPECT_FALSE(b.Accepts(Intern("no2")));
  EXPECT_FALSE(b.aggregates.Has(AggregateKind::kMean));
  EXPECT_EQ(b.aggregation_method.view(), "std");
  EXPECT_EQ(b.min_samples, 45);
  EXPECT_EQ(b.LastStart(0), -30 * kMicrosPerMinute);
  EXPECT_EQ(b.LastStart(30 * kMicrosPerMinute), 30 * kMicrosPerMinute);
}

TEST(WindowConfigTest, Errors) {
  EXPECT_NE(ErrorOf("  - name: s\n    type: session\n    size: 5m\n")
                .find("windows[0].size: does not apply to session windows"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - name: s\n    type: session\n").find("windows[0].gap: is required"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - name: a\n    size: 1m\n    gap: 5m\n")
                .find("windows[0].gap: applies to session windows only"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - name: a\n    size: 1m\n    aggregates: [mean, nowcast]\n")
                .find("nowcast and aqi need 1h tumbling windows"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - name: a\n    preset: pm99\n").find("windows[0].preset:"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - name: a\n    size: 1m\n    late_policy: drop\n").find("late_policy"),
            std::string::npos);
  EXPECT_EQ(
      ErrorOf("  - name: a\n    size: 1m\n    aggregates: [median, p95, p10, trimmed_mean]\n"), "");
  EXPECT_NE(ErrorOf("  - name: a\n    size: 1m\n    aggregates: [avg]\n")
                .find("unknown aggregate 'avg' (supported: count, mean, min, max, std"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - size: 1m\n").find("windows[0].name: is required"), std::string::npos);
  EXPECT_NE(ErrorOf("  - name: a\n").find("windows[0].size: is required"), std::string::npos);
  EXPECT_NE(ErrorOf("  - name: a\n    size: 1m\n  - name: a\n    size: 5m\n")
                .find("windows[1].name: duplicate window name 'a'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - name: a\n    size: 1m\n    colour: red\n").find("unknown option"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - name: a\n    size: 1m\n    group_by: street\n")
                .find("'street' is not one of device|zone|zone:<layer>|h3|s2:<level>|all"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - name: a\n    type: sliding\n    size: 1m\n").find("step: is required"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - name: a\n    type: sliding\n    size: 1m\n    step: 2m\n")
                .find("longer than the window size"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - name: a\n    size: 1m\n    step: 30s\n").find("sliding windows only"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - name: a\n    type: sliding\n    size: 1h\n    step: 1s\n")
                .find("windows per reading"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - name: a\n    size: 0s\n").find("shorter than the minimum"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - name: a\n    size: 1m\n    min_samples: 0\n").find("below the minimum"),
            std::string::npos);
  EXPECT_EQ(ErrorOf("  - name: ok\n    type: sliding\n    size: 15m\n    step: 5m\n"), "");
}

TEST(WindowConfigTest, EmbeddedDefaultPipelineBuilds) {
  Result<PipelineConfig> c = ParsePipelineConfig(EmbeddedDefaultConfig(), "<embedded default>");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto op = MakeWindowOperator(*c);
  ASSERT_TRUE(op.ok()) << op.status().ToString();
  EXPECT_EQ((*op)->name(), "window");
}

TEST(WindowConfigTest, PresetsFromSeed001) {
  struct Expect {
    const char* name;
    WindowType type;
    DurationUs size, step, gap, grace;
    int64_t min_samples;
    std::vector<AggregateKind> aggregates;
    const char* metric;
    const char* method;
  };
  const DurationUs m = kMicrosPerMinute;
  using K = AggregateKind;
  const Expect expected[] = {
      {"pm25_regulatory",
       WindowType::kTumbling,
       60 * m,
       60 * m,
       0,
       10 * m,
       45,
       {K::kMean, K::kNowCast, K::kAqi},
       "pm25",
       "nowcast"},
      {"pm25_realtime",
       WindowType::kSliding,
       15 * m,
       5 * m,
       0,
       3 * m,
       8,
       {K::kP95, K::kMedian},
       "pm25",
       "median"},
      {"temp_regulatory",
       WindowType::kTumbling,
       60 * m,
       60 * m,
       0,
       5 * m,
       50,
       {K::kMean, K::kStd},
       "temperature",
       "mean"},
      {"temp_realtime",
       WindowType::kSliding,
       5 * m,
       1 * m,
       0,
       1 * m,
       3,
       {K::kMean, K::kStd},
       "temperature",
       "mean"},
      {"soil_regulatory",
       WindowType::kTumbling,
       30 * m,
       30 * m,
       0,
       8 * m,
       12,
       {K::kTrimmedMean},
       "soil_moisture",
       "trimmed_mean_10_90"},
      {"soil_realtime",
       WindowType::kSliding,
       30 * m,
       10 * m,
       0,
       8 * m,
       12,
       {K::kTrimmedMean},
       "soil_moisture",
       "trimmed_mean_10_90"},
      {"soil_burst",
       WindowType::kSession,
       12 * m,
       12 * m,
       12 * m,
       15 * m,
       3,
       {K::kMedian},
       "soil_moisture",
       "median"},
      {"flow_regulatory",
       WindowType::kTumbling,
       15 * m,
       15 * m,
       0,
       5 * m,
       10,
       {K::kMean, K::kMax},
       "flow",
       "mean"},
      {"flow_realtime",
       WindowType::kSliding,
       15 * m,
       5 * m,
       0,
       5 * m,
       10,
       {K::kMean, K::kMax},
       "flow",
       "mean"},
      {"do_regulatory",
       WindowType::kTumbling,
       30 * m,
       30 * m,
       0,
       5 * m,
       20,
       {K::kMean, K::kMin},
       "dissolved_oxygen",
       "mean"},
      {"conductivity_regulatory",
       WindowType::kTumbling,
       60 * m,
       60 * m,
       0,
       10 * m,
       40,
       {K::kMedian},
       "conductivity",
       "median"},
      {"pm10_daily",
       WindowType::kTumbling,
       1440 * m,
       1440 * m,
       0,
       60 * m,
       1,
       {K::kMean, K::kMax},
       "pm10",
       "mean"},
      {"pm25_daily",
       WindowType::kTumbling,
       1440 * m,
       1440 * m,
       0,
       60 * m,
       1,
       {K::kMean, K::kMax},
       "pm25",
       "mean"},
      {"no2_hourly",
       WindowType::kTumbling,
       60 * m,
       60 * m,
       0,
       10 * m,
       1,
       {K::kMean, K::kMax},
       "no2",
       "mean"},
  };
  ASSERT_EQ(WindowPresets().size(), std::size(expected));
  for (const Expect& e : expected) {
    SCOPED_TRACE(e.name);
    Result<PipelineConfig> c = Config(std::string("processing:\n  grace: 1s\nwindows:\n") +
                                      "  - name: w\n    preset: " + e.name + "\n");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    auto defs = ParseWindowDefinitions(*c);
    ASSERT_TRUE(defs.ok()) << defs.status().ToString();
    const WindowDefinition& d = (*defs)[0];
    EXPECT_EQ(d.preset, e.name);
    EXPECT_EQ(d.type, e.type);
    EXPECT_EQ(d.size, e.size);
    EXPECT_EQ(d.step, e.step);
    EXPECT_EQ(d.gap, e.gap);
    EXPECT_EQ(d.grace, e.grace);  // the preset's, not processing.grace
    EXPECT_EQ(d.min_samples, e.min_samples);
    for (AggregateKind k : e.aggregates) EXPECT_TRUE(d.aggregates.Has(k));
    EXPECT_FALSE(d.aggregates.Has(AggregateKind::kStd) &&
                 std::find(e.aggregates.begin(), e.aggregates.end(), K::kStd) ==
                     e.aggregates.end());
    ASSERT_EQ(d.metrics.size(), 1u);
    EXPECT_EQ(d.metrics[0].view(), e.metric);
    EXPECT_EQ(d.aggregation_method.view(), e.method);
  }
  // Explicit keys override the preset's values.
  Result<PipelineConfig> c = Config(
      "windows:\n  - name: w\n    preset: pm25_realtime\n    grace: 1m\n    step: 3m\n"
      "    min_samples: 2\n    metrics: [pm10]\n    aggregates: [mean]\n"
      "  - name: t\n    preset: pm25_realtime\n    type: tumbling\n"
      "  - name: s\n    preset: soil_burst\n    gap: 5m\n    group_by: zone\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto defs = ParseWindowDefinitions(*c);
  ASSERT_TRUE(defs.ok()) << defs.status().ToString();
  const WindowDefinition& w = (*defs)[0];
  EXPECT_EQ(w.type, WindowType::kSliding);
  EXPECT_EQ(w.size, 15 * m);
  EXPECT_EQ(w.step, 3 * m);
  EXPECT_EQ(w.grace, m);
  EXPECT_EQ(w.min_samples, 2);
  EXPECT_EQ(w.metrics[0].view(), "pm10");
  EXPECT_TRUE(w.aggregates.Has(K::kMean));
  EXPECT_FALSE(w.aggregates.Has(K::kP95));
  const WindowDefinition& t = (*defs)[1];  // the preset's step is for its own type
  EXPECT_EQ(t.type, WindowType::kTumbling);
  EXPECT_EQ(t.step, 15 * m);
  const WindowDefinition& ss = (*defs)[2];
  EXPECT_EQ(ss.gap, 5 * m);
  EXPECT_EQ(ss.group_by, GroupBy::kZone);
  EXPECT_EQ(ss.grace, 15 * m);
  // The preset table is in the generated docs.
  const std::string doc(WindowSectionSpec().description);
  for (const WindowPreset& p : WindowPresets()) {
    EXPECT_NE(doc.find("| " + std::string(p.name) + " |"), std::string::npos) << p.name;
  }
}

TEST(WindowConfigTest, SpecDocumentsEveryAggregate) {
  const SectionSpec& spec = WindowSectionSpec();
  EXPECT_EQ(spec.path, "windows[]");
  const OptionSpec* aggregates = nullptr;
  for (const OptionSpec& o : spec.options) {
    if (o.key == "aggregates") aggregates = &o;
  }
  ASSERT_NE(aggregates, nullptr);
  for (const AggregateInfo& a : AggregateTable()) {
    EXPECT_NE(aggregates->description.find(a.name), std::string_view::npos) << a.name;
  }
}

// ---------------------------------------------------------------------------
// Behaviour

TEST(WindowOperatorTest, ResultColumns) {
  Harness h(
      "processing:\n  out_of_orderness: 0s\n  grace: 0s\n"
      "windows:\n  - name: w\n    size: 1m\n    aggregates: [count, max]\n    min_samples: 3\n");
  ASSERT_NE(h.op, nullptr);
  h.wall = 123 * kMicrosPerSecond;
  Reading a = MakeReading(1, 1, "d", "pm25", 4);
  a.lat = 10;
  a.lon = 20;
  h.Run({a, MakeReading(2, 2, "d", "pm25", 6)});
  Batch b = h.Run({MakeReading(60, 60, "d", "pm25", 1)});
  ASSERT_EQ(b.windows.size(), 1u);
  const WindowResult& w = b.windows[0];
  EXPECT_EQ(w.window.view(), "w");
  EXPECT_EQ(w.group_by.view(), "device");
  EXPECT_EQ(w.group.view(), "d");
  EXPECT_EQ(w.metric.view(), "pm25");
  EXPECT_EQ(w.start, 0);
  EXPECT_EQ(w.end, kMicrosPerMinute);
  EXPECT_EQ(w.count, 2u);
  EXPECT_TRUE(std::isnan(w.mean));  // not configured
  EXPECT_TRUE(std::isnan(w.min));
  EXPECT_TRUE(std::isnan(w.std));
  EXPECT_TRUE(std::isnan(w.median));
  EXPECT_EQ(w.max, 6);
  EXPECT_EQ(w.first, 4);
  EXPECT_EQ(w.last, 6);
  EXPECT_EQ(w.centroid_lat, 10);  // only the reading with a position
  EXPECT_EQ(w.centroid_lon, 20);
  EXPECT_EQ(w.distinct_sensors, 1u);
  EXPECT_EQ(w.aggregation_method.view(), "max");
  EXPECT_EQ(w.flags, static_cast<uint32_t>(WindowFlag::kBelowMinSamples));
  EXPECT_EQ(w.revision, 0u);
  EXPECT_EQ(w.emitted_at, 123 * kMicrosPerSecond);
  EXPECT_EQ(b.watermark, kMicrosPerMinute);
  EXPECT_EQ(h.ledger.Snapshot().windows_emitted, 1u);
}

TEST(WindowOperatorTest, NonFiniteValuesAreAcceptedButNotAggregated) {
  Harness h(
      "processing:\n  out_of_orderness: 0s\n  grace: 0s\n"
      "windows:\n  - name: w\n    size: 1m\n");
  ASSERT_NE(h.op, nullptr);
  Batch b = h.Run({MakeReading(1, 1, "d", "pm25", NAN), MakeReading(2, 2, "d", "pm25", 5),
                   MakeReading(3, 3, "d", "pm25", INFINITY)});
  EXPECT_EQ(b.readings.size(), 3u);
  Batch out;
  ASSERT_TRUE(h.op->Finish(out).ok());
  ASSERT_EQ(out.windows.size(), 1u);
  EXPECT_EQ(out.windows[0].count, 1u);
  EXPECT_EQ(out.windows[0].mean, 5);
  EXPECT_EQ(h.ledger.Snapshot().accepted, 3u);
}

TEST(WindowOperatorTest, ReadingsOfNoDefinitionAreAccepted) {
  Harness h(
      "processing:\n  out_of_orderness: 0s\n  grace: 0s\n"
      "windows:\n  - name: w\n    size: 1m\n    metrics: [pm25]\n");
  ASSERT_NE(h.op, nullptr);
  h.Run({MakeReading(100, 100, "d", "pm25", 1)});
  // Far past any window of `w`, but `w` does not take temperature: accepted.
  Batch b = h.Run({MakeReading(1, 101, "d", "temperature", 20)});
  EXPECT_EQ(b.readings.size(), 1u);
  EXPECT_TRUE(b.late.empty());
  EXPECT_EQ(h.ledger.Snapshot().accepted, 2u);
  EXPECT_EQ(h.ledger.Snapshot().late, 0u);
}

TEST(WindowOperatorTest, OnIdleBeforeAnyInputDoesNothing) {
  Harness h("windows:\n  - name: w\n    size: 1m\n");
  ASSERT_NE(h.op, nullptr);
  Batch out;
  ASSERT_TRUE(h.op->OnIdle(NowUs(), out).ok());
  EXPECT_TRUE(out.windows.empty());
  EXPECT_EQ(out.watermark, kMinTime);
}

TEST(WindowOperatorTest, StateIsFreedAfterGrace) {
  Harness h(
      "processing:\n  out_of_orderness: 0s\n  grace: 30s\n"
      "windows:\n  - name: w\n    size: 1m\n");
  ASSERT_NE(h.op, nullptr);
  std::vector<Reading> rs;
  for (int d = 0; d < 10; ++d) rs.push_back(MakeReading(5, 5, "d" + std::to_string(d), "pm25", d));
  h.Run(rs);
  EXPECT_EQ(h.op->Stats().open_windows, 10u);
  EXPECT_EQ(h.op->Stats().open_slices, 1u);
  EXPECT_GT(h.op->Stats().state_bytes, 10 * sizeof(WindowAccumulator));
  h.Run({MakeReading(89, 89, "d0", "pm25", 1)});  // emitted, still within grace
  EXPECT_EQ(h.op->Stats().open_windows, 11u);
  h.Run({MakeReading(90, 90, "d0", "pm25", 1)});  // 60 + 30: freed
  EXPECT_EQ(h.op->Stats().open_windows, 1u);
  EXPECT_EQ(h.op->Stats().open_slices, 1u);
}

// ---------------------------------------------------------------------------
// Determinism: shuffled arrival within grace gives bit-identical final rows.

struct Key {
  std::string window, group, metric;
  TimeUs start;
  bool operator<(const Key& o) const {
    return std::tie(window, group, metric, start) < std::tie(o.window, o.group, o.metric, o.start);
  }
};

size_t superseded_session_rows = 0;  // rows replaced by a later, wider session row

std::map<Key, WindowResult> FinalRows(const std::string& yaml, const std::vector<Reading>& input,
                                      std::mt19937_64& rng, bool shuffle, uint64_t* late_records) {
  Harness h(yaml);
  std::map<Key, WindowResult> rows;
  if (h.op == nullptr) return rows;
  std::vector<Reading> readings = input;
  if (shuffle) std::shuffle(readings.begin(), readings.end(), rng);
  for (size_t i = 0; i < readings.size(); ++i) {
    readings[i].arrival_time = static_cast<TimeUs>(i) * kMicrosPerMilli;
  }
  std::set<std::string> sessions;
  for (const WindowDefinition& d : h.op->definitions()) {
    if (d.type == WindowType::kSession) sessions.insert(d.name);
  }
  auto collect = [&](const Batch& b) {
    *late_records += b.late.size();
    for (const WindowResult& w : b.windows) {
      Key k{w.window.str(), w.group.str(), w.metric.str(), w.start};
      const bool session = sessions.count(k.window) > 0;
      auto it = rows.find(k);
      if (it != rows.end()) {
        if (session) {
          EXPECT_GT(w.revision, it->second.revision);  // merges skip numbers
        } else {
          EXPECT_EQ(w.revision, it->second.revision + 1);
        }
        EXPECT_TRUE(w.flags & static_cast<uint32_t>(WindowFlag::kRevision));
      }
      if (session) {
        // The documented rule: a session row supersedes the key's rows within it.
        for (auto r = rows.lower_bound(Key{k.window, k.group, k.metric, kMinTime});
             r != rows.end() && r->first.window == k.window && r->first.group == k.group &&
             r->first.metric == k.metric;) {
          if (r->second.start >= w.start && r->second.end <= w.end) {
            if (r->second.start != w.start) ++superseded_session_rows;
            r = rows.erase(r);
          } else {
            ++r;
          }
        }
      }
      rows[k] = w;
    }
  };
  std::uniform_int_distribution<size_t> batch_size(1, shuffle ? 97 : 50);
  size_t i = 0;
  while (i < readings.size()) {
    size_t n = std::min(batch_size(rng), readings.size() - i);
    std::vector<Reading> part(readings.begin() + static_cast<ptrdiff_t>(i),
                              readings.begin() + static_cast<ptrdiff_t>(i + n));
    collect(h.Run(std::move(part)));
    i += n;
  }
  Batch out;
  EXPECT_TRUE(h.op->Finish(out).ok());
  collect(out);
  LedgerSnapshot s = h.ledger.Snapshot();
  EXPECT_EQ(s.accepted, input.size());
  EXPECT_EQ(s.late, 0u);
  return rows;
}

uint64_t Bits(double v) {
  return std::bit_cast<uint64_t>(v);
}

TEST(WindowDeterminismTest, ShuffledReadingsGiveBitIdenticalFinalRows) {
  const std::string yaml =
      "processing:\n  out_of_orderness: 0s\n  grace: 1h\n"
      "windows:\n"
      "  - name: dev\n    size: 1m\n    aggregates: [count, mean, min, max, std]\n"
      "  - name: city\n    size: 5m\n    group_by: all\n    aggregates: [count, mean, min, max, "
      "std]\n"
      "  - name: slide\n    type: sliding\n    size: 2m\n    step: 30s\n    group_by: zone\n"
      "    aggregates: [count, mean, std]\n"
      "  - name: stats\n    size: 2m\n    group_by: zone\n"
      "    aggregates: [median, p95, p10, q99.5, trimmed_mean]\n"
      "  - name: sess\n    type: session\n    gap: 15s\n    aggregates: [mean, median, p95]\n";
  std::mt19937_64 rng(42);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<Reading> input;
  const char* metrics[] = {"pm25", "pressure", "temperature"};
  for (int i = 0; i < 4000; ++i) {
    int device = static_cast<int>(unit(rng) * 25);
    const char* metric = metrics[i % 3];
    // Values with a large mean and a small spread, plus rare outliers: the case where
    // float summation order shows in the last bits.
    double value = metric == metrics[1]   ? 101325.0 + 0.37 * noise(rng)
                   : metric == metrics[0] ? 12.0 * unit(rng) + (unit(rng) < 0.01 ? 1e6 : 0.0)
                                          : 15.0 + 0.1 * i * unit(rng) - 7.3;
    Reading r = MakeReading(unit(rng) * 600.0, 0, "dev" + std::to_string(device), metric, value);
    r.lat = 48.0 + unit(rng);
    r.lon = 11.0 + unit(rng);
    r.zone = Intern(device % 2 ? "east" : "west");
    input.push_back(r);
  }
  std::sort(input.begin(), input.end(),
            [](const Reading& a, const Reading& b) { return a.event_time < b.event_time; });

  uint64_t late = 0;
  std::map<Key, WindowResult> reference = FinalRows(yaml, input, rng, false, &late);
  ASSERT_GT(reference.size(), 850u);
  for (int round = 0; round < 4; ++round) {
    std::map<Key, WindowResult> rows = FinalRows(yaml, input, rng, true, &late);
    ASSERT_EQ(rows.size(), reference.size());
    for (const auto& [k, w] : reference) {
      const WindowResult& o = rows.at(k);
      SCOPED_TRACE(k.window + " " + k.group + " " + k.metric + " " + std::to_string(k.start));
      EXPECT_EQ(o.count, w.count);
      EXPECT_EQ(Bits(o.mean), Bits(w.mean));
      EXPECT_EQ(Bits(o.min), Bits(w.min));
      EXPECT_EQ(Bits(o.max), Bits(w.max));
      EXPECT_EQ(Bits(o.std), Bits(w.std));
      EXPECT_EQ(Bits(o.first), Bits(w.first));
      EXPECT_EQ(Bits(o.last), Bits(w.last));
      EXPECT_EQ(Bits(o.centroid_lat), Bits(w.centroid_lat));
      EXPECT_EQ(Bits(o.centroid_lon), Bits(w.centroid_lon));
      EXPECT_EQ(o.distinct_sensors, w.distinct_sensors);
      EXPECT_EQ(o.end, w.end);
      EXPECT_EQ(Bits(o.median), Bits(w.median));
      EXPECT_EQ(Bits(o.p95), Bits(w.p95));
      EXPECT_EQ(Bits(o.trimmed_mean), Bits(w.trimmed_mean));
      ASSERT_EQ(o.quantiles.size(), w.quantiles.size());
      for (size_t q = 0; q < o.quantiles.size(); ++q) {
        EXPECT_EQ(Bits(o.quantiles[q].second), Bits(w.quantiles[q].second));
      }
      if (HasFailure()) return;
    }
  }
  EXPECT_EQ(late, 0u);
  EXPECT_GT(superseded_session_rows, 10u);  // shuffles did merge and re-start sessions

  // And the values are right: compare the `dev` rows with a two-pass reference.
  std::map<Key, std::vector<double>> values;
  for (const Reading& r : input) {
    TimeUs start = FloorDiv(r.event_time, kMicrosPerMinute) * kMicrosPerMinute;
    values[Key{"dev", r.device.str(), r.metric.str(), start}].push_back(r.value);
  }
  for (const auto& [k, v] : values) {
    const WindowResult& w = reference.at(k);
    long double sum = 0;
    for (double x : v) sum += x;
    long double mean = sum / v.size();
    long double m2 = 0;
    for (double x : v) m2 += (x - mean) * (x - mean);
    ASSERT_EQ(w.count, v.size());
    EXPECT_NEAR(w.mean, static_cast<double>(mean), 1e-12 * std::fabs(static_cast<double>(mean)));
    if (v.size() > 1) {
      double std_ref = std::sqrt(static_cast<double>(m2 / (v.size() - 1)));
      EXPECT_NEAR(w.std, std_ref, 1e-9 * std_ref + 1e-12);
    }
    EXPECT_EQ(w.min, *std::min_element(v.begin(), v.end()));
    EXPECT_EQ(w.max, *std::max_element(v.begin(), v.end()));
  }

  // Order statistics of `stats` against a fully sorted reference (type 7).
  auto quantile = [](std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    const double hq = static_cast<double>(v.size() - 1) * q;
    const size_t lo = static_cast<size_t>(std::floor(hq));
    if (lo + 1 >= v.size()) return v[lo];
    return v[lo] + (hq - static_cast<double>(lo)) * (v[lo + 1] - v[lo]);
  };
  std::map<Key, std::vector<double>> zone_values;
  for (const Reading& r : input) {
    TimeUs start = FloorDiv(r.event_time, 2 * kMicrosPerMinute) * 2 * kMicrosPerMinute;
    zone_values[Key{"stats", r.zone.str(), r.metric.str(), start}].push_back(r.value);
  }
  for (const auto& [k, v] : zone_values) {
    const WindowResult& w = reference.at(k);
    EXPECT_EQ(w.median, quantile(v, 0.5));
    EXPECT_EQ(w.p95, quantile(v, 0.95));
    ASSERT_EQ(w.quantiles.size(), 2u);
    EXPECT_EQ(w.quantiles[0].second, quantile(v, 0.10));
    EXPECT_EQ(w.quantiles[1].second, quantile(v, 0.995));
    const double lo = quantile(v, 0.1), hi = quantile(v, 0.9);
    long double sum = 0;
    size_t n = 0;
    for (double x : v) {
      if (x >= lo && x <= hi) {
        sum += x;
        ++n;
      }
    }
    EXPECT_NEAR(w.trimmed_mean, static_cast<double>(sum / n),
                1e-12 * std::fabs(static_cast<double>(sum / n)) + 1e-12);
  }

  // Sessions against the offline definition: per key, sort event times and split
  // where the next reading is `gap` or more after the previous one.
  std::map<std::pair<std::string, std::string>, std::vector<TimeUs>> times;
  for (const Reading& r : input) times[{r.device.str(), r.metric.str()}].push_back(r.event_time);
  size_t expected_sessions = 0, splits = 0, merged = 0;
  const TimeUs gap = 15 * kMicrosPerSecond;
  for (auto& [key, ts] : times) {
    std::sort(ts.begin(), ts.end());
    size_t begin = 0;
    for (size_t i = 1; i <= ts.size(); ++i) {
      if (i < ts.size() && ts[i] - ts[i - 1] < gap) continue;
      ++expected_sessions;
      const WindowResult& w = reference.at(Key{"sess", key.first, key.second, ts[begin]});
      EXPECT_EQ(w.end, ts[i - 1] + gap);
      EXPECT_EQ(w.count, i - begin);
      if (i - begin > 1) ++merged;
      begin = i;
      ++splits;
    }
  }
  size_t session_rows = 0;
  for (const auto& [k, w] : reference) session_rows += k.window == "sess";
  EXPECT_EQ(session_rows, expected_sessions);
  EXPECT_GT(merged, 100u);   // the data exercises multi-reading sessions...
  EXPECT_GT(splits, 1000u);  // ...and splits
}

// ---------------------------------------------------------------------------
// Two-tier pre-aggregation: sliding windows built from panes give the same rows, in
// the same order, as adding each reading to every window (`pane: 0s`), on shuffled
// input with revisions within grace, late readings and the next_window policy.

void ExpectSameRow(const WindowResult& a, const WindowResult& b) {
  EXPECT_EQ(a.window, b.window);
  EXPECT_EQ(a.group, b.group);
  EXPECT_EQ(a.metric, b.metric);
  EXPECT_EQ(a.start, b.start);
  EXPECT_EQ(a.end, b.end);
  EXPECT_EQ(a.count, b.count);
  for (auto [x, y] : {std::pair{a.mean, b.mean},
                      {a.min, b.min},
                      {a.max, b.max},
                      {a.std, b.std},
                      {a.median, b.median},
                      {a.p95, b.p95},
                      {a.trimmed_mean, b.trimmed_mean},
                      {a.first, b.first},
                      {a.last, b.last},
                      {a.centroid_lat, b.centroid_lat},
                      {a.centroid_lon, b.centroid_lon},
                      {a.interpolated_sample_fraction, b.interpolated_sample_fraction}}) {
    EXPECT_EQ(Bits(x), Bits(y));
  }
  ASSERT_EQ(a.quantiles.size(), b.quantiles.size());
  for (size_t q = 0; q < a.quantiles.size(); ++q) {
    EXPECT_EQ(Bits(a.quantiles[q].second), Bits(b.quantiles[q].second));
  }
  EXPECT_EQ(a.distinct_sensors, b.distinct_sensors);
  EXPECT_EQ(a.late_count, b.late_count);
  EXPECT_EQ(a.flags, b.flags);
  EXPECT_EQ(a.revision, b.revision);
}

TEST(WindowPaneTest, PanesGiveTheSameRowsAsDirectAssignment) {
  const std::string windows =
      "  - name: slide\n    type: sliding\n    size: 15m\n    step: 1m\n    grace: 3m\n"
      "    aggregates: [count, mean, min, max, std, median, p95, p10, trimmed_mean]\n"
      "  - name: zone\n    type: sliding\n    size: 10m\n    step: 4m\n    offset: 30s\n"
      "    group_by: zone\n    aggregates: [mean, std, q99]\n"
      "  - name: next\n    type: sliding\n    size: 6m\n    step: 3m\n    grace: 0s\n"
      "    late_policy: next_window\n    group_by: all\n    aggregates: [mean, max, median]\n";
  std::string direct = windows;
  for (size_t at = direct.find("aggregates"); at != std::string::npos;
       at = direct.find("aggregates", at + 20)) {
    direct.insert(at, "pane: 0s\n    ");
  }
  const std::string processing = "processing:\n  out_of_orderness: 10s\n  grace: 2m\nwindows:\n";
  Harness panes(processing + windows);
  Harness plain(processing + direct);
  ASSERT_NE(panes.op, nullptr);
  ASSERT_NE(plain.op, nullptr);
  EXPECT_EQ(panes.op->definitions()[0].pane, kMicrosPerMinute);
  EXPECT_EQ(panes.op->definitions()[1].pane, 2 * kMicrosPerMinute);  // gcd(10m, 4m)
  EXPECT_EQ(panes.op->definitions()[2].pane, 3 * kMicrosPerMinute);
  EXPECT_EQ(plain.op->definitions()[0].pane, 0);

  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<Reading> input;
  for (int i = 0; i < 6000; ++i) {
    const double t = i * 0.6;  // 1 h of event time
    // Most readings are a few seconds late; some minutes late (within and past grace).
    const double delay = unit(rng) < 0.1 ? unit(rng) * 1200.0 : unit(rng) * 5.0;
    const int device = static_cast<int>(unit(rng) * 12);
    Reading r = MakeReading(t - delay, t, "d" + std::to_string(device), i % 2 ? "pm25" : "no2",
                            unit(rng) < 0.02 ? 1e6 : 20.0 * unit(rng) + device);
    r.lat = 48.0 + 0.01 * device;
    r.lon = 11.0 + 0.01 * device;
    r.zone = Intern(device % 3 == 0 ? "north" : "south");
    input.push_back(r);
  }
  // Shuffle within blocks of 200 so arrival order differs from event order but the
  // watermark still advances.
  for (size_t b = 0; b < input.size(); b += 200) {
    std::shuffle(input.begin() + static_cast<ptrdiff_t>(b),
                 input.begin() + static_cast<ptrdiff_t>(std::min(b + 200, input.size())), rng);
  }
  size_t rows = 0, revisions = 0, late = 0, late_counted = 0;
  auto compare = [&](const Batch& a, const Batch& b) {
    ASSERT_EQ(a.windows.size(), b.windows.size());
    for (size_t i = 0; i < a.windows.size(); ++i) {
      SCOPED_TRACE(FormatWindow(b.windows[i]));
      ExpectSameRow(a.windows[i], b.windows[i]);
      revisions += a.windows[i].revision > 0;
      late_counted += a.windows[i].late_count > 0;
    }
    ASSERT_EQ(a.late.size(), b.late.size());
    for (size_t i = 0; i < a.late.size(); ++i)
      EXPECT_EQ(FormatLate(a.late[i]), FormatLate(b.late[i]));
    ASSERT_EQ(a.readings.size(), b.readings.size());
    rows += a.windows.size();
    late += a.late.size();
  };
  std::uniform_int_distribution<size_t> batch_size(1, 150);
  for (size_t i = 0; i < input.size();) {
    const size_t n = std::min(batch_size(rng), input.size() - i);
    std::vector<Reading> part(input.begin() + static_cast<ptrdiff_t>(i),
                              input.begin() + static_cast<ptrdiff_t>(i + n));
    i += n;
    Batch a = panes.Run(part);
    Batch b = plain.Run(part);
    compare(a, b);
    if (HasFailure()) return;
    EXPECT_EQ(panes.op->Stats().open_windows, plain.op->Stats().open_windows);
  }
  Batch a, b;
  ASSERT_TRUE(panes.op->Finish(a).ok());
  ASSERT_TRUE(plain.op->Finish(b).ok());
  compare(a, b);
  EXPECT_EQ(panes.ledger.Snapshot().accepted, plain.ledger.Snapshot().accepted);
  EXPECT_EQ(panes.ledger.Snapshot().late, plain.ledger.Snapshot().late);
  EXPECT_EQ(panes.op->Stats().open_panes, 0u);
  // The input exercises what the panes must get right.
  EXPECT_GT(rows, 3000u);
  EXPECT_GT(revisions, 100u);
  EXPECT_GT(late, 50u);
  EXPECT_GT(late_counted, 50u);
}

TEST(WindowPaneTest, PaneMustDivideSizeAndStep) {
  EXPECT_NE(ErrorOf("  - name: s\n    type: sliding\n    size: 15m\n    step: 1m\n    pane: 7m\n")
                .find("windows[0].pane: 7m does not divide the size 15m and the step 1m"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - name: t\n    size: 15m\n    pane: 1m\n")
                .find("windows[0].pane: applies to sliding windows only"),
            std::string::npos);
  EXPECT_EQ(ErrorOf("  - name: s\n    type: sliding\n    size: 15m\n    step: 5m\n    pane: 1m\n"),
            "");
}

// ---------------------------------------------------------------------------
// Resampling to a common grid: mixed-rate sensors, interpolated_sample_fraction.

std::map<std::string, WindowResult> ResampledRows(const std::string& mode) {
  Harness h(
      "processing:\n  out_of_orderness: 0s\n  grace: 0s\nwindows:\n"
      "  - name: r\n    size: 5m\n    resample: " +
      mode + "\n    resample_interval: 1m\n    aggregates: [mean, min, max, median]\n");
  std::map<std::string, WindowResult> rows;
  if (h.op == nullptr) return rows;
  std::vector<Reading> in;
  in.push_back(MakeReading(0, 0, "slow", "pm25", 10));  // a 3-minute sensor
  in.push_back(MakeReading(180, 0, "slow", "pm25", 40));
  for (int t = 0; t < 300; t += 10) in.push_back(MakeReading(t, 0, "fast", "pm25", t / 10.0));
  in.push_back(MakeReading(130, 0, "starter", "pm25", 7));  // first reading mid-window
  std::mt19937_64 rng(3);
  std::shuffle(in.begin(), in.end(), rng);
  h.Run(in);
  Batch out = h.Run({MakeReading(400, 1, "other", "no2", 1)});
  for (const WindowResult& w : out.windows) rows[w.group.str()] = w;
  return rows;
}

TEST(WindowResampleTest, LinearAndForwardFillOnAOneMinuteGrid) {
  std::map<std::string, WindowResult> lin = ResampledRows("linear");
  ASSERT_EQ(lin.size(), 3u);
  // slow: observed at 0 (10) and 180 (40); 60 and 120 interpolated, 240 holds 40.
  EXPECT_EQ(lin["slow"].count, 5u);
  EXPECT_DOUBLE_EQ(lin["slow"].mean, (10 + 20 + 30 + 40 + 40) / 5.0);
  EXPECT_DOUBLE_EQ(lin["slow"].median, 30);
  EXPECT_DOUBLE_EQ(lin["slow"].interpolated_sample_fraction, 0.6);
  // fast: every point observed; each is the mean of its six readings.
  EXPECT_EQ(lin["fast"].count, 5u);
  EXPECT_DOUBLE_EQ(lin["fast"].min, 2.5);
  EXPECT_DOUBLE_EQ(lin["fast"].max, 26.5);
  EXPECT_DOUBLE_EQ(lin["fast"].interpolated_sample_fraction, 0.0);
  // starter: nothing before its first reading; 180 and 240 hold its value.
  EXPECT_EQ(lin["starter"].count, 3u);
  EXPECT_DOUBLE_EQ(lin["starter"].mean, 7);
  EXPECT_DOUBLE_EQ(lin["starter"].interpolated_sample_fraction, 2.0 / 3.0);
  // SPARSE judges what the sensors sent, not the filled grid: slow sent 2 of the 5
  // readings a one-minute sensor would (0.4 < 0.7), fast 30.
  EXPECT_EQ(WindowFlagsToString(lin["slow"].flags), "SPARSE");
  EXPECT_EQ(WindowFlagsToString(lin["fast"].flags), "");

  std::map<std::string, WindowResult> ffill = ResampledRows("ffill");
  ASSERT_EQ(ffill.size(), 3u);
  EXPECT_EQ(ffill["slow"].count, 5u);
  EXPECT_DOUBLE_EQ(ffill["slow"].mean, (10 + 10 + 10 + 40 + 40) / 5.0);
  EXPECT_DOUBLE_EQ(ffill["slow"].interpolated_sample_fraction, 0.6);
  EXPECT_DOUBLE_EQ(ffill["fast"].mean, lin["fast"].mean);

  // Without resampling the raw counts differ by sensor rate and the fraction is NaN.
  std::map<std::string, WindowResult> raw = ResampledRows("none");
  EXPECT_EQ(raw["fast"].count, 30u);
  EXPECT_EQ(raw["slow"].count, 2u);
  EXPECT_TRUE(std::isnan(raw["slow"].interpolated_sample_fraction));
}

TEST(WindowResampleTest, ConfigErrors) {
  EXPECT_NE(ErrorOf("  - name: r\n    size: 5m\n    resample: linear\n    resample_interval: 2m\n")
                .find("windows[0].resample_interval: 2m does not divide the size 5m"),
            std::string::npos);
  EXPECT_NE(ErrorOf("  - name: s\n    type: session\n    gap: 5m\n    resample: ffill\n")
                .find("windows[0].resample: applies to tumbling and sliding windows only"),
            std::string::npos);
}

// ---------------------------------------------------------------------------
// NowCast and AQI through the window stage: EPA's worked example (alert/aqi_test.cc
// cites it) as 12 hourly windows of the pm25_regulatory preset.

TEST(WindowNowCastTest, EpaWorkedExampleThroughHourlyWindows) {
  Harness h(
      "processing:\n  out_of_orderness: 0s\nwindows:\n"
      "  - name: reg\n    preset: pm25_regulatory\n    min_samples: 1\n");
  ASSERT_NE(h.op, nullptr);
  const double hourly[] = {50, 80, 75, 90, 82, 53, 64, 74, 21, 10, 16, 13};
  std::vector<WindowResult> rows;
  for (int i = 0; i < 12; ++i) {
    // Two readings per hour whose mean is the hour's value.
    Batch b = h.Run({MakeReading(3600.0 * i + 600, 0, "s1", "pm25", hourly[i] - 1),
                     MakeReading(3600.0 * i + 1200, 0, "s1", "pm25", hourly[i] + 1)});
    rows.insert(rows.end(), b.windows.begin(), b.windows.end());
  }
  Batch out;
  ASSERT_TRUE(h.op->Finish(out).ok());
  rows.insert(rows.end(), out.windows.begin(), out.windows.end());
  ASSERT_EQ(rows.size(), 12u);
  const WindowResult& last = rows.back();
  EXPECT_EQ(last.start, 11 * kMicrosPerHour);
  EXPECT_DOUBLE_EQ(last.mean, 13);
  EXPECT_DOUBLE_EQ(last.nowcast, 17.4);
  EXPECT_DOUBLE_EQ(last.aqi, 66);
  EXPECT_EQ(last.aggregation_method.view(), "nowcast");
  // The first hour alone: 2 of the 3 most recent hours are missing, so no NowCast.
  EXPECT_TRUE(std::isnan(rows[0].nowcast));
  EXPECT_TRUE(std::isnan(rows[0].aqi));
}

// ---------------------------------------------------------------------------
// EU data capture (75 %) on daily means and the yearly exceedance count.

TEST(WindowRegulatoryTest, DataCaptureAndExceedanceCount) {
  // pm10_daily: 1-day means, valid with >= 75 % of the expected readings (hourly
  // sensors here: 18 of 24), days with a valid mean > 50 µg/m³ counted per year.
  Harness h(
      "processing:\n  out_of_orderness: 0s\nwindows:\n"
      "  - name: day\n    preset: pm10_daily\n    expected_interval: 1h\n");
  ASSERT_NE(h.op, nullptr);
  const TimeUs day = 24 * kMicrosPerHour;
  const TimeUs t0 = 1735689600LL * kMicrosPerSecond - 3 * day;  // 2024-12-29 00:00 UTC
  std::vector<WindowResult> rows;
  // Days: 60 with 24 hours, 70 with 18 hours (valid), 80 with 17 hours (invalid),
  // then in the new year 55 with 24 hours.
  const struct {
    double mean;
    int hours;
  } days[] = {{60, 24}, {70, 18}, {80, 17}, {55, 24}};
  for (int d = 0; d < 4; ++d) {
    std::vector<Reading> in;
    for (int hr = 0; hr < days[d].hours; ++hr) {
      Reading r = MakeReading(0, 0, "station", "pm10", days[d].mean);
      r.event_time = t0 + d * day + hr * kMicrosPerHour;
      in.push_back(r);
    }
    Batch b = h.Run(in);
    rows.insert(rows.end(), b.windows.begin(), b.windows.end());
  }
  Batch out;
  ASSERT_TRUE(h.op->Finish(out).ok());
  rows.insert(rows.end(), out.windows.begin(), out.windows.end());
  ASSERT_EQ(rows.size(), 4u);
  const auto capture = static_cast<uint32_t>(WindowFlag::kInsufficientCapture);
  const auto exceed = static_cast<uint32_t>(WindowFlag::kExceedance);
  EXPECT_EQ(rows[0].flags & (capture | exceed), exceed);
  EXPECT_EQ(rows[0].exceedance_count, 1);
  EXPECT_EQ(rows[1].flags & (capture | exceed), exceed);  // 18 / 24 = 75 %: valid
  EXPECT_EQ(rows[1].exceedance_count, 2);
  EXPECT_EQ(rows[2].flags & (capture | exceed), capture);  // 17 / 24: invalid, not counted
  EXPECT_DOUBLE_EQ(rows[2].mean, 80);                      // the value is still reported
  EXPECT_EQ(rows[2].exceedance_count, 2);
  EXPECT_EQ(rows[3].start, 1735689600LL * kMicrosPerSecond);
  EXPECT_EQ(rows[3].exceedance_count, 1);  // a new calendar year
}

TEST(WindowRegulatoryTest, ExpectedIntervalComesFromALookup) {
  // Per-device reporting intervals (the device registry's): a 10-minute sensor with 4
  // readings in an hour is sparse and below 75 %; a 1-hour sensor with 1 is complete.
  Harness h(
      "processing:\n  out_of_orderness: 0s\nwindows:\n"
      "  - name: h\n    size: 1h\n    data_capture: 0.75\n");
  ASSERT_NE(h.op, nullptr);
  h.op->SetExpectedInterval([](Symbol device, Symbol) -> DurationUs {
    return device.view() == "fast"   ? 10 * kMicrosPerMinute
           : device.view() == "slow" ? kMicrosPerHour
                                     : 0;
  });
  std::vector<Reading> in;
  for (int i = 0; i < 4; ++i) in.push_back(MakeReading(600.0 * i, 0, "fast", "pm25", 1));
  in.push_back(MakeReading(100, 0, "slow", "pm25", 1));
  h.Run(in);
  Batch out = h.Run({MakeReading(4000, 1, "x", "no2", 1)});
  ASSERT_EQ(out.windows.size(), 2u);
  std::map<std::string, uint32_t> flags;
  for (const WindowResult& w : out.windows) flags[w.group.str()] = w.flags;
  EXPECT_EQ(WindowFlagsToString(flags["fast"]), "SPARSE|INSUFFICIENT_CAPTURE");  // 4 of 6
  EXPECT_EQ(WindowFlagsToString(flags["slow"]), "");
}

// ---------------------------------------------------------------------------
// Ledger: every reading ends accepted or late, once.

TEST(WindowLedgerTest, AcceptedPlusLateEqualsReadingsIn) {
  Harness h(
      "processing:\n  out_of_orderness: 5s\n  idle_timeout: 1m\n  grace: 10s\n"
      "windows:\n"
      "  - name: a\n    size: 30s\n    metrics: [pm25]\n"
      "  - name: b\n    size: 2m\n    grace: 1m\n"
      "  - name: c\n    type: sliding\n    size: 1m\n    step: 20s\n    metrics: [no2]\n"
      "  - name: s\n    type: session\n    gap: 20s\n    metrics: [o3]\n"
      "  - name: n\n    size: 30s\n    grace: 0s\n    late_policy: next_window\n"
      "    metrics: [no2]\n");
  ASSERT_NE(h.op, nullptr);
  std::mt19937_64 rng(7);
  uint64_t late_arrivals = 0;
  std::uniform_real_distribution<double> jitter(0.0, 1.0);
  const char* metrics[] = {"pm25", "no2", "o3"};
  uint64_t in = 0, passed = 0, late_records = 0;
  std::map<int64_t, int> late_ids;  // arrival time identifies a reading
  double t = 0;
  for (int batch = 0; batch < 200; ++batch) {
    std::vector<Reading> rs;
    int n = 1 + static_cast<int>(jitter(rng) * 40);
    for (int i = 0; i < n; ++i) {
      t += 0.5;
      // Mostly in order; a quarter of the readings are delayed by up to 3 minutes.
      double event = t - (jitter(rng) < 0.25 ? jitter(rng) * 180.0 : jitter(rng) * 3.0);
      Reading r = MakeReading(event, t, "d" + std::to_string(i % 7), metrics[i % 3], i);
      r.prov.partition = i % 2;
      rs.push_back(r);
    }
    in += rs.size();
    Batch b = h.Run(std::move(rs));
    passed += b.readings.size();
    late_records += b.late.size();
    for (const Reading& r : b.readings) late_arrivals += r.flags.Has(QcFlag::kLateArrival);
    for (const LateRecord& l : b.late) {
      EXPECT_TRUE(l.reading.flags.Has(QcFlag::kLate));
      EXPECT_GE(l.lateness, 0);
      late_ids[l.reading.arrival_time]++;
    }
    LedgerSnapshot s = h.ledger.Snapshot();
    ASSERT_EQ(s.accepted + s.late, in);
    ASSERT_EQ(s.accepted, passed);
  }
  LedgerSnapshot s = h.ledger.Snapshot();
  EXPECT_GT(s.late, 10u);           // the test exercises late routing
  EXPECT_GT(late_records, s.late);  // some readings missed one definition but not all
  EXPECT_LE(s.late, late_ids.size());
  EXPECT_EQ(s.accepted + s.late, in);
  EXPECT_GT(late_arrivals, 10u);  // no2 readings past `n`'s grace, kept by next_window
  Batch out;
  ASSERT_TRUE(h.op->Finish(out).ok());
  EXPECT_EQ(h.op->Stats().open_windows, 0u);
}

}  // namespace
}  // namespace tributary
