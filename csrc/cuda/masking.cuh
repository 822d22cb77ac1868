// CUDA kernels of fastmask's masking ops and their torch-free host launchers.
// Only the CUDA runtime, CUB and the fastmask headers are used, so `nvcc -c` checks this file on
// machines whose torch has no CUDA. The executable specification is fastmask/reference.py.
// All arrays are contiguous row-major; launchers return the launch's cudaError_t.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include <cub/block/block_exchange.cuh>
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "fastmask/masking.h"
#include "fastmask/philox.h"
#include "fastmask/words.h"

namespace fastmask {

namespace kernels {

constexpr int kElementwiseThreads = 256;
constexpr int64_t kMaxElementwiseBlocks = 1 << 16;  // grid-stride loops cover the rest
constexpr int kScanThreads = 256;
constexpr int64_t kMaxRowBlocks = 0x7fffffff;  // gridDim.x limit; row loops cover the rest

// Torch bools are bytes; reading them as uint8 keeps a stray non-0/1 byte well defined.
template <typename T>
__device__ __forceinline__ bool is_nonzero(const T* p, int64_t i) {
  return p[i] != T(0);
}
__device__ __forceinline__ bool is_nonzero(const bool* p, int64_t i) {
  return reinterpret_cast<const uint8_t*>(p)[i] != 0;
}

// Only r1 and r2 feed corrupted_id; the ranked kernels keep just those two words.
__device__ __forceinline__ int64_t corrupt_from_words(int64_t id, uint32_t r1, uint32_t r2,
                                                      const MaskArgs& args) {
  const Draw d{0u, r1, r2, 0u};
  return corrupted_id(id, d, args);
}

template <typename IdT, typename AttnT>
__global__ void __launch_bounds__(kElementwiseThreads)
    maskable_mask_kernel(const IdT* __restrict__ ids, const AttnT* __restrict__ attention_mask,
                         const int64_t* __restrict__ special_ids, int64_t num_special,
                         bool* __restrict__ out, int64_t total) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t id = static_cast<int64_t>(ids[idx]);  // compared in int64, as the reference does
    bool ok = attention_mask == nullptr || is_nonzero(attention_mask, idx);
    for (int64_t j = 0; ok && j < num_special; ++j) {
      if (special_ids[j] == id) ok = false;
    }
    out[idx] = ok;
  }
}

template <typename IdT>
__global__ void __launch_bounds__(kElementwiseThreads)
    bernoulli_mask_kernel(const IdT* __restrict__ ids, const bool* __restrict__ maskable,
                          const int64_t* __restrict__ row_ids, IdT* __restrict__ out_ids,
                          int64_t* __restrict__ labels, int64_t total, int64_t length,
                          MaskArgs args) {
  read_device_args(&args);
  // 32-bit division is much cheaper than the emulated 64-bit one; the branch is uniform.
  const bool small = total <= static_cast<int64_t>(UINT32_MAX);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const IdT raw = ids[idx];
    IdT out = raw;
    int64_t label = kIgnoreIndex;
    if (is_nonzero(maskable, idx)) {
      const int64_t row =
          small ? static_cast<int64_t>(static_cast<uint32_t>(idx) / static_cast<uint32_t>(length))
                : idx / length;
      const uint32_t pos = static_cast<uint32_t>(idx - row * length);
      const Draw d = token_draw(args.seed, args.epoch, static_cast<uint64_t>(row_ids[row]), pos);
      if (bernoulli_selected(d, args)) {
        out = static_cast<IdT>(corrupted_id(static_cast<int64_t>(raw), d, args));
        label = static_cast<int64_t>(raw);
      }
    }
    out_ids[idx] = out;
    labels[idx] = label;
  }
}

// Per-row ranking shared by exact-count masking and the random fully-explored partition.
// Keys go in striped (item i of thread t is position i * kThreads + t), are exchanged to a blocked
// arrangement so that input order is position order, and are radix-sorted with the position as
// value. CUB's block radix sort is stable, so equal keys keep position order: the sort realises
// the composite key (rank_key, position). Afterwards rank[p] is the rank of position p.
template <int kThreads, int kItems>
struct RowRanker {
  static constexpr int kCapacity = kThreads * kItems;
  static_assert(kCapacity <= 65536, "ranks are stored as uint16");

  using Exchange = cub::BlockExchange<uint32_t, kThreads, kItems>;
  using Sort = cub::BlockRadixSort<uint32_t, kThreads, kItems, uint32_t>;

  union TempStorage {
    typename Exchange::TempStorage exchange;
    typename Sort::TempStorage sort;
    uint16_t rank[kCapacity];
  };

  // Every thread of the block must call this; the storage must be free on entry. On return
  // pos[i] is the position of rank threadIdx.x * kItems + i (a blocked arrangement of the sorted
  // order); the storage is still being read by other threads: barrier before reusing it.
  __device__ __forceinline__ static void sort_positions(TempStorage& s, const uint32_t (&striped_keys)[kItems],
                                                        uint32_t (&pos)[kItems]) {
    uint32_t keys[kItems];
    Exchange(s.exchange).StripedToBlocked(striped_keys, keys);
    __syncthreads();  // the sort reuses the exchange's shared memory
#pragma unroll
    for (int i = 0; i < kItems; ++i) pos[i] = threadIdx.x * kItems + i;
    Sort(s.sort).Sort(keys, pos, 0, 32);
  }

  // Every thread of the block must call this; the storage must be free on entry. On return
  // (after a barrier) s.rank[p] holds the rank of position p for every p < kCapacity.
  __device__ __forceinline__ static void rank(TempStorage& s, const uint32_t (&striped_keys)[kItems]) {
    uint32_t pos[kItems];
    sort_positions(s, striped_keys, pos);
    __syncthreads();  // rank[] reuses the sort's shared memory
    // Blocked output: item i of thread t has rank t * kItems + i.
#pragma unroll
    for (int i = 0; i < kItems; ++i) s.rank[pos[i]] = static_cast<uint16_t>(threadIdx.x * kItems + i);
    __syncthreads();
  }
};

// One block per row (row loop for huge batches). kExplore = false: exact-count masking of
// (rows, length); kExplore = true: random fully-explored partition into num_segments views of
// (num_segments, rows, length). Needs length <= kThreads * kItems.
template <typename IdT, int kThreads, int kItems, bool kExplore>
__global__ void __launch_bounds__(kThreads)
    ranked_mask_kernel(const IdT* __restrict__ ids, const bool* __restrict__ maskable,
                       const int64_t* __restrict__ row_ids, IdT* __restrict__ out_ids,
                       int64_t* __restrict__ labels, int64_t rows, int64_t length,
                       int64_t num_segments, MaskArgs args) {
  read_device_args(&args);
  static_assert(kItems <= 32, "maskable flags are packed in one uint32");
  using Ranker = RowRanker<kThreads, kItems>;
  using Reduce = cub::BlockReduce<int, kThreads>;
  __shared__ typename Ranker::TempStorage rank_storage;
  __shared__ typename Reduce::TempStorage reduce_storage;
  __shared__ int row_count;

  const int tid = static_cast<int>(threadIdx.x);
  const int len = static_cast<int>(length);  // <= kCapacity, checked by the launcher
  const int64_t plane = rows * length;
  // rank % num_segments in 32 bits: ranks are < 65536, so a larger K leaves them unchanged.
  const uint32_t seg_mod =
      num_segments < 65536 ? static_cast<uint32_t>(num_segments) : 65536u;

  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * length;
    const uint64_t row_id = static_cast<uint64_t>(row_ids[row]);

    // Phase 1 (striped, coalesced): one Philox draw per maskable token; keep r1, r2 for phase 3.
    uint32_t keys[kItems];
    uint32_t r1[kItems];
    uint32_t r2[kItems];
    uint32_t flags = 0;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int p = i * kThreads + tid;
      keys[i] = kUnrankedKey;  // padding positions (p >= len) also sort after every maskable one
      r1[i] = 0u;
      r2[i] = 0u;
      if (p < len && is_nonzero(maskable, base + p)) {
        const Draw d = token_draw(args.seed, args.epoch, row_id, static_cast<uint32_t>(p));
        keys[i] = rank_key(d, true);
        r1[i] = d.r1;
        r2[i] = d.r2;
        flags |= 1u << i;
      }
    }
    if constexpr (!kExplore) {
      const int n = Reduce(reduce_storage).Sum(__popc(flags));
      if (tid == 0) row_count = n;  // published by the barriers inside rank()
    }

    // Phase 2: ranks of every position.
    Ranker::rank(rank_storage, keys);

    // Phase 3 (striped, coalesced): outputs.
    if constexpr (!kExplore) {
      const int64_t k = exact_count(static_cast<int64_t>(row_count), args);
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const int p = i * kThreads + tid;
        if (p < len) {
          const IdT raw = ids[base + p];
          IdT out = raw;
          int64_t label = kIgnoreIndex;
          // Maskable positions hold ranks 0..n-1, so rank < k picks the k first of them.
          if (((flags >> i) & 1u) && static_cast<int64_t>(rank_storage.rank[p]) < k) {
            out = static_cast<IdT>(corrupt_from_words(static_cast<int64_t>(raw), r1[i], r2[i], args));
            label = static_cast<int64_t>(raw);
          }
          out_ids[base + p] = out;
          labels[base + p] = label;
        }
      }
    } else {
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const int p = i * kThreads + tid;
        if (p < len) {
          const IdT raw = ids[base + p];
          IdT replaced = raw;
          int64_t seg = -1;  // non-maskable: in no view
          if ((flags >> i) & 1u) {
            seg = static_cast<int64_t>(static_cast<uint32_t>(rank_storage.rank[p]) % seg_mod);
            replaced =
                static_cast<IdT>(corrupt_from_words(static_cast<int64_t>(raw), r1[i], r2[i], args));
          }
          IdT* out = out_ids + base + p;
          int64_t* lab = labels + base + p;
          for (int64_t v = 0; v < num_segments; ++v, out += plane, lab += plane) {
            const bool chosen = v == seg;
            *out = chosen ? replaced : raw;
            *lab = chosen ? static_cast<int64_t>(raw) : kIgnoreIndex;
          }
        }
      }
    }
    __syncthreads();  // rank_storage, reduce_storage and row_count are reused by the next row
  }
}

// Whether position p of a row (at base) is a unit of the fully-explored partition: a maskable
// token, or with word_start a word's head (word_head of fastmask/words.h).
__device__ __forceinline__ bool partition_unit(const bool* maskable, const bool* word_start, int64_t base,
                                               int64_t p) {
  const bool m = is_nonzero(maskable, base + p);
  if (word_start == nullptr) return m;
  return word_head(m, is_nonzero(word_start, base + p), p > 0 && is_nonzero(maskable, base + p - 1));
}

// Contiguous fully-explored partition: segment = (j * K) / n with j the index of a position's unit
// (the position itself, or with word_start its word) among the row's n units. No sort, so any
// length works: one block per row walks the row in tiles of kScanThreads positions with a
// block-wide inclusive scan of the units carrying j across tiles (a maskable position's unit is
// the last one at or before it: a row's first maskable position is a unit).
template <typename IdT>
__global__ void __launch_bounds__(kScanThreads)
    contiguous_explore_kernel(const IdT* __restrict__ ids, const bool* __restrict__ maskable,
                              const bool* __restrict__ word_start, const int64_t* __restrict__ row_ids,
                              IdT* __restrict__ out_ids, int64_t* __restrict__ labels, int64_t rows,
                              int64_t length, int64_t num_segments, MaskArgs args) {
  read_device_args(&args);
  using Reduce = cub::BlockReduce<int64_t, kScanThreads>;
  using Scan = cub::BlockScan<int, kScanThreads>;
  __shared__ union {
    typename Reduce::TempStorage reduce;
    typename Scan::TempStorage scan;
  } storage;
  __shared__ int64_t row_count;

  const int tid = static_cast<int>(threadIdx.x);
  const int64_t plane = rows * length;

  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * length;
    const uint64_t row_id = static_cast<uint64_t>(row_ids[row]);

    int64_t count = 0;
    for (int64_t p = tid; p < length; p += kScanThreads) count += partition_unit(maskable, word_start, base, p) ? 1 : 0;
    const int64_t total = Reduce(storage.reduce).Sum(count);
    if (tid == 0) row_count = total;
    __syncthreads();  // publishes row_count; the scan reuses the reduce's shared memory
    const int64_t n = row_count;

    int64_t offset = 0;  // units in earlier tiles
    for (int64_t start = 0; start < length; start += kScanThreads) {
      const int64_t p = start + tid;
      const bool in_row = p < length;
      const bool m = in_row && is_nonzero(maskable, base + p);
      const bool unit = in_row && partition_unit(maskable, word_start, base, p);
      int units_through = 0;  // this tile's units up to and including p
      int tile_count = 0;
      Scan(storage.scan).InclusiveSum(unit ? 1 : 0, units_through, tile_count);
      if (in_row) {
        const IdT raw = ids[base + p];
        IdT replaced = raw;
        int64_t seg = -1;  // non-maskable: in no view
        if (m) {
          seg = contiguous_segment(offset + units_through - 1, n, num_segments);
          const Draw d = token_draw(args.seed, args.epoch, row_id, static_cast<uint32_t>(p));
          replaced = static_cast<IdT>(corrupted_id(static_cast<int64_t>(raw), d, args));
        }
        IdT* out = out_ids + base + p;
        int64_t* lab = labels + base + p;
        for (int64_t v = 0; v < num_segments; ++v, out += plane, lab += plane) {
          const bool chosen = v == seg;
          *out = chosen ? replaced : raw;
          *lab = chosen ? static_cast<int64_t>(raw) : kIgnoreIndex;
        }
      }
      offset += tile_count;
      // Reuse of the scan storage (next tile) or of the reduce storage and row_count (next row).
      __syncthreads();
    }
  }
}

// Random fully-explored partition of a row's words (reference.fully_explored_mask with
// word_start): one block per row (row loop for huge batches), length <= kThreads * kItems.
// (1) striped flags (bit 0 maskable, bit 1 word head), exchanged to blocked (item i of thread t is
//     position t * kItems + i) for the scan numbering the words: W words, word w of each token;
// (2) the RowRanker ranks indices 0..W-1 by the draws at those indices (striped, as its input);
// (3) each token's segment, its word's rank mod K (blocked), exchanged back to striped for the
//     outputs (coalesced), where the token's own draw gives its 80/10/10 replacement.
template <typename IdT, int kThreads, int kItems>
__global__ void __launch_bounds__(kThreads)
    word_explore_kernel(const IdT* __restrict__ ids, const bool* __restrict__ maskable,
                        const bool* __restrict__ word_start, const int64_t* __restrict__ row_ids,
                        IdT* __restrict__ out_ids, int64_t* __restrict__ labels, int64_t rows, int64_t length,
                        int64_t num_segments, MaskArgs args) {
  read_device_args(&args);
  using Ranker = RowRanker<kThreads, kItems>;
  using FlagExchange = cub::BlockExchange<uint8_t, kThreads, kItems>;
  using SegmentExchange = cub::BlockExchange<uint16_t, kThreads, kItems>;
  using Scan = cub::BlockScan<int, kThreads>;
  constexpr uint16_t kNoSegment = 0xFFFFu;  // not maskable; segments are ranks mod K < kCapacity
  static_assert(Ranker::kCapacity < kNoSegment, "segments are stored as uint16");
  // One buffer, reused step by step; barriers separate the steps.
  __shared__ union {
    typename FlagExchange::TempStorage flags;        // (1)
    typename Ranker::TempStorage rank;               // (2)-(3)
    typename SegmentExchange::TempStorage segments;  // (3)
  } storage;
  __shared__ typename Scan::TempStorage scan_storage;

  const int tid = static_cast<int>(threadIdx.x);
  const int len = static_cast<int>(length);  // <= kCapacity, checked by the launcher
  const int64_t plane = rows * length;
  // rank % num_segments in 32 bits: ranks are < 65536, so a larger K leaves them unchanged.
  const uint32_t seg_mod = num_segments < 65536 ? static_cast<uint32_t>(num_segments) : 65536u;

  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * length;
    const uint64_t row_id = static_cast<uint64_t>(row_ids[row]);

    // (1)
    uint8_t flags[kItems];
    {
      uint8_t striped[kItems];
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const int p = i * kThreads + tid;
        const bool m = p < len && is_nonzero(maskable, base + p);
        const bool head = m && word_head(true, is_nonzero(word_start, base + p),
                                         p > 0 && is_nonzero(maskable, base + p - 1));
        striped[i] = static_cast<uint8_t>((m ? 1u : 0u) | (head ? 2u : 0u));
      }
      FlagExchange(storage.flags).StripedToBlocked(striped, flags);
    }
    int heads[kItems];
#pragma unroll
    for (int i = 0; i < kItems; ++i) heads[i] = flags[i] >> 1;
    int heads_through[kItems];  // heads up to and including each position: its word + 1
    int words = 0;
    Scan(scan_storage).InclusiveSum(heads, heads_through, words);
    __syncthreads();  // the ranker reuses the exchange's shared memory

    // (2) Index q = i * kThreads + t; indices past the words sort after every word.
    uint32_t keys[kItems];
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int q = i * kThreads + tid;
      keys[i] = q < words ? rank_key(token_draw(args.seed, args.epoch, row_id, static_cast<uint32_t>(q)), true)
                          : kUnrankedKey;
    }
    Ranker::rank(storage.rank, keys);

    // (3)
    uint16_t segment[kItems];
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      segment[i] = kNoSegment;
      if (flags[i] & 1u) {
        segment[i] = static_cast<uint16_t>(static_cast<uint32_t>(storage.rank.rank[heads_through[i] - 1]) % seg_mod);
      }
    }
    __syncthreads();  // the exchange reuses the ranks' shared memory
    uint16_t striped_segment[kItems];
    SegmentExchange(storage.segments).BlockedToStriped(segment, striped_segment);
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int p = i * kThreads + tid;
      if (p < len) {
        const IdT raw = ids[base + p];
        IdT replaced = raw;
        const int64_t seg = striped_segment[i] == kNoSegment ? -1 : static_cast<int64_t>(striped_segment[i]);
        if (seg >= 0) {
          const Draw d = token_draw(args.seed, args.epoch, row_id, static_cast<uint32_t>(p));
          replaced = static_cast<IdT>(corrupted_id(static_cast<int64_t>(raw), d, args));
        }
        IdT* out = out_ids + base + p;
        int64_t* lab = labels + base + p;
        for (int64_t v = 0; v < num_segments; ++v, out += plane, lab += plane) {
          const bool chosen = v == seg;
          *out = chosen ? replaced : raw;
          *lab = chosen ? static_cast<int64_t>(raw) : kIgnoreIndex;
        }
      }
    }
    __syncthreads();  // the shared storage is reused by the next row
  }
}

inline unsigned int elementwise_blocks(int64_t total) {
  int64_t blocks = (total + kElementwiseThreads - 1) / kElementwiseThreads;
  if (blocks > kMaxElementwiseBlocks) blocks = kMaxElementwiseBlocks;
  return static_cast<unsigned int>(blocks);
}

inline unsigned int row_blocks(int64_t rows) {
  return static_cast<unsigned int>(rows < kMaxRowBlocks ? rows : kMaxRowBlocks);
}

template <typename IdT, int kThreads, int kItems, bool kExplore>
cudaError_t launch_ranked_tile(const IdT* ids, const bool* maskable, const int64_t* row_ids,
                               IdT* out_ids, int64_t* labels, int64_t rows, int64_t length,
                               int64_t num_segments, const MaskArgs& args, cudaStream_t stream) {
  ranked_mask_kernel<IdT, kThreads, kItems, kExplore><<<row_blocks(rows), kThreads, 0, stream>>>(
      ids, maskable, row_ids, out_ids, labels, rows, length, num_segments, args);
  return cudaGetLastError();
}

// Smallest block shape that covers the row; shared memory stays under 48 KiB.
template <typename IdT, bool kExplore>
cudaError_t launch_ranked(const IdT* ids, const bool* maskable, const int64_t* row_ids, IdT* out_ids,
                          int64_t* labels, int64_t rows, int64_t length, int64_t num_segments,
                          const MaskArgs& args, cudaStream_t stream) {
#define FASTMASK_RANKED_TILE(THREADS, ITEMS)                                                   \
  return launch_ranked_tile<IdT, THREADS, ITEMS, kExplore>(ids, maskable, row_ids, out_ids, labels, \
                                                           rows, length, num_segments, args, stream)
  if (length <= 256) FASTMASK_RANKED_TILE(128, 2);
  if (length <= 512) FASTMASK_RANKED_TILE(256, 2);
  if (length <= 1024) FASTMASK_RANKED_TILE(256, 4);
  if (length <= 2048) FASTMASK_RANKED_TILE(256, 8);
  if (length <= 4096) FASTMASK_RANKED_TILE(256, 16);
  if (length <= kMaxRankedLength) FASTMASK_RANKED_TILE(256, 32);
#undef FASTMASK_RANKED_TILE
  return cudaErrorInvalidValue;
}

template <typename IdT, int kThreads, int kItems>
cudaError_t launch_word_explore_tile(const IdT* ids, const bool* maskable, const bool* word_start,
                                     const int64_t* row_ids, IdT* out_ids, int64_t* labels, int64_t rows,
                                     int64_t length, int64_t num_segments, const MaskArgs& args,
                                     cudaStream_t stream) {
  word_explore_kernel<IdT, kThreads, kItems><<<row_blocks(rows), kThreads, 0, stream>>>(
      ids, maskable, word_start, row_ids, out_ids, labels, rows, length, num_segments, args);
  return cudaGetLastError();
}

// launch_ranked's block shapes, for the random partition of words.
template <typename IdT>
cudaError_t launch_word_explore(const IdT* ids, const bool* maskable, const bool* word_start, const int64_t* row_ids,
                                IdT* out_ids, int64_t* labels, int64_t rows, int64_t length, int64_t num_segments,
                                const MaskArgs& args, cudaStream_t stream) {
#define FASTMASK_WORD_TILE(THREADS, ITEMS)                                                                    \
  return launch_word_explore_tile<IdT, THREADS, ITEMS>(ids, maskable, word_start, row_ids, out_ids, labels, rows, \
                                                       length, num_segments, args, stream)
  if (length <= 256) FASTMASK_WORD_TILE(128, 2);
  if (length <= 512) FASTMASK_WORD_TILE(256, 2);
  if (length <= 1024) FASTMASK_WORD_TILE(256, 4);
  if (length <= 2048) FASTMASK_WORD_TILE(256, 8);
  if (length <= 4096) FASTMASK_WORD_TILE(256, 16);
  if (length <= kMaxRankedLength) FASTMASK_WORD_TILE(256, 32);
#undef FASTMASK_WORD_TILE
  return cudaErrorInvalidValue;
}

}  // namespace kernels

// out = attended (if attention_mask is given) and not a special id. Shapes (rows, length).
template <typename IdT, typename AttnT>
cudaError_t launch_maskable_mask(const IdT* ids, const AttnT* attention_mask,
                                 const int64_t* special_ids, int64_t num_special, bool* out,
                                 int64_t rows, int64_t length, cudaStream_t stream) {
  if (rows < 0 || length < 0 || num_special < 0) return cudaErrorInvalidValue;
  const int64_t total = rows * length;
  if (total == 0) return cudaSuccess;
  kernels::maskable_mask_kernel<IdT, AttnT>
      <<<kernels::elementwise_blocks(total), kernels::kElementwiseThreads, 0, stream>>>(
          ids, attention_mask, special_ids, num_special, out, total);
  return cudaGetLastError();
}

// Standard MLM masking of (rows, length): Bernoulli per token, or an exact count per row
// (exact requires length <= kMaxRankedLength, else cudaErrorInvalidValue).
template <typename IdT>
cudaError_t launch_mask_tokens(const IdT* ids, const bool* maskable, const int64_t* row_ids,
                               IdT* out_ids, int64_t* labels, int64_t rows, int64_t length,
                               const MaskArgs& args, bool exact, cudaStream_t stream) {
  if (rows < 0 || length < 0) return cudaErrorInvalidValue;
  if (exact && length > kMaxRankedLength) return cudaErrorInvalidValue;
  if (rows == 0 || length == 0) return cudaSuccess;
  if (exact) {
    return kernels::launch_ranked<IdT, false>(ids, maskable, row_ids, out_ids, labels, rows,
                                              length, 1, args, stream);
  }
  const int64_t total = rows * length;
  kernels::bernoulli_mask_kernel<IdT>
      <<<kernels::elementwise_blocks(total), kernels::kElementwiseThreads, 0, stream>>>(
          ids, maskable, row_ids, out_ids, labels, total, length, args);
  return cudaGetLastError();
}

// K = num_segments views (K, rows, length); view k masks exactly segment k of every row. The
// units partitioned are the maskable tokens, or with word_start (nullptr: none) the words. The
// random partition requires length <= kMaxRankedLength (else cudaErrorInvalidValue); the
// contiguous one takes any length.
template <typename IdT>
cudaError_t launch_fully_explored_mask(const IdT* ids, const bool* maskable, const bool* word_start,
                                       const int64_t* row_ids, IdT* out_ids, int64_t* labels, int64_t rows,
                                       int64_t length, int64_t num_segments, bool contiguous, const MaskArgs& args,
                                       cudaStream_t stream) {
  if (rows < 0 || length < 0 || num_segments < 1) return cudaErrorInvalidValue;
  if (!contiguous && length > kMaxRankedLength) return cudaErrorInvalidValue;
  if (rows == 0 || length == 0) return cudaSuccess;
  if (!contiguous && word_start != nullptr) {
    return kernels::launch_word_explore<IdT>(ids, maskable, word_start, row_ids, out_ids, labels, rows, length,
                                             num_segments, args, stream);
  }
  if (!contiguous) {
    return kernels::launch_ranked<IdT, true>(ids, maskable, row_ids, out_ids, labels, rows, length,
                                             num_segments, args, stream);
  }
  kernels::contiguous_explore_kernel<IdT>
      <<<kernels::row_blocks(rows), kernels::kScanThreads, 0, stream>>>(
          ids, maskable, word_start, row_ids, out_ids, labels, rows, length, num_segments, args);
  return cudaGetLastError();
}

}  // namespace fastmask
