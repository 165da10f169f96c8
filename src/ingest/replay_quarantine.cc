#include "ingest/replay_quarantine.h"

#include <fmt/format.h>

#include <vector>

#include "core/run_context.h"
#include "ingest/ingest.h"
#include "io/connector.h"
#include "io/sinks/sqlite_sink.h"
#include "io/sinks/sqlite_util.h"

namespace tributary {

namespace {

struct QuarantineRow {
  int64_t id = 0;
  std::string reason;
  std::string raw;
  TimeUs arrival = 0;
  std::string source;
  std::string topic;
  int32_t partition = -1;
  int64_t offset = -1;
};

Result<std::vector<QuarantineRow>> ReadRows(const std::string& path) {
  SqliteDb db;
  TRIB_RETURN_IF_ERROR(db.Open(path, /*read_only=*/true));
  TRIB_ASSIGN_OR_RETURN(
      int64_t tables,
      db.QueryInt("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='quarantine'"));
  if (tables == 0) return Status::NotFound(path + " has no quarantine table");
  TRIB_ASSIGN_OR_RETURN(SqliteStatement stmt,
                        db.Prepare("SELECT id, reason, raw, arrival_time_us, source, topic, "
                                   "partition, offset FROM quarantine ORDER BY id"));
  std::vector<QuarantineRow> rows;
  while (true) {
    TRIB_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) break;
    QuarantineRow& r = rows.emplace_back();
    r.id = stmt.ColumnInt(0);
    r.reason = stmt.ColumnText(1);
    r.raw = stmt.ColumnBlob(2);
    r.arrival = stmt.ColumnInt(3);
    r.source = stmt.ColumnText(4);
    r.topic = stmt.ColumnText(5);
    r.partition = stmt.ColumnIsNull(6) ? -1 : static_cast<int32_t>(stmt.ColumnInt(6));
    r.offset = stmt.ColumnIsNull(7) ? -1 : stmt.ColumnInt(7);
  }
  stmt.Finalize();
  return rows;
}

Status DeleteRows(const std::string& path, const std::vector<int64_t>& ids) {
  if (ids.empty()) return Status::Ok();
  SqliteDb db;
  TRIB_RETURN_IF_ERROR(db.Open(path));
  TRIB_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
  TRIB_ASSIGN_OR_RETURN(SqliteStatement stmt, db.Prepare("DELETE FROM quarantine WHERE id = ?"));
  for (int64_t id : ids) {
    stmt.BindInt(1, id);
    Status st = stmt.Run();
    if (!st.ok()) {
      stmt.Finalize();
      (void)db.Exec("ROLLBACK");
      return st;
    }
  }
  stmt.Finalize();
  return db.Exec("COMMIT");
}

}  // namespace

Result<ReplayReport> ReplayQuarantine(const PipelineConfig& config, const std::string& store_path,
                                      LedgerSnapshot* ledger) {
  TRIB_ASSIGN_OR_RETURN(std::vector<QuarantineRow> rows, ReadRows(store_path));
  ReplayReport report;
  report.rows = rows.size();
  if (rows.empty()) return report;

  // Sources by name; rows of sources the config does not know get the json defaults.
  PipelineConfig replay = config;
  std::map<std::string, uint16_t, std::less<>> index;
  for (size_t i = 0; i < replay.sources.size(); ++i) {
    index.emplace(replay.sources[i].name, static_cast<uint16_t>(i));
  }
  for (const QuarantineRow& r : rows) {
    if (index.contains(r.source) || replay.sources.size() >= UINT16_MAX) continue;
    index.emplace(r.source, static_cast<uint16_t>(replay.sources.size()));
    replay.sources.push_back(SourceEntry{r.source, "replay", {}});
  }
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<IngestStage> stage, IngestStage::Make(replay));
  Ledger scratch;
  RunContext ctx;
  ctx.config = &replay;
  ctx.ledger = &scratch;
  ctx.data_dir = replay.data_dir;
  TRIB_RETURN_IF_ERROR(stage->Open(ctx));
  SqliteSinkOptions store;
  store.path = store_path;
  store.windows = store.quarantine = store.late = false;
  std::unique_ptr<Sink> sink = MakeSqliteSink(store);
  TRIB_RETURN_IF_ERROR(sink->Open(ctx));

  std::vector<int64_t> recovered;
  struct Moved {
    std::string reason;
    uint64_t readings = 0;
    uint64_t duplicates = 0;
  };
  std::vector<Moved> moved;
  for (const QuarantineRow& r : rows) {
    auto it = index.find(r.source);
    if (it == index.end()) {
      ++report.still_quarantined;
      continue;
    }
    RawBatch raw;
    raw.source_index = it->second;
    raw.Add(r.raw, r.arrival, Intern(r.topic), r.offset, r.partition);
    Batch out;
    Status st = stage->Process(raw, out);
    if (!st.ok()) {
      sink->Close();
      return st;
    }
    if (!out.quarantine.empty() || (out.readings.empty() && out.duplicates == 0)) {
      ++report.still_quarantined;
      continue;
    }
    if (!out.readings.empty()) {
      st = sink->Write(out);
      if (!st.ok()) {
        sink->Close();
        return st;
      }
    }
    recovered.push_back(r.id);
    moved.push_back(Moved{r.reason, out.readings.size(), out.duplicates});
  }
  Status st = sink->Commit();
  sink->Close();
  TRIB_RETURN_IF_ERROR(st);
  TRIB_RETURN_IF_ERROR(DeleteRows(store_path, recovered));

  for (const Moved& m : moved) {
    ++report.recovered;
    report.readings += m.readings;
    report.duplicates += m.duplicates;
    ++report.recovered_by_reason[m.reason];
    if (ledger == nullptr) continue;
    ledger->input += m.readings + m.duplicates - 1;
    ledger->accepted += m.readings;
    ledger->duplicate += m.duplicates;
    if (ledger->quarantined > 0) --ledger->quarantined;
    if (auto reason = ledger->quarantine_reasons.find(m.reason);
        reason != ledger->quarantine_reasons.end() && --reason->second == 0) {
      ledger->quarantine_reasons.erase(reason);
    }
  }
  if (ledger != nullptr) {
    for (const auto& [key, n] : scratch.Snapshot().sink_committed) ledger->sink_committed[key] += n;
  }
  return report;
}

}  // namespace tributary
