#include "core/intern.h"

#include <deque>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

namespace tributary {
namespace {

class Interner {
 public:
  Interner() {
    strings_.emplace_back();
    views_.push_back(std::string_view());
  }

  Symbol Intern(std::string_view text) {
    if (text.empty()) return {};
    {
      std::shared_lock lock(mu_);
      auto it = index_.find(text);
      if (it != index_.end()) return Symbol{it->second};
    }
    std::unique_lock lock(mu_);
    auto it = index_.find(text);
    if (it != index_.end()) return Symbol{it->second};
    strings_.emplace_back(text);
    std::string_view stable = strings_.back();
    auto id = static_cast<uint32_t>(views_.size());
    views_.push_back(stable);
    index_.emplace(stable, id);
    return Symbol{id};
  }

  Symbol Find(std::string_view text) {
    if (text.empty()) return {};
    std::shared_lock lock(mu_);
    auto it = index_.find(text);
    return it == index_.end() ? Symbol{} : Symbol{it->second};
  }

  std::string_view View(uint32_t id) {
    std::shared_lock lock(mu_);
    return id < views_.size() ? views_[id] : std::string_view();
  }

  size_t Size() {
    std::shared_lock lock(mu_);
    return views_.size();
  }

 private:
  std::shared_mutex mu_;
  std::deque<std::string> strings_;  // deque: elements never move
  std::vector<std::string_view> views_;
  std::unordered_map<std::string_view, uint32_t> index_;
};

Interner& Table() {
  static Interner* table = new Interner();  // never destroyed: Symbols outlive statics
  return *table;
}

}  // namespace

std::string_view Symbol::view() const {
  return id == 0 ? std::string_view() : Table().View(id);
}
Symbol Intern(std::string_view text) {
  return Table().Intern(text);
}
Symbol FindSymbol(std::string_view text) {
  return Table().Find(text);
}
size_t InternedCount() {
  return Table().Size();
}

}  // namespace tributary
