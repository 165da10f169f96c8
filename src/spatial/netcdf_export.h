// Gridded export: the interpolated surfaces of one `surfaces[]` entry as one NetCDF file
// following the CF conventions (CF-1.8), for climate toolchains (xarray, CDO, NCO,
// Panoply, QGIS).
//
// Layout (netCDF-4 classic model):
//   dimensions  time (one per window, in time order), lat, lon, nv = 2
//   time(time)        double, "seconds since 1970-01-01 00:00:00 UTC", standard_name
//                     time, calendar standard, axis T; the window start, with
//   time_bnds(time,nv) the window [start, end)
//   lat(lat)          double, degrees_north, standard_name latitude, axis Y, south first
//   lon(lon)          double, degrees_east, standard_name longitude, axis X
//   crs               int, grid_mapping_name latitude_longitude on WGS84 (EPSG:4326)
//   <metric>(time, lat, lon)  float, the metric's canonical unit in UDUNITS spelling,
//                     standard_name where the CF table has one, long_name always,
//                     _FillValue NC_FILL_FLOAT where a cell has no data, grid_mapping crs,
//                     cell_methods "time: mean" (the window aggregate)
//   sensors(time)     int, sensors each surface interpolated
// The common grid is the union of the surfaces' extents at the finest cell size among
// them (capped at 4000 cells a side); each surface is sampled at the common cells'
// centres (nearest cell of its own grid), so surfaces with a fixed extent are copied
// exactly.
#pragma once

#include <string>

#include "core/status.h"

namespace tributary {

/// Write every surface of `surface_dir` (the <start>.json documents of one surfaces[]
/// entry, written by the surface stage) into the NetCDF file `nc_path` (written under a
/// temporary name, then renamed). Returns the number of time steps; an error names the
/// file that could not be read or written.
Result<size_t> WriteSurfacesNetcdf(const std::string& surface_dir, const std::string& nc_path);

}  // namespace tributary
