// Configuration: one YAML pipeline file, options defined once in tables.
//
// Every option of every section is declared in an OptionSpec table (name, type,
// default, range, description). The same tables validate a config file (unknown keys,
// types and ranges are errors naming the file, line and key), provide the defaults,
// and generate docs/CONFIGURATION.md, so the reference cannot drift from the code.
// `${VAR}` and `${VAR:-default}` in the file are replaced from the environment before
// parsing (secrets stay out of config files); a missing variable without a default is
// an error naming the variable and the line.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/time.h"

namespace tributary {

enum class OptionType {
  kString,
  kInt,
  kDouble,
  kBool,
  kDuration,    ///< "30s", "5m", "1h"
  kEnum,        ///< one of the '|'-separated words in `range`
  kStringList,  ///< a YAML sequence of strings (or one string)
  kSection,     ///< a nested mapping or sequence described by its own SectionSpec
  kAny,         ///< free-form YAML read by the connector itself (documented by it)
};

/// Name an option type for docs and error messages ("duration").
const char* OptionTypeName(OptionType type);

struct OptionSpec {
  std::string_view key;
  OptionType type = OptionType::kString;
  /// Default as text, parsed like a config value; empty means no default.
  std::string_view default_value;
  std::string_view description;
  /// For numbers "min..max" (either side may be empty); for enums "a|b|c".
  std::string_view range = {};
  bool required = false;
};

/// A documented group of options: a top-level section, a list element, or the
/// options of one connector type.
struct SectionSpec {
  std::string_view path;  ///< as shown in the docs: "pipeline", "sources[] (type: file)"
  std::string_view description;
  std::vector<OptionSpec> options;
};

/// Where a value sits: "pipeline.yaml:12:7 (windows[0].size)".
struct ConfigLocation {
  std::string file;
  int line = 0;  ///< 1-based; 0 when unknown
  int column = 0;
  std::string path;
  std::string ToString() const;
};

/// Replace ${VAR} and ${VAR:-default} from the environment. `file` names the source in
/// errors, which give the line of the reference.
Result<std::string> SubstituteEnv(std::string_view text, std::string_view file);

/// Reads the options of one YAML mapping against its specs. Values that are absent
/// take the spec's default. Every getter validates type and range and returns an
/// error naming file, line and key.
class OptionReader {
 public:
  /// An empty reader: every key absent.
  OptionReader() = default;
  /// `specs` may combine several sections (e.g. common source keys + a connector's).
  OptionReader(YAML::Node node, std::string file, std::string path,
               std::vector<const SectionSpec*> specs);

  /// Error for any key not declared in the specs, for a value that is not a mapping,
  /// and for a missing required key.
  Status CheckKeys() const;

  bool Has(std::string_view key) const;
  Result<std::string> GetString(std::string_view key) const;
  Result<int64_t> GetInt(std::string_view key) const;
  Result<double> GetDouble(std::string_view key) const;
  Result<bool> GetBool(std::string_view key) const;
  Result<DurationUs> GetDuration(std::string_view key) const;
  Result<std::vector<std::string>> GetStringList(std::string_view key) const;
  /// The raw YAML node of a key (undefined node when absent).
  YAML::Node Node(std::string_view key) const;
  /// A reader for a nested mapping at `key`, validated against `spec`.
  OptionReader Child(std::string_view key, const SectionSpec* spec) const;

  ConfigLocation Where(std::string_view key = {}) const;
  const std::string& file() const { return file_; }
  const std::string& path() const { return path_; }
  const YAML::Node& node() const { return node_; }
  /// An error for `key` with its location: "file:3:5: sources[0].rate: <message>".
  Status Error(std::string_view key, std::string_view message) const;

 private:
  const OptionSpec* Find(std::string_view key) const;
  // The value text of key (from the file, or the default); nullopt-like empty + flag.
  Result<std::string> Scalar(std::string_view key, const OptionSpec** spec_out,
                             bool* present) const;

  YAML::Node node_;
  std::string file_;
  std::string path_;
  std::vector<const SectionSpec*> specs_;
};

/// Load a YAML file (with env substitution). Errors name the file and line.
Result<YAML::Node> LoadYamlFile(const std::string& path);
/// Parse YAML text (with env substitution); `name` is used in error messages.
Result<YAML::Node> LoadYamlText(std::string_view text, const std::string& name);

/// Every SectionSpec known to the program, core sections first, then connectors.
std::vector<const SectionSpec*> AllConfigSections();
/// docs/CONFIGURATION.md, generated from the spec tables.
std::string GenerateConfigurationDoc();

}  // namespace tributary
