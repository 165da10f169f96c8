// tributary's side of the spatial peer comparison (bench/peers/run_peers.py): the zone
// lookup alone and the IDW surface alone, over files the harness wrote, timing only
// the work (not the file reading) and writing the results for the harness to compare.
//
//   peer_spatial_bench zones POLYGONS.geojson ID_FIELD POINTS.csv OUT.txt
//       one "lat,lon" per line in; one zone id per line out ("" when none)
//   peer_spatial_bench idw SENSORS.csv SIDE OUT.f32
//       "lat,lon,value" per line in; a SIDE × SIDE grid over the sensors' extent,
//       k = 8, power 2, as little-endian float32 in row order (row 0 north)
// Prints one JSON line: {"items": N, "seconds": S}.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "spatial/idw.h"
#include "spatial/zones.h"

namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::vector<double>> ReadCsv(const std::string& path, size_t columns) {
  std::vector<std::vector<double>> rows;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<double> row;
    size_t pos = 0;
    for (size_t c = 0; c < columns; ++c) {
      size_t used = 0;
      row.push_back(std::stod(line.substr(pos), &used));
      pos += used + 1;
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

int Zones(const std::string& polygons, const std::string& id_field, const std::string& points,
          const std::string& out_path) {
  auto zones = tributary::ZoneSet::Load({{"peer", polygons, "", id_field, ""}});
  if (!zones.ok()) {
    std::cerr << "error: " << zones.status().message() << "\n";
    return 1;
  }
  std::vector<std::vector<double>> pts = ReadCsv(points, 2);
  tributary::ZoneLocator locator(*zones);
  std::vector<int> found(pts.size());
  // Prepared geometries are built on a zone's first lookup: one untimed pass first.
  for (size_t i = 0; i < pts.size(); ++i) found[i] = locator.Locate(0, pts[i][0], pts[i][1]);
  const Clock::time_point t0 = Clock::now();
  for (size_t i = 0; i < pts.size(); ++i) found[i] = locator.Locate(0, pts[i][0], pts[i][1]);
  const double seconds = Seconds(t0);
  std::ofstream out(out_path);
  const auto& layer = (*zones)->layers()[0];
  for (int z : found) out << (z < 0 ? std::string() : layer.zones[z].id.str()) << "\n";
  std::printf("{\"items\": %zu, \"seconds\": %.6f}\n", pts.size(), seconds);
  return 0;
}

int Idw(const std::string& sensors_path, int side, const std::string& out_path) {
  std::vector<std::vector<double>> rows = ReadCsv(sensors_path, 3);
  if (rows.empty()) return 1;
  std::vector<tributary::SensorValue> sensors;
  double lat0 = 0, lon0 = 0;
  tributary::GridSpec grid{rows[0][1], rows[0][0], rows[0][1], rows[0][0], side, side};
  for (const auto& r : rows) {
    sensors.push_back({r[0], r[1], r[2]});
    lat0 += r[0] / static_cast<double>(rows.size());
    lon0 += r[1] / static_cast<double>(rows.size());
    grid.min_lat = std::min(grid.min_lat, r[0]);
    grid.max_lat = std::max(grid.max_lat, r[0]);
    grid.min_lon = std::min(grid.min_lon, r[1]);
    grid.max_lon = std::max(grid.max_lon, r[1]);
  }
  const Clock::time_point t0 = Clock::now();
  auto idw = tributary::IdwInterpolator::Make(sensors, {2.0, 8, 0}, lat0, lon0);
  if (!idw.ok()) {
    std::cerr << "error: " << idw.status().message() << "\n";
    return 1;
  }
  std::vector<float> values;
  (*idw)->Interpolate(grid, values);
  const double seconds = Seconds(t0);
  std::ofstream out(out_path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(values.data()),
            static_cast<std::streamsize>(values.size() * sizeof(float)));
  std::printf("{\"items\": %zu, \"seconds\": %.6f}\n", values.size(), seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  if (a.size() == 5 && a[0] == "zones") return Zones(a[1], a[2], a[3], a[4]);
  if (a.size() == 4 && a[0] == "idw") return Idw(a[1], std::stoi(a[2]), a[3]);
  std::cerr << "usage: peer_spatial_bench zones POLYGONS.geojson ID_FIELD POINTS.csv OUT.txt\n"
               "       peer_spatial_bench idw SENSORS.csv SIDE OUT.f32\n";
  return 2;
}
