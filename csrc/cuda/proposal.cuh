// CUDA kernels of MAPNet proposal sampling (proposal_mask) and their torch-free host launcher.
// The per-token float arithmetic is fastmask/proposal.h, shared with the CPU kernel, so that
// integer outputs are bit-identical to fastmask/reference.py (the executable specification).
// All arrays are contiguous row-major (rows, length); the launcher returns the cudaError_t.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "fastmask/masking.h"
#include "fastmask/philox.h"
#include "fastmask/proposal.h"
#include "masking.cuh"

namespace fastmask {
namespace kernels {

constexpr int kProposalLongRowThreads = 512;

// Exact widening of the score (torch's .to(float32)); the intrinsics also work under
// __CUDA_NO_HALF_CONVERSIONS__, which torch extension builds define.
__device__ __forceinline__ float score_value(float s) { return s; }
__device__ __forceinline__ float score_value(__half s) { return __half2float(s); }
__device__ __forceinline__ float score_value(__nv_bfloat16 s) { return __bfloat162float(s); }

// Not cub::Max, whose name and deprecation vary across CCCL versions. NaN never matters: a row
// with a non-finite score ignores its maximum.
struct MaxFloat {
  __device__ __forceinline__ float operator()(float a, float b) const { return a < b ? b : a; }
};

__device__ __forceinline__ float negative_infinity() { return bits_float(0xFF800000u); }

// The block-wide steps of a proposal row that both row kernels take. Each keeps its own shared
// storage (so consecutive steps need no barrier between them); every thread of the block must call
// each, and the caller's end-of-row barrier guards reuse of the storage. kThreads is the block size.

// The row's maximum x and maskable count n; returns true iff no thread saw a non-finite x.
template <int kThreads, typename CountT>
__device__ __forceinline__ bool row_max_and_count(float local_max, CountT local_count, int local_bad,
                                                  float* row_max, CountT* n) {
  __shared__ typename cub::BlockReduce<float, kThreads>::TempStorage max_storage;
  __shared__ typename cub::BlockReduce<CountT, kThreads>::TempStorage count_storage;
  __shared__ float row_max_shared;
  __shared__ CountT row_count_shared;
  const float block_max = cub::BlockReduce<float, kThreads>(max_storage).Reduce(local_max, MaxFloat());
  const CountT block_count = cub::BlockReduce<CountT, kThreads>(count_storage).Sum(local_count);
  if (threadIdx.x == 0) {
    row_max_shared = block_max;
    row_count_shared = block_count;
  }
  // Barrier and block-wide OR in one: also publishes row_max_shared and row_count_shared.
  const bool finite = __syncthreads_or(local_bad) == 0;
  *row_max = row_max_shared;
  *n = row_count_shared;
  return finite;
}

// The row's normaliser from the threads' fixed-point sums of softmax terms (order-free).
template <int kThreads>
__device__ __forceinline__ float row_normaliser(uint64_t local_fixed) {
  __shared__ typename cub::BlockReduce<uint64_t, kThreads>::TempStorage fixed_storage;
  __shared__ uint64_t fixed_shared;
  const uint64_t block_fixed = cub::BlockReduce<uint64_t, kThreads>(fixed_storage).Sum(local_fixed);
  if (threadIdx.x == 0) fixed_shared = block_fixed;
  __syncthreads();
  return normaliser(fixed_shared);
}

// The row's sequence weight from the threads' sums of sequence log terms.
template <int kThreads>
__device__ __forceinline__ float row_sequence_weight(float local_log) {
  __shared__ typename cub::BlockReduce<float, kThreads>::TempStorage log_storage;
  __shared__ float log_shared;
  const float block_log = cub::BlockReduce<float, kThreads>(log_storage).Sum(local_log);
  if (threadIdx.x == 0) log_shared = block_log;
  __syncthreads();
  return sequence_weight(log_shared);
}

// Top-k selection: bit i set iff item i (striped) is maskable and among the row's k smallest
// (key, position). The sort storage lives here so that Poisson kernels do not allocate it.
// Every thread must call this; the caller's end-of-row barrier guards reuse of the storage.
template <int kThreads, int kItems>
__device__ __forceinline__ uint32_t topk_chosen(const uint32_t (&keys)[kItems], uint32_t flags,
                                                int64_t k) {
  using Ranker = RowRanker<kThreads, kItems>;
  __shared__ typename Ranker::TempStorage rank_storage;
  Ranker::rank(rank_storage, keys);
  uint32_t chosen = 0;
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int p = i * kThreads + static_cast<int>(threadIdx.x);
    // Maskable keys are below kUnsampledKey, so maskable positions hold ranks 0..n-1.
    if (((flags >> i) & 1u) && static_cast<int64_t>(rank_storage.rank[p]) < k) chosen |= 1u << i;
  }
  return chosen;
}

// Systematic selection (reference.systematic_selection): bit i set iff item i (striped) is among
// the row's k chosen positions. On entry val[i] is q of item i (maskable items, flags); on return
// it is still q when sequence_weights, else pi for the chosen items. n > 0 (k > 0). The integer
// steps are fastmask/proposal.h's, which the CPU kernel runs too:
// (1) capping rounds: A and m by one block reduction, then every uncapped item with (k - m) W >= A
//     is capped; the loop ends at the first round that caps nothing (A, m are then final). W is
//     recomputed from q when needed rather than held: registers are the scarce resource here.
// (2) unless every draw is already capped (r = k - m = 0): the exact-count ranking order by the
//     RowRanker's sort, which leaves each thread the positions of kItems consecutive ranks; the
//     uncapped weights go to shared memory by position, each thread reads its ranks' weights, a
//     block scan gives the cumulative C_i, and each thread writes its ranks' decisions back by
//     position for the striped layout of the other phases.
// Every thread must call this; the caller's end-of-row barrier guards reuse of the storage.
template <int kThreads, int kItems>
__device__ __forceinline__ uint32_t systematic_chosen(float (&val)[kItems], uint32_t flags, int64_t k,
                                                      const MaskArgs& args, uint64_t row_id,
                                                      bool sequence_weights) {
  using Ranker = RowRanker<kThreads, kItems>;
  using TotalsReduce = cub::BlockReduce<uint64_t, kThreads>;
  using Scan = cub::BlockScan<uint32_t, kThreads, cub::BLOCK_SCAN_WARP_SCANS>;
  __shared__ union {
    typename Ranker::TempStorage rank;
    uint32_t by_position[Ranker::kCapacity];  // uncapped W, then the drawn flags
  } storage;
  __shared__ typename TotalsReduce::TempStorage totals_storage;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ uint64_t totals_shared;
  const int tid = static_cast<int>(threadIdx.x);

  // (1) Capping. One reduction per round carries both sums: m in bits 40 and up, A below
  // (A < 2^26 + L < 2^40, m <= L: no carry crosses, nothing overflows).
  constexpr uint64_t kTotalMask = (uint64_t{1} << 40) - 1;
  uint32_t capped = 0;  // bit i: item i is capped (a subset of flags)
  int64_t m = 0;
  int64_t total = 0;  // A
  for (;;) {
    const uint32_t open = flags & ~capped;
    uint64_t local = static_cast<uint64_t>(__popc(capped)) << 40;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      if ((open >> i) & 1u) local += static_cast<uint64_t>(systematic_weight(val[i], true));
    }
    const uint64_t totals = TotalsReduce(totals_storage).Sum(local);
    if (tid == 0) totals_shared = totals;
    __syncthreads();
    m = static_cast<int64_t>(totals_shared >> 40);
    total = static_cast<int64_t>(totals_shared & kTotalMask);
    uint32_t fresh = 0;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      if (((open >> i) & 1u) && systematic_caps(systematic_weight(val[i], true), k - m, total)) fresh |= 1u << i;
    }
    capped |= fresh;
    // Barrier and block-wide OR in one: all have read totals_shared before thread 0 rewrites it.
    if (__syncthreads_or(fresh != 0u) == 0) break;
  }
  const int64_t r = k - m;
  const int64_t divisor = total > 1 ? total : 1;
  uint32_t chosen = capped;

  // (2) The r draws (r is block-uniform, so is the branch).
  if (r > 0) {
    const int64_t offset = systematic_offset(token_draw(args.seed, args.epoch, row_id, 0u).r3, total);
    uint32_t pos[kItems];
    {
      uint32_t keys[kItems];
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        keys[i] = kUnrankedKey;  // non-maskable and padding positions rank after every maskable one
        if ((flags >> i) & 1u) {
          keys[i] = rank_key(token_draw(args.seed, args.epoch, row_id, static_cast<uint32_t>(i * kThreads + tid)),
                             true);
        }
      }
      Ranker::sort_positions(storage.rank, keys, pos);
    }
    __syncthreads();  // by_position reuses the sort's shared memory
    const uint32_t open = flags & ~capped;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {  // every slot: padding positions are among the sorted ones
      storage.by_position[i * kThreads + tid] =
          ((open >> i) & 1u) ? static_cast<uint32_t>(systematic_weight(val[i], true)) : 0u;
    }
    __syncthreads();
    uint32_t w[kItems];
    uint32_t cumulative[kItems];
#pragma unroll
    for (int i = 0; i < kItems; ++i) w[i] = storage.by_position[pos[i]];
    Scan(scan_storage).InclusiveSum(w, cumulative);  // A < 2^32: exact in uint32
#pragma unroll
    for (int i = 0; i < kItems; ++i) {  // slot pos[i] is read and written by this thread only
      storage.by_position[pos[i]] = systematic_drawn(r, static_cast<int64_t>(cumulative[i]),
                                                     static_cast<int64_t>(w[i]), offset, divisor)
                                        ? 1u
                                        : 0u;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      if (storage.by_position[i * kThreads + tid] != 0u) chosen |= 1u << i;
    }
  }

  if (!sequence_weights) {
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      if ((chosen >> i) & 1u) {
        val[i] = systematic_inclusion((capped >> i) & 1u, r, systematic_weight(val[i], true), divisor);
      }
    }
  }
  return chosen;
}

// One block per row (row loop for huge batches), length <= kThreads * kItems. Items are striped
// (item i of thread t is position i * kThreads + t): loads and stores coalesce. Each token's float
// state stays in registers across the phases: (1) x = score / temperature, row max, n,
// finiteness; (2) softmax terms and their exact fixed-point sum; (3) q, pi and the selection
// (kSampling, a reference.SAMPLING_* code: top-k by the shared RowRanker, Poisson, or systematic
// by systematic_chosen); (4) sequence log sum; (5) outputs. The Philox draw
// is not held: phase 3 computes it for the key and phase 5 again for the chosen tokens'
// replacements. Holding its words across the sort took the 512 x 16 shapes to the 128 registers a
// thread may use at 512 threads (ptxas spilled); a draw is cheap, and is a pure function of
// (seed, epoch, row id, position), so recomputing it changes no output.
template <typename IdT, typename ScoreT, int kThreads, int kItems, int kSampling>
__global__ void __launch_bounds__(kThreads)
    proposal_mask_kernel(const IdT* __restrict__ ids, const ScoreT* __restrict__ scores,
                         const bool* __restrict__ maskable, const int64_t* __restrict__ row_ids,
                         IdT* __restrict__ out_ids, int64_t* __restrict__ labels,
                         float* __restrict__ weights, int64_t rows, int64_t length, MaskArgs args,
                         float uniform_mix, float temperature, bool sequence_weights) {
  read_device_args(&args);
  static_assert(kItems <= 32, "per-item flags are packed in one uint32");

  const int tid = static_cast<int>(threadIdx.x);
  const int len = static_cast<int>(length);  // <= kThreads * kItems, checked by the launcher

  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * length;
    const uint64_t row_id = static_cast<uint64_t>(row_ids[row]);

    // Phase 1: x per maskable token.
    float val[kItems];  // x, then the softmax term, then pi (token weights) or q (sequence weights)
    uint32_t flags = 0;  // bit i: item i is maskable
    float local_max = negative_infinity();
    int local_bad = 0;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int p = i * kThreads + tid;
      val[i] = 0.0f;
      if (p < len && is_nonzero(maskable, base + p)) {
        const float x = fdiv(score_value(scores[base + p]), temperature);
        val[i] = x;
        flags |= 1u << i;
        if (is_finite_f32(x)) {
          local_max = x > local_max ? x : local_max;
        } else {
          local_bad = 1;
        }
      }
    }
    float row_max;
    int n;
    const bool finite = row_max_and_count<kThreads, int>(local_max, __popc(flags), local_bad, &row_max, &n);

    // Phase 2: softmax terms (0 in a non-finite row) and the order-free fixed-point normaliser.
    uint64_t local_fixed = 0;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      float term = 0.0f;
      if (finite && ((flags >> i) & 1u)) {
        term = proposal_term(val[i], row_max);
        local_fixed += fixed_point(term);
      }
      val[i] = term;
    }
    const float z = row_normaliser<kThreads>(local_fixed);

    // Phase 3: q, pi and the selection. n and k are block-uniform, so branches on them are too.
    const int64_t k = exact_count(static_cast<int64_t>(n), args);
    const ProposalRow prow = n > 0 ? proposal_row(finite ? uniform_mix : 1.0f, n, k) : ProposalRow{};
    uint32_t chosen = 0;  // bit i: item i is sampled
    if constexpr (kSampling == kSamplingTopK) {
      uint32_t keys[kItems];
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        keys[i] = kUnsampledKey;  // non-maskable and padding positions rank after every maskable one
        if ((flags >> i) & 1u) {
          const Draw d = token_draw(args.seed, args.epoch, row_id,
                                    static_cast<uint32_t>(i * kThreads + tid));
          const float p = fdiv(val[i], z);
          const float q = proposal_q(p, prow);
          keys[i] = proposal_rank_key(d, q);
          val[i] = sequence_weights ? q : inclusion_probability(p, prow);
        }
      }
      if (n > 0) chosen = topk_chosen<kThreads, kItems>(keys, flags, k);
    } else if constexpr (kSampling == kSamplingSystematic) {
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        if ((flags >> i) & 1u) val[i] = proposal_q(fdiv(val[i], z), prow);
      }
      if (n > 0) chosen = systematic_chosen<kThreads, kItems>(val, flags, k, args, row_id, sequence_weights);
    } else {
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        if ((flags >> i) & 1u) {
          const Draw d = token_draw(args.seed, args.epoch, row_id,
                                    static_cast<uint32_t>(i * kThreads + tid));
          const float p = fdiv(val[i], z);
          const float q = proposal_q(p, prow);
          const float pi = inclusion_probability(p, prow);
          if (poisson_selected(d, pi)) chosen |= 1u << i;
          val[i] = sequence_weights ? q : pi;
        }
      }
    }

    // Phase 4: the row's sequence weight (sequence_weights is uniform: every thread reduces).
    float row_weight = 0.0f;
    if (sequence_weights) {
      float local_log = 0.0f;
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        if ((chosen >> i) & 1u) local_log = fadd(local_log, sequence_log_term(val[i], prow));
      }
      row_weight = row_sequence_weight<kThreads>(local_log);
    }

    // Phase 5: outputs.
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int p = i * kThreads + tid;
      if (p < len) {
        const IdT raw = ids[base + p];
        IdT out = raw;
        int64_t label = kIgnoreIndex;
        float weight = 0.0f;
        if ((chosen >> i) & 1u) {
          const Draw d = token_draw(args.seed, args.epoch, row_id, static_cast<uint32_t>(p));
          out = static_cast<IdT>(corrupted_id(static_cast<int64_t>(raw), d, args));
          label = static_cast<int64_t>(raw);
          weight = sequence_weights ? row_weight : token_weight(val[i], prow);
        }
        out_ids[base + p] = out;
        labels[base + p] = label;
        weights[base + p] = weight;
      }
    }
    __syncthreads();  // the shared row values, reduction and sort storage are reused by the next row
  }
}

// Poisson sampling of rows too long for the register tiles: no sort is needed, so the block walks
// the row several times, recomputing x (and the term) instead of holding them. Pass 3 writes the
// outputs; in sequence mode it marks sampled weights with 1 and pass 4 overwrites the marks with
// the row's weight (each thread rereads only its own writes).
template <typename IdT, typename ScoreT>
__global__ void __launch_bounds__(kProposalLongRowThreads)
    proposal_poisson_long_row_kernel(const IdT* __restrict__ ids, const ScoreT* __restrict__ scores,
                                   const bool* __restrict__ maskable,
                                   const int64_t* __restrict__ row_ids, IdT* __restrict__ out_ids,
                                   int64_t* __restrict__ labels, float* __restrict__ weights,
                                   int64_t rows, int64_t length, MaskArgs args, float uniform_mix,
                                   float temperature, bool sequence_weights) {
  read_device_args(&args);
  constexpr int kThreads = kProposalLongRowThreads;

  const int64_t tid = threadIdx.x;

  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * length;
    const uint64_t row_id = static_cast<uint64_t>(row_ids[row]);

    // Pass 1: row max, n, finiteness.
    float local_max = negative_infinity();
    int64_t local_count = 0;
    int local_bad = 0;
    for (int64_t p = tid; p < length; p += kThreads) {
      if (!is_nonzero(maskable, base + p)) continue;
      const float x = fdiv(score_value(scores[base + p]), temperature);
      ++local_count;
      if (is_finite_f32(x)) {
        local_max = x > local_max ? x : local_max;
      } else {
        local_bad = 1;
      }
    }
    float row_max;
    int64_t n;
    const bool finite = row_max_and_count<kThreads, int64_t>(local_max, local_count, local_bad, &row_max, &n);

    // Pass 2: the fixed-point normaliser (a non-finite row has no terms).
    uint64_t local_fixed = 0;
    if (finite) {
      for (int64_t p = tid; p < length; p += kThreads) {
        if (!is_nonzero(maskable, base + p)) continue;
        const float x = fdiv(score_value(scores[base + p]), temperature);
        local_fixed += fixed_point(proposal_term(x, row_max));
      }
    }
    const float z = row_normaliser<kThreads>(local_fixed);

    // Pass 3: selection and outputs.
    const int64_t k = exact_count(n, args);
    const ProposalRow prow = n > 0 ? proposal_row(finite ? uniform_mix : 1.0f, n, k) : ProposalRow{};
    float local_log = 0.0f;
    for (int64_t p = tid; p < length; p += kThreads) {
      const IdT raw = ids[base + p];
      IdT out = raw;
      int64_t label = kIgnoreIndex;
      float weight = 0.0f;
      if (is_nonzero(maskable, base + p)) {
        float term = 0.0f;
        if (finite) term = proposal_term(fdiv(score_value(scores[base + p]), temperature), row_max);
        const float prob = fdiv(term, z);
        const float q = proposal_q(prob, prow);
        const float pi = inclusion_probability(prob, prow);
        const Draw d = token_draw(args.seed, args.epoch, row_id, static_cast<uint32_t>(p));
        if (poisson_selected(d, pi)) {
          out = static_cast<IdT>(corrupted_id(static_cast<int64_t>(raw), d, args));
          label = static_cast<int64_t>(raw);
          if (sequence_weights) {
            local_log = fadd(local_log, sequence_log_term(q, prow));
            weight = 1.0f;  // mark; pass 4 writes the row's weight
          } else {
            weight = token_weight(pi, prow);
          }
        }
      }
      out_ids[base + p] = out;
      labels[base + p] = label;
      weights[base + p] = weight;
    }

    // Pass 4 (sequence_weights is uniform: every thread reduces).
    if (sequence_weights) {
      const float row_weight = row_sequence_weight<kThreads>(local_log);
      for (int64_t p = tid; p < length; p += kThreads) {
        if (weights[base + p] != 0.0f) weights[base + p] = row_weight;
      }
    }
    __syncthreads();  // the shared row values and reduction storage are reused by the next row
  }
}

template <typename IdT, typename ScoreT, int kThreads, int kItems, int kSampling>
cudaError_t launch_proposal_tile(const IdT* ids, const ScoreT* scores, const bool* maskable,
                                 const int64_t* row_ids, IdT* out_ids, int64_t* labels,
                                 float* weights, int64_t rows, int64_t length, const MaskArgs& args,
                                 float uniform_mix, float temperature, bool sequence_weights,
                                 cudaStream_t stream) {
  proposal_mask_kernel<IdT, ScoreT, kThreads, kItems, kSampling>
      <<<row_blocks(rows), kThreads, 0, stream>>>(ids, scores, maskable, row_ids, out_ids, labels,
                                                   weights, rows, length, args, uniform_mix,
                                                   temperature, sequence_weights);
  return cudaGetLastError();
}

// Smallest block shape that covers the row (static shared memory stays under 48 KiB; 512-thread
// shapes keep kItems <= 16 so the per-token registers fit the 128 a thread may use). Poisson rows
// longer than kMaxRankedLength take the long-row kernel; top-k and systematic rows must fit one
// block's sort.
template <typename IdT, typename ScoreT, int kSampling>
cudaError_t launch_proposal_shaped(const IdT* ids, const ScoreT* scores, const bool* maskable,
                                   const int64_t* row_ids, IdT* out_ids, int64_t* labels,
                                   float* weights, int64_t rows, int64_t length,
                                   const MaskArgs& args, float uniform_mix, float temperature,
                                   bool sequence_weights, cudaStream_t stream) {
#define FASTMASK_PROPOSAL_TILE(THREADS, ITEMS)                                                   \
  return launch_proposal_tile<IdT, ScoreT, THREADS, ITEMS, kSampling>(                               \
      ids, scores, maskable, row_ids, out_ids, labels, weights, rows, length, args, uniform_mix, \
      temperature, sequence_weights, stream)
  if (length <= 256) FASTMASK_PROPOSAL_TILE(128, 2);
  if (length <= 512) FASTMASK_PROPOSAL_TILE(256, 2);
  if (length <= 1024) FASTMASK_PROPOSAL_TILE(256, 4);
  if (length <= 2048) FASTMASK_PROPOSAL_TILE(256, 8);
  if (length <= 4096) FASTMASK_PROPOSAL_TILE(512, 8);
  if (length <= kMaxRankedLength) FASTMASK_PROPOSAL_TILE(512, 16);
#undef FASTMASK_PROPOSAL_TILE
  if constexpr (kSampling != kSamplingPoisson) {
    return cudaErrorInvalidValue;
  } else {
    proposal_poisson_long_row_kernel<IdT, ScoreT>
        <<<row_blocks(rows), kProposalLongRowThreads, 0, stream>>>(
            ids, scores, maskable, row_ids, out_ids, labels, weights, rows, length, args,
            uniform_mix, temperature, sequence_weights);
    return cudaGetLastError();
  }
}

}  // namespace kernels

// MAPNet proposal sampling of (rows, length): ids (same type as the input), int64 labels and
// float32 weights. sampling is a reference.SAMPLING_* code (else cudaErrorInvalidValue). Top-k
// and systematic sampling require length <= kMaxRankedLength (else cudaErrorInvalidValue);
// Poisson sampling takes any length. uniform_mix and temperature are the float32 values of the
// op's arguments (checked by the binding).
template <typename IdT, typename ScoreT>
cudaError_t launch_proposal_mask(const IdT* ids, const ScoreT* scores, const bool* maskable,
                                 const int64_t* row_ids, IdT* out_ids, int64_t* labels,
                                 float* weights, int64_t rows, int64_t length, const MaskArgs& args,
                                 float uniform_mix, float temperature, int64_t sampling,
                                 bool sequence_weights, cudaStream_t stream) {
  if (rows < 0 || length < 0) return cudaErrorInvalidValue;
  if (sampling != kSamplingTopK && sampling != kSamplingPoisson && sampling != kSamplingSystematic) {
    return cudaErrorInvalidValue;
  }
  if (sampling != kSamplingPoisson && length > kMaxRankedLength) return cudaErrorInvalidValue;
  if (rows == 0 || length == 0) return cudaSuccess;
#define FASTMASK_PROPOSAL_SAMPLING(SAMPLING)                                                      \
  return kernels::launch_proposal_shaped<IdT, ScoreT, SAMPLING>(                                 \
      ids, scores, maskable, row_ids, out_ids, labels, weights, rows, length, args, uniform_mix, \
      temperature, sequence_weights, stream)
  if (sampling == kSamplingPoisson) FASTMASK_PROPOSAL_SAMPLING(kSamplingPoisson);
  if (sampling == kSamplingSystematic) FASTMASK_PROPOSAL_SAMPLING(kSamplingSystematic);
  FASTMASK_PROPOSAL_SAMPLING(kSamplingTopK);
#undef FASTMASK_PROPOSAL_SAMPLING
}

}  // namespace fastmask
