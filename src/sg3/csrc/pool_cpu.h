// Output buffers of the CPU kernels (upfirdn2d, bias_act): large ones are recycled through a small pool.
// Copyright 2026 the sg3 authors. Apache-2.0.
//
// Why: glibc returns blocks above its mmap threshold (at most 32 MiB) to the kernel on free, so every
// fresh large output is first-touch page-faulted again; on virtual machines a fault costs microseconds per
// 4 KiB page (measured here: writing a fresh 64 MiB buffer 80 ms, the same buffer again 7 ms). Training
// repeats the same shapes every step, so a freed output of a given size is kept and handed to the next
// request of that size. Idle blocks are capped (SG3_OPS_POOL_MB, default 512 MiB; 0 disables the pool),
// outputs below 1 MiB use the default allocator, and tensors from the pool are ordinary resizable CPU
// tensors (the storage's allocator is the pool).
#pragma once

#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <pthread.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace sg3cpu {

class OutputPool final : public c10::Allocator {
 public:
  static constexpr size_t kMinBytes = size_t(1) << 20;  // smaller requests: at::empty
  static constexpr size_t kRound = size_t(1) << 16;     // block sizes are multiples of 64 KiB

  // The process-wide pool (never destroyed: tensors may outlive static destruction at exit).
  static OutputPool& get() {
    static OutputPool* pool = new OutputPool();
    return *pool;
  }

  c10::DataPtr allocate(size_t nbytes) override {
    const size_t size = (nbytes + kRound - 1) / kRound * kRound;
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = idle_.find(size);
      if (it != idle_.end() && !it->second.empty()) {
        p = it->second.back();
        it->second.pop_back();
        idle_bytes_ -= size;
      }
    }
    if (!p) p = c10::alloc_cpu(size);
    return {p, new Block{p, size}, &OutputPool::release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

  // Whether an output of nbytes goes through the pool.
  bool enabled_for(size_t nbytes) const { return cap_bytes_ > 0 && nbytes >= kMinBytes; }

 private:
  struct Block {
    void* p;
    size_t size;
  };

  OutputPool() {
    const char* env = std::getenv("SG3_OPS_POOL_MB");
    cap_bytes_ = (env && *env ? size_t(std::strtoull(env, nullptr, 10)) : size_t(512)) << 20;
    // fork() copies the mutex in whatever state it is: a child forked (e.g. a DataLoader worker) while
    // another thread of the parent held it would wait forever at its first large output. The handlers
    // take the lock around the fork, so the child starts with the pool consistent and unlocked.
    pthread_atfork([] { get().mu_.lock(); }, [] { get().mu_.unlock(); }, [] { get().mu_.unlock(); });
  }

  static void release(void* ctx) {
    auto* b = static_cast<Block*>(ctx);
    OutputPool& pool = get();
    bool keep = false;
    {
      std::lock_guard<std::mutex> lock(pool.mu_);
      if (pool.idle_bytes_ + b->size <= pool.cap_bytes_) {
        pool.idle_[b->size].push_back(b->p);
        pool.idle_bytes_ += b->size;
        keep = true;
      }
    }
    if (!keep) c10::free_cpu(b->p);
    delete b;
  }

  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> idle_;  // block size -> idle blocks
  size_t idle_bytes_ = 0;
  size_t cap_bytes_ = 0;
};

// A new contiguous CPU tensor (uninitialised) of `sizes` and `dtype`, from the pool when large.
inline at::Tensor empty_output(at::IntArrayRef sizes, at::ScalarType dtype) {
  int64_t numel = 1;
  for (const int64_t s : sizes) numel *= s;
  const size_t nbytes = size_t(numel) * at::elementSize(dtype);
  OutputPool& pool = OutputPool::get();
  if (!pool.enabled_for(nbytes)) return at::empty(sizes, at::TensorOptions().dtype(dtype));
  return at::detail::empty_generic(sizes, &pool, c10::DispatchKeySet(c10::DispatchKey::CPU), dtype, std::nullopt);
}

}  // namespace sg3cpu
