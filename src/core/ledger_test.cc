#include "core/ledger.h"

#include <gtest/gtest.h>

namespace tributary {
namespace {

TEST(LedgerTest, BalancesAndRoundTripsThroughJson) {
  Ledger ledger;
  ledger.AddInput(10);
  ledger.AddAccepted(5);
  ledger.AddQuarantined("malformed_json", 2);
  ledger.AddQuarantined("unknown_unit");
  ledger.AddLate(1);
  LedgerSnapshot s = ledger.Snapshot();
  EXPECT_FALSE(s.balanced());
  EXPECT_EQ(s.in_flight(), 1u);
  ledger.AddDuplicate(1);
  ledger.AddSinkCommitted("local/readings", 5);
  s = ledger.Snapshot();
  EXPECT_TRUE(s.balanced());
  EXPECT_EQ(s.quarantined, 3u);
  EXPECT_EQ(s.quarantine_reasons.at("malformed_json"), 2u);

  Result<LedgerSnapshot> back = ParseLedgerJson(s.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->input, 10u);
  EXPECT_EQ(back->accepted, 5u);
  EXPECT_EQ(back->late, 1u);
  EXPECT_EQ(back->duplicate, 1u);
  EXPECT_EQ(back->quarantine_reasons, s.quarantine_reasons);
  EXPECT_EQ(back->sink_committed.at("local/readings"), 5u);
  EXPECT_NE(s.ToText().find("[balanced]"), std::string::npos);
}

TEST(LedgerTest, RejectsCorruptJson) {
  EXPECT_FALSE(ParseLedgerJson("{\"input\": 3").ok());
  EXPECT_FALSE(ParseLedgerJson("{\"input\": 3}").ok());
}

}  // namespace
}  // namespace tributary
