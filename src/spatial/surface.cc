#include "spatial/surface.h"

#include <gdal_priv.h>
#include <ogr_spatialref.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>

#include "core/json_writer.h"
#include "server/metrics.h"
#include "spatial/kriging.h"
#include "spatial/moran.h"
#include "spatial/variogram.h"
#include "stream/checkpoint.h"
#include "stream/runtime.h"
#include "stream/window.h"

namespace tributary {

namespace {

constexpr int kMaxCells = 4000 * 4000;

struct ValueKind {
  std::string_view name;
  AggregateKind kind;
  double WindowResult::*field;
};
constexpr ValueKind kValueKinds[] = {
    {"mean", AggregateKind::kMean, &WindowResult::mean},
    {"median", AggregateKind::kMedian, &WindowResult::median},
    {"p95", AggregateKind::kP95, &WindowResult::p95},
    {"max", AggregateKind::kMax, &WindowResult::max},
    {"min", AggregateKind::kMin, &WindowResult::min},
    {"last", AggregateKind::kLast, &WindowResult::last},
    {"trimmed_mean", AggregateKind::kTrimmedMean, &WindowResult::trimmed_mean},
};

const ValueKind* FindValueKind(std::string_view name) {
  for (const ValueKind& v : kValueKinds) {
    if (v.name == name) return &v;
  }
  return nullptr;
}

// "20240501T120000Z" from a UTC µs time.
std::string FileStamp(TimeUs t) {
  std::string iso = FormatTime(t);  // 2024-05-01T12:00:00Z or with fraction
  std::string out;
  for (char c : iso) {
    if (c == '.') break;
    if (c != '-' && c != ':' && c != 'Z') out += c;
  }
  return out + "Z";
}

std::mutex g_latest_mu;
std::map<std::string, std::shared_ptr<const Surface>>& Latest() {
  static std::map<std::string, std::shared_ptr<const Surface>> latest;
  return latest;
}
std::shared_ptr<const Surface> g_newest;

void RegisterGdalOnce() {
  static std::once_flag once;
  std::call_once(once, [] { GDALAllRegister(); });
}

std::string Wgs84Wkt() {
  OGRSpatialReference srs;
  srs.SetWellKnownGeogCS("WGS84");
  char* wkt = nullptr;
  srs.exportToWkt(&wkt);
  std::string out = wkt != nullptr ? wkt : "";
  CPLFree(wkt);
  return out;
}

void SetMetadata(GDALDataset& ds, const Surface& s) {
  ds.SetMetadataItem("TRIBUTARY_SURFACE", s.name.c_str());
  ds.SetMetadataItem("WINDOW", s.window.str().c_str());
  ds.SetMetadataItem("METRIC", s.metric.str().c_str());
  ds.SetMetadataItem("WINDOW_START", FormatTime(s.start).c_str());
  ds.SetMetadataItem("WINDOW_END", FormatTime(s.end).c_str());
  ds.SetMetadataItem("SENSORS", std::to_string(s.sensors).c_str());
  ds.SetMetadataItem("METHOD", s.method.c_str());
  ds.SetMetadataItem("NUGGET_SILL", fmt::format("{:.6g}", s.nugget_sill).c_str());
  ds.SetMetadataItem("MORANS_I", fmt::format("{:.6g}", s.morans_i).c_str());
  ds.SetMetadataItem("REVISION", std::to_string(s.revision).c_str());
}

Status Rename(const std::string& tmp, const std::string& path) {
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::Io("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

// Colour map: viridis sampled at five stops, linearly interpolated.
void ColourOf(double t, uint8_t rgb[3]) {
  static const double kStops[5][3] = {
      {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  t = std::clamp(t, 0.0, 1.0) * 4;
  int i = std::min(3, static_cast<int>(t));
  double f = t - i;
  for (int c = 0; c < 3; ++c) {
    rgb[c] =
        static_cast<uint8_t>(std::lround(kStops[i][c] + f * (kStops[i + 1][c] - kStops[i][c])));
  }
}

// A 3 × 5 pixel font for legend labels: digits, '.', '-', 'e', '+'.
const char* Glyph(char c) {
  switch (c) {
    case '0':
      return "111101101101111";
    case '1':
      return "010110010010111";
    case '2':
      return "111001111100111";
    case '3':
      return "111001111001111";
    case '4':
      return "101101111001001";
    case '5':
      return "111100111001111";
    case '6':
      return "111100111101111";
    case '7':
      return "111001001001001";
    case '8':
      return "111101111101111";
    case '9':
      return "111101111001111";
    case '.':
      return "000000000000010";
    case '-':
      return "000000111000000";
    case '+':
      return "000010111010000";
    case 'e':
      return "000111101110111";
    default:
      return "000000000000000";
  }
}

}  // namespace

const SectionSpec& SurfaceSectionSpec() {
  static const SectionSpec spec{
      "surfaces[]",
      "Interpolated surfaces (IDW) of one metric for every closed window of a window "
      "definition that groups by device and computes `centroid` and the value aggregate. "
      "Written to <data_dir>/surfaces/<name>/<window start>.tif|.png|.json; windows with "
      "fewer than `min_sensors` sensors are skipped.",
      {
          {"name", OptionType::kString, "", "Name of the surface (its folder).", {}, true},
          {"window",
           OptionType::kString,
           "",
           "Window definition (`windows[].name`) whose per-device results are the sensors.",
           {},
           true},
          {"metric",
           OptionType::kString,
           "",
           "Canonical metric to interpolate (`pm25`).",
           {},
           true},
          {"value", OptionType::kEnum, "mean", "Aggregate of each sensor's window to interpolate.",
           "mean|median|p95|max|min|last|trimmed_mean"},
          {"min_lon", OptionType::kDouble, "",
           "West edge of the grid (degrees). The four edges are given together; without "
           "them the grid covers the window's sensors plus 10% on each side.",
           "-180..180"},
          {"min_lat", OptionType::kDouble, "", "South edge of the grid (degrees).", "-90..90"},
          {"max_lon", OptionType::kDouble, "", "East edge of the grid (degrees).", "-180..180"},
          {"max_lat", OptionType::kDouble, "", "North edge of the grid (degrees).", "-90..90"},
          {"width", OptionType::kInt, "200", "Grid columns.", "2..4000"},
          {"height", OptionType::kInt, "0",
           "Grid rows; 0 keeps cells about square (from the extent's aspect).", "0..4000"},
          {"power", OptionType::kDouble, "2", "IDW distance exponent.", "0.1..10"},
          {"k", OptionType::kInt, "8", "Nearest sensors used per cell.", "1..64"},
          {"radius", OptionType::kDouble, "0",
           "Search radius in metres; cells with no sensor inside are no data. 0: unlimited.",
           "0.."},
          {"min_sensors", OptionType::kInt, "2", "Windows with fewer sensors get no surface.",
           "2.."},
          {"method", OptionType::kEnum, "idw",
           "`idw`, or `kriging`: ordinary kriging with the spherical variogram fitted to the "
           "window's sensors (`kriging_neighbours` nearest each), slower and meant for "
           "backfill; falls back to IDW when no variogram can be fitted.",
           "idw|kriging"},
          {"kriging_neighbours", OptionType::kInt, "16", "Sensors per local kriging system.",
           "2..64"},
          {"formats", OptionType::kStringList, "geotiff, png, json",
           "Files to write: any of `geotiff`, `png` (colour map with legend), `json`."},
          {"moran_weights", OptionType::kEnum, "knn",
           "Weights of Moran's I (over all sensors and per zone, stored in the sqlite "
           "`spatial_stats` table and exported as metrics): `knn` (row-standardised, the "
           "`moran_k` nearest sensors) or `band` (binary, sensors within `moran_band_m`).",
           "knn|band"},
          {"moran_k", OptionType::kInt, "4", "Neighbours of `moran_weights: knn`.", "1..32"},
          {"moran_band_m", OptionType::kDouble, "2000",
           "Distance band of `moran_weights: band`, metres.", "1..1000000"},
      }};
  return spec;
}

Result<SurfaceDefinition> ParseSurfaceDefinition(const OptionReader& options,
                                                 const PipelineConfig& config) {
  const OptionReader o(options.node(), options.file(), options.path(), {&SurfaceSectionSpec()});
  TRIB_RETURN_IF_ERROR(o.CheckKeys());
  SurfaceDefinition d;
  TRIB_ASSIGN_OR_RETURN(d.name, o.GetString("name"));
  if (d.name.empty() || d.name.find('/') != std::string::npos || d.name[0] == '.') {
    return o.Error("name", "must be a plain folder name");
  }
  TRIB_ASSIGN_OR_RETURN(d.window, o.GetString("window"));
  TRIB_ASSIGN_OR_RETURN(std::string metric, o.GetString("metric"));
  d.metric = Intern(metric);
  d.window_symbol = Intern(d.window);
  TRIB_ASSIGN_OR_RETURN(d.value, o.GetString("value"));
  const ValueKind* vk = FindValueKind(d.value);

  TRIB_ASSIGN_OR_RETURN(std::vector<WindowDefinition> windows, ParseWindowDefinitions(config));
  const WindowDefinition* w = nullptr;
  for (const WindowDefinition& def : windows) {
    if (def.name == d.window) w = &def;
  }
  if (w == nullptr) return o.Error("window", "no window definition named '" + d.window + "'");
  if (w->group_by != GroupBy::kDevice) {
    return o.Error("window", "window '" + d.window + "' must group by device");
  }
  if (!w->aggregates.Has(AggregateKind::kCentroid) || !w->aggregates.Has(vk->kind)) {
    return o.Error("window", "window '" + d.window + "' must compute centroid and " + d.value);
  }
  if (!w->Accepts(d.metric)) {
    return o.Error("metric", "window '" + d.window + "' does not take metric " + metric);
  }

  int edges = o.Has("min_lon") + o.Has("min_lat") + o.Has("max_lon") + o.Has("max_lat");
  if (edges != 0 && edges != 4) {
    return o.Error("", "give all four of min_lon, min_lat, max_lon, max_lat, or none");
  }
  if (edges == 4) {
    d.auto_extent = false;
    TRIB_ASSIGN_OR_RETURN(d.grid.min_lon, o.GetDouble("min_lon"));
    TRIB_ASSIGN_OR_RETURN(d.grid.min_lat, o.GetDouble("min_lat"));
    TRIB_ASSIGN_OR_RETURN(d.grid.max_lon, o.GetDouble("max_lon"));
    TRIB_ASSIGN_OR_RETURN(d.grid.max_lat, o.GetDouble("max_lat"));
    if (!(d.grid.min_lon < d.grid.max_lon) || !(d.grid.min_lat < d.grid.max_lat)) {
      return o.Error("min_lon", "the extent is empty (min must be below max)");
    }
  }
  TRIB_ASSIGN_OR_RETURN(int64_t width, o.GetInt("width"));
  TRIB_ASSIGN_OR_RETURN(int64_t height, o.GetInt("height"));
  d.grid.width = static_cast<int>(width);
  d.grid.height = static_cast<int>(height);
  TRIB_ASSIGN_OR_RETURN(d.idw.power, o.GetDouble("power"));
  TRIB_ASSIGN_OR_RETURN(int64_t k, o.GetInt("k"));
  d.idw.k = static_cast<int>(k);
  TRIB_ASSIGN_OR_RETURN(d.idw.radius_m, o.GetDouble("radius"));
  TRIB_ASSIGN_OR_RETURN(int64_t min_sensors, o.GetInt("min_sensors"));
  d.min_sensors = static_cast<size_t>(min_sensors);
  TRIB_ASSIGN_OR_RETURN(std::string method, o.GetString("method"));
  d.kriging = method == "kriging";
  TRIB_ASSIGN_OR_RETURN(int64_t kn, o.GetInt("kriging_neighbours"));
  d.kriging_neighbours = static_cast<int>(kn);
  TRIB_ASSIGN_OR_RETURN(std::string weights, o.GetString("moran_weights"));
  d.moran.weights = weights == "band" ? MoranWeights::kDistanceBand : MoranWeights::kKNearest;
  TRIB_ASSIGN_OR_RETURN(int64_t moran_k, o.GetInt("moran_k"));
  d.moran.k = static_cast<int>(moran_k);
  TRIB_ASSIGN_OR_RETURN(d.moran.band_m, o.GetDouble("moran_band_m"));
  TRIB_ASSIGN_OR_RETURN(std::vector<std::string> formats, o.GetStringList("formats"));
  d.geotiff = d.png = d.json = false;
  for (const std::string& f : formats) {
    if (f == "geotiff") {
      d.geotiff = true;
    } else if (f == "png") {
      d.png = true;
    } else if (f == "json") {
      d.json = true;
    } else {
      return o.Error("formats", "unknown format '" + f + "' (known: geotiff, png, json)");
    }
  }
  return d;
}

namespace {

// Moran's I and nugget/sill of the sensors of each zone with at least 3 of them.
std::vector<ZoneStructure> ZoneStructures(const std::vector<SensorValue>& sensors,
                                          ZoneLocator& zones, const MoranOptions& weights) {
  std::map<uint32_t, std::vector<SensorValue>> by_zone;
  for (const SensorValue& v : sensors) {
    Symbol z = zones.LocateId(0, v.lat, v.lon);
    if (!z.empty()) by_zone[z.id].push_back(v);
  }
  std::vector<ZoneStructure> out;
  for (const auto& [id, members] : by_zone) {
    if (members.size() < 3) continue;
    ZoneStructure zs;
    zs.zone = Symbol{id};
    zs.sensors = members.size();
    MoranOptions w = weights;
    w.k = static_cast<int>(std::min<size_t>(static_cast<size_t>(w.k), members.size() - 1));
    MoranResult m = ComputeMoran(members, w);
    zs.morans_i = m.i;
    zs.morans_expected = m.expected;
    zs.morans_z = m.z;
    double x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY;
    for (const SensorValue& v : members) {
      x0 = std::min(x0, v.lon);
      x1 = std::max(x1, v.lon);
      y0 = std::min(y0, v.lat);
      y1 = std::max(y1, v.lat);
    }
    double diag = HaversineM(y0, x0, y1, x1);
    if (diag > 0) {
      VariogramFit fit =
          FitVariogram(EmpiricalVariogram(members, diag / 10, diag), VariogramModel::kSpherical);
      zs.nugget_sill = fit.NuggetSillRatio();
      if (fit.ok) {
        zs.nugget = fit.nugget;
        zs.sill = fit.sill;
        zs.range_m = fit.range;
      }
    }
    out.push_back(zs);
  }
  std::sort(out.begin(), out.end(), [](const ZoneStructure& a, const ZoneStructure& b) {
    return a.zone.view() < b.zone.view();
  });
  return out;
}

}  // namespace

Result<Surface> BuildSurface(const SurfaceDefinition& def, std::vector<SensorValue> sensors,
                             ZoneLocator* zones) {
  Surface s;
  s.name = def.name;
  s.window = def.window_symbol;
  s.metric = def.metric;
  s.idw = def.idw;
  s.sensors = sensors.size();
  s.grid = def.grid;
  if (def.auto_extent) {
    double x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY;
    for (const SensorValue& v : sensors) {
      x0 = std::min(x0, v.lon);
      x1 = std::max(x1, v.lon);
      y0 = std::min(y0, v.lat);
      y1 = std::max(y1, v.lat);
    }
    if (!(x0 <= x1)) return Status::Invalid("no sensor positions");
    double px = std::max(0.1 * (x1 - x0), 1e-3), py = std::max(0.1 * (y1 - y0), 1e-3);
    s.grid.min_lon = std::max(-180.0, x0 - px);
    s.grid.max_lon = std::min(180.0, x1 + px);
    s.grid.min_lat = std::max(-90.0, y0 - py);
    s.grid.max_lat = std::min(90.0, y1 + py);
  }
  double lat0 = (s.grid.min_lat + s.grid.max_lat) / 2, lon0 = (s.grid.min_lon + s.grid.max_lon) / 2;
  if (s.grid.height == 0) {
    double aspect = (s.grid.max_lat - s.grid.min_lat) /
                    ((s.grid.max_lon - s.grid.min_lon) * std::cos(lat0 * M_PI / 180));
    s.grid.height = std::clamp(static_cast<int>(std::lround(s.grid.width * aspect)), 2, 4000);
  }
  if (static_cast<int64_t>(s.grid.width) * s.grid.height > kMaxCells) {
    return Status::Invalid("surface grid too large");
  }
  // Spatial structure of this window: variogram over half the grid's diagonal in ten
  // lags, and Moran's I.
  double diag = HaversineM(s.grid.min_lat, s.grid.min_lon, s.grid.max_lat, s.grid.max_lon);
  VariogramFit fit =
      FitVariogram(EmpiricalVariogram(sensors, diag / 20, diag / 2), VariogramModel::kSpherical);
  s.nugget_sill = fit.NuggetSillRatio();
  s.variogram_range_m = fit.ok ? fit.range : NAN;
  if (fit.ok) {
    s.nugget = fit.nugget;
    s.sill = fit.sill;
  }
  MoranOptions weights = def.moran;
  if (weights.weights == MoranWeights::kKNearest && !sensors.empty()) {
    weights.k =
        static_cast<int>(std::min<size_t>(static_cast<size_t>(weights.k), sensors.size() - 1));
  }
  MoranResult moran = ComputeMoran(sensors, weights);
  s.morans_i = moran.i;
  s.morans_expected = moran.expected;
  s.morans_z = moran.z;
  s.moran_weights = def.moran.weights == MoranWeights::kKNearest
                        ? fmt::format("knn:{}", def.moran.k)
                        : fmt::format("band:{:g}m", def.moran.band_m);
  if (zones != nullptr) s.zones = ZoneStructures(sensors, *zones, def.moran);
  IdwOptions idw_options = def.idw;
  if (s.nugget_sill > kNuggetSillNearestNeighbour) {
    s.method = "nearest";
    idw_options.k = 1;
  } else if (def.kriging && fit.ok) {
    auto krige = OrdinaryKriging::Make(sensors, fit, def.kriging_neighbours, lat0, lon0);
    if (krige.ok()) {
      s.method = "kriging";
      krige->Interpolate(s.grid, s.values);
    }
  }
  s.idw = idw_options;
  TRIB_ASSIGN_OR_RETURN(auto idw,
                        IdwInterpolator::Make(std::move(sensors), idw_options, lat0, lon0));
  if (s.method != "kriging") idw->Interpolate(s.grid, s.values);
  for (float v : s.values) {
    if (!std::isfinite(v)) continue;
    if (!(v >= s.min)) s.min = v;
    if (!(v <= s.max)) s.max = v;
  }
  return s;
}

Status WriteSurfaceGeoTiff(const Surface& s, const std::string& path) {
  RegisterGdalOnce();
  GDALDriver* drv = GetGDALDriverManager()->GetDriverByName("GTiff");
  if (drv == nullptr) return Status::Internal("GDAL has no GTiff driver");
  std::string tmp = path + ".tmp";
  CPLErrorReset();
  {
    char** opts = nullptr;
    opts = CSLSetNameValue(opts, "COMPRESS", "DEFLATE");
    opts = CSLSetNameValue(opts, "PREDICTOR", "3");
    GDALDatasetUniquePtr ds(
        drv->Create(tmp.c_str(), s.grid.width, s.grid.height, 1, GDT_Float32, opts));
    CSLDestroy(opts);
    if (ds == nullptr) return Status::Io("cannot create " + tmp + ": " + CPLGetLastErrorMsg());
    double gt[6] = {s.grid.min_lon,
                    (s.grid.max_lon - s.grid.min_lon) / s.grid.width,
                    0,
                    s.grid.max_lat,
                    0,
                    -(s.grid.max_lat - s.grid.min_lat) / s.grid.height};
    ds->SetGeoTransform(gt);
    ds->SetProjection(Wgs84Wkt().c_str());
    SetMetadata(*ds, s);
    GDALRasterBand* band = ds->GetRasterBand(1);
    band->SetNoDataValue(NAN);
    band->SetDescription(s.metric.str().c_str());
    if (band->RasterIO(GF_Write, 0, 0, s.grid.width, s.grid.height,
                       const_cast<float*>(s.values.data()), s.grid.width, s.grid.height,
                       GDT_Float32, 0, 0) != CE_None) {
      return Status::Io("cannot write " + tmp + ": " + CPLGetLastErrorMsg());
    }
    ds->FlushCache();
    if (CPLGetLastErrorType() == CE_Failure) {
      return Status::Io("cannot write " + tmp + ": " + CPLGetLastErrorMsg());
    }
  }
  return Rename(tmp, path);
}

Status WriteSurfacePng(const Surface& s, const std::string& path) {
  RegisterGdalOnce();
  // The map, then a legend strip: a colour bar from min to max with both values written
  // under its ends and the metric's mid value in the middle.
  const int w = std::max(s.grid.width, 120), map_h = s.grid.height;
  const int scale = 2, legend_h = 12 + 4 + 5 * scale + 4;
  const int h = map_h + legend_h;
  std::vector<uint8_t> rgba(static_cast<size_t>(w) * h * 4, 0);
  auto px = [&](int x, int y) { return rgba.data() + (static_cast<size_t>(y) * w + x) * 4; };
  double range = s.max - s.min;
  for (int r = 0; r < map_h; ++r) {
    for (int c = 0; c < s.grid.width; ++c) {
      float v = s.values[static_cast<size_t>(r) * s.grid.width + c];
      if (!std::isfinite(v)) continue;  // transparent
      uint8_t* p = px(c, r);
      ColourOf(range > 0 ? (v - s.min) / range : 0.5, p);
      p[3] = 255;
    }
  }
  for (int y = map_h; y < h; ++y) {  // white legend background
    for (int x = 0; x < w; ++x) {
      uint8_t* p = px(x, y);
      p[0] = p[1] = p[2] = p[3] = 255;
    }
  }
  for (int x = 4; x < w - 4; ++x) {
    uint8_t rgb[3];
    ColourOf(static_cast<double>(x - 4) / (w - 9), rgb);
    for (int y = map_h + 2; y < map_h + 12; ++y) std::copy(rgb, rgb + 3, px(x, y));
  }
  auto text = [&](const std::string& t, int x, int y) {
    for (char ch : t) {
      const char* g = Glyph(ch);
      for (int gy = 0; gy < 5; ++gy) {
        for (int gx = 0; gx < 3; ++gx) {
          if (g[gy * 3 + gx] != '1') continue;
          for (int sy = 0; sy < scale; ++sy) {
            for (int sx = 0; sx < scale; ++sx) {
              int X = x + gx * scale + sx, Y = y + gy * scale + sy;
              if (X < 0 || X >= w || Y >= h) continue;
              uint8_t* p = px(X, Y);
              p[0] = p[1] = p[2] = 0;
            }
          }
        }
      }
      x += 4 * scale;
    }
  };
  auto label = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", v);
    return std::string(buf);
  };
  int ty = map_h + 16;
  std::string lo = label(s.min), hi = label(s.max), mid = label((s.min + s.max) / 2);
  text(lo, 4, ty);
  text(hi, w - 4 - static_cast<int>(hi.size()) * 4 * scale, ty);
  text(mid, w / 2 - static_cast<int>(mid.size()) * 2 * scale, ty);

  GDALDriver* mem = GetGDALDriverManager()->GetDriverByName("MEM");
  GDALDriver* png = GetGDALDriverManager()->GetDriverByName("PNG");
  if (mem == nullptr || png == nullptr) return Status::Internal("GDAL has no MEM or PNG driver");
  GDALDatasetUniquePtr src(mem->Create("", w, h, 4, GDT_Byte, nullptr));
  if (src == nullptr) return Status::Internal("cannot create an in-memory raster");
  for (int b = 0; b < 4; ++b) {
    if (src->GetRasterBand(b + 1)->RasterIO(GF_Write, 0, 0, w, h, rgba.data() + b, w, h, GDT_Byte,
                                            4, static_cast<GSpacing>(w) * 4) != CE_None) {
      return Status::Internal("cannot fill the in-memory raster");
    }
  }
  src->GetRasterBand(4)->SetColorInterpretation(GCI_AlphaBand);
  SetMetadata(*src, s);
  std::string tmp = path + ".tmp";
  {
    GDALDatasetUniquePtr out(
        png->CreateCopy(tmp.c_str(), src.get(), FALSE, nullptr, nullptr, nullptr));
    if (out == nullptr) return Status::Io("cannot write " + tmp + ": " + CPLGetLastErrorMsg());
  }
  std::filesystem::remove(tmp + ".aux.xml");
  return Rename(tmp, path);
}

namespace {

// `v` with six significant digits, as JSON number text (`%.6g`: "12.3457", "1.5e-05").
std::string_view SixDigits(float v, char (&buf)[32]) {
  auto printed =
      std::to_chars(buf, buf + sizeof buf, static_cast<double>(v), std::chars_format::general, 6);
  return std::string_view(buf, static_cast<size_t>(printed.ptr - buf));
}

}  // namespace

std::string SurfaceToJson(const Surface& s) {
  JsonWriter j;
  j.BeginObject();
  j.Key("name").String(s.name);
  j.Key("window").String(s.window.view());
  j.Key("metric").String(s.metric.view());
  j.Key("window_start").String(FormatTime(s.start));
  j.Key("window_end").String(FormatTime(s.end));
  j.Key("revision").UInt(s.revision);
  j.Key("method").String(s.method);
  j.Key("nugget_sill").Number(s.nugget_sill);
  j.Key("variogram_range_m").Number(s.variogram_range_m);
  j.Key("morans_i").Number(s.morans_i);
  j.Key("morans_z").Number(s.morans_z);
  j.Key("moran_weights").String(s.moran_weights);
  j.Key("power").Number(s.idw.power);
  j.Key("k").Int(s.idw.k);
  j.Key("radius_m").Number(s.idw.radius_m);
  j.Key("sensors").UInt(s.sensors);
  j.Key("bbox").BeginArray();
  j.Number(s.grid.min_lon).Number(s.grid.min_lat).Number(s.grid.max_lon).Number(s.grid.max_lat);
  j.EndArray();
  j.Key("width").Int(s.grid.width);
  j.Key("height").Int(s.grid.height);
  j.Key("min").Number(s.min);
  j.Key("max").Number(s.max);
  j.Key("zones").BeginArray();  // per zone of the first layer, 3 sensors or more
  for (const ZoneStructure& z : s.zones) {
    j.BeginObject();
    j.Key("zone").String(z.zone.view());
    j.Key("sensors").UInt(z.sensors);
    j.Key("morans_i").Number(z.morans_i);
    j.Key("morans_z").Number(z.morans_z);
    j.Key("nugget_sill").Number(z.nugget_sill);
    j.EndObject();
  }
  j.EndArray();
  j.Key("values").BeginArray();  // rows, north first; null = no data
  char digits[32];
  for (int r = 0; r < s.grid.height; ++r) {
    j.BeginArray();
    for (int c = 0; c < s.grid.width; ++c) {
      float v = s.values[static_cast<size_t>(r) * s.grid.width + c];
      if (std::isfinite(v)) {
        // Six significant digits are below any sensor's resolution and keep files small.
        j.Raw(SixDigits(v, digits));
      } else {
        j.Null();
      }
    }
    j.EndArray();
  }
  j.EndArray();
  j.EndObject();
  return j.Take();
}

std::shared_ptr<const Surface> LatestSurface(const std::string& name) {
  std::lock_guard lock(g_latest_mu);
  if (name.empty()) return g_newest;
  auto it = Latest().find(name);
  return it == Latest().end() ? nullptr : it->second;
}

SurfaceOperator::SurfaceOperator(std::vector<SurfaceDefinition> defs,
                                 std::shared_ptr<const ZoneSet> zones)
    : defs_(std::move(defs)), pending_(defs_.size()) {
  if (zones != nullptr && !zones->layers().empty()) {
    zone_layer_ = zones->layers()[0].name_symbol;
    zones_ = std::make_unique<ZoneLocator>(std::move(zones));
  }
}

Status SurfaceOperator::Open(RunContext& ctx) {
  dir_ = ctx.data_dir + "/surfaces";
  for (const SurfaceDefinition& d : defs_) {
    std::error_code ec;
    std::filesystem::create_directories(dir_ + "/" + d.name, ec);
    if (ec) return Status::Io("cannot create " + dir_ + "/" + d.name + ": " + ec.message());
  }
  return Status::Ok();
}

std::vector<SpatialStats> SurfaceSpatialStats(const Surface& s, Symbol layer) {
  static const Symbol kAll = Intern("all"), kSpherical = Intern("spherical");
  std::vector<SpatialStats> out;
  SpatialStats g;
  g.surface = Intern(s.name);
  g.window = s.window;
  g.metric = s.metric;
  g.start = s.start;
  g.end = s.end;
  g.zone = kAll;
  g.sensors = static_cast<uint32_t>(s.sensors);
  g.weights = Intern(s.moran_weights);
  g.morans_i = s.morans_i;
  g.morans_expected = s.morans_expected;
  g.morans_z = s.morans_z;
  g.variogram_model = kSpherical;
  g.nugget = s.nugget;
  g.sill = s.sill;
  g.range_m = s.variogram_range_m;
  g.nugget_sill = s.nugget_sill;
  g.method = Intern(s.method);
  g.revision = s.revision;
  g.emitted_at = NowUs();
  out.push_back(g);
  for (const ZoneStructure& z : s.zones) {
    SpatialStats r = g;
    r.zone_layer = layer;
    r.zone = z.zone;
    r.sensors = static_cast<uint32_t>(z.sensors);
    r.morans_i = z.morans_i;
    r.morans_expected = z.morans_expected;
    r.morans_z = z.morans_z;
    r.nugget = z.nugget;
    r.sill = z.sill;
    r.range_m = z.range_m;
    r.nugget_sill = z.nugget_sill;
    out.push_back(r);
  }
  return out;
}

namespace {

// Prometheus gauges of the newest window's spatial structure, per surface and zone.
void ExportSpatialGauges(const std::vector<SpatialStats>& rows) {
  for (const SpatialStats& r : rows) {
    std::string labels = "{surface=\"" + EscapeLabelValue(r.surface.view()) + "\",zone=\"" +
                         EscapeLabelValue(r.zone.view()) + "\"}";
    // Undefined values (too few sensors, no variance) leave the previous sample.
    if (std::isfinite(r.morans_i)) {
      SetConnectorGauge("tributary_spatial_morans_i", labels, r.morans_i,
                        "Moran's I of the newest closed window of a surface's metric (zone "
                        "\"all\": every sensor)");
    }
    if (std::isfinite(r.morans_z)) {
      SetConnectorGauge("tributary_spatial_morans_z", labels, r.morans_z,
                        "z-score of that Moran's I under normality");
    }
    if (std::isfinite(r.nugget_sill)) {
      SetConnectorGauge("tributary_spatial_nugget_sill", labels, r.nugget_sill,
                        "Nugget/sill ratio of the spherical variogram of that window (above "
                        "0.7 the surface is nearest-neighbour)");
    }
  }
}

}  // namespace

Status SurfaceOperator::Emit(size_t index, TimeUs start, Pending& p, Batch& out) {
  const SurfaceDefinition& def = defs_[index];
  p.dirty = false;
  if (p.sensors.size() < def.min_sensors) {
    spdlog::debug("surface {}: window {} has {} sensors, fewer than {}", def.name,
                  FormatTime(start), p.sensors.size(), def.min_sensors);
    return Status::Ok();
  }
  std::vector<SensorValue> sensors;
  sensors.reserve(p.sensors.size());
  for (const auto& [device, v] : p.sensors) sensors.push_back(v);
  Result<Surface> built = BuildSurface(def, std::move(sensors), zones_.get());
  if (!built.ok()) {
    spdlog::warn("surface {}: window {}: {}", def.name, FormatTime(start),
                 built.status().ToString());
    return Status::Ok();
  }
  Surface& s = *built;
  s.start = start;
  s.end = p.end;
  s.revision = p.built ? ++p.revision : 0;
  p.built = true;
  std::string base = dir_ + "/" + def.name + "/" + FileStamp(start);
  if (def.geotiff) TRIB_RETURN_IF_ERROR(WriteSurfaceGeoTiff(s, base + ".tif"));
  if (def.png) TRIB_RETURN_IF_ERROR(WriteSurfacePng(s, base + ".png"));
  if (def.json) TRIB_RETURN_IF_ERROR(WriteFileAtomic(base + ".json", SurfaceToJson(s)));
  ++written_;
  std::vector<SpatialStats> stats = SurfaceSpatialStats(s, zone_layer_);
  ExportSpatialGauges(stats);
  out.spatial_stats.insert(out.spatial_stats.end(), stats.begin(), stats.end());
  auto shared = std::make_shared<const Surface>(std::move(s));
  std::lock_guard lock(g_latest_mu);
  auto& slot = Latest()[def.name];
  if (slot == nullptr || slot->start <= shared->start) slot = shared;
  if (g_newest == nullptr || g_newest->start <= shared->start) g_newest = shared;
  return Status::Ok();
}

Status SurfaceOperator::Flush(TimeUs watermark, bool all, Batch& out) {
  for (size_t d = 0; d < defs_.size(); ++d) {
    auto& windows = pending_[d];
    for (auto& [start, p] : windows) {
      if (!p.dirty) continue;
      bool due =
          !p.built ? p.end <= watermark : watermark >= p.emitted_at_watermark + (p.end - start);
      if (all || due) {
        p.emitted_at_watermark = watermark;
        TRIB_RETURN_IF_ERROR(Emit(d, start, p, out));
      }
    }
    // Keep a few built windows for revisions; older ones are done.
    while (windows.size() > 8 && windows.begin()->second.built && !windows.begin()->second.dirty) {
      windows.erase(windows.begin());
    }
  }
  return Status::Ok();
}

Status SurfaceOperator::Process(Batch& batch) {
  for (const WindowResult& w : batch.windows) {
    for (size_t d = 0; d < defs_.size(); ++d) {
      const SurfaceDefinition& def = defs_[d];
      if (w.window != def.window_symbol || w.metric != def.metric) continue;
      double value = w.*(FindValueKind(def.value)->field);
      if (!std::isfinite(value) || !std::isfinite(w.centroid_lat) ||
          !std::isfinite(w.centroid_lon)) {
        continue;
      }
      Pending& p = pending_[d][w.start];
      p.end = w.end;
      p.sensors[w.group.id] = {w.centroid_lat, w.centroid_lon, value};
      p.dirty = true;
    }
  }
  return Flush(batch.watermark, false, batch);
}

Status SurfaceOperator::Finish(Batch& out) {
  return Flush(kMaxTime, true, out);
}

Status SurfaceOperator::Snapshot(CheckpointWriter& out) const {
  out.Section("surface");
  out.U64(defs_.size());
  for (size_t d = 0; d < defs_.size(); ++d) {
    out.Str(defs_[d].name);
    out.U64(pending_[d].size());
    for (const auto& [start, p] : pending_[d]) {
      out.I64(start);
      out.I64(p.end);
      out.Bool(p.dirty);
      out.Bool(p.built);
      out.U64(p.revision);
      out.I64(p.emitted_at_watermark);
      out.U64(p.sensors.size());
      for (const auto& [device, v] : p.sensors) {
        out.U64(device);
        out.F64(v.lat);
        out.F64(v.lon);
        out.F64(v.value);
      }
    }
  }
  return Status::Ok();
}

Status SurfaceOperator::Restore(CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("surface"));
  const uint64_t defs = in.Count();
  if (in.ok() && defs != defs_.size()) {
    return Status::Invalid("checkpoint: " + std::to_string(defs) + " surfaces when it was taken, " +
                           std::to_string(defs_.size()) + " now");
  }
  for (size_t d = 0; d < defs_.size() && in.ok(); ++d) {
    const std::string_view name = in.Str();
    if (in.ok() && name != defs_[d].name) {
      return Status::Invalid("checkpoint: surface " + std::to_string(d + 1) + " was '" +
                             std::string(name) + "', now '" + defs_[d].name + "'");
    }
    auto& windows = pending_[d];
    windows.clear();
    for (uint64_t n = in.Count(); n > 0 && in.ok(); --n) {
      Pending& p = windows[in.I64()];
      p.end = in.I64();
      p.dirty = in.Bool();
      p.built = in.Bool();
      p.revision = static_cast<uint32_t>(in.U64());
      p.emitted_at_watermark = in.I64();
      for (uint64_t k = in.Count(); k > 0 && in.ok(); --k) {
        const auto device = static_cast<uint32_t>(in.U64());
        SensorValue& v = p.sensors[device];
        v.lat = in.F64();
        v.lon = in.F64();
        v.value = in.F64();
      }
    }
  }
  return in.status();
}

Result<std::unique_ptr<Operator>> MakeSurfaceOperator(const PipelineConfig& config) {
  std::vector<SurfaceDefinition> defs;
  std::vector<std::string> names;
  for (const OptionReader& o : config.surfaces) {
    TRIB_ASSIGN_OR_RETURN(SurfaceDefinition d, ParseSurfaceDefinition(o, config));
    if (std::find(names.begin(), names.end(), d.name) != names.end()) {
      return o.Error("name", "duplicate surface name '" + d.name + "'");
    }
    names.push_back(d.name);
    defs.push_back(std::move(d));
  }
  if (defs.empty()) return std::unique_ptr<Operator>();
  // The zone layers again (an immutable set is cheap to share, but the enrichment stage
  // is built separately): per-zone structure uses the first layer.
  std::string base_dir;
  if (!config.file.empty() && config.file.front() != '<') {
    base_dir = std::filesystem::path(config.file).parent_path().string();
  }
  TRIB_ASSIGN_OR_RETURN(ZoneOptions zone_options, ReadZoneOptions(config.zones, base_dir));
  std::shared_ptr<const ZoneSet> zones;
  if (!zone_options.layers.empty()) {
    zone_options.layers.resize(1);
    TRIB_ASSIGN_OR_RETURN(zones, ZoneSet::Load(zone_options.layers));
  }
  return std::unique_ptr<Operator>(std::make_unique<SurfaceOperator>(std::move(defs), zones));
}

}  // namespace tributary
