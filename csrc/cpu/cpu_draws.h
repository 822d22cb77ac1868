// A row's Philox draws for the CPU kernels (masking, proposal sampling), computed in one
// vectorised pass. Compiled for AVX-512, AVX2 and baseline x86-64 and chosen at load time:
// the draws dominate the CPU kernels' time.
#pragma once

#include <cstdint>
#include <vector>

#include "fastmask/masking.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define FASTMASK_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define FASTMASK_CPU_CLONES
#endif

namespace fastmask {

// Struct-of-arrays so the fill loop vectorises.
struct RowDraws {
  std::vector<uint32_t> r0, r1, r2;
  Draw operator[](int64_t i) const { return Draw{r0[i], r1[i], r2[i], 0}; }
};

// Fills `draws` with the draws of positions 0..length-1 of row `row_id`.
void row_draws(const MaskArgs& args, int64_t row_id, int64_t length, RowDraws* draws);

}  // namespace fastmask
