// Interned strings: device ids, metric names, zone ids, sources and topics become
// 32-bit Symbols once, at ingestion, so the hot path moves and hashes plain integers.
//
// The table is process-wide and append-only: a Symbol stays valid, and the
// string_view it names stays stable, for the life of the process. Interning takes a
// shared lock on the fast path (the string is usually known) and an exclusive lock
// only to add a new string; Symbol::view takes no lock.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tributary {

/// An interned string. Symbol{} (id 0) is the empty string and means "none".
struct Symbol {
  uint32_t id = 0;

  bool empty() const { return id == 0; }
  explicit operator bool() const { return id != 0; }
  friend bool operator==(Symbol a, Symbol b) { return a.id == b.id; }
  friend bool operator!=(Symbol a, Symbol b) { return a.id != b.id; }
  friend bool operator<(Symbol a, Symbol b) { return a.id < b.id; }

  /// The interned text (stable for the process lifetime).
  std::string_view view() const;
  std::string str() const { return std::string(view()); }
};

/// Intern `text` and return its Symbol (thread-safe).
Symbol Intern(std::string_view text);

/// Look `text` up without adding it; Symbol{} when unknown.
Symbol FindSymbol(std::string_view text);

/// Number of interned strings so far (including the empty string).
size_t InternedCount();

}  // namespace tributary

template <>
struct std::hash<tributary::Symbol> {
  size_t operator()(tributary::Symbol s) const noexcept { return s.id; }
};
