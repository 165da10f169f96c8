// Named factories for sources and sinks, and the config sections they document.
//
// Each connector's .cc file ends with a Register<Name>(Registry&) function; the one
// list of those calls is RegisterBuiltins() in io/builtins.cc, so adding a connector
// touches its own file pair and one line there. Factories validate their options and
// return an error instead of throwing; they do not connect to anything (Open does), so
// `tributary check` can build a whole pipeline to validate it.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"

namespace tributary {

class Source;
class Sink;
struct SourceEntry;
struct SinkEntry;

using SourceFactory = std::function<Result<std::unique_ptr<Source>>(const SourceEntry&)>;
using SinkFactory = std::function<Result<std::unique_ptr<Sink>>(const SinkEntry&)>;

class Registry {
 public:
  /// The process-wide registry, filled by RegisterBuiltins() on first use.
  static Registry& Get();

  void AddSource(std::string type, const SectionSpec* spec, SourceFactory factory);
  void AddSink(std::string type, const SectionSpec* spec, SinkFactory factory);
  /// A section that is neither source nor sink (processing, windows, ...).
  void AddSection(const SectionSpec* spec);

  const SectionSpec* SourceSpec(const std::string& type) const;
  const SectionSpec* SinkSpec(const std::string& type) const;
  Result<std::unique_ptr<Source>> MakeSource(const SourceEntry& entry) const;
  Result<std::unique_ptr<Sink>> MakeSink(const SinkEntry& entry) const;
  std::vector<std::string> SourceTypes() const;
  std::vector<std::string> SinkTypes() const;
  /// Every documented section in registration order.
  const std::vector<const SectionSpec*>& Sections() const { return sections_; }

 private:
  struct SourceReg {
    const SectionSpec* spec;
    SourceFactory factory;
  };
  struct SinkReg {
    const SectionSpec* spec;
    SinkFactory factory;
  };
  std::map<std::string, SourceReg> sources_;
  std::map<std::string, SinkReg> sinks_;
  std::vector<const SectionSpec*> sections_;
};

/// Register every built-in connector and section (io/builtins.cc).
void RegisterBuiltins(Registry& registry);

}  // namespace tributary
