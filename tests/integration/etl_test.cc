// `tributary etl` against a real PostgreSQL server: the three input shapes, the seed's
// columns and derived flags, the accounting of every record, and idempotent re-runs.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "integration/postgres.h"
#include "io/sinks/pg_conn.h"
#include "io/weather_etl.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::PostgresServer;

TEST(WeatherEtlTest, MapsTheThreeShapesAndDerivesTheSeedFlags) {
  auto field = [](const char* path, double v) {
    WeatherField f;
    f.path = path;
    f.number = v;
    f.is_number = true;
    f.text = fmt::format("{}", v);  // as the JSON reader renders numbers
    return f;
  };
  auto text = [](const char* path, const char* t) {
    WeatherField f;
    f.path = path;
    f.text = t;
    return f;
  };
  WeatherRow row;
  std::string reason;
  // OpenWeatherMap in its default kelvin.
  ASSERT_EQ(MapWeatherRecord({field("dt", 1714564800), text("name", "Berlin"), field("id", 2950159),
                              field("main.temp", 298.15), field("main.humidity", 40),
                              field("main.pressure", 1012), field("wind.speed", 3.5),
                              text("weather.0.description", "clear sky")},
                             "", row, reason),
            WeatherRecordOutcome::kRow)
      << reason;
  EXPECT_EQ(row.timestamp, 1714564800 * kMicrosPerSecond);
  EXPECT_EQ(row.city, "Berlin");
  EXPECT_EQ(row.device_id, "2950159");
  EXPECT_NEAR(row.temperature_c, 25.0, 1e-9);
  EXPECT_EQ(row.weather, "clear sky");
  EXPECT_TRUE(row.mod_high_temp);
  EXPECT_FALSE(row.low_temp);
  EXPECT_EQ(row.temp_message, "Warm: light clothes will do.");
  // The simulator: milliseconds, rainfall as weather, the city from --city.
  ASSERT_EQ(MapWeatherRecord({text("device_id", "ws-0001"), field("sensor_ts", 1714564800123),
                              field("temperature", 4.5), field("rainfall", 0.6)},
                             "Springfield", row, reason),
            WeatherRecordOutcome::kRow);
  EXPECT_EQ(row.timestamp, 1714564800123 * kMicrosPerMilli);
  EXPECT_EQ(row.city, "Springfield");
  EXPECT_EQ(row.weather, "rain");
  EXPECT_TRUE(row.low_temp);
  EXPECT_FALSE(row.mod_high_temp);
  // Not weather, and rejected records say why.
  EXPECT_EQ(MapWeatherRecord({field("sensor_ts", 1e12), field("stage", 1.2)}, "X", row, reason),
            WeatherRecordOutcome::kNotWeather);
  EXPECT_EQ(MapWeatherRecord({field("temperature", 20)}, "X", row, reason),
            WeatherRecordOutcome::kRejected);
  EXPECT_NE(reason.find("no timestamp"), std::string::npos);
  EXPECT_EQ(MapWeatherRecord({text("timestamp", "yesterday"), field("temperature", 20)}, "X", row,
                             reason),
            WeatherRecordOutcome::kRejected);
  EXPECT_EQ(MapWeatherRecord({text("timestamp", "2024-05-01T12:00:00Z"), field("temperature", 20)},
                             "", row, reason),
            WeatherRecordOutcome::kRejected);
  EXPECT_NE(reason.find("--city"), std::string::npos);
}

class EtlPostgresTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err = server_.Start();
    ASSERT_EQ(err, "") << err;
    ASSERT_TRUE(db_.Connect(server_.conninfo(), "tributary-tests", 5).ok());
  }
  int64_t Count(const std::string& where = "true") {
    Result<int64_t> n = db_.QueryInt("SELECT count(*) FROM weather_readings WHERE " + where);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    return n.ok() ? *n : -1;
  }
  PostgresServer server_;
  PgConnection db_;
  testing::TempDir dir_;
};

TEST_F(EtlPostgresTest, LoadsSimulatorOwmAndCsvInputsOnceAndAccountsForEveryRecord) {
  std::string sim = dir_.File("sim.ndjson");
  testing::CommandResult s = testing::RunTributary(
      {"simulate", "-o", sim, "--devices", "40", "--duration", "20m", "--seed", "7"});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  std::string owm = dir_.File("owm.ndjson");
  testing::WriteFile(
      owm,
      R"({"dt":1714564800,"id":2950159,"name":"Berlin","main":{"temp":298.65,"humidity":41,"pressure":1013},"wind":{"speed":4.1},"weather":[{"main":"Clear","description":"clear sky"}]}
{"dt":1714568400,"id":2643743,"name":"London","main":{"temp":281.15,"humidity":80,"pressure":1008},"wind":{"speed":6.0},"weather":[{"main":"Rain","description":"light rain"}]}
{"dt":1714568400,"id":2643743,"name":"London","main":{"temp":281.15,"humidity":80,"pressure":1008},"wind":{"speed":6.0},"weather":[{"main":"Rain","description":"light rain"}]}
not json at all
)");
  std::string csv = dir_.File("seed.csv");
  testing::WriteFile(csv,
                     "timestamp,city,temperature_c,humidity,pressure,wind_speed,weather\n"
                     "2024-05-01T06:00:00Z,Paris,12.5,70,1015,2.0,Cloudy\n"
                     "2024-05-01T07:00:00Z,\"Paris\",23.5,60,1014,2.5,\"Sunny, warm\"\n"
                     "2024-05-01T08:00:00Z,Paris,24\n");
  std::vector<std::string> args = {
      "etl", "--postgres", server_.conninfo(), "--city", "Simcity", sim, owm, csv};
  testing::CommandResult first = testing::RunTributary(args);
  ASSERT_EQ(first.exit_code, 0) << first.err << first.out;
  // Every record is accounted for: the counts add up to the records read.
  uint64_t records = 0, loaded = 0, present = 0, not_weather = 0, rejected = 0;
  ASSERT_EQ(std::sscanf(first.out.c_str(),
                        "etl: %lu records: %lu loaded, %lu already present, %lu not weather "
                        "readings, %lu rejected",
                        &records, &loaded, &present, &not_weather, &rejected),
            5)
      << first.out;
  EXPECT_EQ(records, loaded + present + not_weather + rejected);
  EXPECT_GT(not_weather, 0u) << "river gauges carry no weather";
  EXPECT_GE(rejected, 2u) << first.out;  // the broken JSON line and the short CSV row
  EXPECT_NE(first.out.find("owm.ndjson:4: not JSON"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("seed.csv:4: 3 fields, the header has 7"), std::string::npos)
      << first.out;
  EXPECT_GE(present, 1u) << "the repeated London line";
  EXPECT_EQ(static_cast<int64_t>(loaded), Count());
  // The seed's columns and flags.
  EXPECT_EQ(Count("city = 'Berlin' AND abs(temperature_c - 25.5) < 1e-9 AND humidity = 41 AND "
                  "pressure = 1013 AND wind_speed = 4.1 AND weather = 'clear sky' AND "
                  "mod_high_temp AND NOT low_temp AND temp_message LIKE 'Warm%' AND "
                  "timestamp = '2024-05-01 12:00:00'"),
            1);
  EXPECT_EQ(Count("city = 'London' AND low_temp AND NOT mod_high_temp"), 1);
  EXPECT_EQ(Count("city = 'Paris' AND weather = 'Sunny, warm' AND mod_high_temp"), 1);
  EXPECT_EQ(Count("city = 'Paris' AND NOT mod_high_temp AND temperature_c = 12.5"), 1);
  EXPECT_GT(Count("city = 'Simcity' AND device_id <> '' AND temperature_c IS NOT NULL"), 10);
  EXPECT_EQ(Count("mod_high_temp <> (temperature_c > 23)"), 0);

  // A re-run adds nothing and says so.
  testing::CommandResult second = testing::RunTributary(args);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_NE(second.out.find(" 0 loaded, " + std::to_string(loaded + present) + " already present"),
            std::string::npos)
      << second.out;
  EXPECT_EQ(static_cast<int64_t>(loaded), Count());

  // A bad connection is a clear failure.
  testing::CommandResult bad =
      testing::RunTributary({"etl", "--postgres", "host=127.0.0.1 port=1 connect_timeout=2", owm});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("error:"), std::string::npos);
}

}  // namespace
}  // namespace tributary
