#include "core/registry.h"

#include "core/pipeline_config.h"
#include "io/connector.h"

namespace tributary {

Registry& Registry::Get() {
  static Registry* registry = [] {
    auto* r = new Registry();
    RegisterBuiltins(*r);
    return r;
  }();
  return *registry;
}

void Registry::AddSource(std::string type, const SectionSpec* spec, SourceFactory factory) {
  sources_[std::move(type)] = SourceReg{spec, std::move(factory)};
  if (spec != nullptr) sections_.push_back(spec);
}

void Registry::AddSink(std::string type, const SectionSpec* spec, SinkFactory factory) {
  sinks_[std::move(type)] = SinkReg{spec, std::move(factory)};
  if (spec != nullptr) sections_.push_back(spec);
}

void Registry::AddSection(const SectionSpec* spec) {
  sections_.push_back(spec);
}

const SectionSpec* Registry::SourceSpec(const std::string& type) const {
  auto it = sources_.find(type);
  return it == sources_.end() ? nullptr : it->second.spec;
}

const SectionSpec* Registry::SinkSpec(const std::string& type) const {
  auto it = sinks_.find(type);
  return it == sinks_.end() ? nullptr : it->second.spec;
}

namespace {
template <typename Map>
std::string KnownTypes(const Map& m) {
  std::string out;
  for (const auto& [k, v] : m) out += (out.empty() ? "" : ", ") + k;
  return out;
}
}  // namespace

Result<std::unique_ptr<Source>> Registry::MakeSource(const SourceEntry& entry) const {
  auto it = sources_.find(entry.type);
  if (it == sources_.end()) {
    return entry.options.Error(
        "type", "unknown source type '" + entry.type + "' (known: " + KnownTypes(sources_) + ")");
  }
  return it->second.factory(entry);
}

Result<std::unique_ptr<Sink>> Registry::MakeSink(const SinkEntry& entry) const {
  auto it = sinks_.find(entry.type);
  if (it == sinks_.end()) {
    return entry.options.Error(
        "type", "unknown sink type '" + entry.type + "' (known: " + KnownTypes(sinks_) + ")");
  }
  return it->second.factory(entry);
}

std::vector<std::string> Registry::SourceTypes() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : sources_) out.push_back(k);
  return out;
}

std::vector<std::string> Registry::SinkTypes() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : sinks_) out.push_back(k);
  return out;
}

}  // namespace tributary
