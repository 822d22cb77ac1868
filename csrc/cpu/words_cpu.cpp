// C++ CPU kernels of whole-word and span masking: rows in parallel (at::parallel_for), each row
// sequentially in O(L) plus the sort of its tiles, the per-element rules from the shared headers.
#include <algorithm>
#include <cstdint>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_binding.h"
#include "cpu_draws.h"
#include "fastmask/masking.h"
#include "fastmask/words.h"
#include "words_binding.h"

namespace fastmask {
namespace {

// A row's words and what was decided for them, in buffers reused across the rows of a thread.
// Words are numbered from 1 here, so that 0 stands for "not maskable" without a branch.
struct RowWords {
  std::vector<uint32_t> word;          // per position: its word + 1, 0 if not maskable
  std::vector<int64_t> tokens_before;  // per word w (0 <= w <= W): maskable tokens before it, n at W
  std::vector<uint8_t> taken;          // per word + 1: the word is masked (taken[0] = 0)
  std::vector<uint32_t> action;        // per word + 1: r1 of its tile's draw (per-span actions)
  std::vector<uint32_t> r3, span;      // per index j < W: r3 >> 8 of its draw, then the span length l_j
  std::vector<uint32_t> tile_start;    // per tile j (0 <= j <= J): its first word, W at J
  std::vector<uint64_t> tile_key;      // per tile: tile_rank_key
  std::vector<uint64_t> keys;          // the tiles of one key range, sorted
  int64_t words = 0;

  explicit RowWords(int64_t length)
      : word(length), tokens_before(length + 1), taken(length + 1), action(length + 1), r3(length), span(length),
        tile_start(length + 1), tile_key(length) {}

  // The words of a row (reference.word_index). tokens_before[w + 1] is rewritten after every
  // position of word w, so it ends as the count before the next word's head.
  void index(const bool* __restrict maskable, const bool* __restrict word_start, int64_t length) {
    int64_t w = 0;  // the current word + 1
    int64_t count = 0;
    bool previous = false;
    tokens_before[0] = 0;
    for (int64_t i = 0; i < length; ++i) {
      const bool m = maskable[i];
      w += word_head(m, word_start[i], previous);
      count += m;
      word[i] = m ? static_cast<uint32_t>(w) : 0;
      tokens_before[w] = count;
      previous = m;
    }
    words = w;
    taken[0] = 0;
  }
};

// row_draws (cpu_draws.h) plus r3 >> 8, which span lengths need, in one vectorised pass.
FASTMASK_CPU_CLONES void fill_span_draws(uint64_t seed, uint32_t epoch, uint64_t row_id, int64_t length,
                                         uint32_t* __restrict r0, uint32_t* __restrict r1, uint32_t* __restrict r2,
                                         uint32_t* __restrict r3) {
  for (int64_t i = 0; i < length; ++i) {
    const Draw d = token_draw(seed, epoch, row_id, static_cast<uint32_t>(i));
    r0[i] = d.r0;
    r1[i] = d.r1;
    r2[i] = d.r2;
    r3[i] = d.r3 >> 8;
  }
}

void span_row_draws(const MaskArgs& args, int64_t row_id, int64_t length, RowDraws* draws, RowWords* row) {
  draws->r0.resize(length);
  draws->r1.resize(length);
  draws->r2.resize(length);
  fill_span_draws(args.seed, args.epoch, static_cast<uint64_t>(row_id), length, draws->r0.data(), draws->r1.data(),
                  draws->r2.data(), row->r3.data());
}

// span[j] = span_length of index j for j < count (the tiles start before W, so j < W), a threshold at a
// time so that the loop vectorises.
FASTMASK_CPU_CLONES void fill_span_lengths(const uint32_t* __restrict u, const SpanLengths& lengths, int64_t count,
                                           uint32_t* __restrict span) {
  for (int64_t j = 0; j < count; ++j) span[j] = 1;
  for (int32_t t = 0; t < lengths.count; ++t) {
    const uint32_t threshold = lengths.thresholds[t];
    for (int64_t j = 0; j < count; ++j) span[j] += u[j] >= threshold;
  }
}

// Walks `keys` (sorted) on from the running total: finds the first tile whose tokens take the total
// past the budget (its key, and the budget left before it), or adds them all.
bool find_crossing(const std::vector<uint64_t>& keys, const int64_t* tokens_before, const uint32_t* tile_start,
                   int64_t budget, int64_t* total, uint64_t* crossing_key, int64_t* remaining) {
  for (const uint64_t key : keys) {
    const uint32_t j = static_cast<uint32_t>(key);
    const int64_t size = tokens_before[tile_start[j + 1]] - tokens_before[tile_start[j]];
    if (*total + size > budget) {
      *crossing_key = key;
      *remaining = budget - *total;
      return true;
    }
    *total += size;
  }
  return false;
}

// Span tiles under the exact budget (reference.span_tiles): sets taken (and action when per_span)
// for every word. Tile j's length is span[j] (1 when there are no thresholds), its key from r0.
void take_spans(RowWords* row, const RowDraws& draws, const MaskArgs& args, const SpanLengths& lengths,
                bool per_span) {
  const int64_t words = row->words;
  if (lengths.count > 0) fill_span_lengths(row->r3.data(), lengths, words, row->span.data());
  int64_t tiles = 0;
  for (int64_t start = 0; start < words; ++tiles) {  // the real tiles: those starting before W
    row->tile_start[tiles] = static_cast<uint32_t>(start);
    start += lengths.count > 0 ? row->span[tiles] : 1;
  }
  row->tile_start[tiles] = static_cast<uint32_t>(words);
  const int64_t* tokens_before = row->tokens_before.data();
  const uint32_t* tile_start = row->tile_start.data();
  const int64_t n = tokens_before[words];
  const int64_t budget = exact_count(n, args);
  for (int64_t j = 0; j < tiles; ++j) {
    const bool oversized = tokens_before[tile_start[j + 1]] - tokens_before[tile_start[j]] > budget;
    row->tile_key[j] = tile_rank_key(draws[j], oversized, static_cast<uint32_t>(j));
  }
  // Only the ranking up to the crossing tile matters, so the tiles are sorted one range of rank
  // keys at a time: first the smallest keys of the tiles that fit (uniform, so about 2k + 16 of
  // the row's n tokens), then the rest of those, then the oversized tiles.
  const int64_t expected = 2 * budget + 16;
  const uint64_t first_range =
      expected >= n ? kOversizedTile : (static_cast<uint64_t>(expected) << 31) / static_cast<uint64_t>(n);
  const uint64_t ranges[] = {0, first_range, kOversizedTile, uint64_t{1} << 32};
  uint64_t crossing_key = kNoCrossingKey;
  int64_t remaining = 0;
  int64_t total = 0;
  for (int r = 0; r < 3; ++r) {
    row->keys.clear();
    for (int64_t j = 0; j < tiles; ++j) {
      const uint64_t rank = row->tile_key[j] >> 32;
      if (rank >= ranges[r] && rank < ranges[r + 1]) row->keys.push_back(row->tile_key[j]);
    }
    std::sort(row->keys.begin(), row->keys.end());
    if (find_crossing(row->keys, tokens_before, tile_start, budget, &total, &crossing_key, &remaining)) break;
  }
  for (int64_t j = 0; j < tiles; ++j) {
    const int64_t first = tokens_before[tile_start[j]];
    for (uint32_t w = tile_start[j]; w < tile_start[j + 1]; ++w) {
      row->taken[w + 1] = tile_word_taken(row->tile_key[j], crossing_key, tokens_before[w + 1] - first, remaining);
      if (per_span) row->action[w + 1] = draws.r1[j];
    }
  }
}

// Bernoulli whole words: word w is chosen by index w's draw.
void take_words(RowWords* row, const RowDraws& draws, const MaskArgs& args) {
  for (int64_t w = 0; w < row->words; ++w) row->taken[w + 1] = bernoulli_selected(draws[w], args);
}

// Writes a row: a token of a taken word takes its corrupted id (the action r1 of its word's tile
// when per_span, else its own), the others keep theirs.
template <typename IdT>
FASTMASK_CPU_CLONES void write_word_row(const IdT* __restrict ids, const uint32_t* __restrict word,
                                        const uint8_t* __restrict taken, const uint32_t* __restrict action,
                                        const RowDraws& draws, const MaskArgs& args, bool per_span,
                                        IdT* __restrict out_ids, int64_t* __restrict labels, int64_t length) {
  const MaskArgs a = args;  // a local copy: stores through out_ids cannot alias it
  const uint32_t* __restrict r1 = draws.r1.data();
  const uint32_t* __restrict r2 = draws.r2.data();
  for (int64_t i = 0; i < length; ++i) {
    const int64_t id = static_cast<int64_t>(ids[i]);
    const bool chosen = taken[word[i]] != 0;
    const int64_t corrupted = corrupted_id(id, Draw{0, per_span ? action[word[i]] : r1[i], r2[i], 0}, a);
    out_ids[i] = static_cast<IdT>(chosen ? corrupted : id);
    labels[i] = chosen ? id : kIgnoreIndex;
  }
}

// Both ops, row by row: exact = span tiles under the budget (one-word tiles for whole words),
// else Bernoulli whole words.
template <typename IdT>
void words_kernel(const IdT* ids, const bool* maskable, const bool* word_start, const int64_t* row_ids, IdT* out_ids,
                  int64_t* labels, int64_t rows, int64_t length, const MaskArgs& args, bool exact,
                  const SpanLengths& lengths, bool per_span) {
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    RowDraws draws;
    RowWords row(length);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t off = b * length;
      if (lengths.count > 0) {
        span_row_draws(args, row_ids[b], length, &draws, &row);
      } else {
        row_draws(args, row_ids[b], length, &draws);
      }
      row.index(maskable + off, word_start + off, length);
      if (exact) {
        take_spans(&row, draws, args, lengths, per_span);
      } else {
        take_words(&row, draws, args);
      }
      write_word_row<IdT>(ids + off, row.word.data(), row.taken.data(), row.action.data(), draws, args, per_span,
                          out_ids + off, labels + off, length);
    }
  });
}

// The kernels above, as the binding templates of words_binding.h call them.
struct CpuWords : CpuDevice {
  template <typename IdT>
  static void whole_word_mask(const IdT* ids, const bool* maskable, const bool* word_start, const int64_t* row_ids,
                              IdT* out_ids, int64_t* labels, int64_t rows, int64_t length, const MaskArgs& args,
                              bool exact) {
    words_kernel(ids, maskable, word_start, row_ids, out_ids, labels, rows, length, args, exact, SpanLengths{0, {}},
                 false);
  }
  template <typename IdT>
  static void span_mask(const IdT* ids, const bool* maskable, const bool* word_start, const int64_t* row_ids,
                        IdT* out_ids, int64_t* labels, int64_t rows, int64_t length, const MaskArgs& args,
                        const SpanLengths& lengths, bool per_span) {
    words_kernel(ids, maskable, word_start, row_ids, out_ids, labels, rows, length, args, true, lengths, per_span);
  }
};

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CPU, m) {
  using Backend = fastmask::CpuWords;
  m.impl("whole_word_mask_cpp", &fastmask::whole_word_mask_binding<Backend>);
  m.impl("span_mask_cpp", &fastmask::span_mask_binding<Backend>);
}
