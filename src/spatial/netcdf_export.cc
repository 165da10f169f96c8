#include "spatial/netcdf_export.h"

#include <netcdf.h>
#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string_view>
#include <vector>

#include "core/time.h"
#include "ingest/metrics.h"

namespace tributary {
extern const char* const kVersion;

namespace {

namespace fs = std::filesystem;

constexpr int kMaxCells = 4000;

// One surface document as read back.
struct SurfaceDoc {
  std::string metric;
  std::string name;
  TimeUs start = 0, end = 0;
  double min_lon = 0, min_lat = 0, max_lon = 0, max_lat = 0;
  int width = 0, height = 0;
  int64_t sensors = 0;
  std::vector<float> values;  // row-major, row 0 north, NaN = no data
};

// CF standard names and UDUNITS spellings of the canonical units, where CF has them.
struct CfMetric {
  std::string_view metric;
  std::string_view standard_name;
  std::string_view units;
};
constexpr CfMetric kCfMetrics[] = {
    {"pm25", "mass_concentration_of_pm2p5_ambient_aerosol_particles_in_air", "ug m-3"},
    {"pm10", "mass_concentration_of_pm10_ambient_aerosol_particles_in_air", "ug m-3"},
    {"pm1", "mass_concentration_of_pm1_ambient_aerosol_particles_in_air", "ug m-3"},
    {"temperature", "air_temperature", "degC"},
    {"humidity", "relative_humidity", "percent"},
    {"pressure", "air_pressure", "hPa"},
    {"wind_speed", "wind_speed", "m s-1"},
    {"wind_direction", "wind_from_direction", "degree"},
    {"rainfall", "thickness_of_rainfall_amount", "mm"},
    {"soil_moisture", "volume_fraction_of_condensed_water_in_soil", "percent"},
};

// A canonical unit spelling ("ug/m3", "m/s") as UDUNITS ("ug m-3", "m s-1").
std::string UdunitsOf(std::string_view unit) {
  std::string u(unit);
  size_t slash = u.find('/');
  if (slash == std::string::npos) return u;
  std::string num = u.substr(0, slash);
  std::string den = u.substr(slash + 1);
  std::string power = "-1";
  if (!den.empty() && std::isdigit(static_cast<unsigned char>(den.back()))) {
    power = "-" + std::string(1, den.back());
    den.pop_back();
  }
  return num + " " + den + power;
}

Status NcError(const std::string& what, const std::string& path, int rc) {
  return Status::Io("NetCDF " + path + ": " + what + ": " + nc_strerror(rc));
}

Result<SurfaceDoc> ReadSurfaceDoc(simdjson::dom::parser& parser, const std::string& path) {
  simdjson::dom::element doc;
  if (auto err = parser.load(path).get(doc); err) {
    return Status::Corrupt("surface " + path + ": " + simdjson::error_message(err));
  }
  SurfaceDoc s;
  auto fail = [&](const char* what) {
    return Status::Corrupt("surface " + path + ": " + what + " missing or invalid");
  };
  std::string_view text;
  if (doc["metric"].get(text)) return fail("metric");
  s.metric = std::string(text);
  if (doc["name"].get(text)) return fail("name");
  s.name = std::string(text);
  if (doc["window_start"].get(text)) return fail("window_start");
  Result<TimeUs> start = ParseTime(text);
  if (!start.ok()) return fail("window_start");
  s.start = *start;
  if (doc["window_end"].get(text)) return fail("window_end");
  Result<TimeUs> end = ParseTime(text);
  if (!end.ok()) return fail("window_end");
  s.end = *end;
  simdjson::dom::array bbox;
  if (doc["bbox"].get(bbox) || bbox.size() != 4) return fail("bbox");
  double b[4];
  size_t i = 0;
  for (simdjson::dom::element e : bbox) {
    if (e.get(b[i])) return fail("bbox");
    ++i;
  }
  s.min_lon = b[0];
  s.min_lat = b[1];
  s.max_lon = b[2];
  s.max_lat = b[3];
  int64_t w = 0, h = 0;
  if (doc["width"].get(w) || doc["height"].get(h) || w <= 0 || h <= 0) return fail("width/height");
  s.width = static_cast<int>(w);
  s.height = static_cast<int>(h);
  if (doc["sensors"].get(s.sensors)) s.sensors = 0;
  simdjson::dom::array rows;
  if (doc["values"].get(rows) || rows.size() != static_cast<size_t>(h)) return fail("values");
  s.values.reserve(static_cast<size_t>(w * h));
  for (simdjson::dom::element row : rows) {
    simdjson::dom::array cells;
    if (row.get(cells) || cells.size() != static_cast<size_t>(w)) return fail("values");
    for (simdjson::dom::element c : cells) {
      double v = NAN;
      if (!c.is_null() && c.get(v)) return fail("values");
      s.values.push_back(static_cast<float>(v));
    }
  }
  return s;
}

}  // namespace

Result<size_t> WriteSurfacesNetcdf(const std::string& surface_dir, const std::string& nc_path) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(surface_dir, ec)) {
    if (e.is_regular_file() && e.path().extension() == ".json") files.push_back(e.path().string());
  }
  if (ec) return Status::Io("cannot list " + surface_dir + ": " + ec.message());
  std::sort(files.begin(), files.end());
  simdjson::dom::parser parser;
  std::vector<SurfaceDoc> docs;
  for (const std::string& f : files) {
    TRIB_ASSIGN_OR_RETURN(SurfaceDoc d, ReadSurfaceDoc(parser, f));
    if (!docs.empty() && d.metric != docs.front().metric) {
      return Status::Corrupt("surface " + f + ": metric " + d.metric + " differs from " +
                             docs.front().metric);
    }
    docs.push_back(std::move(d));
  }
  if (docs.empty()) return size_t{0};
  std::stable_sort(docs.begin(), docs.end(),
                   [](const SurfaceDoc& a, const SurfaceDoc& b) { return a.start < b.start; });

  // The common grid: union extent, finest cell size.
  double min_lon = docs[0].min_lon, max_lon = docs[0].max_lon;
  double min_lat = docs[0].min_lat, max_lat = docs[0].max_lat;
  double dlon = (docs[0].max_lon - docs[0].min_lon) / docs[0].width;
  double dlat = (docs[0].max_lat - docs[0].min_lat) / docs[0].height;
  for (const SurfaceDoc& d : docs) {
    min_lon = std::min(min_lon, d.min_lon);
    max_lon = std::max(max_lon, d.max_lon);
    min_lat = std::min(min_lat, d.min_lat);
    max_lat = std::max(max_lat, d.max_lat);
    dlon = std::min(dlon, (d.max_lon - d.min_lon) / d.width);
    dlat = std::min(dlat, (d.max_lat - d.min_lat) / d.height);
  }
  auto cells = [](double span, double step) {
    if (!(step > 0)) return 1;
    double n = std::round(span / step);
    // Within a millionth of a cell: the extents agree, no extra cell.
    if (std::fabs(n * step - span) > 1e-6 * step) n = std::ceil(span / step);
    return static_cast<int>(std::clamp<double>(n, 1, kMaxCells));
  };
  const int nx = cells(max_lon - min_lon, dlon);
  const int ny = cells(max_lat - min_lat, dlat);
  dlon = (max_lon - min_lon) / nx;
  dlat = (max_lat - min_lat) / ny;

  const std::string tmp = nc_path + ".tmp";
  int nc = -1;
  int rc = nc_create(tmp.c_str(), NC_CLOBBER | NC_NETCDF4 | NC_CLASSIC_MODEL, &nc);
  if (rc != NC_NOERR) return NcError("cannot create", tmp, rc);
  auto fail = [&](const char* what, int code) {
    nc_close(nc);
    std::remove(tmp.c_str());
    return NcError(what, nc_path, code);
  };
  auto text_att = [&](int var, const char* name, std::string_view value) {
    return nc_put_att_text(nc, var, name, value.size(), value.data());
  };
  int time_dim, lat_dim, lon_dim, nv_dim;
  if ((rc = nc_def_dim(nc, "time", docs.size(), &time_dim)) ||
      (rc = nc_def_dim(nc, "lat", static_cast<size_t>(ny), &lat_dim)) ||
      (rc = nc_def_dim(nc, "lon", static_cast<size_t>(nx), &lon_dim)) ||
      (rc = nc_def_dim(nc, "nv", 2, &nv_dim))) {
    return fail("cannot define dimensions", rc);
  }
  int time_var, bnds_var, lat_var, lon_var, crs_var, data_var, sensors_var;
  const int bnds_dims[2] = {time_dim, nv_dim};
  const int data_dims[3] = {time_dim, lat_dim, lon_dim};
  if ((rc = nc_def_var(nc, "time", NC_DOUBLE, 1, &time_dim, &time_var)) ||
      (rc = nc_def_var(nc, "time_bnds", NC_DOUBLE, 2, bnds_dims, &bnds_var)) ||
      (rc = nc_def_var(nc, "lat", NC_DOUBLE, 1, &lat_dim, &lat_var)) ||
      (rc = nc_def_var(nc, "lon", NC_DOUBLE, 1, &lon_dim, &lon_var)) ||
      (rc = nc_def_var(nc, "crs", NC_INT, 0, nullptr, &crs_var)) ||
      (rc = nc_def_var(nc, docs[0].metric.c_str(), NC_FLOAT, 3, data_dims, &data_var)) ||
      (rc = nc_def_var(nc, "sensors", NC_INT, 1, &time_dim, &sensors_var))) {
    return fail("cannot define variables", rc);
  }
  const SurfaceDoc& first = docs[0];
  const MetricInfo* metric = FindMetric(first.metric);
  std::string units = metric != nullptr ? UdunitsOf(metric->unit) : std::string("1");
  std::string standard_name;
  for (const CfMetric& m : kCfMetrics) {
    if (m.metric == first.metric) {
      standard_name = std::string(m.standard_name);
      units = std::string(m.units);
    }
  }
  std::string long_name = metric != nullptr && !metric->description.empty()
                              ? std::string(metric->description)
                              : first.metric;
  long_name += " interpolated by inverse distance weighting (surface " + first.name + ")";
  const double lat_range[2] = {min_lat, max_lat};
  const double lon_range[2] = {min_lon, max_lon};
  const float fill = NC_FILL_FLOAT;
  const double semi_major = 6378137.0, inverse_flattening = 298.257223563, zero = 0.0;
  const std::string history = FormatTime(NowUs()) + " tributary " + kVersion + " backfill";
  if ((rc = text_att(NC_GLOBAL, "Conventions", "CF-1.8")) ||
      (rc = text_att(NC_GLOBAL, "title",
                     "tributary surface " + first.name + " of " + first.metric)) ||
      (rc = text_att(NC_GLOBAL, "source", std::string("tributary ") + kVersion)) ||
      (rc = text_att(NC_GLOBAL, "history", history)) ||
      (rc = text_att(time_var, "standard_name", "time")) ||
      (rc = text_att(time_var, "long_name", "window start")) ||
      (rc = text_att(time_var, "units", "seconds since 1970-01-01 00:00:00 UTC")) ||
      (rc = text_att(time_var, "calendar", "standard")) || (rc = text_att(time_var, "axis", "T")) ||
      (rc = text_att(time_var, "bounds", "time_bnds")) ||
      (rc = text_att(lat_var, "standard_name", "latitude")) ||
      (rc = text_att(lat_var, "long_name", "latitude of the cell centre")) ||
      (rc = text_att(lat_var, "units", "degrees_north")) || (rc = text_att(lat_var, "axis", "Y")) ||
      (rc = nc_put_att_double(nc, lat_var, "actual_range", NC_DOUBLE, 2, lat_range)) ||
      (rc = text_att(lon_var, "standard_name", "longitude")) ||
      (rc = text_att(lon_var, "long_name", "longitude of the cell centre")) ||
      (rc = text_att(lon_var, "units", "degrees_east")) || (rc = text_att(lon_var, "axis", "X")) ||
      (rc = nc_put_att_double(nc, lon_var, "actual_range", NC_DOUBLE, 2, lon_range)) ||
      (rc = text_att(crs_var, "grid_mapping_name", "latitude_longitude")) ||
      (rc = nc_put_att_double(nc, crs_var, "semi_major_axis", NC_DOUBLE, 1, &semi_major)) ||
      (rc = nc_put_att_double(nc, crs_var, "inverse_flattening", NC_DOUBLE, 1,
                              &inverse_flattening)) ||
      (rc = nc_put_att_double(nc, crs_var, "longitude_of_prime_meridian", NC_DOUBLE, 1, &zero)) ||
      (rc = text_att(crs_var, "epsg_code", "EPSG:4326")) ||
      // Every cell is written, so HDF5 need not pre-fill the variable's storage first (that
      // doubled the bytes written); _FillValue still marks the cells without data.
      (rc = nc_def_var_fill(nc, data_var, NC_NOFILL, nullptr)) ||
      (rc = nc_put_att_float(nc, data_var, "_FillValue", NC_FLOAT, 1, &fill)) ||
      (rc = text_att(data_var, "long_name", long_name)) ||
      (rc = text_att(data_var, "units", units)) ||
      (rc = text_att(data_var, "grid_mapping", "crs")) ||
      (rc = text_att(data_var, "cell_methods", "time: mean")) ||
      (rc = text_att(sensors_var, "long_name", "number of sensors interpolated")) ||
      (rc = text_att(sensors_var, "units", "1"))) {
    return fail("cannot write attributes", rc);
  }
  if (!standard_name.empty() && (rc = text_att(data_var, "standard_name", standard_name))) {
    return fail("cannot write attributes", rc);
  }
  if ((rc = nc_enddef(nc))) return fail("cannot end definitions", rc);

  std::vector<double> lat(static_cast<size_t>(ny)), lon(static_cast<size_t>(nx));
  for (int j = 0; j < ny; ++j) lat[static_cast<size_t>(j)] = min_lat + (j + 0.5) * dlat;
  for (int i = 0; i < nx; ++i) lon[static_cast<size_t>(i)] = min_lon + (i + 0.5) * dlon;
  std::vector<double> times, bnds;
  std::vector<int> sensors;
  for (const SurfaceDoc& d : docs) {
    times.push_back(static_cast<double>(d.start) / kMicrosPerSecond);
    bnds.push_back(static_cast<double>(d.start) / kMicrosPerSecond);
    bnds.push_back(static_cast<double>(d.end) / kMicrosPerSecond);
    sensors.push_back(static_cast<int>(d.sensors));
  }
  if ((rc = nc_put_var_double(nc, lat_var, lat.data())) ||
      (rc = nc_put_var_double(nc, lon_var, lon.data())) ||
      (rc = nc_put_var_double(nc, time_var, times.data())) ||
      (rc = nc_put_var_double(nc, bnds_var, bnds.data())) ||
      (rc = nc_put_var_int(nc, sensors_var, sensors.data()))) {
    return fail("cannot write coordinates", rc);
  }
  std::vector<float> slab(static_cast<size_t>(nx) * static_cast<size_t>(ny));
  for (size_t t = 0; t < docs.size(); ++t) {
    const SurfaceDoc& d = docs[t];
    const double sdlon = (d.max_lon - d.min_lon) / d.width;
    const double sdlat = (d.max_lat - d.min_lat) / d.height;
    for (int j = 0; j < ny; ++j) {
      // Row j of the output is south first; the surface's row 0 is north.
      const double y = lat[static_cast<size_t>(j)];
      const int row = static_cast<int>(std::floor((d.max_lat - y) / sdlat));
      for (int i = 0; i < nx; ++i) {
        const double x = lon[static_cast<size_t>(i)];
        const int col = static_cast<int>(std::floor((x - d.min_lon) / sdlon));
        float v = NAN;
        if (row >= 0 && row < d.height && col >= 0 && col < d.width) {
          v = d.values[static_cast<size_t>(row) * static_cast<size_t>(d.width) +
                       static_cast<size_t>(col)];
        }
        slab[static_cast<size_t>(j) * static_cast<size_t>(nx) + static_cast<size_t>(i)] =
            std::isfinite(v) ? v : fill;
      }
    }
    const size_t start[3] = {t, 0, 0};
    const size_t count[3] = {1, static_cast<size_t>(ny), static_cast<size_t>(nx)};
    if ((rc = nc_put_vara_float(nc, data_var, start, count, slab.data()))) {
      return fail("cannot write values", rc);
    }
  }
  if ((rc = nc_close(nc))) {
    std::remove(tmp.c_str());
    return NcError("cannot close", nc_path, rc);
  }
  fs::rename(tmp, nc_path, ec);
  if (ec) return Status::Io("cannot rename " + tmp + " to " + nc_path + ": " + ec.message());
  return docs.size();
}

}  // namespace tributary
