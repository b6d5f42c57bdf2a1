// The allocator libtorch's CPU tensors take in this addon: libtorch's own (64-byte-aligned blocks from glibc) with
// freed blocks of 64 KB to 32 MB kept, up to 160 MB in all, and handed to a later request of their size or up to
// half of it. Why: a training step allocates its activations in the forward and frees them in the backward;
// glibc gives those pages back (its heaps trim, its mapped blocks unmap) and the next step faults every one in
// again, zeroed by the kernel: on the AVX2-only EPYC, 3,400-5,900 page faults and 6-16 ms of system time per MiniLM
// step at one shape; with the blocks kept ~20 and ~1 ms. MRPC-like batches of varying lengths, alternating runs:
// steps 457-530 ms against 483-555, peak RSS 597-601 MB against 602-618. (PyTorch's guides suggest preloading
// jemalloc or tcmalloc for this; an addon cannot preload.)
// BERT_TRAINER_CPU_ALLOCATOR=default keeps libtorch's allocator (runtime().cpuAllocator says which runs).
#include "modeling_bert.h"
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <cstdlib>
#include <iterator>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace bert {
namespace {

constexpr size_t kMinKept = size_t{64} << 10;   // smaller blocks: glibc's bins reuse them without system calls
constexpr size_t kMaxKept = size_t{32} << 20;   // larger ones (a model's tables) go back at once
constexpr size_t kKeptBytes = size_t{160} << 20;  // at most this much kept free; past it a freed block goes back
constexpr size_t kHeader = 64;                  // the block's capacity, before its 64-byte-aligned data

class KeepingCpuAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    if (n == 0) return {nullptr, nullptr, &Release, c10::Device(c10::DeviceType::CPU)};
    void* data = n >= kMinKept && n <= kMaxKept ? Take(n) : nullptr;
    if (!data) data = Fresh(n);
    return {data, data, &Release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &Release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }

  // Take's hits and misses so far, {reused, fresh} (runtime(): test/cpu-allocator.test.ts checks a step's reuse with
  // them; page faults also count glibc's own trimming, which varies run to run).
  std::array<int64_t, 2> Counts() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {reused_, fresh_};
  }

  // Every kept block back to glibc (a session's end).
  void Drop() {
    std::vector<void*> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& [size, list] : kept_) blocks.insert(blocks.end(), list.begin(), list.end());
      kept_.clear();
      kept_bytes_ = 0;
    }
    for (void* b : blocks) std::free(b);
  }

 private:
  static size_t& CapacityOf(void* block) { return *static_cast<size_t*>(block); }

  void* Fresh(size_t n) {
    void* block = nullptr;
    if (posix_memalign(&block, kHeader, n + kHeader) != 0) {
      Drop();  // the kept blocks first, then once more
      TORCH_CHECK(posix_memalign(&block, kHeader, n + kHeader) == 0, "CPU allocator: out of memory allocating ", n, " bytes");
    }
    CapacityOf(block) = n;
    return static_cast<char*>(block) + kHeader;
  }

  // The smallest kept block of n bytes or more (up to twice n), the last one freed of its size (still in cache). On
  // a miss, kept blocks of about n bytes in all go back to glibc first (the nearest sizes below n, then the largest),
  // so that the fresh block replaces them: kept and live bytes together grow no further than they would without
  // keeping (peak RSS), however the step's sizes vary from batch to batch.
  void* Take(size_t n) {
    std::vector<void*> dropped;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = kept_.lower_bound(n);
      if (it != kept_.end() && it->first <= 2 * n) {
        void* block = it->second.back();
        it->second.pop_back();
        kept_bytes_ -= it->first;
        if (it->second.empty()) kept_.erase(it);
        ++reused_;
        return static_cast<char*>(block) + kHeader;
      }
      ++fresh_;
      size_t freed = 0;
      auto drop = [&](std::map<size_t, std::vector<void*>>::iterator at) {
        while (!at->second.empty() && freed < n) {
          dropped.push_back(at->second.back());
          at->second.pop_back();
          freed += at->first;
          kept_bytes_ -= at->first;
        }
        if (at->second.empty()) kept_.erase(at);
      };
      while (freed < n && it != kept_.begin()) drop(std::prev(it));  // `it` stays valid: only entries before it go
      while (freed < n && !kept_.empty()) drop(std::prev(kept_.end()));
    }
    for (void* b : dropped) std::free(b);
    return nullptr;
  }

  static void Release(void* data);

  std::mutex mutex_;
  std::map<size_t, std::vector<void*>> kept_;  // capacity -> blocks
  size_t kept_bytes_ = 0;
  int64_t reused_ = 0, fresh_ = 0;  // Take's hits and misses (under mutex_)
};

KeepingCpuAllocator& Instance() {
  static auto* a = new KeepingCpuAllocator();  // never destroyed: tensors may outlive static destruction
  return *a;
}

void KeepingCpuAllocator::Release(void* data) {
  if (!data) return;
  void* block = static_cast<char*>(data) - kHeader;
  const size_t size = CapacityOf(block);
  if (size >= kMinKept && size <= kMaxKept) {
    KeepingCpuAllocator& a = Instance();
    std::lock_guard<std::mutex> lock(a.mutex_);
    if (a.kept_bytes_ + size <= kKeptBytes) {
      a.kept_[size].push_back(block);
      a.kept_bytes_ += size;
      return;
    }
  }
  std::free(block);
}

bool Requested() {
  const char* v = std::getenv("BERT_TRAINER_CPU_ALLOCATOR");
  return !(v && std::string(v) == "default");
}

}  // namespace

void InstallCpuAllocator() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (Requested()) c10::SetCPUAllocator(&Instance(), /*priority=*/1);
  });
}

void DropKeptCpuBlocks() {
  if (Requested()) Instance().Drop();
}

const char* CpuAllocatorName() { return Requested() ? "keeping" : "default"; }

std::array<int64_t, 2> CpuAllocatorCounts() {
  return Requested() ? Instance().Counts() : std::array<int64_t, 2>{0, 0};
}

}  // namespace bert
