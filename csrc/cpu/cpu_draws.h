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

// Sorts packed (rank key, position) keys (packed_rank_key) whose rank keys (r0 >> 1) are uniform
// on [0, 2^31): a counting sort on the top bits puts about one key in each bucket, and an
// insertion sort finishes each bucket. Linear time; the same order as std::sort. The ranking
// order of the random fully-explored partition and of systematic proposal sampling.
void sort_random_keys(std::vector<uint64_t>* keys, std::vector<uint64_t>* scratch);

}  // namespace fastmask
