// Per-token arithmetic of MAPNet proposal sampling, shared by the CPU and CUDA kernels
// (torch-free). The executable specification is fastmask/reference.py (proposal_mask).
//
// Integer outputs must be bit-identical on every backend, so every float feeding a decision is
// float32 arithmetic with correctly rounded +, -, *, / only: on the device through the _rn
// intrinsics (no FMA contraction, no approximate division), on the host compiled with
// -ffp-contract=off. exp and log are the canonical polynomials below, not libm.
#pragma once

#include <cstdint>
#include <cstring>

#include "fastmask/masking.h"

namespace fastmask {

FASTMASK_HD float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
FASTMASK_HD float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
FASTMASK_HD float fsub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
FASTMASK_HD float fdiv(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
FASTMASK_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint32_t>(__float_as_int(x));
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
FASTMASK_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(static_cast<int>(u));
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}
FASTMASK_HD float floor_f32(float x) {
#if defined(__CUDA_ARCH__)
  return floorf(x);
#else
  return __builtin_floorf(x);
#endif
}

// proposal_mask's `sampling` codes (fastmask/reference.py: SAMPLING_*).
constexpr int64_t kSamplingTopK = 0;
constexpr int64_t kSamplingPoisson = 1;
constexpr int64_t kSamplingSystematic = 2;

constexpr float kLn2Hi = 0.693359375f;  // Cody-Waite split of ln 2
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kLog2e = 1.44269504f;
constexpr float kExpCutoff = -64.0f;
constexpr float kSqrt2 = 1.41421356f;
constexpr float kFixedOne = 1099511627776.0f;  // 2^40: fixed point of the softmax normaliser
constexpr float kInvFixedOne = 9.094947017729282e-13f;  // 2^-40

// exp for x < 88 (about 2 ulp); 0 below -64. Same operations, same order as the reference;
// selects rather than branches, so CPU loops over it vectorise.
FASTMASK_HD float canonical_exp(float x) {
  const float xc = x < kExpCutoff ? kExpCutoff : x;  // keeps the exponent bits in range
  const float k = floor_f32(fadd(fmul(xc, kLog2e), 0.5f));
  const float r = fsub(fsub(xc, fmul(k, kLn2Hi)), fmul(k, kLn2Lo));
  float p = 1.0f / 720;
  p = fadd(fmul(p, r), 1.0f / 120);
  p = fadd(fmul(p, r), 1.0f / 24);
  p = fadd(fmul(p, r), 1.0f / 6);
  p = fadd(fmul(p, r), 0.5f);
  p = fadd(fmul(p, r), 1.0f);
  p = fadd(fmul(p, r), 1.0f);
  const int exponent = static_cast<int>(k) < -126 ? -126 : static_cast<int>(k);
  const float e = fmul(p, bits_float(static_cast<uint32_t>(exponent + 127) << 23));
  return x < kExpCutoff ? 0.0f : e;
}

// log for positive normal u (about 2 ulp).
FASTMASK_HD float canonical_log(float u) {
  const uint32_t bits = float_bits(u);
  const float mantissa = bits_float((bits & 0x7FFFFF) | (127u << 23));  // in [1, 2)
  const bool big = mantissa > kSqrt2;
  const float m = big ? fmul(mantissa, 0.5f) : mantissa;
  const float ef = static_cast<float>(static_cast<int>((bits >> 23) & 0xFF) - 127 + (big ? 1 : 0));
  const float s = fdiv(fsub(m, 1.0f), fadd(m, 1.0f));
  const float s2 = fmul(s, s);
  float t = 1.0f / 9;
  t = fadd(fmul(t, s2), 1.0f / 7);
  t = fadd(fmul(t, s2), 1.0f / 5);
  t = fadd(fmul(t, s2), 1.0f / 3);
  t = fadd(fmul(t, s2), 1.0f);
  return fadd(fadd(fmul(ef, kLn2Lo), fmul(fadd(s, s), t)), fmul(ef, kLn2Hi));
}

FASTMASK_HD bool is_finite_f32(float x) { return (float_bits(x) & 0x7F800000u) != 0x7F800000u; }

// The unnormalised softmax term of one position, and its share of the exact normaliser.
FASTMASK_HD float proposal_term(float x, float row_max) { return canonical_exp(fsub(x, row_max)); }
FASTMASK_HD uint64_t fixed_point(float term) {
  return static_cast<uint64_t>(floor_f32(fmul(term, kFixedOne)));
}
FASTMASK_HD float normaliser(uint64_t fixed_sum) {
#if defined(__CUDA_ARCH__)
  const float z = fmul(__ll2float_rn(static_cast<long long>(fixed_sum)), kInvFixedOne);
#else
  const float z = fmul(static_cast<float>(static_cast<int64_t>(fixed_sum)), kInvFixedOne);
#endif
  return z < 1.0f ? 1.0f : z;
}

// Row constants of the proposal: q = one_minus_eps p + eps_over_n; pi = min(1, pi_a p + pi_b).
struct ProposalRow {
  float one_minus_eps, eps_over_n, pi_a, pi_b, k_over_n, nf;
};

// eps is the row's uniform mix (1 for a row with a non-finite score); n > 0, k its count.
FASTMASK_HD ProposalRow proposal_row(float eps, int64_t n, int64_t k) {
  const float nf = static_cast<float>(n);
  const float kf = static_cast<float>(k);
  const float one_minus_eps = fsub(1.0f, eps);
  return ProposalRow{one_minus_eps, fdiv(eps, nf), fmul(kf, one_minus_eps), fdiv(fmul(kf, eps), nf),
                     fdiv(kf, nf), nf};
}

FASTMASK_HD float proposal_q(float p, const ProposalRow& row) {
  return fadd(fmul(row.one_minus_eps, p), row.eps_over_n);
}
FASTMASK_HD float inclusion_probability(float p, const ProposalRow& row) {
  const float pi = fadd(fmul(row.pi_a, p), row.pi_b);
  return pi < 1.0f ? pi : 1.0f;
}

// Top-k: the 32-bit ranking key of a maskable position (the bits of E / q, E = -log U ~ Exp(1));
// smaller is sampled first. Non-maskable positions take kUnsampledKey.
constexpr uint32_t kUnsampledKey = 0xFFFFFFFFu;
FASTMASK_HD uint32_t proposal_rank_key(const Draw& d, float q) {
  const float u = fmul(fadd(static_cast<float>(d.r0 >> 9), 0.5f), 1.1920928955078125e-7f);  // (0, 1)
  // -log(u) > 0 for every u here, so q = 0 gives +inf (IEEE division): sampled last among the
  // maskable positions, as the reference's explicit inf. No select, so CPU loops vectorise.
  return float_bits(fdiv(-canonical_log(u), q));
}

// Poisson: included iff U < pi.
FASTMASK_HD bool poisson_selected(const Draw& d, float pi) {
  return fmul(static_cast<float>(d.r0 >> 8), 5.9604644775390625e-8f) < pi;  // U = (r0 >> 8) 2^-24
}

// Systematic sampling (reference.systematic_selection): integer weights, capping at pi = 1, and
// one stratified pass over the uncapped weights in the exact-count ranking order. Every step but
// the final pi is integer arithmetic, so no backend can round differently. Kernels hold W as
// uint32 where that helps (W <= 2^24 and the row's total A < 2^26 + L), the arithmetic here in
// int64: r * C < 2^13 * 2^27 on CUDA, and stays far from 2^63 on the CPU for any real row.

// W_i = max(1, floor(q_i 2^24)) of a maskable position (q <= 1, so W <= 2^24); 0 otherwise.
FASTMASK_HD int64_t systematic_weight(float q, bool maskable) {
  const int64_t w = static_cast<int64_t>(floor_f32(fmul(q, 16777216.0f)));
  return maskable ? (w < 1 ? 1 : w) : 0;
}

// One round of capping: an uncapped position of weight w > 0 is capped iff (k - m) w >= A, with
// m the positions capped before this round and A the uncapped total at its start. Iterated until
// a round caps nothing, this reaches the reference's fixed point (systematic_capped).
FASTMASK_HD bool systematic_caps(int64_t w, int64_t k_minus_m, int64_t uncapped_total) {
  return w > 0 && k_minus_m * w >= uncapped_total;
}

// The row's offset U = floor(u A / 2^32) in [0, A), u = the r3 word of position 0 (u < 2^32 and
// A < 2^32, so the product fits 64 bits).
FASTMASK_HD int64_t systematic_offset(uint32_t u, int64_t uncapped_total) {
  return static_cast<int64_t>((static_cast<uint64_t>(u) * static_cast<uint64_t>(uncapped_total)) >> 32);
}

// #{t >= 0 : U + t A < x}, A' = max(A, 1) the divisor.
FASTMASK_HD int64_t systematic_points_below(int64_t x, int64_t offset, int64_t divisor) {
  return x > offset ? (x - offset + divisor - 1) / divisor : 0;
}

// An uncapped position of weight w, cumulative weight c (inclusive, in ranking order), is drawn iff
// one of the r points U + t A falls in [r (c - w), r c). Capped and non-maskable positions pass w = 0.
FASTMASK_HD bool systematic_drawn(int64_t r, int64_t cumulative, int64_t w, int64_t offset, int64_t divisor) {
  return w > 0 && systematic_points_below(r * cumulative, offset, divisor) >
                      systematic_points_below(r * (cumulative - w), offset, divisor);
}

// Exact inclusion probability of a sampled position: 1 if capped, else float(r w) / float(A')
// (int64 -> float32 rounds to nearest, as torch's .to(float32)).
FASTMASK_HD float systematic_inclusion(bool capped, int64_t r, int64_t w, int64_t divisor) {
#if defined(__CUDA_ARCH__)
  const float num = __ll2float_rn(static_cast<long long>(r * w));
  const float den = __ll2float_rn(static_cast<long long>(divisor));
#else
  const float num = static_cast<float>(r * w);
  const float den = static_cast<float>(divisor);
#endif
  return capped ? 1.0f : fdiv(num, den);
}

// Token weight (k / n) / pi of a sampled position.
FASTMASK_HD float token_weight(float pi, const ProposalRow& row) { return fdiv(row.k_over_n, pi); }

// Sequence weight from the row's sum of log(n q_i) over sampled positions.
FASTMASK_HD float sequence_log_term(float q, const ProposalRow& row) { return canonical_log(fmul(row.nf, q)); }
FASTMASK_HD float sequence_weight(float log_sum) {
  float x = -log_sum;
  x = x < -1.0f ? -1.0f : (x > 1.0f ? 1.0f : x);
  const float w = canonical_exp(x);
  return w < 0.8f ? 0.8f : (w > 1.2f ? 1.2f : w);
}

}  // namespace fastmask
