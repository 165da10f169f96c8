// The surface stage: an interpolated grid of one metric for every closed window.
//
// Each `surfaces[]` entry names a window definition that groups by device and computes
// the centroid and the value aggregate (default mean): every window result of that
// definition and metric is one sensor (its centroid, its value). When the watermark has
// passed a window's end, the stage interpolates the configured grid with IDW (idw.h) and
// writes it under <data_dir>/surfaces/<name>/ as <start>.tif (GeoTIFF, float32, WGS84,
// NaN = no data), <start>.png (colour map with a legend) and <start>.json, each
// atomically (temporary file, then rename); <start> is the window start in UTC,
// "20240501T120000Z". Windows with fewer than `min_sensors` sensors are skipped. A
// The sensors' semivariogram (spherical model) and Moran's I (k-NN or distance-band
// weights, `moran_weights`) are computed with every surface, over all sensors and per
// zone of the first zone layer, and stored in its JSON and GeoTIFF metadata, as
// SpatialStats rows of the batch (the sqlite sink's `spatial_stats` table) and as the
// gauges tributary_spatial_morans_i / _morans_z / _nugget_sill; where the nugget/sill ratio is
// above 0.7 the grid is filled by nearest neighbour instead and `method` says so. A
// window re-emitted as a revision (a late reading within grace) updates its sensor
// and the surface is rebuilt and rewritten with the next revision number — at most once
// per window length of watermark progress (revisions come in bursts of late readings),
// and finally when the input ends.
//
// The latest surface of each entry is kept in memory for the HTTP API (LatestSurface).
// Threading: the operator runs on the process thread; LatestSurface is safe from any
// thread (it returns an immutable snapshot).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/intern.h"
#include "core/pipeline_config.h"
#include "core/time.h"
#include "spatial/idw.h"
#include "spatial/moran.h"
#include "spatial/zones.h"
#include "stream/operator.h"

namespace tributary {

/// Spatial structure of the sensors inside one zone of the first zone layer.
struct ZoneStructure {
  Symbol zone;
  size_t sensors = 0;
  double morans_i = NAN;  ///< the surface's weights (k-NN: at most sensors − 1)
  double morans_expected = NAN, morans_z = NAN;
  double nugget_sill = NAN;  ///< spherical variogram of the zone's sensors
  double nugget = NAN, sill = NAN, range_m = NAN;
};

/// One interpolated grid.
struct Surface {
  std::string name;  ///< the surfaces[] entry
  Symbol window;
  Symbol metric;
  TimeUs start = 0, end = 0;
  uint32_t revision = 0;
  GridSpec grid;
  IdwOptions idw;
  size_t sensors = 0;
  std::vector<float> values;    ///< row-major, row 0 north; NaN = no data
  double min = NAN, max = NAN;  ///< over the finite values
  /// "idw" or "kriging" as configured, or "nearest" when the variogram's nugget/sill ratio is above
  /// 0.7 (values too noisy at the sensors' spacing for weighting to mean anything; flagged).
  std::string method = "idw";
  double nugget_sill = NAN;  ///< of the spherical variogram fitted to the sensors
  double variogram_range_m = NAN;
  double morans_i = NAN;             ///< global Moran's I with the definition's weights
  double morans_expected = NAN;      ///< E[I] = −1/(n − 1)
  double morans_z = NAN;             ///< its z-score under normality
  double nugget = NAN, sill = NAN;   ///< of the fitted spherical variogram
  std::string moran_weights;         ///< "knn:4" or "band:2000m"
  std::vector<ZoneStructure> zones;  ///< per zone with at least 3 sensors (zones configured)
};

/// Options of one surfaces[] entry.
struct SurfaceDefinition {
  std::string name;
  std::string window;
  Symbol window_symbol;
  Symbol metric;
  std::string value = "mean";  ///< which aggregate of the window is the sensor's value
  bool auto_extent = true;     ///< extent from the sensors (padded 10%) when not given
  GridSpec grid;               ///< extent and width/height (height 0: from the aspect)
  IdwOptions idw;
  size_t min_sensors = 2;
  bool kriging = false;  ///< ordinary kriging with the fitted variogram instead of IDW
  int kriging_neighbours = 16;
  bool geotiff = true, png = true, json = true;
  /// Weights of Moran's I (global and per zone): k nearest neighbours or a distance band.
  MoranOptions moran{MoranWeights::kKNearest, 2000, 4};
};

/// The spatial_stats rows of a surface: one over all sensors, one per zone of `layer`.
std::vector<SpatialStats> SurfaceSpatialStats(const Surface& s, Symbol layer);

/// The surfaces[] section.
const SectionSpec& SurfaceSectionSpec();

/// Read one surfaces[] entry; checks that its window exists, groups by device and
/// computes the centroid and the value aggregate.
Result<SurfaceDefinition> ParseSurfaceDefinition(const OptionReader& options,
                                                 const PipelineConfig& config);

/// Interpolate `sensors` for `def` (grid resolved from the sensors when auto).
/// With `zones`, also the per-zone Moran's I and nugget/sill of the first layer.
Result<Surface> BuildSurface(const SurfaceDefinition& def, std::vector<SensorValue> sensors,
                             ZoneLocator* zones = nullptr);

/// Encoders (also used by tests): GeoTIFF to `path`, colour PNG with a legend to
/// `path`, and the JSON document.
Status WriteSurfaceGeoTiff(const Surface& s, const std::string& path);
Status WriteSurfacePng(const Surface& s, const std::string& path);
std::string SurfaceToJson(const Surface& s);

/// The newest surface of entry `name` (any entry when empty); null when none yet.
std::shared_ptr<const Surface> LatestSurface(const std::string& name = {});

class SurfaceOperator : public Operator {
 public:
  /// `zones` (may be null) gives the per-zone structure of each surface.
  SurfaceOperator(std::vector<SurfaceDefinition> defs, std::shared_ptr<const ZoneSet> zones);
  std::string_view name() const override { return "surface"; }
  Status Open(RunContext& ctx) override;
  Status Process(Batch& batch) override;
  Status Finish(Batch& out) override;
  /// The windows being collected per definition: sensors, revision and emission state.
  /// Surface files are rewritten from it after a restart, with the same content.
  Status Snapshot(CheckpointWriter& out) const override;
  Status Restore(CheckpointReader& in) override;

  /// Surfaces written so far (for tests and progress).
  uint64_t written() const { return written_; }

 private:
  struct Pending {
    TimeUs end = 0;
    std::map<uint32_t, SensorValue> sensors;  // by device symbol id
    bool dirty = false;
    bool built = false;
    uint32_t revision = 0;
    TimeUs emitted_at_watermark = kMinTime;
  };
  Status Emit(size_t def, TimeUs start, Pending& p, Batch& out);
  Status Flush(TimeUs watermark, bool all, Batch& out);

  std::vector<SurfaceDefinition> defs_;
  std::unique_ptr<ZoneLocator> zones_;
  Symbol zone_layer_;                               // name of the first zone layer (per-zone rows)
  std::vector<std::map<TimeUs, Pending>> pending_;  // per definition, by window start
  std::string dir_;
  uint64_t written_ = 0;
};

/// Build the surface stage from `surfaces[]`; null when there is none.
Result<std::unique_ptr<Operator>> MakeSurfaceOperator(const PipelineConfig& config);

}  // namespace tributary
