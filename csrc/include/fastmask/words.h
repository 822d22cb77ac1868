// Per-element decisions of whole-word and span masking, shared by the CPU and CUDA kernels
// (torch-free). The executable specification is fastmask/reference.py ("Whole-word and span
// masking"): words, span tiles, the budget and its crossing tile.
#pragma once

#include <cstdint>

#include "fastmask/masking.h"

namespace fastmask {

// The longest span, in words: span_mask takes at most kMaxSpanWords - 1 length thresholds.
constexpr int kMaxSpanWords = 64;

// A tile's ranking class bit, above r0 >> 1: it holds more tokens than the row's budget, so it
// ranks after every tile that fits (reference.OVERSIZED_TILE).
constexpr uint32_t kOversizedTile = 1u << 31;

// The crossing key when no tile crosses the budget: every real tile is taken whole.
constexpr uint64_t kNoCrossingKey = ~uint64_t{0};

// span_mask's length distribution: cumulative thresholds (multiples of 2^-24, non-decreasing),
// by value so a kernel can take it as a launch parameter. count = 0: every tile is one word.
struct SpanLengths {
  int32_t count;
  uint32_t thresholds[kMaxSpanWords - 1];
};

// A word begins at a maskable position that is flagged, or follows a position that is not
// maskable (or the row's start): words never cross a special or padding token.
FASTMASK_HD bool word_head(bool maskable, bool word_start, bool previous_maskable) {
  return maskable & (word_start | !previous_maskable);
}

// l_j = 1 + #{t in thresholds : (r3_j >> 8) >= t}, in words.
FASTMASK_HD uint32_t span_length(uint32_t r3, const SpanLengths& lengths) {
  const uint32_t u = r3 >> 8;
  uint32_t length = 1;
  for (int32_t t = 0; t < lengths.count; ++t) length += u >= lengths.thresholds[t];
  return length;
}

// Ranking key of tile j (d: index j's draw) and j packed so that plain unsigned order is the
// reference's (class, r0 >> 1, j) order. Only real tiles need one: the others hold no tokens.
FASTMASK_HD uint64_t tile_rank_key(const Draw& d, bool oversized, uint32_t tile) {
  const uint32_t key = (oversized ? kOversizedTile : 0u) | (d.r0 >> 1);
  return (static_cast<uint64_t>(key) << 32) | tile;
}

// Whether a word of tile `key` is taken: tiles ranked before the crossing one are taken whole,
// the crossing tile through its words that fit in the budget left before it. `upto` is the
// tokens from the tile's first word through this one.
FASTMASK_HD bool tile_word_taken(uint64_t key, uint64_t crossing_key, int64_t upto, int64_t remaining) {
  return key < crossing_key || (key == crossing_key && upto <= remaining);
}

}  // namespace fastmask
