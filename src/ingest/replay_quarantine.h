// Replaying quarantine: re-run the quarantined records of the local store through
// ingestion, e.g. after a mapping, time zone or CRS option was fixed.
//
// Every row of the store's `quarantine` table is decoded again with the options of the
// source it came from (by name; a source the config does not know gets the default
// json options). A row is recovered when its payload now yields readings and nothing
// of it is quarantined any more: its readings go to the store's `readings` table
// (through the sqlite sink, so INSERT OR IGNORE keeps a replay idempotent) and the row
// is deleted. A row that still fails in any part stays as it was.
//
// Ledger: a recovered row counted 1 input and 1 quarantined under its old reason; it
// now counts N inputs, N − d accepted (stored; replayed readings bypass the window
// stage) and d duplicates, so `input == accepted + quarantined + late + duplicate`
// still holds for a ledger that held it before.
//
// Order: readings are committed before the rows are deleted; a crash in between leaves
// rows that the next replay recovers again without storing anything twice.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/status.h"

namespace tributary {

/// What one replay did.
struct ReplayReport {
  uint64_t rows = 0;                                    ///< quarantine rows read
  uint64_t recovered = 0;                               ///< rows moved out of quarantine
  uint64_t readings = 0;                                ///< readings stored for them
  uint64_t duplicates = 0;                              ///< readings of recovered rows already seen
  uint64_t still_quarantined = 0;                       ///< rows left in place
  std::map<std::string, uint64_t> recovered_by_reason;  ///< old reason → rows
};

/// Replay the quarantine table of the store at `store_path` with the sources of
/// `config`; when `ledger` is given, move the recovered records in it.
Result<ReplayReport> ReplayQuarantine(const PipelineConfig& config, const std::string& store_path,
                                      LedgerSnapshot* ledger);

}  // namespace tributary
