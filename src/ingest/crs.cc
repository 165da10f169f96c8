#include "ingest/crs.h"

#include <fmt/format.h>
#include <proj.h>

#include <charconv>
#include <cmath>

namespace tributary {

namespace {

/// Distinct CRSs one transformer caches; payloads naming more are transformed without
/// caching (a hostile stream of random codes must not grow the cache forever).
constexpr size_t kMaxCachedCrs = 64;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] - 'A' + 'a') : a[i];
    char y = b[i] >= 'A' && b[i] <= 'Z' ? static_cast<char>(b[i] - 'A' + 'a') : b[i];
    if (x != y) return false;
  }
  return true;
}

bool StripPrefix(std::string_view& s, std::string_view prefix) {
  if (s.size() < prefix.size() || !EqualsIgnoreCase(s.substr(0, prefix.size()), prefix)) {
    return false;
  }
  s.remove_prefix(prefix.size());
  return true;
}

}  // namespace

bool ParseEpsgCode(std::string_view text, int& code) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  if (!StripPrefix(text, "urn:ogc:def:crs:epsg::") && !StripPrefix(text, "epsg::")) {
    StripPrefix(text, "epsg:");
  }
  if (text.empty() || text.size() > 6) return false;
  int value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || value <= 0) return false;
  code = value;
  return true;
}

void CrsTransformer::ContextDeleter::operator()(pj_ctx* ctx) const {
  proj_context_destroy(ctx);
}

void CrsTransformer::PjDeleter::operator()(PJconsts* pj) const {
  proj_destroy(pj);
}

CrsTransformer::CrsTransformer() : ctx_(proj_context_create()) {
  // Errors are reported per record; PROJ's own stderr logging would only add noise.
  if (ctx_ != nullptr) proj_log_level(ctx_.get(), PJ_LOG_NONE);
}

CrsTransformer::~CrsTransformer() {
  // Every PJ before its context.
  cache_.clear();
  overflow_.pj.reset();
}

CrsTransformer::Entry& CrsTransformer::Lookup(int code) {
  if (auto it = cache_.find(code); it != cache_.end()) return it->second;
  Entry entry;
  std::string name = fmt::format("EPSG:{}", code);
  if (ctx_ == nullptr) {
    entry.error = "PROJ context could not be created";
  } else if (PjPtr crs(proj_create(ctx_.get(), name.c_str())); crs == nullptr) {
    entry.unknown = true;
    entry.error = fmt::format("{} is not a CRS known to PROJ", name);
  } else {
    PjPtr op(proj_create_crs_to_crs(ctx_.get(), name.c_str(), "EPSG:4326", nullptr));
    if (op != nullptr) op.reset(proj_normalize_for_visualization(ctx_.get(), op.get()));
    if (op == nullptr) {
      entry.error =
          fmt::format("PROJ has no transformation from {} to EPSG:4326 ({})", name,
                      proj_context_errno_string(ctx_.get(), proj_context_errno(ctx_.get())));
    } else {
      entry.pj = std::move(op);
    }
  }
  if (cache_.size() >= kMaxCachedCrs) {
    overflow_ = std::move(entry);
    return overflow_;
  }
  return cache_.emplace(code, std::move(entry)).first->second;
}

Verdict CrsTransformer::ToWgs84(std::string_view crs, double x, double y, LonLat& out) {
  int code = 0;
  if (!ParseEpsgCode(crs, code)) {
    return Verdict::Fail(
        QuarantineReason::kUnknownCrs,
        fmt::format("crs \"{}\" is not an EPSG code (e.g. EPSG:32633)", crs.substr(0, 60)));
  }
  Entry& entry = Lookup(code);
  if (entry.pj == nullptr) {
    return Verdict::Fail(
        entry.unknown ? QuarantineReason::kUnknownCrs : QuarantineReason::kCrsTransformFailed,
        entry.error);
  }
  auto fail = [&](std::string_view why) {
    return Verdict::Fail(QuarantineReason::kCrsTransformFailed,
                         fmt::format("EPSG:{} x/y = {}/{}: {}", code, x, y, why));
  };
  if (!std::isfinite(x) || !std::isfinite(y)) return fail("coordinates are not finite");
  proj_errno_reset(entry.pj.get());
  PJ_COORD c = proj_trans(entry.pj.get(), PJ_FWD, proj_coord(x, y, 0, 0));
  if (int err = proj_errno(entry.pj.get()); err != 0) {
    return fail(proj_context_errno_string(ctx_.get(), err));
  }
  double lon = c.lpzt.lam;
  double lat = c.lpzt.phi;
  if (!std::isfinite(lon) || !std::isfinite(lat) || lon == HUGE_VAL || lat == HUGE_VAL) {
    return fail("the transformation gave no position");
  }
  if (std::fabs(lat) > 90 || std::fabs(lon) > 180) {
    return fail(fmt::format("the result {}/{} is not a WGS84 position", lat, lon));
  }
  out.lon = lon;
  out.lat = lat;
  return Verdict::Pass();
}

}  // namespace tributary
