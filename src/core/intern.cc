#include "core/intern.h"

#include <array>
#include <atomic>
#include <deque>
#include <memory>
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
    Publish(0, std::string_view());
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
    auto id = static_cast<uint32_t>(size_.load(std::memory_order_relaxed));
    Publish(id, stable);
    index_.emplace(stable, id);
    return Symbol{id};
  }

  Symbol Find(std::string_view text) {
    if (text.empty()) return {};
    std::shared_lock lock(mu_);
    auto it = index_.find(text);
    return it == index_.end() ? Symbol{} : Symbol{it->second};
  }

  // Lock-free: every sink formats symbols per row, and a shared lock per call was a
  // tenth of the Parquet sink's time.
  std::string_view View(uint32_t id) {
    if (id >= size_.load(std::memory_order_acquire)) return std::string_view();
    return blocks_[id >> kBlockBits].load(std::memory_order_acquire)[id & (kBlockSize - 1)];
  }

  size_t Size() { return size_.load(std::memory_order_acquire); }

 private:
  // Views live in blocks that never move; a view is published by the release store of
  // size_ after it, so a reader that sees an id below size_ sees its view.
  static constexpr uint32_t kBlockBits = 14;
  static constexpr uint32_t kBlockSize = 1u << kBlockBits;
  static constexpr size_t kBlocks = size_t{1} << (32 - kBlockBits);

  // Under the exclusive lock (or in the constructor).
  void Publish(uint32_t id, std::string_view view) {
    std::atomic<std::string_view*>& block = blocks_[id >> kBlockBits];
    std::string_view* b = block.load(std::memory_order_relaxed);
    if (b == nullptr) {
      owned_.push_back(std::make_unique<std::string_view[]>(kBlockSize));
      b = owned_.back().get();
      block.store(b, std::memory_order_release);
    }
    b[id & (kBlockSize - 1)] = view;
    size_.store(id + 1, std::memory_order_release);
  }

  std::shared_mutex mu_;
  std::deque<std::string> strings_;  // deque: elements never move
  std::unique_ptr<std::atomic<std::string_view*>[]> blocks_ =
      std::make_unique<std::atomic<std::string_view*>[]>(kBlocks);
  std::vector<std::unique_ptr<std::string_view[]>> owned_;
  std::atomic<size_t> size_{0};
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
