// Semivariogram: the Matheron estimator (bins centred on multiples of the lag) against a
// hand-computed transect and against a published worked example (the Meuse data set with
// R's gstat), and the fit recovering known model parameters.
#include "spatial/variogram.h"

#include <endian.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <bit>
#include <cstring>
#include <string>

namespace tributary {
namespace {

double East(double m) {
  return m / (6371008.8 * M_PI / 180);
}

TEST(VariogramTest, EmpiricalByHand) {
  // z = 1, 3, 2, 5 at 0, 1, 2, 3 km on the equator, 1 km lags:
  // h = 1 km: (1,3) (3,2) (2,5) → (4 + 1 + 9) / (2·3) = 7/3
  // h = 2 km: (1,2) (3,5)       → (1 + 4) / (2·2)     = 5/4
  // h = 3 km: (1,5)             → 16 / 2               = 8
  std::vector<SensorValue> s = {
      {0, East(0), 1}, {0, East(1000), 3}, {0, East(2000), 2}, {0, East(3000), 5}};
  auto bins = EmpiricalVariogram(s, 1000, 3500);
  ASSERT_EQ(bins.size(), 3u);
  EXPECT_NEAR(bins[0].h, 1000, 1e-6);
  EXPECT_NEAR(bins[0].gamma, 7.0 / 3, 1e-12);
  EXPECT_EQ(bins[0].pairs, 3u);
  EXPECT_NEAR(bins[1].gamma, 1.25, 1e-12);
  EXPECT_NEAR(bins[2].gamma, 8.0, 1e-12);
}

// The first `columns` numeric columns of the data frame in an R data file (.rda, gzip'd XDR
// serialization, format 2) holding one data frame. Empty on anything else.
std::vector<std::vector<double>> ReadRdaNumericColumns(const std::string& path, size_t columns) {
  std::vector<std::vector<double>> out;
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return out;
  std::string data;
  char buf[1 << 16];
  for (int n; (n = gzread(f, buf, sizeof(buf))) > 0;) data.append(buf, static_cast<size_t>(n));
  gzclose(f);
  size_t pos = 0;
  bool ok = data.rfind("RDX2\nX\n", 0) == 0;
  pos = 7;
  auto word = [&]() -> uint32_t {
    if (pos + 4 > data.size()) {
      ok = false;
      return 0;
    }
    uint32_t v;
    std::memcpy(&v, data.data() + pos, 4);
    pos += 4;
    return be32toh(v);
  };
  word(), word(), word();  // format version, writer's and minimal reader's R version
  // A pairlist node with a tag: the symbol (a CHARSXP) naming the object, then the object.
  ok = ok && (word() & 0xff) == 2 && (word() & 0xff) == 1 && (word() & 0xff) == 9;
  pos += word();
  ok = ok && (word() & 0xff) == 19 && word() >= columns;  // a list: the data frame
  for (size_t c = 0; ok && c < columns; ++c) {
    ok = (word() & 0xff) == 14;  // REALSXP without attributes
    const size_t n = word();
    if (!ok || pos + 8 * n > data.size()) break;
    std::vector<double>& col = out.emplace_back(n);
    for (size_t i = 0; i < n; ++i) {
      uint64_t bits;
      std::memcpy(&bits, data.data() + pos, 8);
      pos += 8;
      col[i] = std::bit_cast<double>(be64toh(bits));
    }
  }
  if (!ok || out.size() != columns) out.clear();
  return out;
}

// Pebesma's gstat reference example, `variogram(log(zinc) ~ 1, meuse)`: the heavy metal
// samples of the Meuse flood plain (155 topsoil samples, Rikken & Van Rijn 1993, as shipped
// in R's sp package; coordinates in metres, Dutch RD New), with gstat's defaults: cutoff a
// third of the bounding box diagonal, 15 bins of equal width from zero. The published
// output (gstat's documentation of `variogram`, e.g. the rendered R help page
// "variogram: Calculate Sample or Experimental Variogram") lists per bin the pairs, the
// mean distance and the semivariance; every bin must match.
TEST(VariogramTest, MeuseLogZincMatchesTheGstatReferenceExample) {
  const std::string path = std::string(TRIBUTARY_SOURCE_DIR) + "/.deps/meuse/meuse.rda";
  auto cols = ReadRdaNumericColumns(path, 6);  // x, y, cadmium, copper, lead, zinc
  ASSERT_EQ(cols.size(), 6u) << "cannot read the Meuse data set at " << path
                             << " (scripts/setup.sh --deps-only fetches it from Debian's "
                                "r-cran-sp package)";
  const std::vector<double>&x = cols[0], &y = cols[1], &zinc = cols[5];
  ASSERT_EQ(x.size(), 155u);
  EXPECT_EQ(x[0], 181072);
  EXPECT_EQ(y[0], 333611);
  EXPECT_EQ(zinc[0], 1022);
  auto [xmin, xmax] = std::minmax_element(x.begin(), x.end());
  auto [ymin, ymax] = std::minmax_element(y.begin(), y.end());
  const double cutoff = std::hypot(*xmax - *xmin, *ymax - *ymin) / 3;
  auto bins = EmpiricalVariogramOf(
      x.size(), [&](size_t i) { return std::log(zinc[i]); },
      [&](size_t i, size_t j) { return std::hypot(x[i] - x[j], y[i] - y[j]); }, cutoff / 15, cutoff,
      LagBins::kFromZero);
  struct Published {
    size_t np;
    double dist, gamma;
  };
  const Published gstat[] = {
      {57, 79.29244, 0.1234479},    {299, 163.97367, 0.2162185},  {419, 267.36483, 0.3027859},
      {457, 372.73542, 0.4121448},  {547, 478.47670, 0.4634128},  {533, 585.34058, 0.5646933},
      {574, 693.14526, 0.5689683},  {564, 796.18365, 0.6186769},  {589, 903.14650, 0.6471479},
      {543, 1011.29177, 0.6915705}, {500, 1117.86235, 0.7033984}, {477, 1221.32810, 0.6038770},
      {452, 1329.16407, 0.6517158}, {457, 1437.25620, 0.5665318}, {415, 1543.20248, 0.5748227},
  };
  ASSERT_EQ(bins.size(), std::size(gstat));
  for (size_t k = 0; k < bins.size(); ++k) {
    EXPECT_EQ(bins[k].pairs, gstat[k].np) << "bin " << k;
    EXPECT_NEAR(bins[k].h, gstat[k].dist, 5e-6) << "bin " << k;
    EXPECT_NEAR(bins[k].gamma, gstat[k].gamma, 5e-8) << "bin " << k;
  }
  // The same pairs binned around multiples of the lag (the estimator surfaces use) keep
  // every pair: the counts add up to the pairs within the cutoff.
  auto centred = EmpiricalVariogramOf(
      x.size(), [&](size_t i) { return std::log(zinc[i]); },
      [&](size_t i, size_t j) { return std::hypot(x[i] - x[j], y[i] - y[j]); }, cutoff / 15,
      cutoff);
  size_t total = 0, total_centred = 0;
  for (const auto& b : bins) total += b.pairs;
  for (const auto& b : centred) total_centred += b.pairs;
  EXPECT_EQ(total_centred, total);
  EXPECT_EQ(centred.size(), 16u);
}

TEST(VariogramTest, FitRecoversModelParameters) {
  for (VariogramModel m : {VariogramModel::kSpherical, VariogramModel::kExponential}) {
    VariogramFit truth;
    truth.model = m;
    truth.nugget = 1;
    truth.sill = 5;
    truth.range = 3000;
    truth.ok = true;
    std::vector<VariogramBin> bins;
    for (double h = 250; h <= 6000; h += 250) bins.push_back({h, truth.Gamma(h), 10});
    VariogramFit fit = FitVariogram(bins, m);
    ASSERT_TRUE(fit.ok);
    EXPECT_NEAR(fit.nugget, 1, 1e-3);
    EXPECT_NEAR(fit.sill, 5, 1e-3);
    EXPECT_NEAR(fit.range, 3000, 3);
    EXPECT_NEAR(fit.NuggetSillRatio(), 0.2, 1e-3);
  }
}

TEST(VariogramTest, PureNoiseHasAHighNuggetSillRatio) {
  // Flat semivariance: no spatial structure, all nugget.
  std::vector<VariogramBin> bins;
  for (double h = 500; h <= 5000; h += 500) bins.push_back({h, 4.0, 20});
  VariogramFit fit = FitVariogram(bins, VariogramModel::kSpherical);
  ASSERT_TRUE(fit.ok);
  EXPECT_GT(fit.NuggetSillRatio(), kNuggetSillNearestNeighbour);
  EXPECT_FALSE(FitVariogram({bins[0], bins[1]}, VariogramModel::kSpherical).ok);
}

}  // namespace
}  // namespace tributary
