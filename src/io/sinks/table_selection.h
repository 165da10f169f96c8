// Which record tables a sink writes (the `tables` option shared by the store sinks).
#pragma once

#include "core/config.h"
#include "core/status.h"

namespace tributary {

struct TableSelection {
  bool readings = true;
  bool windows = true;
  bool quarantine = true;
  bool late = true;
};

/// Read the `tables` list option (any of readings, windows, quarantine, late); an empty
/// list or an unknown name is an error naming the key.
Result<TableSelection> ReadTableSelection(const OptionReader& options);

}  // namespace tributary
