// Copyright (c) semillie-mm contributors. All rights reserved.
//
// A caching allocator for torch's large CPU tensors.
//
// torch frees a CPU tensor with free(); glibc returns every block above its
// mmap threshold (at most 32 MiB) to the kernel at once, so the next tensor
// of that size is page-faulted in again, 4 KiB at a time. A training step
// of SemiLLIENet (batch 8 x 128x128) allocates about 8 GB that way, and the
// faults took 3.2 of its 13.8 CPU seconds on the 2-core Zen-5 VM.
//
// This allocator keeps freed blocks of at least kMinCached bytes in free
// lists by size class (sizes rounded up by at most 1/8) and hands them out
// again (best fit, at most a quarter larger than the size asked for, all of
// its pages kept resident); smaller requests go to the allocator it
// replaces. The cached (free, still resident) bytes never exceed a limit: a
// block freed when the cache is full is released. The footprint (the bytes
// of every block it holds, in use or cached) stays within kSlack of the
// most it has had in use at once: a request that finds no block of its
// class first releases cached blocks of other classes as far as the fresh
// block would take the footprint past that mark; below it the fresh block
// is simply added.
//
// Until session 19 every miss released cached blocks worth its size, and a
// block up to twice the size asked for gave the pages past the request back
// with madvise. In a steady training step of batch 8 x 128x128 both made
// the same blocks fault in again: 1.1 GB of pages a step, 0.6 GB in a
// 256x256 forward (Zen 5 VM). Kept resident, blocks up to twice the size
// raised the untiled 1080p forward's peak by 1 GB; a quarter larger does
// not. Blocks are 64-byte aligned (c10::alloc_cpu). Tensors allocated
// before it was installed keep their own deleter.
#include <torch/extension.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <pthread.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <new>
#include <map>
#include <unordered_map>
#include <vector>

namespace {

constexpr size_t kMinCached = size_t(1) << 20;
// how far the footprint may exceed the most bytes ever in use at once
constexpr size_t kSlack = size_t(64) << 20;

struct Cache {
  std::mutex m;
  std::map<size_t, std::vector<void*>> free;  // class -> blocks
  std::unordered_map<void*, size_t> owned;  // every block -> its class
  size_t cached = 0, limit = 0, hits = 0, misses = 0, released = 0;
  // bytes of every owned block (in use or cached), and the most of them in
  // use (not cached) at once
  size_t footprint = 0, peak = 0;
};

// after a block was handed out: the bytes in use may have reached a new
// most (caller holds the lock)
void note_in_use(Cache& c) {
  c.peak = std::max(c.peak, c.footprint - c.cached);
}

Cache* g_cache = nullptr;
at::Allocator* g_base = nullptr;

size_t size_class(size_t n) {
  const int p = 63 - __builtin_clzll(n);
  const size_t step = size_t(1) << (p >= 3 ? p - 3 : 0);
  return (n + step - 1) / step * step;
}

// frees cached blocks (caller holds the lock) until `need` bytes are gone
// or the cache is empty; returns the blocks to free outside the lock
std::vector<void*> evict(Cache& c, size_t need) {
  std::vector<void*> out;
  size_t got = 0;
  for (auto it = c.free.begin(); it != c.free.end() && got < need;) {
    auto& v = it->second;
    while (!v.empty() && got < need) {
      void* p = v.back();
      v.pop_back();
      c.cached -= it->first;
      c.footprint -= it->first;
      got += it->first;
      c.owned.erase(p);
      out.push_back(p);
    }
    it = v.empty() ? c.free.erase(it) : std::next(it);
  }
  c.released += out.size();
  return out;
}

void release(void* p) {
  Cache& c = *g_cache;
  {
    std::lock_guard<std::mutex> lock(c.m);
    auto it = c.owned.find(p);
    if (it != c.owned.end() && c.cached + it->second <= c.limit) {
      c.free[it->second].push_back(p);
      c.cached += it->second;
      return;
    }
    if (it != c.owned.end()) {
      c.footprint -= it->second;
      c.owned.erase(it);
    }
    ++c.released;
  }
  c10::free_cpu(p);
}

struct CachingCPUAllocator final : public at::Allocator {
  at::DataPtr allocate(size_t n) override {
    if (n < kMinCached) return g_base->allocate(n);
    Cache& c = *g_cache;
    const size_t sz = size_class(n);
    void* p = nullptr;
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lock(c.m);
      // best fit: the smallest cached block of this class or larger, at
      // most a quarter larger (its pages are resident already)
      auto it = c.free.lower_bound(sz);
      if (it != c.free.end() && it->first <= sz + sz / 4) {
        p = it->second.back();
        it->second.pop_back();
        c.cached -= it->first;
        if (it->second.empty()) c.free.erase(it);
        note_in_use(c);
        ++c.hits;
      } else {
        ++c.misses;
        // past the mark only as far as the cache cannot cover
        const size_t mark = c.peak + kSlack;
        if (c.footprint + sz > mark) drop = evict(c, c.footprint + sz - mark);
      }
    }
    for (void* q : drop) c10::free_cpu(q);
    if (p == nullptr) {
      try {
        p = c10::alloc_cpu(sz);
      } catch (const c10::Error&) {
        {  // out of memory: give everything cached back and try once more
          std::lock_guard<std::mutex> lock(c.m);
          drop = evict(c, SIZE_MAX);
        }
        for (void* q : drop) c10::free_cpu(q);
        p = c10::alloc_cpu(sz);
      }
      std::lock_guard<std::mutex> lock(c.m);
      c.owned[p] = sz;
      c.footprint += sz;
      note_in_use(c);
    }
    return {p, p, &release, at::Device(at::DeviceType::CPU)};
  }
  at::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, size_t count) const override {
    default_copy_data(dest, src, count);
  }
};

CachingCPUAllocator* g_alloc = nullptr;

void after_fork_child() {
  // a data-loader worker forked while another thread held the lock must
  // not inherit it locked
  if (g_cache) new (&g_cache->m) std::mutex();
}

}  // namespace

// Installs the caching allocator as torch's CPU allocator (once; later calls
// only change the limit). Returns the limit in bytes.
int64_t cpu_cache_install(int64_t limit_bytes) {
  TORCH_CHECK(limit_bytes >= 0, "the cache limit must be >= 0");
  if (g_alloc == nullptr) {
    g_cache = new Cache();
    g_cache->limit = static_cast<size_t>(limit_bytes);
    g_base = c10::GetCPUAllocator();
    g_alloc = new CachingCPUAllocator();
    pthread_atfork(nullptr, nullptr, &after_fork_child);
    c10::SetCPUAllocator(g_alloc, /*priority=*/0);
    return limit_bytes;
  }
  std::vector<void*> drop;
  {
    std::lock_guard<std::mutex> lock(g_cache->m);
    g_cache->limit = static_cast<size_t>(limit_bytes);
    if (g_cache->cached > g_cache->limit)
      drop = evict(*g_cache, g_cache->cached - g_cache->limit);
  }
  for (void* q : drop) c10::free_cpu(q);
  return limit_bytes;
}

// {installed, active (torch's CPU allocator is this one), limit, cached
// bytes, hits, misses, released blocks, footprint bytes, the most bytes in
// use at once}
std::vector<int64_t> cpu_cache_stats() {
  if (g_cache == nullptr) return {0, 0, 0, 0, 0, 0, 0, 0, 0};
  std::lock_guard<std::mutex> lock(g_cache->m);
  return {1, c10::GetCPUAllocator() == g_alloc ? 1 : 0,
          static_cast<int64_t>(g_cache->limit),
          static_cast<int64_t>(g_cache->cached),
          static_cast<int64_t>(g_cache->hits),
          static_cast<int64_t>(g_cache->misses),
          static_cast<int64_t>(g_cache->released),
          static_cast<int64_t>(g_cache->footprint),
          static_cast<int64_t>(g_cache->peak)};
}

// Releases every cached block and lowers the mark to the blocks in use;
// returns the bytes released.
int64_t cpu_cache_empty() {
  if (g_cache == nullptr) return 0;
  std::vector<void*> drop;
  size_t bytes;
  {
    std::lock_guard<std::mutex> lock(g_cache->m);
    bytes = g_cache->cached;
    drop = evict(*g_cache, SIZE_MAX);
    g_cache->peak = g_cache->footprint;
  }
  for (void* q : drop) c10::free_cpu(q);
  return static_cast<int64_t>(bytes);
}
