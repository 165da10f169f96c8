// Partition state records in chunks (io/sinks/kafka_sink.h): a partition's state larger
// than one Kafka message goes to the state topic in several records, inside the
// checkpoint's transaction, and comes back whole; a later, smaller state is read back
// without the chunks of the larger one it replaced. Against a librdkafka mock cluster.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "integration/kafka_mock.h"
#include "io/sinks/kafka_sink.h"

namespace tributary {
namespace {

std::string Noise(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

TEST(KafkaStateChunks, StatesLargerThanAMessageComeBackWhole) {
  testing::KafkaMockCluster kafka(3);
  ASSERT_FALSE(kafka.bootstrap().empty());
  ASSERT_EQ(kafka.CreateTopic("state", 3), "");
  ASSERT_EQ(kafka.CreateTopic("markers", 1), "");
  KafkaSinkOptions o;
  o.name = "out";
  o.connect.brokers = kafka.bootstrap();
  o.transactional_id = "chunks-1";
  o.checkpoint_topic = "markers";
  o.state_topic = "state";
  KafkaSink sink(o);
  Ledger ledger;
  RunContext ctx;
  ctx.ledger = &ledger;
  ctx.checkpointing = true;
  ASSERT_TRUE(sink.Open(ctx).ok());
  ASSERT_TRUE(sink.OpenCheckpoints().ok());

  auto commit = [&](uint64_t id, std::vector<PartitionState> states) {
    Batch b;
    b.partition_states = std::make_shared<const std::vector<PartitionState>>(std::move(states));
    Status st = sink.Write(b);
    if (st.ok()) st = sink.PrepareCheckpoint(id);
    if (st.ok()) st = sink.CommitCheckpoint(id);
    ASSERT_TRUE(st.ok()) << st.ToString();
  };
  auto read = [&] {
    Result<std::map<std::string, PartitionState>> got = ReadPartitionStates(
        o.connect, "state", "markers", {"in/0", "in/1", "in/2"}, 30 * kMicrosPerSecond, "test");
    EXPECT_TRUE(got.ok()) << got.status().ToString();
    return got.ok() ? std::move(*got) : std::map<std::string, PartitionState>{};
  };

  // 2.5 MB: three records; 10 bytes: one.
  const std::string big = Noise(2'500'000, 1);
  PartitionState p0{"in/0", 123, big};
  PartitionState p1{"in/1", 7, "ten bytes!"};
  EXPECT_EQ(EncodePartitionStateRecords(p0).size(), 3u);
  EXPECT_EQ(EncodePartitionStateRecords(p1).size(), 1u);
  commit(1, {p0, p1});
  std::map<std::string, PartitionState> got = read();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got["in/0"].offset, 123);
  EXPECT_TRUE(got["in/0"].state == big) << "state of " << got["in/0"].state.size() << " bytes";
  EXPECT_EQ(got["in/1"].offset, 7);
  EXPECT_EQ(got["in/1"].state, "ten bytes!");

  // The first shrinks to two chunks (its old third chunk stays on the topic), the
  // second grows to two.
  const std::string smaller = Noise(1'200'000, 2);
  const std::string grown = Noise(1'000'000, 3);
  commit(2, {{"in/0", 456, smaller}, {"in/1", 8, grown}});
  got = read();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got["in/0"].offset, 456);
  EXPECT_TRUE(got["in/0"].state == smaller) << got["in/0"].state.size() << " bytes";
  EXPECT_EQ(got["in/1"].offset, 8);
  EXPECT_TRUE(got["in/1"].state == grown) << got["in/1"].state.size() << " bytes";
  sink.Close();
}

TEST(KafkaStateChunks, ARecordWhoseKeyDoesNotNameItsChunkIsRefused) {
  std::vector<std::pair<std::string, std::string>> records =
      EncodePartitionStateRecords({"in/3", 9, std::string(2'000'000, 'x')});
  ASSERT_EQ(records.size(), 3u);
  std::string partition;
  Result<PartitionStateChunk> c =
      DecodePartitionStateRecord(records[1].first, records[1].second, partition);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(partition, "in/3");
  EXPECT_EQ(c->index, 1u);
  EXPECT_EQ(c->count, 3u);
  EXPECT_EQ(c->offset, 9);
  c = DecodePartitionStateRecord("in/3#2", records[1].second, partition);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("in/3#2"), std::string::npos) << c.status().message();
  c = DecodePartitionStateRecord(records[0].first, records[0].second.substr(0, 100), partition);
  EXPECT_FALSE(c.ok()) << "a truncated record";
}

}  // namespace
}  // namespace tributary
