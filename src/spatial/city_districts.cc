// The districts of the simulator's default city (centre 52.52 N, 13.40 E, 20 km square),
// identical to examples/zones/city_districts.geojson (a test checks they match), so the
// embedded default pipeline groups windows by district without any file on disk.
#include "spatial/zones.h"

namespace tributary {

std::string_view BuiltinCityDistricts() {
  static const char kText[] =
      R"geojson({"type":"FeatureCollection","name":"city_districts","features":[
{"type":"Feature","properties":{"district_id":"D1","name":"Südwest"},"geometry":{"type":"Polygon","coordinates":[[[13.24,52.42],[13.351497,52.42],[13.332985,52.487384],[13.24,52.483143],[13.24,52.42]]]}},
{"type":"Feature","properties":{"district_id":"D2","name":"Süd"},"geometry":{"type":"Polygon","coordinates":[[[13.351497,52.42],[13.438533,52.42],[13.45121,52.478064],[13.332985,52.487384],[13.351497,52.42]]]}},
{"type":"Feature","properties":{"district_id":"D3","name":"Südost"},"geometry":{"type":"Polygon","coordinates":[[[13.438533,52.42],[13.56,52.42],[13.56,52.479143],[13.45121,52.478064],[13.438533,52.42]]]}},
{"type":"Feature","properties":{"district_id":"D4","name":"West"},"geometry":{"type":"Polygon","coordinates":[[[13.24,52.483143],[13.332985,52.487384],[13.342369,52.544493],[13.24,52.54635],[13.24,52.483143]]]}},
{"type":"Feature","properties":{"district_id":"D5","name":"Mitte"},"geometry":{"type":"Polygon","coordinates":[[[13.332985,52.487384],[13.45121,52.478064],[13.440236,52.551824],[13.342369,52.544493],[13.332985,52.487384]]]}},
{"type":"Feature","properties":{"district_id":"D6","name":"Ost"},"geometry":{"type":"Polygon","coordinates":[[[13.45121,52.478064],[13.56,52.479143],[13.56,52.547798],[13.440236,52.551824],[13.45121,52.478064]]]}},
{"type":"Feature","properties":{"district_id":"D7","name":"Nordwest"},"geometry":{"type":"Polygon","coordinates":[[[13.24,52.54635],[13.342369,52.544493],[13.346905,52.62],[13.24,52.62],[13.24,52.54635]]]}},
{"type":"Feature","properties":{"district_id":"D8","name":"Nord"},"geometry":{"type":"Polygon","coordinates":[[[13.342369,52.544493],[13.440236,52.551824],[13.463793,52.62],[13.346905,52.62],[13.342369,52.544493]]]}},
{"type":"Feature","properties":{"district_id":"D9","name":"Nordost"},"geometry":{"type":"Polygon","coordinates":[[[13.440236,52.551824],[13.56,52.547798],[13.56,52.62],[13.463793,52.62],[13.440236,52.551824]]]}}]}
)geojson";
  return {kText, sizeof(kText) - 1};
}

}  // namespace tributary
