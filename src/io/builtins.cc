// The one list of built-in connectors and documented config sections.
// Adding a connector: its file pair ends with Register<Name>(Registry&), and one
// line below calls it.
#include "core/pipeline_config.h"
#include "core/registry.h"

namespace tributary {

void RegisterBuiltins(Registry& registry) {
  registry.AddSection(&PipelineSectionSpec());
  registry.AddSection(&ProcessingSectionSpec());
  registry.AddSection(&SourceCommonSpec());
  registry.AddSection(&SinkCommonSpec());
  // Sources.
  // Sinks.
}

}  // namespace tributary
