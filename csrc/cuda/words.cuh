// CUDA kernels of whole-word and span masking and their torch-free host launchers.
// Only the CUDA runtime, CUB and the fastmask headers are used, so `nvcc -c` checks this file on
// machines whose torch has no CUDA. The executable specification is fastmask/reference.py
// ("Whole-word and span masking"); the per-element rules are fastmask/words.h's, shared with the
// CPU kernels. All arrays are contiguous row-major (rows, length); launchers return the cudaError_t.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include <cub/block/block_exchange.cuh>
#include <cub/block/block_scan.cuh>

#include "fastmask/masking.h"
#include "fastmask/philox.h"
#include "fastmask/words.h"
#include "masking.cuh"

namespace fastmask {
namespace kernels {

// Bernoulli whole words: word w is chosen by index w's draw. No sort, so any length works: one
// block per row walks the row in tiles of kScanThreads positions, a block-wide inclusive scan of
// the word heads numbering the words, the count carried across tiles.
template <typename IdT>
__global__ void __launch_bounds__(kScanThreads)
    word_select_kernel(const IdT* __restrict__ ids, const bool* __restrict__ maskable,
                       const bool* __restrict__ word_start, const int64_t* __restrict__ row_ids,
                       IdT* __restrict__ out_ids, int64_t* __restrict__ labels, int64_t rows,
                       int64_t length, MaskArgs args) {
  read_device_args(&args);
  using Scan = cub::BlockScan<int, kScanThreads>;
  __shared__ typename Scan::TempStorage scan_storage;

  const int tid = static_cast<int>(threadIdx.x);

  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * length;
    const uint64_t row_id = static_cast<uint64_t>(row_ids[row]);

    int64_t words_before = 0;  // words headed in earlier tiles
    for (int64_t start = 0; start < length; start += kScanThreads) {
      const int64_t p = start + tid;
      const bool in_row = p < length;
      const bool m = in_row && is_nonzero(maskable, base + p);
      const bool head = m && word_head(true, is_nonzero(word_start, base + p),
                                       p > 0 && is_nonzero(maskable, base + p - 1));
      int heads_through = 0;  // this tile's heads up to and including p
      int tile_heads = 0;
      Scan(scan_storage).InclusiveSum(head ? 1 : 0, heads_through, tile_heads);
      if (in_row) {
        const IdT raw = ids[base + p];
        IdT out = raw;
        int64_t label = kIgnoreIndex;
        // A row's first maskable position is a head: a maskable p has a word >= 0.
        const uint32_t word = static_cast<uint32_t>(words_before + heads_through - 1);
        if (m && bernoulli_selected(token_draw(args.seed, args.epoch, row_id, word), args)) {
          const Draw d = token_draw(args.seed, args.epoch, row_id, static_cast<uint32_t>(p));
          out = static_cast<IdT>(corrupted_id(static_cast<int64_t>(raw), d, args));
          label = static_cast<int64_t>(raw);
        }
        out_ids[base + p] = out;
        labels[base + p] = label;
      }
      words_before += tile_heads;
      __syncthreads();  // the scan storage is reused by the next tile
    }
  }
}

// Span tiles under the exact budget (reference.span_tiles): one block per row (row loop for huge
// batches), length <= kThreads * kItems. Positions and tiles each take the arrangement their step
// needs: positions are read and written striped (coalesced) and exchanged to blocked for the
// scans in position order; tiles are scanned blocked (their starts) and ranked striped (the
// RowRanker's input). Steps:
// (1) word heads; one block scan gives each position its word and the maskable tokens before it,
//     from which the heads scatter tokens_before[w] (n at W) to shared memory;
// (2) tile lengths (r3 of index j) and their scan: tile_start[j] = min(b_j, W), so a tile's words
//     are [tile_start[j], tile_start[j + 1]) and unreal tiles are empty;
// (3) each token's tile (binary search of its word in the increasing starts) and the tokens from
//     its tile's first word through its own (`upto`); each tile's size and ranking key;
// (4) the RowRanker's sort of the keys (tiles j in (key, j) order), the sizes in rank order and
//     their scan: ranks whose running total stays within the budget are taken whole, the first
//     one past it is the crossing tile with the budget left before it;
// (5) each token's decision, exchanged back to striped for the outputs (the Philox draws of
//     the chosen tokens, and of their tiles for per-span actions, are recomputed there).
// Shared tables hold uint16: every count and index is at most the capacity.
template <typename IdT, int kThreads, int kItems>
__global__ void __launch_bounds__(kThreads)
    span_tiles_kernel(const IdT* __restrict__ ids, const bool* __restrict__ maskable,
                      const bool* __restrict__ word_start, const int64_t* __restrict__ row_ids,
                      IdT* __restrict__ out_ids, int64_t* __restrict__ labels, int64_t rows,
                      int64_t length, MaskArgs args, SpanLengths lengths, bool per_span) {
  read_device_args(&args);
  constexpr int kCapacity = kThreads * kItems;
  // Word and tile indices below 2^15 and counts up to 2^15 pack in the uint32 and uint16 values below.
  static_assert(kCapacity <= 32768, "tile indices and token counts are packed in 16 bits");
  constexpr uint32_t kNotMaskable = ~0u;
  using Ranker = RowRanker<kThreads, kItems>;
  using FlagExchange = cub::BlockExchange<uint8_t, kThreads, kItems>;
  using DecisionExchange = cub::BlockExchange<uint16_t, kThreads, kItems>;
  using Scan = cub::BlockScan<uint32_t, kThreads>;
  // One buffer, reused step by step; barriers separate the steps.
  __shared__ union {
    typename FlagExchange::TempStorage flags;  // (1)
    struct {
      uint16_t tokens_before[kCapacity + 1];
      uint16_t tile_start[kCapacity + 1];
    } tables;  // (1)-(3)
    typename Ranker::TempStorage rank;  // (4)
    struct {
      uint16_t size[kCapacity];  // by tile
      uint8_t whole[kCapacity];  // by tile: taken whole
    } tiles;  // (4)-(5)
    typename DecisionExchange::TempStorage decisions;  // (5)
  } storage;
  __shared__ typename Scan::TempStorage word_scan;
  __shared__ typename Scan::TempStorage start_scan;
  __shared__ typename Scan::TempStorage total_scan;
  __shared__ int crossing_tile;  // -1: no tile crosses the budget
  __shared__ int crossing_remaining;

  const int tid = static_cast<int>(threadIdx.x);
  const int len = static_cast<int>(length);  // <= kCapacity, checked by the launcher

  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * length;
    const uint64_t row_id = static_cast<uint64_t>(row_ids[row]);

    // (1) Striped flags (bit 0 maskable, bit 1 head), exchanged to blocked: item i of thread t is
    // position t * kItems + i. One scan counts heads (low 16 bits) and maskable tokens (high).
    uint32_t counts[kItems];
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
      uint8_t blocked[kItems];
      FlagExchange(storage.flags).StripedToBlocked(striped, blocked);
#pragma unroll
      for (int i = 0; i < kItems; ++i) counts[i] = (blocked[i] >> 1) | ((blocked[i] & 1u) << 16);
    }
    uint32_t before[kItems];  // exclusive: heads (low 16 bits) and maskable tokens (high) before
    uint32_t row_counts;
    Scan(word_scan).ExclusiveSum(counts, before, row_counts);
    const int words = static_cast<int>(row_counts & 0xFFFFu);
    const int n = static_cast<int>(row_counts >> 16);
    uint32_t word[kItems];  // blocked: the word of a maskable position, kNotMaskable elsewhere
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      // A row's first maskable position is a head, so a maskable one's word is >= 0.
      word[i] = (counts[i] >> 16) != 0u ? (before[i] & 0xFFFFu) + (counts[i] & 0xFFFFu) - 1u : kNotMaskable;
    }
    __syncthreads();  // the tables reuse the exchange's shared memory
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      if ((counts[i] & 0xFFFFu) != 0u) storage.tables.tokens_before[word[i]] = static_cast<uint16_t>(before[i] >> 16);
    }
    if (tid == 0) {
      storage.tables.tokens_before[words] = static_cast<uint16_t>(n);
      storage.tables.tile_start[0] = 0;
    }

    // (2) Tile lengths, blocked (item i of thread t is tile t * kItems + i); ends b_j + l_j by scan.
    {
      uint32_t span[kItems];
      uint32_t end[kItems];
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const int j = tid * kItems + i;
        span[i] = 0u;  // no tile j >= len
        if (j < len) {
          span[i] = lengths.count == 0
                        ? 1u
                        : span_length(token_draw(args.seed, args.epoch, row_id, static_cast<uint32_t>(j)).r3, lengths);
        }
      }
      Scan(start_scan).InclusiveSum(span, end);  // at most kMaxSpanWords * kCapacity: no overflow
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const int j = tid * kItems + i;
        if (j < len) {
          storage.tables.tile_start[j + 1] = static_cast<uint16_t>(end[i] < static_cast<uint32_t>(words) ? end[i] : words);
        }
      }
    }
    __syncthreads();  // the tables are complete

    // (3) Each token's tile and `upto`, packed (tile << 16 | upto), blocked. The tile of word w is
    // the last j with tile_start[j] <= w; tile_start[w + 1] >= min(w + 1, W) > w bounds the search.
    const uint16_t* tokens_before = storage.tables.tokens_before;
    const uint16_t* tile_start = storage.tables.tile_start;
    uint32_t tile_upto[kItems];
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      tile_upto[i] = kNotMaskable;
      if (word[i] != kNotMaskable) {
        const uint32_t w = word[i];
        uint32_t lo = 1;  // the first j in [1, w + 1] with tile_start[j] > w
        uint32_t hi = w + 1;
        while (lo < hi) {
          const uint32_t mid = (lo + hi) >> 1;
          if (tile_start[mid] > w) {
            hi = mid;
          } else {
            lo = mid + 1;
          }
        }
        const uint32_t tile = lo - 1;
        tile_upto[i] = (tile << 16) | static_cast<uint32_t>(tokens_before[w + 1] - tokens_before[tile_start[tile]]);
      }
    }
    // Sizes and keys, striped (item i of thread t is tile i * kThreads + t). Slots past the row
    // hold no tile: empty, ranked last (a real tile of the same key keeps its place, j < len).
    const int64_t budget = exact_count(static_cast<int64_t>(n), args);
    uint32_t size[kItems];
    uint32_t keys[kItems];
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int j = i * kThreads + tid;
      size[i] = 0u;
      keys[i] = ~0u;
      if (j < len) {
        size[i] = static_cast<uint32_t>(tokens_before[tile_start[j + 1]] - tokens_before[tile_start[j]]);
        const Draw d = token_draw(args.seed, args.epoch, row_id, static_cast<uint32_t>(j));
        // The key half of the packed key: the sort is stable, so j breaks the ties.
        keys[i] = static_cast<uint32_t>(
            tile_rank_key(d, static_cast<int64_t>(size[i]) > budget, static_cast<uint32_t>(j)) >> 32);
      }
    }
    __syncthreads();  // the sort reuses the tables' shared memory

    // (4) Ranks: thread t holds the tiles of ranks t * kItems + i, in blocked order as the scan wants.
    uint32_t pos[kItems];
    Ranker::sort_positions(storage.rank, keys, pos);
    __syncthreads();  // the sizes reuse the sort's shared memory
#pragma unroll
    for (int i = 0; i < kItems; ++i) storage.tiles.size[i * kThreads + tid] = static_cast<uint16_t>(size[i]);
    if (tid == 0) crossing_tile = -1;
    __syncthreads();
    {
      uint32_t ranked[kItems];
      uint32_t total[kItems];  // tokens of the tiles ranked up to and including each
#pragma unroll
      for (int i = 0; i < kItems; ++i) ranked[i] = storage.tiles.size[pos[i]];
      Scan(total_scan).InclusiveSum(ranked, total);
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const bool whole = static_cast<int64_t>(total[i]) <= budget;
        storage.tiles.whole[pos[i]] = whole ? 1 : 0;
        // Totals never decrease, so exactly one rank (of a non-empty tile) passes the budget first.
        const int64_t total_before = static_cast<int64_t>(total[i] - ranked[i]);
        if (!whole && total_before <= budget) {
          crossing_tile = static_cast<int>(pos[i]);
          crossing_remaining = static_cast<int>(budget - total_before);
        }
      }
    }
    __syncthreads();

    // (5) Decisions (blocked): tile + 1 where the token is taken, else 0.
    uint16_t decision[kItems];
    {
      const int cross = crossing_tile;
      const int remaining = crossing_remaining;
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        decision[i] = 0;
        if (tile_upto[i] != kNotMaskable) {
          const uint32_t tile = tile_upto[i] >> 16;
          const int upto = static_cast<int>(tile_upto[i] & 0xFFFFu);
          if (storage.tiles.whole[tile] != 0 || (static_cast<int>(tile) == cross && upto <= remaining)) {
            decision[i] = static_cast<uint16_t>(tile + 1);
          }
        }
      }
    }
    __syncthreads();  // the exchange reuses the tiles' shared memory
    uint16_t chosen[kItems];
    DecisionExchange(storage.decisions).BlockedToStriped(decision, chosen);
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int p = i * kThreads + tid;
      if (p < len) {
        const IdT raw = ids[base + p];
        IdT out = raw;
        int64_t label = kIgnoreIndex;
        if (chosen[i] != 0) {
          const Draw d = token_draw(args.seed, args.epoch, row_id, static_cast<uint32_t>(p));
          const uint32_t action =
              per_span ? token_draw(args.seed, args.epoch, row_id, static_cast<uint32_t>(chosen[i] - 1)).r1 : d.r1;
          out = static_cast<IdT>(corrupt_from_words(static_cast<int64_t>(raw), action, d.r2, args));
          label = static_cast<int64_t>(raw);
        }
        out_ids[base + p] = out;
        labels[base + p] = label;
      }
    }
    __syncthreads();  // the shared storage and the crossing tile are reused by the next row
  }
}

template <typename IdT, int kThreads, int kItems>
cudaError_t launch_span_tiles_shaped(const IdT* ids, const bool* maskable, const bool* word_start,
                                     const int64_t* row_ids, IdT* out_ids, int64_t* labels, int64_t rows,
                                     int64_t length, const MaskArgs& args, const SpanLengths& lengths,
                                     bool per_span, cudaStream_t stream) {
  span_tiles_kernel<IdT, kThreads, kItems><<<row_blocks(rows), kThreads, 0, stream>>>(
      ids, maskable, word_start, row_ids, out_ids, labels, rows, length, args, lengths, per_span);
  return cudaGetLastError();
}

// The ranked kernels' block shapes (launch_ranked's): the smallest that covers the row.
template <typename IdT>
cudaError_t launch_span_tiles(const IdT* ids, const bool* maskable, const bool* word_start,
                              const int64_t* row_ids, IdT* out_ids, int64_t* labels, int64_t rows,
                              int64_t length, const MaskArgs& args, const SpanLengths& lengths,
                              bool per_span, cudaStream_t stream) {
#define FASTMASK_SPAN_TILE(THREADS, ITEMS)                                                         \
  return launch_span_tiles_shaped<IdT, THREADS, ITEMS>(ids, maskable, word_start, row_ids, out_ids, \
                                                       labels, rows, length, args, lengths, per_span, \
                                                       stream)
  if (length <= 256) FASTMASK_SPAN_TILE(128, 2);
  if (length <= 512) FASTMASK_SPAN_TILE(256, 2);
  if (length <= 1024) FASTMASK_SPAN_TILE(256, 4);
  if (length <= 2048) FASTMASK_SPAN_TILE(256, 8);
  if (length <= 4096) FASTMASK_SPAN_TILE(256, 16);
  if (length <= kMaxRankedLength) FASTMASK_SPAN_TILE(256, 32);
#undef FASTMASK_SPAN_TILE
  return cudaErrorInvalidValue;
}

}  // namespace kernels

// Whole-word masking of (rows, length): Bernoulli words (any length), or exact = one-word tiles
// under the exact budget (requires length <= kMaxRankedLength, else cudaErrorInvalidValue).
template <typename IdT>
cudaError_t launch_whole_word_mask(const IdT* ids, const bool* maskable, const bool* word_start,
                                   const int64_t* row_ids, IdT* out_ids, int64_t* labels, int64_t rows,
                                   int64_t length, const MaskArgs& args, bool exact, cudaStream_t stream) {
  if (rows < 0 || length < 0) return cudaErrorInvalidValue;
  if (exact && length > kMaxRankedLength) return cudaErrorInvalidValue;
  if (rows == 0 || length == 0) return cudaSuccess;
  if (exact) {
    return kernels::launch_span_tiles<IdT>(ids, maskable, word_start, row_ids, out_ids, labels, rows, length,
                                           args, SpanLengths{0, {}}, /*per_span=*/false, stream);
  }
  kernels::word_select_kernel<IdT><<<kernels::row_blocks(rows), kernels::kScanThreads, 0, stream>>>(
      ids, maskable, word_start, row_ids, out_ids, labels, rows, length, args);
  return cudaGetLastError();
}

// Span masking of (rows, length): tiles of whole words with lengths from `lengths` (count in
// [0, kMaxSpanWords), else cudaErrorInvalidValue) under the exact budget; per_span: a span's
// 80/10/10 action is r1 of its tile's draw. Requires length <= kMaxRankedLength (else
// cudaErrorInvalidValue).
template <typename IdT>
cudaError_t launch_span_mask(const IdT* ids, const bool* maskable, const bool* word_start, const int64_t* row_ids,
                             IdT* out_ids, int64_t* labels, int64_t rows, int64_t length, const MaskArgs& args,
                             const SpanLengths& lengths, bool per_span, cudaStream_t stream) {
  if (rows < 0 || length < 0 || length > kMaxRankedLength) return cudaErrorInvalidValue;
  if (lengths.count < 0 || lengths.count >= kMaxSpanWords) return cudaErrorInvalidValue;
  if (rows == 0 || length == 0) return cudaSuccess;
  return kernels::launch_span_tiles<IdT>(ids, maskable, word_start, row_ids, out_ids, labels, rows, length, args,
                                         lengths, per_span, stream);
}

}  // namespace fastmask
