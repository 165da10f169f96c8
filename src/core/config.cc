#include "core/config.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/registry.h"

namespace tributary {

const char* OptionTypeName(OptionType type) {
  switch (type) {
    case OptionType::kString:
      return "string";
    case OptionType::kInt:
      return "integer";
    case OptionType::kDouble:
      return "number";
    case OptionType::kBool:
      return "boolean";
    case OptionType::kDuration:
      return "duration";
    case OptionType::kEnum:
      return "enum";
    case OptionType::kStringList:
      return "list of strings";
    case OptionType::kSection:
      return "section";
    case OptionType::kAny:
      return "any";
  }
  return "?";
}

std::string ConfigLocation::ToString() const {
  std::string out = file;
  if (line > 0) {
    out += ":" + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  if (!path.empty()) out += (out.empty() ? "" : ": ") + path;
  return out;
}

Result<std::string> SubstituteEnv(std::string_view text, std::string_view file) {
  std::string out;
  out.reserve(text.size());
  int line = 1;
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == '\n') ++line;
    if (c == '$' && i + 1 < text.size() && text[i + 1] == '$' && i + 2 < text.size() &&
        text[i + 2] == '{') {
      out += "${";  // "$${" escapes a literal "${"
      i += 3;
      continue;
    }
    if (c != '$' || i + 1 >= text.size() || text[i + 1] != '{') {
      out.push_back(c);
      ++i;
      continue;
    }
    size_t close = text.find('}', i + 2);
    size_t newline = text.find('\n', i + 2);
    if (close == std::string_view::npos || (newline != std::string_view::npos && newline < close)) {
      return Status::Invalid(std::string(file) + ":" + std::to_string(line) +
                             ": unterminated ${...} reference");
    }
    std::string_view inner = text.substr(i + 2, close - i - 2);
    std::string_view name = inner;
    std::string_view fallback;
    bool has_fallback = false;
    if (size_t sep = inner.find(":-"); sep != std::string_view::npos) {
      name = inner.substr(0, sep);
      fallback = inner.substr(sep + 2);
      has_fallback = true;
    }
    bool valid = !name.empty() && !(name[0] >= '0' && name[0] <= '9');
    for (char n : name) {
      valid = valid && ((n >= 'A' && n <= 'Z') || (n >= 'a' && n <= 'z') ||
                        (n >= '0' && n <= '9') || n == '_');
    }
    if (!valid) {
      return Status::Invalid(std::string(file) + ":" + std::to_string(line) +
                             ": bad environment variable name in ${" + std::string(inner) + "}");
    }
    const char* value = std::getenv(std::string(name).c_str());
    if (value != nullptr && (*value != '\0' || !has_fallback)) {
      out += value;
    } else if (has_fallback) {
      out += fallback;
    } else {
      return Status::Invalid(std::string(file) + ":" + std::to_string(line) +
                             ": environment variable " + std::string(name) +
                             " is not set (write ${" + std::string(name) +
                             ":-default} to give a default)");
    }
    i = close + 1;
  }
  return out;
}

Result<YAML::Node> LoadYamlText(std::string_view text, const std::string& name) {
  TRIB_ASSIGN_OR_RETURN(std::string substituted, SubstituteEnv(text, name));
  try {
    return YAML::Load(substituted);
  } catch (const YAML::Exception& e) {
    std::string where = name;
    if (!e.mark.is_null()) {
      where += ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1);
    }
    return Status::Invalid(where + ": YAML syntax error: " + e.msg);
  }
}

Result<YAML::Node> LoadYamlFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return LoadYamlText(ss.str(), path);
}

// ---------------------------------------------------------------------------
// OptionReader

OptionReader::OptionReader(YAML::Node node, std::string file, std::string path,
                           std::vector<const SectionSpec*> specs)
    : node_(std::move(node)),
      file_(std::move(file)),
      path_(std::move(path)),
      specs_(std::move(specs)) {
  // yaml-cpp hands out "invalid" nodes for absent keys, which throw when inspected;
  // an absent section is an undefined (but valid) node here.
  if (!node_.IsDefined()) node_ = YAML::Node(YAML::NodeType::Undefined);
}

const OptionSpec* OptionReader::Find(std::string_view key) const {
  for (const SectionSpec* s : specs_) {
    if (s == nullptr) continue;
    for (const OptionSpec& o : s->options) {
      if (o.key == key) return &o;
    }
  }
  return nullptr;
}

ConfigLocation OptionReader::Where(std::string_view key) const {
  ConfigLocation loc;
  loc.file = file_;
  loc.path = path_;
  const YAML::Node& n = node_;
  YAML::Mark mark;
  if (n.IsDefined()) mark = n.Mark();
  if (!key.empty()) {
    loc.path += (loc.path.empty() ? "" : ".") + std::string(key);
    if (n.IsMap()) {
      // Point at the key itself, which yaml-cpp exposes through iteration.
      for (auto it = n.begin(); it != n.end(); ++it) {
        if (it->first.Scalar() == key) {
          mark = it->second.IsDefined() && !it->second.Mark().is_null() ? it->second.Mark()
                                                                        : it->first.Mark();
          break;
        }
      }
    }
  }
  if (!mark.is_null()) {
    loc.line = mark.line + 1;
    loc.column = mark.column + 1;
  }
  return loc;
}

Status OptionReader::Error(std::string_view key, std::string_view message) const {
  return Status::Invalid(Where(key).ToString() + ": " + std::string(message));
}

bool OptionReader::Has(std::string_view key) const {
  const YAML::Node& n = node_;
  return n.IsMap() && n[std::string(key)].IsDefined() && !n[std::string(key)].IsNull();
}

YAML::Node OptionReader::Node(std::string_view key) const {
  const YAML::Node& n = node_;
  if (!n.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  YAML::Node v = n[std::string(key)];
  if (!v.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
  return v;
}

OptionReader OptionReader::Child(std::string_view key, const SectionSpec* spec) const {
  return OptionReader(Node(key), file_, path_ + (path_.empty() ? "" : ".") + std::string(key),
                      {spec});
}

Result<std::string> OptionReader::Scalar(std::string_view key, const OptionSpec** spec_out,
                                         bool* present) const {
  const OptionSpec* spec = Find(key);
  if (spec == nullptr) {
    return Status::Internal("option '" + std::string(key) + "' is read at " + path_ +
                            " but not declared in its SectionSpec");
  }
  *spec_out = spec;
  if (Has(key)) {
    YAML::Node v = Node(key);
    if (!v.IsScalar())
      return Error(key, std::string("expected a single ") + OptionTypeName(spec->type) + " value");
    *present = true;
    return v.Scalar();
  }
  *present = false;
  if (spec->required) return Error(key, "is required");
  return std::string(spec->default_value);
}

namespace {

// Split "min..max" into its two sides (either may be empty).
bool SplitRange(std::string_view range, std::string_view& lo, std::string_view& hi) {
  size_t dots = range.find("..");
  if (dots == std::string_view::npos) return false;
  lo = range.substr(0, dots);
  hi = range.substr(dots + 2);
  return true;
}

bool ParseDoubleFull(std::string_view text, double& out) {
  std::string s(text);
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size();
}

}  // namespace

Result<std::string> OptionReader::GetString(std::string_view key) const {
  const OptionSpec* spec = nullptr;
  bool present = false;
  TRIB_ASSIGN_OR_RETURN(std::string v, Scalar(key, &spec, &present));
  if (spec->type == OptionType::kEnum && (present || !v.empty())) {
    std::string_view words = spec->range;
    bool found = false;
    size_t start = 0;
    while (start <= words.size()) {
      size_t bar = words.find('|', start);
      std::string_view w =
          words.substr(start, bar == std::string_view::npos ? words.size() - start : bar - start);
      if (w == v) found = true;
      if (bar == std::string_view::npos) break;
      start = bar + 1;
    }
    if (!found) {
      return Error(key, "'" + v + "' is not one of " + std::string(spec->range));
    }
  }
  return v;
}

Result<int64_t> OptionReader::GetInt(std::string_view key) const {
  const OptionSpec* spec = nullptr;
  bool present = false;
  TRIB_ASSIGN_OR_RETURN(std::string v, Scalar(key, &spec, &present));
  if (v.empty()) return Error(key, "has no value and no default");
  int64_t out = 0;
  auto res = std::from_chars(v.data(), v.data() + v.size(), out);
  if (res.ec != std::errc() || res.ptr != v.data() + v.size()) {
    return Error(key, "expected an integer, got '" + v + "'");
  }
  std::string_view lo, hi;
  if (SplitRange(spec->range, lo, hi)) {
    double l = 0, h = 0;
    if (!lo.empty() && ParseDoubleFull(lo, l) && static_cast<double>(out) < l) {
      return Error(key, v + " is below the minimum " + std::string(lo));
    }
    if (!hi.empty() && ParseDoubleFull(hi, h) && static_cast<double>(out) > h) {
      return Error(key, v + " is above the maximum " + std::string(hi));
    }
  }
  return out;
}

Result<double> OptionReader::GetDouble(std::string_view key) const {
  const OptionSpec* spec = nullptr;
  bool present = false;
  TRIB_ASSIGN_OR_RETURN(std::string v, Scalar(key, &spec, &present));
  if (v.empty()) return Error(key, "has no value and no default");
  double out = 0;
  if (!ParseDoubleFull(v, out) || !std::isfinite(out)) {
    return Error(key, "expected a number, got '" + v + "'");
  }
  std::string_view lo, hi;
  if (SplitRange(spec->range, lo, hi)) {
    double l = 0, h = 0;
    if (!lo.empty() && ParseDoubleFull(lo, l) && out < l) {
      return Error(key, v + " is below the minimum " + std::string(lo));
    }
    if (!hi.empty() && ParseDoubleFull(hi, h) && out > h) {
      return Error(key, v + " is above the maximum " + std::string(hi));
    }
  }
  return out;
}

Result<bool> OptionReader::GetBool(std::string_view key) const {
  const OptionSpec* spec = nullptr;
  bool present = false;
  TRIB_ASSIGN_OR_RETURN(std::string v, Scalar(key, &spec, &present));
  if (v == "true" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "no" || v == "off") return false;
  return Error(key, "expected true or false, got '" + v + "'");
}

Result<DurationUs> OptionReader::GetDuration(std::string_view key) const {
  const OptionSpec* spec = nullptr;
  bool present = false;
  TRIB_ASSIGN_OR_RETURN(std::string v, Scalar(key, &spec, &present));
  if (v.empty()) return Error(key, "has no value and no default");
  Result<DurationUs> d = ParseDuration(v);
  if (!d.ok()) return Error(key, d.status().message());
  std::string_view lo, hi;
  if (SplitRange(spec->range, lo, hi)) {
    if (!lo.empty()) {
      Result<DurationUs> l = ParseDuration(lo);
      if (l.ok() && *d < *l)
        return Error(key, v + " is shorter than the minimum " + std::string(lo));
    }
    if (!hi.empty()) {
      Result<DurationUs> h = ParseDuration(hi);
      if (h.ok() && *d > *h)
        return Error(key, v + " is longer than the maximum " + std::string(hi));
    }
  }
  return *d;
}

Result<std::vector<std::string>> OptionReader::GetStringList(std::string_view key) const {
  const OptionSpec* spec = Find(key);
  if (spec == nullptr) {
    return Status::Internal("option '" + std::string(key) + "' is read at " + path_ +
                            " but not declared in its SectionSpec");
  }
  std::vector<std::string> out;
  if (!Has(key)) {
    if (spec->required) return Error(key, "is required");
    std::string_view d = spec->default_value;
    size_t start = 0;
    while (start < d.size()) {
      size_t comma = d.find(',', start);
      std::string_view item =
          d.substr(start, comma == std::string_view::npos ? d.size() - start : comma - start);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      if (!item.empty()) out.emplace_back(item);
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    return out;
  }
  YAML::Node v = Node(key);
  if (v.IsScalar()) {
    out.push_back(v.Scalar());
    return out;
  }
  if (!v.IsSequence()) return Error(key, "expected a list of strings");
  for (const YAML::Node& item : v) {
    if (!item.IsScalar()) return Error(key, "expected a list of strings");
    out.push_back(item.Scalar());
  }
  return out;
}

Status OptionReader::CheckKeys() const {
  const YAML::Node& n = node_;
  if (n.IsDefined() && !n.IsNull() && !n.IsMap()) {
    return Status::Invalid(Where().ToString() + ": expected a mapping of options");
  }
  if (n.IsMap()) {
    for (auto it = n.begin(); it != n.end(); ++it) {
      std::string key = it->first.Scalar();
      const OptionSpec* spec = Find(key);
      if (spec == nullptr) {
        std::string known;
        for (const SectionSpec* s : specs_) {
          if (s == nullptr) continue;
          for (const OptionSpec& o : s->options)
            known += (known.empty() ? "" : ", ") + std::string(o.key);
        }
        return Error(key, "unknown option (known here: " + known + ")");
      }
      Status st;
      switch (spec->type) {
        case OptionType::kString:
        case OptionType::kEnum:
          st = GetString(key).status();
          break;
        case OptionType::kInt:
          st = GetInt(key).status();
          break;
        case OptionType::kDouble:
          st = GetDouble(key).status();
          break;
        case OptionType::kBool:
          st = GetBool(key).status();
          break;
        case OptionType::kDuration:
          st = GetDuration(key).status();
          break;
        case OptionType::kStringList:
          st = GetStringList(key).status();
          break;
        case OptionType::kSection:
        case OptionType::kAny:
          break;
      }
      TRIB_RETURN_IF_ERROR(st);
    }
  }
  for (const SectionSpec* s : specs_) {
    if (s == nullptr) continue;
    for (const OptionSpec& o : s->options) {
      if (o.required && !Has(o.key)) return Error(o.key, "is required");
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Documentation

std::vector<const SectionSpec*> AllConfigSections() {
  return Registry::Get().Sections();
}

namespace {
std::string EscapeCell(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n') {
      out += ' ';
    } else {
      out.push_back(c);
    }
  }
  return out;
}
}  // namespace

std::string GenerateConfigurationDoc() {
  std::string out =
      "<!-- Generated by `tributary config-doc` from the option tables in the source. "
      "Do not edit by hand. -->\n"
      "# Configuration reference\n\n"
      "A pipeline is one YAML file with the top-level sections `pipeline`, `processing`, "
      "`sources`, `windows`, `sinks` and `server`, each described below. `${VAR}` is replaced by "
      "the environment variable "
      "VAR and `${VAR:-default}` falls back to `default` when VAR is unset or empty; `$${` "
      "writes a literal `${`. Durations are written like `500ms`, `30s`, `5m`, `1h`, `1d` "
      "or `1h30m`. `tributary check FILE` validates a file without running it; errors name "
      "the file, line and key.\n";
  for (const SectionSpec* s : AllConfigSections()) {
    out += "\n## `" + std::string(s->path) + "`\n\n";
    if (!s->description.empty()) out += std::string(s->description) + "\n\n";
    if (s->options.empty()) continue;
    out += "| key | type | default | range | description |\n";
    out += "|---|---|---|---|---|\n";
    for (const OptionSpec& o : s->options) {
      std::string def = o.required                ? "(required)"
                        : o.default_value.empty() ? ""
                                                  : "`" + std::string(o.default_value) + "`";
      std::string range = o.range.empty() ? "" : "`" + EscapeCell(o.range) + "`";
      out += "| `" + std::string(o.key) + "` | " + OptionTypeName(o.type) + " | " + def + " | " +
             range + " | " + EscapeCell(o.description) + " |\n";
    }
  }
  return out;
}

}  // namespace tributary
