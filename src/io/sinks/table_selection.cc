#include "io/sinks/table_selection.h"

#include <string>
#include <vector>

namespace tributary {

Result<TableSelection> ReadTableSelection(const OptionReader& options) {
  TRIB_ASSIGN_OR_RETURN(std::vector<std::string> tables, options.GetStringList("tables"));
  if (tables.empty()) return options.Error("tables", "lists no table");
  TableSelection out{false, false, false, false};
  for (const std::string& t : tables) {
    if (t == "readings") {
      out.readings = true;
    } else if (t == "windows") {
      out.windows = true;
    } else if (t == "quarantine") {
      out.quarantine = true;
    } else if (t == "late") {
      out.late = true;
    } else {
      return options.Error(
          "tables", "unknown table '" + t + "' (known: readings, windows, quarantine, late)");
    }
  }
  return out;
}

}  // namespace tributary
