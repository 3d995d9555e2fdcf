// Caching CPU allocator for hwnas kernel outputs (see buffer_pool.h).
#include "buffer_pool.h"

#include <ATen/EmptyTensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

namespace hwnas {
namespace ops {
namespace cpu {
namespace {

// Each block starts with a header that records its size, so the deleter needs no
// lookup table; 64 bytes keep the data as aligned as the block (c10 aligns to 64).
constexpr size_t kHeader = 64;
constexpr size_t kPage = 4096;
// A cached block serves a request of at least 1/kMaxSlack of its size: supernet
// shapes repeat exactly, and loose matching would waste memory.
constexpr size_t kMaxSlack = 2;

int64_t limit_from_env() {
  const char* v = std::getenv("HWNAS_CPU_POOL_MB");
  if (v == nullptr || *v == '\0') return int64_t(1024) << 20;
  try {
    const long long mb = std::stoll(v);
    return mb <= 0 ? 0 : static_cast<int64_t>(mb) << 20;
  } catch (...) {
    return int64_t(1024) << 20;  // an unreadable value keeps the default
  }
}

class BlockCache {
 public:
  BlockCache() : limit_(limit_from_env()) {}

  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.lower_bound(bytes);
      if (it != free_.end() && it->first <= bytes * kMaxSlack) {
        void* base = it->second;
        cached_ -= static_cast<int64_t>(it->first);
        free_.erase(it);
        ++hits_;
        return base;
      }
      ++misses_;
    }
    void* base = c10::alloc_cpu(bytes);
    *static_cast<size_t*>(base) = bytes;
    return base;
  }

  void give_back(void* base) {
    const size_t bytes = *static_cast<size_t*>(base);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + static_cast<int64_t>(bytes) <= limit_) {
        free_.emplace(bytes, base);
        cached_ += static_cast<int64_t>(bytes);
        return;
      }
    }
    c10::free_cpu(base);
  }

  bool enabled() const { return limit_ > 0; }

  PoolStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {cached_, limit_, hits_, misses_};
  }

  void release() {
    std::multimap<size_t, void*> doomed;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      doomed.swap(free_);
      cached_ = 0;
    }
    for (auto& [bytes, base] : doomed) c10::free_cpu(base);
  }

  void set_limit(int64_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      limit_ = bytes < 0 ? 0 : bytes;
    }
    release();
  }

 private:
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  int64_t cached_ = 0;
  int64_t limit_;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
};

// Never destroyed: tensors may be freed during interpreter shutdown, after static
// destructors would have run.
BlockCache& cache() {
  static BlockCache* instance = new BlockCache();
  return *instance;
}

void delete_block(void* base) { cache().give_back(base); }

class PooledCPUAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    if (n < static_cast<size_t>(kMinPooledBytes) || !cache().enabled()) {
      return c10::GetDefaultCPUAllocator()->allocate(n);
    }
    const size_t bytes = (n + kHeader + kPage - 1) / kPage * kPage;
    void* base = cache().take(bytes);
    return {static_cast<char*>(base) + kHeader, base, &delete_block, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
};

c10::Allocator* pooled_allocator() {
  static PooledCPUAllocator instance;
  return &instance;
}

}  // namespace

at::Tensor pooled_empty_like(const at::Tensor& like) {
  return at::detail::empty_strided_generic(
      like.sizes(), like.strides(), pooled_allocator(), c10::DispatchKeySet(c10::DispatchKey::CPU),
      like.scalar_type());
}

at::Tensor empty_like_output(const at::Tensor& like) {
  if (like.device().is_cpu() && like.layout() == at::kStrided && like.is_non_overlapping_and_dense()) {
    return pooled_empty_like(like);
  }
  return at::empty_like(like);
}

PoolStats pool_stats() { return cache().stats(); }
void pool_release() { cache().release(); }
void pool_set_limit(int64_t bytes) { cache().set_limit(bytes); }

}  // namespace cpu
}  // namespace ops
}  // namespace hwnas
