// Philox4x32-10 counter-based RNG and fastmask's per-token draw, shared by the CPU and CUDA
// kernels. Torch-free on purpose: nvcc compiles this on machines whose torch has no CUDA.
// The executable specification is fastmask/reference.py (token_randoms).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FASTMASK_HD __host__ __device__ __forceinline__
#else
#define FASTMASK_HD inline
#endif

namespace fastmask {

struct Draw {
  uint32_t r0, r1, r2, r3;
};

FASTMASK_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
#if defined(__CUDA_ARCH__)
  *hi = __umulhi(a, b);
  *lo = a * b;
#else
  const uint64_t product = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(product >> 32);
  *lo = static_cast<uint32_t>(product);
#endif
}

FASTMASK_HD Draw philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                               uint32_t k1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(0xD2511F53u, c0, &hi0, &lo0);
    mulhilo32(0xCD9E8D57u, c2, &hi1, &lo1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Draw{c0, c1, c2, c3};
}

// One draw per token, keyed by (seed, epoch, row id, position).
FASTMASK_HD Draw token_draw(uint64_t seed, uint32_t epoch, uint64_t row_id, uint32_t position) {
  return philox4x32_10(position, static_cast<uint32_t>(row_id), static_cast<uint32_t>(row_id >> 32),
                       epoch, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

}  // namespace fastmask
