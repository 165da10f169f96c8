#include "core/ledger.h"

#include <fmt/format.h>
#include <simdjson.h>

#include "core/json_writer.h"

namespace tributary {

void Ledger::AddQuarantined(std::string_view reason, uint64_t n) {
  quarantined_.fetch_add(n, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  auto it = reasons_.find(reason);
  if (it == reasons_.end()) {
    reasons_.emplace(std::string(reason), n);
  } else {
    it->second += n;
  }
}

void Ledger::AddSinkCommitted(std::string_view sink_table, uint64_t n) {
  std::lock_guard lock(mu_);
  auto it = sinks_.find(sink_table);
  if (it == sinks_.end()) {
    sinks_.emplace(std::string(sink_table), n);
  } else {
    it->second += n;
  }
}

void Ledger::Restore(const LedgerSnapshot& s) {
  input_ = s.input;
  accepted_ = s.accepted;
  quarantined_ = s.quarantined;
  late_ = s.late;
  duplicate_ = s.duplicate;
  windows_ = s.windows_emitted;
  std::lock_guard lock(mu_);
  reasons_.clear();
  sinks_.clear();
  for (const auto& [k, v] : s.quarantine_reasons) reasons_.emplace(k, v);
  for (const auto& [k, v] : s.sink_committed) sinks_.emplace(k, v);
}

LedgerSnapshot Ledger::Snapshot() const {
  LedgerSnapshot s;
  // Read the outcome counters before input so a concurrent update can only make
  // in_flight look larger, never negative.
  s.accepted = accepted_.load();
  s.quarantined = quarantined_.load();
  s.late = late_.load();
  s.duplicate = duplicate_.load();
  s.windows_emitted = windows_.load();
  s.input = input_.load();
  if (s.input < s.accounted()) s.input = s.accounted();
  std::lock_guard lock(mu_);
  for (const auto& [k, v] : reasons_) s.quarantine_reasons.emplace(k, v);
  for (const auto& [k, v] : sinks_) s.sink_committed.emplace(k, v);
  return s;
}

std::string LedgerSnapshot::ToJson() const {
  JsonWriter w;
  w.BeginObject();
  w.Key("input").UInt(input);
  w.Key("accepted").UInt(accepted);
  w.Key("quarantined").UInt(quarantined);
  w.Key("late").UInt(late);
  w.Key("duplicate").UInt(duplicate);
  w.Key("in_flight").UInt(in_flight());
  w.Key("balanced").Bool(balanced());
  w.Key("windows_emitted").UInt(windows_emitted);
  w.Key("quarantine_reasons").BeginObject();
  for (const auto& [k, v] : quarantine_reasons) w.Key(k).UInt(v);
  w.EndObject();
  w.Key("sink_committed").BeginObject();
  for (const auto& [k, v] : sink_committed) w.Key(k).UInt(v);
  w.EndObject();
  w.EndObject();
  return w.Take();
}

std::string LedgerSnapshot::ToText() const {
  std::string out;
  out += fmt::format("ledger: input {} = accepted {} + quarantined {} + late {} + duplicate {}",
                     input, accepted, quarantined, late, duplicate);
  if (!balanced()) out += fmt::format(" (in flight {})", in_flight());
  out += balanced() ? "  [balanced]\n" : "  [NOT balanced]\n";
  out += fmt::format("windows emitted: {}\n", windows_emitted);
  if (!quarantine_reasons.empty()) {
    out += "quarantine reasons:\n";
    for (const auto& [k, v] : quarantine_reasons) out += fmt::format("  {:<28} {}\n", k, v);
  }
  if (!sink_committed.empty()) {
    out += "committed by sinks:\n";
    for (const auto& [k, v] : sink_committed) out += fmt::format("  {:<28} {}\n", k, v);
  }
  return out;
}

Result<LedgerSnapshot> ParseLedgerJson(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json);
  simdjson::dom::element doc;
  if (parser.parse(padded).get(doc)) return Status::Corrupt("ledger.json is not valid JSON");
  LedgerSnapshot s;
  auto get = [&](const char* key, uint64_t& out) -> Status {
    if (doc[key].get(out)) return Status::Corrupt(std::string("ledger.json lacks ") + key);
    return Status::Ok();
  };
  TRIB_RETURN_IF_ERROR(get("input", s.input));
  TRIB_RETURN_IF_ERROR(get("accepted", s.accepted));
  TRIB_RETURN_IF_ERROR(get("quarantined", s.quarantined));
  TRIB_RETURN_IF_ERROR(get("late", s.late));
  TRIB_RETURN_IF_ERROR(get("duplicate", s.duplicate));
  TRIB_RETURN_IF_ERROR(get("windows_emitted", s.windows_emitted));
  simdjson::dom::object obj;
  if (!doc["quarantine_reasons"].get(obj)) {
    for (auto field : obj) s.quarantine_reasons[std::string(field.key)] = field.value.get_uint64();
  }
  if (!doc["sink_committed"].get(obj)) {
    for (auto field : obj) s.sink_committed[std::string(field.key)] = field.value.get_uint64();
  }
  return s;
}

}  // namespace tributary
