// Surfaces: the encoders read back with GDAL, and a pipeline run that writes a surface
// for every closed window of a simulated network.
#include "spatial/surface.h"

#include <fmt/format.h>
#include <gdal_priv.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "core/pipeline_config.h"
#include "server/metrics.h"
#include "stream/checkpoint.h"
#include "stream/runtime.h"
#include "test_util.h"

namespace tributary {
namespace {

SurfaceDefinition Def() {
  SurfaceDefinition d;
  d.name = "t";
  d.window_symbol = Intern("w");
  d.metric = Intern("pm25");
  d.auto_extent = false;
  d.grid = {13.0, 52.0, 14.0, 53.0, 40, 30};
  return d;
}

TEST(SurfaceTest, GeoTiffPngAndJsonReadBack) {
  std::vector<SensorValue> sensors = {{52.2, 13.2, 10}, {52.8, 13.8, 30}, {52.5, 13.5, 20}};
  auto s = BuildSurface(Def(), sensors);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  s->start = 1714521600000000;  // 2024-05-01T00:00:00Z
  s->end = s->start + 300000000;
  EXPECT_EQ(s->values.size(), 40u * 30u);
  EXPECT_GE(s->min, 10.0);
  EXPECT_LE(s->max, 30.0);
  testing::TempDir dir;
  ASSERT_TRUE(WriteSurfaceGeoTiff(*s, dir.File("s.tif")).ok());
  ASSERT_TRUE(WriteSurfacePng(*s, dir.File("s.png")).ok());
  EXPECT_FALSE(std::filesystem::exists(dir.File("s.tif.tmp")));

  GDALDatasetUniquePtr tif(GDALDataset::Open(dir.File("s.tif").c_str(), GDAL_OF_RASTER));
  ASSERT_NE(tif, nullptr);
  EXPECT_EQ(tif->GetRasterXSize(), 40);
  EXPECT_EQ(tif->GetRasterYSize(), 30);
  double gt[6];
  ASSERT_EQ(tif->GetGeoTransform(gt), CE_None);
  EXPECT_DOUBLE_EQ(gt[0], 13.0);
  EXPECT_DOUBLE_EQ(gt[1], 1.0 / 40);
  EXPECT_DOUBLE_EQ(gt[3], 53.0);
  EXPECT_DOUBLE_EQ(gt[5], -1.0 / 30);
  EXPECT_NE(std::string(tif->GetProjectionRef()).find("WGS 84"), std::string::npos);
  EXPECT_STREQ(tif->GetMetadataItem("METRIC"), "pm25");
  EXPECT_STREQ(tif->GetMetadataItem("WINDOW_START"), "2024-05-01T00:00:00Z");
  std::vector<float> back(40 * 30);
  ASSERT_EQ(tif->GetRasterBand(1)->RasterIO(GF_Read, 0, 0, 40, 30, back.data(), 40, 30, GDT_Float32,
                                            0, 0),
            CE_None);
  EXPECT_EQ(back, s->values);

  GDALDatasetUniquePtr png(GDALDataset::Open(dir.File("s.png").c_str(), GDAL_OF_RASTER));
  ASSERT_NE(png, nullptr);
  EXPECT_EQ(png->GetRasterCount(), 4);
  EXPECT_EQ(png->GetRasterXSize(), 120);  // at least wide enough for the legend
  EXPECT_GT(png->GetRasterYSize(), 30);   // map + legend strip

  std::string json = SurfaceToJson(*s);
  EXPECT_NE(json.find("\"metric\":\"pm25\""), std::string::npos);
  EXPECT_NE(json.find("\"bbox\":[13,52,14,53]"), std::string::npos);
  EXPECT_NE(json.find("\"sensors\":3"), std::string::npos);
  // bbox, zones (empty without zone layers), values and its 30 rows.
  EXPECT_EQ(std::count(json.begin(), json.end(), '['), 1 + 1 + 1 + 30);
  EXPECT_NE(json.find("\"zones\":[]"), std::string::npos);
}

TEST(SurfaceTest, NoisyFieldsFallBackToNearestNeighbour) {
  std::mt19937_64 rng(4);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<SensorValue> smooth, noisy;
  for (int i = 0; i < 150; ++i) {
    double lat = 52 + u(rng), lon = 13 + u(rng);
    smooth.push_back({lat, lon, 100 * (lon - 13) + 50 * (lat - 52)});  // a gradient
    noisy.push_back({lat, lon, 100 * u(rng)});                         // white noise
  }
  auto a = BuildSurface(Def(), smooth);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->method, "idw");
  EXPECT_LT(a->nugget_sill, 0.3);
  EXPECT_GT(a->morans_i, 0.8);
  auto b = BuildSurface(Def(), noisy);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->method, "nearest");
  EXPECT_GT(b->nugget_sill, 0.7);
  EXPECT_LT(std::fabs(b->morans_i), 0.2);
  EXPECT_EQ(b->idw.k, 1);
  EXPECT_NE(SurfaceToJson(*b).find("\"method\":\"nearest\""), std::string::npos);
}

TEST(SurfaceTest, PerZoneStructureWithZones) {
  // Two zones: the west half carries a gradient, the east half white noise.
  auto set = ZoneSet::FromWkt({{"half",
                                {{"west", "", "POLYGON((13 52,13.5 52,13.5 53,13 53,13 52))"},
                                 {"east", "", "POLYGON((13.5 52,14 52,14 53,13.5 53,13.5 52))"}}}});
  ASSERT_TRUE(set.ok());
  ZoneLocator loc(*set);
  std::mt19937_64 rng(6);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<SensorValue> s;
  for (int i = 0; i < 120; ++i) {
    double lat = 52 + u(rng), lon = 13 + u(rng);
    s.push_back({lat, lon, lon < 13.5 ? 200 * (lat - 52) : 100 * u(rng)});
  }
  auto surface = BuildSurface(Def(), s, &loc);
  ASSERT_TRUE(surface.ok());
  ASSERT_EQ(surface->zones.size(), 2u);
  EXPECT_EQ(surface->zones[0].zone.str(), "east");
  EXPECT_LT(std::fabs(surface->zones[0].morans_i), 0.3);
  EXPECT_EQ(surface->zones[1].zone.str(), "west");
  EXPECT_GT(surface->zones[1].morans_i, 0.8);
  EXPECT_EQ(surface->zones[0].sensors + surface->zones[1].sensors, 120u);
  EXPECT_NE(SurfaceToJson(*surface).find("\"zone\":\"west\""), std::string::npos);
  // The rows stored with the window results: all sensors, then each zone.
  std::vector<SpatialStats> rows = SurfaceSpatialStats(*surface, Intern("half"));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].zone.str(), "all");
  EXPECT_TRUE(rows[0].zone_layer.empty());
  EXPECT_EQ(rows[0].sensors, 120u);
  EXPECT_EQ(rows[0].weights.str(), "knn:4");
  EXPECT_EQ(rows[0].morans_i, surface->morans_i);
  EXPECT_NEAR(rows[0].morans_expected, -1.0 / 119, 1e-12);
  EXPECT_EQ(rows[2].zone.str(), "west");
  EXPECT_EQ(rows[2].zone_layer.str(), "half");
  EXPECT_EQ(rows[2].morans_i, surface->zones[1].morans_i);
  EXPECT_EQ(rows[2].nugget_sill, surface->zones[1].nugget_sill);
  // Distance-band weights give another I for the same sensors.
  SurfaceDefinition band = Def();
  band.moran = {MoranWeights::kDistanceBand, 15000, 0};
  auto banded = BuildSurface(band, s, &loc);
  ASSERT_TRUE(banded.ok());
  EXPECT_EQ(SurfaceSpatialStats(*banded, Intern("half"))[0].weights.str(), "band:15000m");
  EXPECT_NE(banded->morans_i, surface->morans_i);
}

TEST(SurfaceTest, KrigingWhenConfigured) {
  std::mt19937_64 rng(8);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<SensorValue> smooth;
  for (int i = 0; i < 60; ++i) {
    double lat = 52 + u(rng), lon = 13 + u(rng);
    smooth.push_back({lat, lon, 100 * (lon - 13) + 50 * (lat - 52)});
  }
  SurfaceDefinition def = Def();
  def.kriging = true;
  auto s = BuildSurface(def, smooth);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->method, "kriging");
  // A smooth plane: kriging stays within the sensors' range and close to the plane.
  int checked = 0;
  for (int r = 5; r < def.grid.height - 5; r += 5) {
    for (int c = 5; c < def.grid.width - 5; c += 5) {
      double want = 100 * (def.grid.CellLon(c) - 13) + 50 * (def.grid.CellLat(r) - 52);
      EXPECT_NEAR(s->values[static_cast<size_t>(r * def.grid.width + c)], want, 8) << r << "," << c;
      ++checked;
    }
  }
  EXPECT_GT(checked, 10);
}

TEST(SurfaceTest, PipelineWritesASurfacePerClosedWindow) {
  testing::TempDir dir;
  std::string yaml = R"(pipeline:
  name: surfaces
sources:
  - name: sim
    type: simulator
    seed: 3
    devices: 60
    start: "2024-05-01T00:00:00Z"
    duration: 30m
    as_fast_as_possible: true
windows:
  - name: pm_5m
    type: tumbling
    size: 5m
    group_by: device
    metrics: [pm25]
    aggregates: [count, mean, centroid]
surfaces:
  - name: pm25
    window: pm_5m
    metric: pm25
    width: 50
sinks: []
)";
  testing::WriteFile(dir.File("p.yaml"), yaml);
  auto config = LoadPipelineConfig(dir.File("p.yaml"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  config->data_dir = dir.File("data");
  auto pipeline = Pipeline::Build(*config);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().ToString();
  ASSERT_TRUE((*pipeline)->Run().ok());
  std::string folder = dir.File("data/surfaces/pm25");
  for (const char* stamp : {"20240501T000000Z", "20240501T001000Z", "20240501T002500Z"}) {
    for (const char* ext : {".tif", ".png", ".json"}) {
      EXPECT_TRUE(std::filesystem::exists(folder + "/" + stamp + ext)) << stamp << ext;
    }
  }
  auto latest = LatestSurface("pm25");
  ASSERT_NE(latest, nullptr);
  EXPECT_EQ(latest->start, 1714521600000000 + 25 * 60000000LL);
  EXPECT_GE(latest->sensors, 2u);
  EXPECT_EQ(latest->grid.width, 50);
  EXPECT_TRUE(std::isfinite(latest->min));
  // Moran's I of the newest window is a gauge on /metrics.
  std::string prom = RenderPrometheus(MetricsInput{});
  EXPECT_NE(prom.find("tributary_spatial_morans_i{surface=\"pm25\",zone=\"all\"}"),
            std::string::npos);
}

// Window results of six devices for three 5-minute windows, one batch per window, then a
// revision of the first window; the watermark passes each window's end one batch later.
std::vector<Batch> SurfaceInput() {
  const TimeUs t0 = 1714521600000000, step = 300000000;
  std::vector<Batch> batches;
  for (int k = 0; k < 4; ++k) {
    Batch b;
    const TimeUs start = t0 + (k < 3 ? k : 0) * step;
    for (int d = 0; d < 6; ++d) {
      WindowResult w;
      w.window = Intern("w");
      w.metric = Intern("pm25");
      w.group = Intern("dev-" + std::to_string(d));
      w.start = start;
      w.end = start + step;
      w.mean = 10 + d * 3 + k + (k == 3 ? 5 : 0);
      w.centroid_lat = 52.1 + 0.13 * d;
      w.centroid_lon = 13.1 + 0.11 * ((d * 7) % 6);
      b.windows.push_back(w);
    }
    b.watermark = k < 3 ? t0 + k * step : t0 + 6 * step;
    batches.push_back(std::move(b));
  }
  return batches;
}

std::string StatsText(const std::vector<SpatialStats>& stats) {
  std::string out;
  for (const SpatialStats& s : stats) {  // every field but the wall-clock emitted_at
    out += fmt::format("{} {} {} {} {} {} {} {:.17g} {:.17g} {:.17g} {} {}\n", s.surface.view(),
                       s.window.view(), s.start, s.end, s.zone.view(), s.sensors, s.weights.view(),
                       s.morans_i, s.morans_z, s.nugget_sill, s.method.view(), s.revision);
  }
  return out;
}

TEST(SurfaceTest, RestoredFromACheckpointContinuesAsIfNeverStopped) {
  SurfaceDefinition def = Def();
  def.window_symbol = Intern("w");
  def.min_sensors = 2;
  std::vector<Batch> input = SurfaceInput();
  auto run = [&](const std::string& dir, size_t stop_after, std::string* state) {
    std::vector<SpatialStats> stats;
    RunContext ctx;
    ctx.data_dir = dir;
    SurfaceOperator a({def}, nullptr);
    EXPECT_TRUE(a.Open(ctx).ok());
    size_t i = 0;
    for (; i < stop_after; ++i) {
      Batch b = input[i];
      EXPECT_TRUE(a.Process(b).ok());
      stats.insert(stats.end(), b.spatial_stats.begin(), b.spatial_stats.end());
    }
    std::unique_ptr<SurfaceOperator> b_op;
    SurfaceOperator* op = &a;
    if (state != nullptr) {
      CheckpointWriter w;
      EXPECT_TRUE(a.Snapshot(w).ok());
      *state = w.Take();
      b_op = std::make_unique<SurfaceOperator>(std::vector<SurfaceDefinition>{def}, nullptr);
      EXPECT_TRUE(b_op->Open(ctx).ok());
      CheckpointReader r(*state);
      Status st = b_op->Restore(r);
      EXPECT_TRUE(st.ok()) << st.ToString();
      EXPECT_TRUE(r.at_end());
      op = b_op.get();
    }
    for (; i < input.size(); ++i) {
      Batch b = input[i];
      EXPECT_TRUE(op->Process(b).ok());
      stats.insert(stats.end(), b.spatial_stats.begin(), b.spatial_stats.end());
    }
    Batch last;
    EXPECT_TRUE(op->Finish(last).ok());
    stats.insert(stats.end(), last.spatial_stats.begin(), last.spatial_stats.end());
    return StatsText(stats);
  };
  testing::TempDir clean, resumed;
  const std::string expected = run(clean.path(), input.size(), nullptr);
  ASSERT_NE(expected.find(" 1\n"), std::string::npos) << "the input revises a surface\n"
                                                      << expected;
  for (size_t stop = 0; stop <= input.size(); ++stop) {
    std::string state;
    EXPECT_EQ(run(resumed.path(), stop, &state), expected) << "stopped after batch " << stop;
    for (const char* f : {"20240501T000000Z.json", "20240501T000500Z.json"}) {
      EXPECT_EQ(testing::ReadFile(resumed.File(std::string("surfaces/t/") + f)),
                testing::ReadFile(clean.File(std::string("surfaces/t/") + f)))
          << f << ", stopped after batch " << stop;
    }
  }
  // A checkpoint of other surfaces is refused with the names.
  std::string state;
  run(resumed.path(), 2, &state);
  SurfaceDefinition other = def;
  other.name = "other";
  SurfaceOperator c({other}, nullptr);
  CheckpointReader r(state);
  Status st = c.Restore(r);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("was 't', now 'other'"), std::string::npos) << st.ToString();
}

TEST(SurfaceTest, ConfigErrorsNameTheProblem) {
  auto config = ParsePipelineConfig(R"(sources: [{name: s, type: simulator}]
windows:
  - {name: z, type: tumbling, size: 5m, group_by: zone, aggregates: [mean, centroid]}
  - {name: d, type: tumbling, size: 5m, group_by: device, aggregates: [mean]}
surfaces:
  - {name: a, window: z, metric: pm25}
)",
                                    "p.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto op = MakeSurfaceOperator(*config);
  ASSERT_FALSE(op.ok());
  EXPECT_NE(op.status().message().find("must group by device"), std::string::npos);
  YAML::Node entry = config->surfaces[0].node();  // a handle: edits the parsed config
  entry["window"] = "d";
  op = MakeSurfaceOperator(*config);
  ASSERT_FALSE(op.ok());
  EXPECT_NE(op.status().message().find("centroid"), std::string::npos);
  entry["window"] = "nope";
  op = MakeSurfaceOperator(*config);
  ASSERT_FALSE(op.ok());
  EXPECT_NE(op.status().message().find("no window definition named 'nope'"), std::string::npos);
}

}  // namespace
}  // namespace tributary
