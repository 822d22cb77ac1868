// Per-token masking decisions shared by the CPU and CUDA kernels (torch-free).
// The executable specification is fastmask/reference.py.
#pragma once

#include <cstdint>

#include "fastmask/philox.h"

namespace fastmask {

constexpr int kProbBits = 24;  // per-token probabilities arrive quantised to multiples of 2^-24
constexpr int64_t kIgnoreIndex = -100;
constexpr uint32_t kUnrankedKey = 1u << 31;  // above every maskable ranking key (r0 >> 1)
// Longest row the CUDA kernels rank in one thread block (exact count, random fully-explored
// partition, top-k proposal sampling). fastmask._C exports it as CUDA_MAX_RANKED_LENGTH.
constexpr int64_t kMaxRankedLength = 8192;

// Arguments every masking kernel shares. Thresholds are probabilities times 2^24; the exact count
// uses the masking probability as the exact fraction count_num / count_den (0 <= num <= den < 2^31).
struct MaskArgs {
  uint64_t seed;
  uint32_t epoch;
  // When not null, the kernel reads the seed / epoch here (0-dim int64 tensors on its device)
  // instead of the values above: a captured graph or compiled step can advance them in place.
  const int64_t* seed_ptr;
  const int64_t* epoch_ptr;
  // When not null, the masking rate (select_threshold, count_num, count_den) is read here (an int64
  // (3,) tensor on the kernel's device): a rate schedule changes it in place, nothing recompiled.
  const int64_t* rate_ptr;
  uint32_t select_threshold;
  int64_t count_num;
  int64_t count_den;
  uint32_t mask_threshold;
  uint32_t random_threshold;
  int64_t mask_token_id;
  int64_t vocab_size;
};

// Settles the Philox key of a kernel: call once at its start, before any token_draw.
FASTMASK_HD void read_device_args(MaskArgs* a) {
  if (a->seed_ptr != nullptr) a->seed = static_cast<uint64_t>(*a->seed_ptr);
  if (a->epoch_ptr != nullptr) a->epoch = static_cast<uint32_t>(*a->epoch_ptr);  // mod 2^32
  a->seed_ptr = nullptr;
  a->epoch_ptr = nullptr;
}

// The masking rate is read where it is used, not settled at the kernel's start: settled, the
// count fraction would sit in registers for the whole kernel (the ranked kernels spilled). Values
// read from memory are clamped into the ranges the bindings check for values given on the host
// (the device cannot be asked without a sync): a bad write masks oddly, never divides by zero.
FASTMASK_HD uint32_t select_threshold_of(const MaskArgs& a) {
  if (a.rate_ptr == nullptr) return a.select_threshold;
  constexpr int64_t one = int64_t{1} << kProbBits;
  const int64_t t = a.rate_ptr[0];
  return static_cast<uint32_t>(t < 0 ? 0 : (t > one ? one : t));
}

FASTMASK_HD bool bernoulli_selected(const Draw& d, const MaskArgs& a) {
  return (d.r0 >> 8) < select_threshold_of(a);
}

// Ranking key of a position; ties are broken by position (ascending).
FASTMASK_HD uint32_t rank_key(const Draw& d, bool maskable) {
  return maskable ? (d.r0 >> 1) : kUnrankedKey;
}

// Key and position packed so that plain unsigned order is (key, position) order.
FASTMASK_HD uint64_t packed_rank_key(const Draw& d, bool maskable, uint32_t position) {
  return (static_cast<uint64_t>(rank_key(d, maskable)) << 32) | position;
}

// k = min(n, max(1, floor(p n + 1/2))) for n > 0, else 0, with p = count_num / count_den exactly:
// floor((2 num n + den) / (2 den)), in int64 without overflow for n <= 2^31.
FASTMASK_HD int64_t exact_count(int64_t n, const MaskArgs& a) {
  if (n <= 0) return 0;
  int64_t num = a.count_num;
  int64_t den = a.count_den;
  if (a.rate_ptr != nullptr) {  // clamped: see select_threshold_of
    constexpr int64_t max_den = (int64_t{1} << 31) - 1;
    den = a.rate_ptr[2] < 1 ? 1 : (a.rate_ptr[2] > max_den ? max_den : a.rate_ptr[2]);
    num = a.rate_ptr[1] < 0 ? 0 : (a.rate_ptr[1] > den ? den : a.rate_ptr[1]);
  }
  int64_t k = (2 * num * n + den) / (2 * den);
  if (k < 1) k = 1;
  return k < n ? k : n;
}

// Segment of the j-th (0-based) of n maskable positions in a contiguous K-block partition.
FASTMASK_HD int64_t contiguous_segment(int64_t j, int64_t n, int64_t num_segments) {
  return (j * num_segments) / n;
}

// The 80/10/10 rule for one chosen token: [MASK], a random id, or the original id.
// Written with selects, not branches, so the CPU loops over it vectorise.
FASTMASK_HD int64_t corrupted_id(int64_t id, const Draw& d, const MaskArgs& a) {
  const uint32_t action = d.r1 >> 8;
  const int64_t random_id =
      static_cast<int64_t>((static_cast<uint64_t>(d.r2) * static_cast<uint32_t>(a.vocab_size)) >> 32);
  const int64_t replaced = action < a.mask_threshold + a.random_threshold ? random_id : id;
  return action < a.mask_threshold ? a.mask_token_id : replaced;
}

}  // namespace fastmask
