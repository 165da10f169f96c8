// The postgres sink against a real PostgreSQL 15 with PostGIS (tests/integration/postgres.h).
#include "io/sinks/postgres_sink.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <thread>

#include "core/ledger.h"
#include "core/registry.h"
#include "core/sink_health.h"
#include "integration/postgres.h"
#include "io/sinks/breaker_sink.h"
#include "io/sinks/pg_conn.h"
#include "sink_test_records.h"

namespace tributary {
namespace {

using testing::BareReading;
using testing::FullReading;
using testing::kSinkT0;
using testing::PostgresServer;

WindowResult SomeWindow() {
  WindowResult w;
  w.window = Intern("zone_15m");
  w.group_by = Intern("zone");
  w.group = Intern("zone-a");
  w.metric = Intern("pm25");
  w.start = kSinkT0;
  w.end = kSinkT0 + 15 * kMicrosPerMinute;
  w.count = 42;
  w.mean = 11.5;
  w.min = 3.0;
  w.max = 20.25;
  w.p95 = 19.0;
  w.centroid_lat = 48.2;
  w.centroid_lon = 16.37;
  w.distinct_sensors = 3;
  w.late_count = 1;
  w.quantiles = {{0.9, 18.5}};
  w.aggregation_method = Intern("mean");
  w.flags = static_cast<uint32_t>(WindowFlag::kSparse);
  w.revision = 0;
  w.emitted_at = w.end + kMicrosPerSecond;
  return w;
}

class PostgresSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err = server_.Start();
    ASSERT_EQ(err, "") << err;
    ctx_.ledger = &ledger_;
    ASSERT_TRUE(db_.Connect(server_.conninfo(), "tributary-tests", 5).ok());
  }

  PostgresSinkOptions Options() const {
    PostgresSinkOptions o;
    o.name = "warehouse";
    o.conninfo = server_.conninfo();
    o.schema = "air";
    o.reconnect_backoff = 50 * kMicrosPerMilli;
    o.reconnect_backoff_max = kMicrosPerSecond;
    return o;
  }

  int64_t Int(const std::string& sql) {
    Result<int64_t> n = db_.QueryInt(sql);
    EXPECT_TRUE(n.ok()) << sql << ": " << n.status().ToString();
    return n.value_or(-1);
  }
  std::string Text(const std::string& sql) {
    Result<PgResult> r = db_.Query(sql);
    EXPECT_TRUE(r.ok()) << sql << ": " << r.status().ToString();
    if (!r.ok() || r->rows() == 0) return "<no row>";
    return r->Value(0, 0);
  }
  // The partitions of air.readings, and the GiST indexes of the schema, by name.
  std::string Partitions() {
    return Text(
        "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'air.readings'::regclass");
  }
  std::string GistIndexes() {
    return Text(
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE "
        "schemaname = 'air' AND indexdef LIKE '%USING gist (geom)%'");
  }
  uint64_t Committed(const std::string& key) {
    auto snap = ledger_.Snapshot();
    auto it = snap.sink_committed.find(key);
    return it == snap.sink_committed.end() ? 0 : it->second;
  }

  PostgresServer server_;
  Ledger ledger_;
  RunContext ctx_;
  PgConnection db_;
};

TEST_F(PostgresSinkTest, RowsArriveWithGeometryProvenanceAndFlags) {
  Batch b;
  b.readings.push_back(FullReading());
  b.readings.push_back(BareReading("node-2", "temperature", kSinkT0 + 40 * kMicrosPerDay, 21.5));
  b.windows.push_back(SomeWindow());
  QuarantineRecord q;
  q.reason = Intern("malformed_json");
  q.detail = "byte 3: expected a value\tbut found \\";
  q.raw = std::string("{\"pm25\":\x01\xff\0tail", 15);
  q.arrival_time = kSinkT0;
  q.prov.source = Intern("mqtt-city");
  q.prov.topic = Intern("city/air/node-17");
  q.prov.offset = 7;
  b.quarantine.push_back(q);
  LateRecord l;
  l.reading = FullReading();
  l.window = Intern("zone_15m");
  l.lateness = 90 * kMicrosPerSecond;
  l.watermark = kSinkT0 + 20 * kMicrosPerMinute;
  l.reading.qc_score = 1.25f;  // a QC check flagged it before it missed its window
  b.late.push_back(l);

  auto sink = MakePostgresSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  ASSERT_TRUE(sink->Write(b).ok());
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), 0) << "nothing is visible before Commit";
  Status st = sink->Commit();
  ASSERT_TRUE(st.ok()) << st.ToString();
  sink->Close();

  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), 2);
  EXPECT_EQ(Text("SELECT ST_AsText(geom) || ' ' || ST_SRID(geom) FROM air.readings WHERE "
                 "device_id = 'node-17'"),
            "POINT(16.3738 48.2082) 4326");
  EXPECT_EQ(Text("SELECT event_time::text FROM air.readings WHERE device_id = 'node-17'"),
            "2024-05-01 12:00:00.123456+00");
  EXPECT_EQ(Text("SELECT provenance->>'firmware_version' || ' ' || (provenance->>'offset') || ' ' "
                 "|| (provenance->'qc_flags'->>0) FROM "
                 "air.readings WHERE device_id = 'node-17'"),
            "2.4.1 991 CALIBRATED");
  EXPECT_EQ(Text("SELECT jsonb_typeof(provenance) FROM air.readings WHERE device_id = 'node-17'"),
            "object");
  EXPECT_EQ(Text("SELECT qc_flags FROM air.readings WHERE device_id = 'node-17'"),
            QcFlagsToString(FullReading().flags));
  EXPECT_EQ(Text("SELECT h3 || ' ' || zone_id FROM air.readings WHERE device_id = 'node-17'"),
            "85283473fffffff zone-a");
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings WHERE device_id = 'node-2' AND geom IS NULL"),
            1);
  // One partition per day; the June reading went to its own partition.
  EXPECT_EQ(Partitions(), "readings_20240501,readings_20240610");
  // Both days ended long ago by the clock, so Close indexed both partitions.
  EXPECT_EQ(GistIndexes(),
            "alerts_geom_gist,late_geom_gist,readings_20240501_geom_gist,"
            "readings_20240610_geom_gist,windows_geom_gist");
  EXPECT_EQ(Text("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                 "'air.readings'::regclass AND attname = 'geom'"),
            "geometry(Point,4326)");

  EXPECT_EQ(Text("SELECT sample_count || ' ' || mean || ' ' || quality_flags || ' ' || "
                 "(quantiles->>'0.9') || ' ' || ST_AsText(geom) || ' ' || window_start::text "
                 "FROM air.windows"),
            "42 11.5 SPARSE 18.5 POINT(16.37 48.2) 2024-05-01 12:00:00+00");
  EXPECT_EQ(Text("SELECT (median IS NULL)::text FROM air.windows"), "true");
  // Raw bytes survive exactly, and the text columns keep tabs and backslashes.
  EXPECT_EQ(Text("SELECT encode(raw, 'hex') FROM air.quarantine"),
            "7b22706d3235223a01ff007461696c");
  EXPECT_EQ(Text("SELECT detail FROM air.quarantine"), q.detail);
  EXPECT_EQ(Text("SELECT source_offset || ' ' || (provenance->>'source') FROM air.quarantine"),
            "7 mqtt-city");
  EXPECT_EQ(
      Text("SELECT lateness_s || ' ' || \"window\" || ' ' || (provenance->>'firmware_version') "
           "|| ' ' || qc_score FROM air.late"),
      "90 zone_15m 2.4.1 1.25");
  EXPECT_EQ(Int("SELECT count(*) FROM air.alerts"), 0);

  EXPECT_EQ(Committed("warehouse/readings"), 2u);
  EXPECT_EQ(Committed("warehouse/windows"), 1u);
  EXPECT_EQ(Committed("warehouse/quarantine"), 1u);
  EXPECT_EQ(Committed("warehouse/late"), 1u);
  EXPECT_EQ(Int("SELECT sum(readings + windows + quarantine + late) FROM air.sink_commits"), 5);
}

Status WriteAndCommit(Sink& sink, std::vector<Reading> readings) {
  Batch b;
  b.readings = std::move(readings);
  Status st = sink.Write(b);
  return st.ok() ? sink.Commit() : st;
}

TEST_F(PostgresSinkTest, APartitionIsIndexedOnceReadingsAnHourPastItsEndAreCommitted) {
  auto sink = MakePostgresSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  const TimeUs next_day = kSinkT0 + 12 * kMicrosPerHour;  // 2024-05-02T00:00Z
  ASSERT_TRUE(
      WriteAndCommit(*sink, {FullReading(), BareReading("node-2", "pm25", next_day - 1, 3.0)})
          .ok());
  EXPECT_EQ(GistIndexes(), "alerts_geom_gist,late_geom_gist,windows_geom_gist")
      << "the open day has no index";
  // The next day starts, but readings of the first may still come within the hour.
  ASSERT_TRUE(
      WriteAndCommit(*sink, {BareReading("node-2", "pm25", next_day + kMicrosPerHour - 1, 4.0)})
          .ok());
  EXPECT_EQ(GistIndexes(), "alerts_geom_gist,late_geom_gist,windows_geom_gist");
  ASSERT_TRUE(
      WriteAndCommit(*sink, {BareReading("node-2", "pm25", next_day + kMicrosPerHour, 5.0)}).ok());
  EXPECT_EQ(GistIndexes(),
            "alerts_geom_gist,late_geom_gist,readings_20240501_geom_gist,windows_geom_gist");
  // A late reading of the closed day still arrives, and its index finds it.
  Reading late = FullReading();
  late.device = Intern("node-9");
  ASSERT_TRUE(WriteAndCommit(*sink, {late}).ok());
  EXPECT_EQ(Int("SET enable_seqscan = off; SELECT count(*) FROM air.readings_20240501 WHERE "
                "geom && ST_MakeEnvelope(16, 48, 17, 49, 4326)"),
            2);
  EXPECT_EQ(Partitions(), "readings_20240501,readings_20240502");
}

TEST_F(PostgresSinkTest, OnInsertIndexesTheWholeTableAndAStoreKeepsThatLayout) {
  PostgresSinkOptions o = Options();
  o.geom_index_on_close = false;
  {
    auto sink = MakePostgresSink(o);
    ASSERT_TRUE(sink->Open(ctx_).ok());
    ASSERT_TRUE(WriteAndCommit(*sink, {FullReading()}).ok());
    EXPECT_EQ(Text("SELECT indexdef FROM pg_indexes WHERE schemaname = 'air' AND indexname = "
                   "'readings_geom_gist'"),
              "CREATE INDEX readings_geom_gist ON ONLY air.readings USING gist (geom)");
  }
  // A later run asking for on_close cannot undo an index every partition has.
  auto sink = MakePostgresSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  ASSERT_TRUE(
      WriteAndCommit(*sink, {BareReading("node-2", "pm25", kSinkT0 + 3 * kMicrosPerDay, 1.0)})
          .ok());
  sink->Close();
  EXPECT_EQ(Int("SELECT count(*) FROM pg_indexes WHERE schemaname = 'air' AND tablename LIKE "
                "'readings_2024050_' AND indexdef LIKE '%USING gist (geom)%'"),
            2)
      << "both partitions carry the table-wide index: " << GistIndexes();
}

TEST_F(PostgresSinkTest, AStoreWithMonthlyPartitionsKeepsThem) {
  // The layout of stores created before daily partitions: a partition per month.
  ASSERT_TRUE(
      db_.Exec("CREATE EXTENSION IF NOT EXISTS postgis; CREATE SCHEMA air; CREATE TABLE "
               "air.readings (event_time timestamptz NOT NULL, device_id text NOT NULL, metric "
               "text NOT NULL, value double precision, arrival_time timestamptz NOT NULL, lat "
               "double precision, lon double precision, geom geometry(Point, 4326), zone_id "
               "text, h3 text, qc_flags text NOT NULL DEFAULT '', provenance jsonb, PRIMARY KEY "
               "(event_time, device_id, metric)) PARTITION BY RANGE (event_time); CREATE INDEX "
               "readings_geom_gist ON air.readings USING gist (geom); CREATE TABLE "
               "air.readings_202405 PARTITION OF air.readings FOR VALUES FROM ('2024-05-01') TO "
               "('2024-06-01')")
          .ok());
  auto sink = MakePostgresSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Status st = WriteAndCommit(
      *sink, {FullReading(), BareReading("node-2", "pm25", kSinkT0 + 40 * kMicrosPerDay, 1)});
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Partitions(), "readings_202405,readings_202406");
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings_202405"), 1);
}

std::vector<Reading> ManyDevices(int devices, int per_device, TimeUs t0) {
  std::vector<Reading> out;
  for (int i = 0; i < per_device; ++i) {
    for (int d = 0; d < devices; ++d) {
      out.push_back(BareReading(("lane-node-" + std::to_string(d)).c_str(), "pm25",
                                t0 + i * kMicrosPerSecond, d));
    }
  }
  return out;
}

TEST_F(PostgresSinkTest, ReadingsAreSharedOverTheConnectionsByDevice) {
  PostgresSinkOptions o = Options();
  o.connections = 3;
  auto sink = MakePostgresSink(o);
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  b.readings = ManyDevices(30, 10, kSinkT0);
  b.windows.push_back(SomeWindow());
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), 300);
  EXPECT_EQ(Int("SELECT count(DISTINCT xmin::text) FROM air.readings"), 3)
      << "one transaction per connection";
  EXPECT_EQ(Int("SELECT max(n) FROM (SELECT count(DISTINCT xmin::text) AS n FROM air.readings "
                "GROUP BY device_id) d"),
            1)
      << "a device's readings take one connection";
  EXPECT_EQ(Int("SELECT count(*) FROM air.sink_commits WHERE readings > 0"), 3);
  EXPECT_EQ(Int("SELECT sum(readings) FROM air.sink_commits"), 300);
  EXPECT_EQ(Int("SELECT sum(windows) FROM air.sink_commits"), 1);
  EXPECT_EQ(Committed("warehouse/readings"), 300u);
}

TEST_F(PostgresSinkTest, ACommitThatFailsOnOneConnectionIsRetriedOnThatOneOnly) {
  auto sink = MakePostgresSink(Options());  // two connections
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  b.readings = ManyDevices(20, 5, kSinkT0);
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  ASSERT_EQ(Int("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'tributary/warehouse'"),
            2);
  // One of the two sessions dies while idle; the next commit finds it gone.
  ASSERT_EQ(Int("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'tributary/warehouse' ORDER BY pid LIMIT 1) t"),
            1);
  b.readings = ManyDevices(20, 5, kSinkT0 + kMicrosPerMinute);
  ASSERT_TRUE(sink->Write(b).ok());
  Status st = sink->Commit();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), 200);
  // Each connection committed each batch once: the one still connected did not send its
  // share again when the other reconnected and retried.
  EXPECT_EQ(Int("SELECT count(*) FROM air.sink_commits"), 4);
  EXPECT_EQ(Int("SELECT count(*) FROM air.sink_commits WHERE readings = 0"), 0);
  EXPECT_EQ(Committed("warehouse/readings"), 200u);
}

TEST_F(PostgresSinkTest, WithCheckpointsACheckpointIsOneTransaction) {
  auto sink = MakePostgresSink(Options());  // two connections, but one transaction
  ASSERT_TRUE(sink->Open(ctx_).ok());
  ASSERT_TRUE(sink->OpenCheckpoints().ok());
  Batch b;
  b.readings = ManyDevices(20, 5, kSinkT0);
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->CommitCheckpoint(1).ok());
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), 100);
  EXPECT_EQ(Int("SELECT count(DISTINCT xmin::text) FROM air.readings"), 1);
  EXPECT_EQ(Text("SELECT count(*) || ' ' || sum(readings) FROM air.sink_commits"), "1 100")
      << "one commit, the checkpoint's";
}

TEST_F(PostgresSinkTest, RedeliveryStoresEachRowOnce) {
  Batch b;
  for (int i = 0; i < 500; ++i) {
    b.readings.push_back(BareReading("node-1", "pm10", kSinkT0 + i * kMicrosPerSecond, i));
  }
  b.windows.push_back(SomeWindow());
  WindowResult revised = SomeWindow();
  revised.revision = 1;
  revised.count = 43;
  b.windows.push_back(revised);
  QuarantineRecord q;
  q.reason = Intern("lat_out_of_range");
  q.raw = "{\"lat\":123}";
  q.arrival_time = kSinkT0;
  b.quarantine.push_back(q);

  {
    auto sink = MakePostgresSink(Options());
    ASSERT_TRUE(sink->Open(ctx_).ok());
    ASSERT_TRUE(sink->Write(b).ok());
    ASSERT_TRUE(sink->Commit().ok());
  }
  // A restart replays the same input (at-least-once), plus one new reading, twice over.
  Batch again = b;
  again.readings.push_back(BareReading("node-1", "pm10", kSinkT0 + 9999 * kMicrosPerSecond, 1));
  for (int round = 0; round < 2; ++round) {
    auto sink = MakePostgresSink(Options());
    ASSERT_TRUE(sink->Open(ctx_).ok());
    ASSERT_TRUE(sink->Write(again).ok());
    ASSERT_TRUE(sink->Write(again).ok());
    Status st = sink->Commit();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), 501);
  EXPECT_EQ(Int("SELECT count(*) FROM air.windows"), 2) << "revisions are distinct rows";
  EXPECT_EQ(Int("SELECT count(*) FROM air.quarantine"), 1);
  // The ledger counts what was inserted, not what was sent.
  EXPECT_EQ(Committed("warehouse/readings"), 501u);
  EXPECT_EQ(Committed("warehouse/windows"), 2u);
  EXPECT_EQ(Committed("warehouse/quarantine"), 1u);
}

// The server stored a commit but its acknowledgement never came back (the process died
// before it saw COMMIT's answer), so after the restart the same batch arrives again,
// with new rows among the old. The COPY into the tables meets the stored keys; the batch
// goes through the staging tables instead, and every row is stored once.
TEST_F(PostgresSinkTest, ReplayAfterALostCommitAcknowledgementStoresEachRowOnce) {
  Batch b;
  for (int i = 0; i < 300; ++i) {
    b.readings.push_back(BareReading("node-3", "no2", kSinkT0 + i * kMicrosPerSecond, i));
  }
  b.windows.push_back(SomeWindow());
  QuarantineRecord q;
  q.reason = Intern("malformed_json");
  q.raw = "{\"no2\":";
  q.arrival_time = kSinkT0;
  b.quarantine.push_back(q);
  LateRecord l;
  l.reading = BareReading("node-3", "no2", kSinkT0 - kMicrosPerHour, 1.5);
  l.window = Intern("zone_15m");
  l.lateness = 30 * kMicrosPerSecond;
  b.late.push_back(l);
  {
    Ledger lost;  // the acknowledgement, and what the first process counted, are lost
    RunContext ctx;
    ctx.ledger = &lost;
    auto sink = MakePostgresSink(Options());
    ASSERT_TRUE(sink->Open(ctx).ok());
    ASSERT_TRUE(sink->Write(b).ok());
    ASSERT_TRUE(sink->Commit().ok());
    EXPECT_EQ(lost.Snapshot().sink_committed["warehouse/readings"], 300u);
  }
  Batch again = b;
  for (int i = 300; i < 310; ++i) {
    again.readings.push_back(BareReading("node-3", "no2", kSinkT0 + i * kMicrosPerSecond, i));
  }
  WindowResult revised = SomeWindow();
  revised.revision = 1;
  again.windows.push_back(revised);
  QuarantineRecord q2 = q;
  q2.arrival_time += kMicrosPerSecond;
  again.quarantine.push_back(q2);
  LateRecord l2 = l;
  l2.window = Intern("zone_1h");
  again.late.push_back(l2);

  auto sink = MakePostgresSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  ASSERT_TRUE(sink->Write(again).ok());
  Status st = sink->Commit();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), 310);
  EXPECT_EQ(Int("SELECT count(DISTINCT value) FROM air.readings"), 310);
  EXPECT_EQ(Int("SELECT count(*) FROM air.windows"), 2);
  EXPECT_EQ(Int("SELECT count(*) FROM air.quarantine"), 2);
  EXPECT_EQ(Int("SELECT count(*) FROM air.late"), 2);
  // Only the new rows count, in the ledger and in sink_commits.
  EXPECT_EQ(Committed("warehouse/readings"), 10u);
  EXPECT_EQ(Committed("warehouse/windows"), 1u);
  EXPECT_EQ(Committed("warehouse/quarantine"), 1u);
  EXPECT_EQ(Committed("warehouse/late"), 1u);
  EXPECT_EQ(Int("SELECT sum(readings) FROM air.sink_commits"), 310);
  EXPECT_EQ(Int("SELECT sum(windows + quarantine + late) FROM air.sink_commits"), 6);
  // The staged fallback left the session usable: the next batch goes straight in.
  Batch next;
  next.readings.push_back(BareReading("node-3", "no2", kSinkT0 + 400 * kMicrosPerSecond, 400));
  ASSERT_TRUE(sink->Write(next).ok());
  ASSERT_TRUE(sink->Commit().ok());
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), 311);
  EXPECT_EQ(Committed("warehouse/readings"), 11u);
}

// A row twice in one batch (nothing stored yet) takes the same fallback; inside a
// checkpoint the checkpoint row still commits with the rows.
TEST_F(PostgresSinkTest, DuplicatesWithinOneCheckpointAreStoredOnce) {
  Batch b;
  for (int i = 0; i < 50; ++i) {
    b.readings.push_back(BareReading("node-4", "pm25", kSinkT0 + i * kMicrosPerSecond, i));
  }
  b.readings.push_back(b.readings.front());
  auto sink = MakePostgresSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  ASSERT_TRUE(sink->OpenCheckpoints().ok());
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Write(b).ok());
  Status st = sink->CommitCheckpoint(1);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), 50);
  EXPECT_EQ(Committed("warehouse/readings"), 50u);
  EXPECT_EQ(Int("SELECT readings FROM air.sink_checkpoints WHERE sink = 'warehouse' AND "
                "checkpoint_id = 1"),
            50);
}

// Values the binary COPY encoding has to get exactly right: timestamps before 2000
// (negative in PostgreSQL's form), missing and infinite numbers, text that is not valid
// UTF-8, control characters, NULL columns, 32-bit integer columns.
TEST_F(PostgresSinkTest, BinaryCopyKeepsEdgeValues) {
  Batch b;
  Reading old = FullReading();
  old.device = Intern(std::string("node\t\"x\"\\\n\xff\0end", 15));
  old.event_time = ParseTime("1999-12-31T23:59:59.999999Z").value();
  old.value = std::numeric_limits<double>::infinity();
  old.qc_score = 0.5f;
  b.readings.push_back(old);
  Reading missing = BareReading("node-5", "pm25", kSinkT0, std::nan(""));
  missing.lat = 48.0;  // a latitude without longitude has no point
  b.readings.push_back(missing);
  WindowResult w = SomeWindow();
  w.distinct_sensors = 70000;
  w.revision = 3;
  w.centroid_lat = std::nan("");
  w.quantiles.clear();
  w.aggregation_method = Symbol();
  b.windows.push_back(w);
  QuarantineRecord q;
  q.reason = Intern("unknown_device");
  q.raw = "";
  q.device = Intern("ñode-ü");
  q.arrival_time = kSinkT0;
  q.prov.partition = 5;
  b.quarantine.push_back(q);
  LateRecord l;
  l.reading = BareReading("node-5", "pm25", kSinkT0 - kMicrosPerMinute, -3.25);
  l.window = Intern("zone_15m");
  l.lateness = 1500001;
  l.watermark = kMinTime;  // no watermark yet
  b.late.push_back(l);

  auto sink = MakePostgresSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  ASSERT_TRUE(sink->Write(b).ok());
  Status st = sink->Commit();
  ASSERT_TRUE(st.ok()) << st.ToString();

  EXPECT_EQ(Text("SELECT event_time::text || ' ' || value || ' ' || qc_score || ' ' || "
                 "ST_AsText(geom) FROM air.readings WHERE metric = 'pm25' AND device_id LIKE "
                 "'node\t%'"),
            "1999-12-31 23:59:59.999999+00 Infinity 0.5 POINT(16.3738 48.2082)");
  EXPECT_EQ(Text("SELECT encode(convert_to(device_id, 'UTF8'), 'escape') FROM air.readings "
                 "WHERE event_time < '2000-01-01'"),
            "node\t\"x\"\\\\\n\\357\\277\\275\\357\\277\\275end");
  EXPECT_EQ(Text("SELECT encode(convert_to(provenance->>'device_id', 'UTF8'), 'escape') FROM "
                 "air.readings WHERE event_time < '2000-01-01'"),
            "node\t\"x\"\\\\\n\\357\\277\\275\\357\\277\\275end")
      << "a NUL, escaped in JSON as \\u0000, is not valid in jsonb";
  EXPECT_EQ(Text("SELECT (value IS NULL)::text || ' ' || (geom IS NULL)::text || ' ' || lat || "
                 "' ' || (lon IS NULL)::text || ' ' || (h3 IS NULL)::text || ' ' || "
                 "(zone_id IS NULL)::text || ' ' || qc_flags || '|' FROM air.readings WHERE "
                 "device_id = 'node-5'"),
            "true true 48 true true true |");
  EXPECT_EQ(Text("SELECT distinct_sensors || ' ' || revision || ' ' || (geom IS NULL)::text || "
                 "' ' || (quantiles IS NULL)::text || ' ' || (aggregation_method IS NULL)::text "
                 "|| ' ' || window_end::text FROM air.windows"),
            "70000 3 true true true 2024-05-01 12:15:00+00");
  EXPECT_EQ(Text("SELECT device_id || ' ' || length(raw) || ' ' || kafka_partition || ' ' || "
                 "(source_offset IS NULL)::text || ' ' || (metric IS NULL)::text FROM "
                 "air.quarantine"),
            "ñode-ü 0 5 true true");
  EXPECT_EQ(Text("SELECT lateness_s || ' ' || value || ' ' || (watermark IS NULL)::text || ' ' "
                 "|| event_time::text FROM air.late"),
            "1.500001 -3.25 true 2024-05-01 11:59:00+00");
}

TEST_F(PostgresSinkTest, CheckpointRowsBecomeVisibleOnlyWithTheirCheckpoint) {
  PostgresSinkOptions o = Options();
  o.batch_rows = 100;  // a flush would be due many times over without checkpoints
  Batch b;
  for (int i = 0; i < 700; ++i) {
    b.readings.push_back(BareReading("node-2", "pm25", kSinkT0 + i * kMicrosPerSecond, i));
  }
  b.windows.push_back(SomeWindow());
  {
    auto sink = MakePostgresSink(o);
    ASSERT_TRUE(sink->Open(ctx_).ok());
    Result<SinkCheckpointRecord> rec = sink->OpenCheckpoints();
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    EXPECT_EQ(rec->checkpoint, 0u);
    ASSERT_TRUE(sink->Write(b).ok());
    ASSERT_TRUE(sink->Commit().ok());
    ASSERT_TRUE(sink->PrepareCheckpoint(1).ok());
    EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), 0) << "nothing before the checkpoint";
    Status st = sink->CommitCheckpoint(1);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), 700);
    EXPECT_EQ(Int("SELECT count(*) FROM air.windows"), 1);
    // An interval without rows still records its checkpoint.
    ASSERT_TRUE(sink->CommitCheckpoint(2).ok());
    // Rows written after the last checkpoint are lost with the process, not stored.
    Batch more;
    more.readings.push_back(BareReading("node-2", "pm25", kSinkT0 + 9000 * kMicrosPerSecond, 1));
    ASSERT_TRUE(sink->Write(more).ok());
    sink->Close();
  }
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), 700);
  EXPECT_EQ(Int("SELECT checkpoint_id FROM air.sink_checkpoints WHERE sink = 'warehouse'"), 2);
  EXPECT_EQ(Committed("warehouse/readings"), 700u);
  // A restarted sink reports the last checkpoint and what it stored; recovery replays
  // checkpoint 3 into it, and a replay of what is already stored inserts nothing twice.
  auto sink = MakePostgresSink(o);
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Result<SinkCheckpointRecord> rec = sink->OpenCheckpoints();
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->checkpoint, 2u);
  EXPECT_EQ(rec->rows["warehouse/readings"], 0u) << "checkpoint 2 stored no rows";
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->CommitCheckpoint(3).ok());
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), 700);
  auto again = MakePostgresSink(o);
  ASSERT_TRUE(again->Open(ctx_).ok());
  rec = again->OpenCheckpoints();
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->checkpoint, 3u);
}

TEST_F(PostgresSinkTest, ReportsAnUnreachableServerAsRetryable) {
  PostgresSinkOptions o = Options();
  o.conninfo = "host=127.0.0.1 port=" + std::to_string(testing::FreeLoopbackPort()) +
               " dbname=tributary user=tributary";
  o.retry_for = 300 * kMicrosPerMilli;
  auto sink = MakePostgresSink(o);
  Status st = sink->Open(ctx_);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(st.retryable()) << st.ToString();
  EXPECT_NE(st.message().find("warehouse"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("cannot connect"), std::string::npos) << st.message();
}

// The outage of issue 6: PostgreSQL stops under load for 10 s and comes back; every
// row arrives exactly once.
TEST_F(PostgresSinkTest, OutageUnderLoadLosesAndDoublesNothing) {
  PostgresSinkOptions o = Options();
  o.batch_rows = 2000;
  o.retry_for = 60 * kMicrosPerSecond;
  auto sink = MakePostgresSink(o);
  ASSERT_TRUE(sink->Open(ctx_).ok());

  constexpr int kBatches = 400;
  constexpr int kPerBatch = 250;
  std::atomic<int> written{0};
  std::atomic<bool> failed{false};
  std::string failure;
  std::thread writer([&] {
    for (int i = 0; i < kBatches; ++i) {
      Batch b;
      for (int k = 0; k < kPerBatch; ++k) {
        int64_t n = static_cast<int64_t>(i) * kPerBatch + k;
        b.readings.push_back(BareReading(n % 2 == 0 ? "node-a" : "node-b", "pm25",
                                         kSinkT0 + n * kMicrosPerMilli, static_cast<double>(n)));
      }
      Status st = sink->Write(b);
      if (st.ok() && i % 8 == 7) st = sink->Commit();
      if (!st.ok()) {
        failure = st.ToString();
        failed = true;
        return;
      }
      written = i + 1;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    Status st = sink->Commit();
    if (!st.ok()) {
      failure = st.ToString();
      failed = true;
    }
  });
  // Let some rows land, then take the server away for 10 s while the writer goes on.
  while (written.load() < 40 && !failed.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  db_.Close();
  server_.Stop();
  int at_stop = written.load();
  std::this_thread::sleep_for(std::chrono::seconds(10));
  std::string err = server_.Start();
  ASSERT_EQ(err, "") << err;
  writer.join();
  ASSERT_FALSE(failed.load()) << failure;
  EXPECT_LT(at_stop, kBatches) << "the outage happened while rows were still coming";
  sink->Close();

  ASSERT_TRUE(db_.Connect(server_.conninfo(), "tributary-tests", 5).ok());
  const int64_t total = static_cast<int64_t>(kBatches) * kPerBatch;
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), total);
  EXPECT_EQ(Int("SELECT count(DISTINCT value) FROM air.readings"), total);
  EXPECT_EQ(Int("SELECT min(value)::bigint FROM air.readings"), 0);
  EXPECT_EQ(Int("SELECT max(value)::bigint FROM air.readings"), total - 1);
  EXPECT_EQ(Committed("warehouse/readings"), static_cast<uint64_t>(total));
  EXPECT_EQ(Int("SELECT sum(readings) FROM air.sink_commits"), total);
}

// The binary with a postgres sink in its pipeline file: what the ledger says each table
// committed is exactly what the database holds.
TEST_F(PostgresSinkTest, BinaryRunCommitsWhatItsLedgerReports) {
  testing::TempDir dir;
  testing::WriteFile(dir.File("p.yaml"),
                     "pipeline:\n  name: pg-run\nprocessing:\n  grace: 15m\nsources:\n"
                     "  - name: simulator\n    type: simulator\n    speed: 300\n"
                     "windows:\n  - name: device_1m\n    type: tumbling\n    size: 1m\n"
                     "    group_by: device\n    aggregates: [count, mean]\n"
                     "sinks:\n  - name: warehouse\n    type: postgres\n"
                     "    conninfo: \"${TRIB_TEST_PG}\"\n    schema: run\n");
  testing::CommandResult r = testing::RunTributary(
      {"run", dir.File("p.yaml"), "--data-dir", dir.File("out"), "--duration", "3s", "--quiet"}, {},
      {"TRIB_TEST_PG=" + server_.conninfo()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string ledger = testing::ReadFile(dir.File("out/ledger.json"));
  for (const char* table : {"readings", "windows", "quarantine", "late"}) {
    int64_t stored = Int(std::string("SELECT count(*) FROM run.") + table);
    std::string key = std::string("\"warehouse/") + table + "\":" + std::to_string(stored);
    EXPECT_NE(ledger.find(key), std::string::npos) << key << " in " << ledger;
  }
  EXPECT_GT(Int("SELECT count(*) FROM run.readings"), 0);
}

TEST(PostgresSinkOptionsTest, RequiresAConnectionString) {
  ASSERT_EQ(Registry::Get().SinkSpec("postgres"), &PostgresSinkSpec());
  auto entry = [](const std::string& yaml) {
    YAML::Node node = YAML::Load(yaml);
    SinkEntry e;
    e.name = node["name"].as<std::string>();
    e.type = "postgres";
    e.options =
        OptionReader(node, "pipeline.yaml", "sinks[0]", {&SinkCommonSpec(), &PostgresSinkSpec()});
    return e;
  };
  Result<PostgresSinkOptions> o = ReadPostgresSinkOptions(entry("{name: pg, type: postgres}"));
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("conninfo"), std::string::npos) << o.status().message();
  o = ReadPostgresSinkOptions(
      entry("{name: pg, type: postgres, conninfo: 'host=db dbname=air', schema: s1, "
            "reconnect_backoff: 2s, reconnect_backoff_max: 1s}"));
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("reconnect_backoff_max"), std::string::npos);
  o = ReadPostgresSinkOptions(
      entry("{name: pg, type: postgres, conninfo: 'host=db dbname=air', schema: s1}"));
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->schema, "s1");
  EXPECT_EQ(o->batch_rows, 100000);
  EXPECT_EQ(o->retry_for, 60 * kMicrosPerSecond);
}

}  // namespace
}  // namespace tributary

namespace tributary {
namespace {

// The postgres sink as a pipeline builds it: through the registry, behind the breaker.
class PostgresBreakerTest : public PostgresSinkTest {
 protected:
  std::unique_ptr<Sink> MakeFromConfig() {
    YAML::Node node = YAML::Load(
        "{name: warehouse, type: postgres, schema: air, "
        "breaker_probe_interval: 200ms, breaker_probe_interval_max: 1s}");
    node["conninfo"] = server_.conninfo();
    node["breaker_buffer"] = buffer_dir_.File("warehouse.buffer.sqlite");
    SinkEntry e;
    e.name = "warehouse";
    e.type = "postgres";
    e.options =
        OptionReader(node, "pipeline.yaml", "sinks[0]", {&SinkCommonSpec(), &PostgresSinkSpec()});
    EXPECT_TRUE(e.options.CheckKeys().ok());
    Result<std::unique_ptr<Sink>> sink = Registry::Get().MakeSink(e);
    EXPECT_TRUE(sink.ok()) << sink.status().ToString();
    return sink.ok() ? std::move(sink).value() : nullptr;
  }
  static Batch Readings(int first, int n) {
    Batch b;
    for (int k = first; k < first + n; ++k) {
      b.readings.push_back(BareReading(k % 3 == 0 ? "node-a" : "node-b", "no2",
                                       kSinkT0 + int64_t{k} * kMicrosPerMilli, k));
    }
    return b;
  }
  testing::TempDir buffer_dir_;
};

TEST_F(PostgresBreakerTest, OutageDivertsToTheLocalBufferAndDrainsInOrder) {
  std::unique_ptr<Sink> sink = MakeFromConfig();
  ASSERT_NE(sink, nullptr);
  ctx_.data_dir = buffer_dir_.path();
  ASSERT_TRUE(sink->Open(ctx_).ok());

  constexpr int kBatches = 300;
  constexpr int kPerBatch = 200;
  int i = 0;
  auto step = [&] {
    Status st = sink->Write(Readings(i * kPerBatch, kPerBatch));
    if (st.ok() && i % 5 == 4) st = sink->Commit();
    ASSERT_TRUE(st.ok()) << st.ToString();
    ++i;
  };
  for (; i < 50;) step();
  db_.Close();
  server_.Stop();
  // 10 s of outage under load: writes go on without blocking on the dead server.
  TimeUs outage_start = NowUs();
  DurationUs slowest_call = 0;
  while (NowUs() - outage_start < 10 * kMicrosPerSecond && i < kBatches - 50) {
    TimeUs t = NowUs();
    step();
    slowest_call = std::max(slowest_call, NowUs() - t);
    std::this_thread::sleep_for(std::chrono::milliseconds(40));
  }
  SinkHealth during = SinkHealthSnapshot()["warehouse"];
  EXPECT_EQ(during.state, BreakerState::kOpen);
  EXPECT_GT(during.buffered_rows, 0u);
  EXPECT_GE(during.opened_total, 1u);
  EXPECT_LT(slowest_call, 2 * kMicrosPerSecond) << "an open breaker does not wait for the server";
  std::string err = server_.Start();
  ASSERT_EQ(err, "") << err;
  for (; i < kBatches;) step();
  // The next probe is due at most breaker_probe_interval_max after the last failed one.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  ASSERT_TRUE(sink->Commit().ok());
  SinkHealth after = SinkHealthSnapshot()["warehouse"];
  sink->Close();

  EXPECT_EQ(after.state, BreakerState::kClosed);
  EXPECT_EQ(after.buffered_rows, 0u);
  EXPECT_GT(after.drained_rows_total, 0u);
  EXPECT_GT(after.drain_rows_per_s, 0.0);
  ASSERT_TRUE(db_.Connect(server_.conninfo(), "tributary-tests", 5).ok());
  const int64_t total = int64_t{kBatches} * kPerBatch;
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), total);
  EXPECT_EQ(Int("SELECT count(DISTINCT value) FROM air.readings"), total);
  EXPECT_EQ(Int("SELECT max(value)::bigint FROM air.readings"), total - 1);
  EXPECT_EQ(Committed("warehouse/readings"), static_cast<uint64_t>(total));
}

TEST_F(PostgresBreakerTest, ABufferLeftByAnEarlierRunIsDrainedAtTheNextStart) {
  ctx_.data_dir = buffer_dir_.path();
  db_.Close();
  server_.Stop();
  {
    std::unique_ptr<Sink> sink = MakeFromConfig();
    ASSERT_TRUE(sink->Open(ctx_).ok()) << "an unreachable server does not stop the run";
    ASSERT_TRUE(sink->Write(Readings(0, 700)).ok());
    ASSERT_TRUE(sink->Commit().ok());
    sink->Close();
  }
  EXPECT_EQ(SinkHealthSnapshot()["warehouse"].buffered_rows, 700u);
  std::string err = server_.Start();
  ASSERT_EQ(err, "") << err;
  std::unique_ptr<Sink> sink = MakeFromConfig();
  ASSERT_TRUE(sink->Open(ctx_).ok());
  ASSERT_TRUE(sink->Write(Readings(700, 300)).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();
  ASSERT_TRUE(db_.Connect(server_.conninfo(), "tributary-tests", 5).ok());
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), 1000);
  EXPECT_EQ(SinkHealthSnapshot()["warehouse"].buffered_rows, 0u);
  EXPECT_EQ(Committed("warehouse/readings"), 1000u);
}

// Write latency alone (no failure) opens the breaker: another connection holds a lock on
// readings through three commits in a row, each then waits well over twice the usual
// time. New rows go to the local buffer; once the lock is gone a half-open probe drains
// the buffer batch by batch, in order, and live rows follow.
TEST_F(PostgresBreakerTest, SlowCommitsOpenTheBreakerAndTheBufferDrainsBeforeLiveRows) {
  ctx_.data_dir = buffer_dir_.path();
  BreakerOptions bo;
  bo.buffer_path = buffer_dir_.File("slow.buffer.sqlite");
  bo.probe_interval = kMicrosPerSecond;  // long enough to see the breaker open
  bo.probe_interval_max = 2 * kMicrosPerSecond;
  bo.drain_chunk_rows = 100;  // one remote transaction per buffered batch
  PostgresSinkOptions po = Options();
  po.name = "slow-warehouse";
  po.retry_for = 0;
  std::unique_ptr<Sink> sink =
      MakeBreakerSink("slow-warehouse", bo, [po] { return MakePostgresSink(po); });
  ASSERT_TRUE(sink->Open(ctx_).ok());
  auto health = [] { return SinkHealthSnapshot()["slow-warehouse"]; };
  constexpr int kPerBatch = 100;
  int batch = 0;
  auto write = [&] { return sink->Write(Readings(batch++ * kPerBatch, kPerBatch)); };

  // The baseline: healthy commits.
  for (int k = 0; k < 6; ++k) {
    ASSERT_TRUE(write().ok());
    ASSERT_TRUE(sink->Commit().ok());
  }
  ASSERT_EQ(health().state, BreakerState::kClosed);
  const uint64_t opened_before = health().opened_total;

  PgConnection locker;
  ASSERT_TRUE(locker.Connect(server_.conninfo(), "tributary-tests-locker", 5).ok());
  for (int k = 0; k < 3; ++k) {
    // INSERT needs ROW EXCLUSIVE, which SHARE blocks until the locker commits.
    ASSERT_TRUE(locker.Exec("BEGIN; LOCK TABLE air.readings IN SHARE MODE").ok());
    std::thread release([&locker] {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      (void)locker.Exec("COMMIT");
    });
    ASSERT_TRUE(write().ok());
    Status st = sink->Commit();
    release.join();
    ASSERT_TRUE(st.ok()) << "a slow commit still succeeds: " << st.ToString();
    if (k < 2) {
      EXPECT_EQ(health().state, BreakerState::kClosed) << "only " << k + 1 << " slow commits";
    }
  }
  EXPECT_EQ(health().state, BreakerState::kOpen) << "three slow commits in a row";
  EXPECT_EQ(health().opened_total, opened_before + 1);
  const int slow_end = batch;  // batches before this one are in PostgreSQL

  // Open: rows go to the local buffer, durable at once.
  for (int k = 0; k < 4; ++k) ASSERT_TRUE(write().ok());
  ASSERT_TRUE(sink->Commit().ok());
  EXPECT_EQ(health().buffered_rows, 4u * kPerBatch);
  const int buffered_end = batch;

  // The probe (due after breaker_probe_interval) finds the server fast again.
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  ASSERT_TRUE(write().ok());  // the probe drains the buffer, then this batch goes live
  ASSERT_TRUE(sink->Commit().ok());
  ASSERT_TRUE(write().ok());
  ASSERT_TRUE(sink->Commit().ok());
  SinkHealth after = health();
  sink->Close();
  EXPECT_EQ(after.state, BreakerState::kClosed);
  EXPECT_EQ(after.buffered_rows, 0u);
  EXPECT_GE(after.drained_rows_total, 4u * kPerBatch);
  EXPECT_GT(after.drain_rows_per_s, 0.0);

  const int64_t total = int64_t{batch} * kPerBatch;
  EXPECT_EQ(Int("SELECT count(*) FROM air.readings"), total);
  EXPECT_EQ(Int("SELECT count(DISTINCT value) FROM air.readings"), total);
  EXPECT_EQ(Committed("slow-warehouse/readings"), static_cast<uint64_t>(total));
  // Order of arrival: the transaction id of each batch's rows (value / kPerBatch is the
  // batch number) grows with the batch number, and the drained batches precede the live
  // ones.
  Result<PgResult> r = db_.Query(
      "SELECT (value::bigint / " + std::to_string(kPerBatch) +
      ") AS b, min(xmin::text::bigint), max(xmin::text::bigint), count(DISTINCT xmin::text) FROM "
      "air.readings GROUP BY b ORDER BY b");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->rows(), batch);
  int64_t last_xid = 0;
  for (int b = slow_end; b < batch; ++b) {
    int64_t lo = std::stoll(r->Value(b, 1));
    int64_t hi = std::stoll(r->Value(b, 2));
    EXPECT_LE(std::stoi(r->Value(b, 3)), po.connections)
        << "batch " << b << " arrived in one transaction per connection";
    EXPECT_GT(lo, last_xid) << "batch " << b << " arrived after batch " << b - 1
                            << (b == buffered_end ? " (the first live batch)" : "");
    last_xid = hi;
  }
}

}  // namespace
}  // namespace tributary
