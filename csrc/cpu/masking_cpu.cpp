// C++ CPU kernels of the masking ops: rows in parallel (at::parallel_for), the per-token logic
// from the shared headers so the CPU tests exercise exactly what the CUDA kernels run.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_binding.h"
#include "cpu_draws.h"
#include "fastmask/masking.h"
#include "fastmask/words.h"
#include "masking_binding.h"

namespace fastmask {
namespace {

// Packed (rank key, position) keys of a row's maskable positions: the shared ranking primitive
// of exact-count masking (k-th smallest) and the random fully-explored partition (full sort).
// The position of a key is its low 32 bits.
std::vector<uint64_t> maskable_keys(const RowDraws& draws, const bool* maskable, int64_t length) {
  std::vector<uint64_t> keys;
  keys.reserve(length);
  for (int64_t i = 0; i < length; ++i) {
    if (maskable[i]) keys.push_back(packed_rank_key(draws[i], true, static_cast<uint32_t>(i)));
  }
  return keys;
}

template <typename IdT, typename AttnT>
void maskable_kernel(const IdT* ids, const AttnT* attention, const int64_t* special,
                     int64_t num_special, bool* out, int64_t rows, int64_t length) {
  at::parallel_for(0, rows * length, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      bool maskable = attention == nullptr || attention[i] != AttnT(0);
      for (int64_t s = 0; s < num_special && maskable; ++s) maskable = ids[i] != special[s];
      out[i] = maskable;
    }
  });
}

template <typename IdT>
inline void write_token(int64_t i, bool chosen, const IdT* ids, const Draw& d, const MaskArgs& args,
                        IdT* out_ids, int64_t* labels) {
  const int64_t id = static_cast<int64_t>(ids[i]);
  const int64_t corrupted = corrupted_id(id, d, args);
  out_ids[i] = static_cast<IdT>(chosen ? corrupted : id);
  labels[i] = chosen ? id : kIgnoreIndex;
}

// Writes one row of mask_tokens from its draws. Bernoulli: chosen iff (r0 >> 8) < threshold.
// Exact count: chosen iff the packed rank key is at most `kth_key`, the k-th smallest (k > 0).
template <typename IdT, bool kExact>
FASTMASK_CPU_CLONES void write_masked_row(const IdT* __restrict ids, const bool* __restrict maskable,
                                          const RowDraws& draws, bool any, uint64_t kth_key,
                                          const MaskArgs& args, IdT* __restrict out_ids,
                                          int64_t* __restrict labels, int64_t length) {
  const MaskArgs a = args;  // a local copy: stores through out_ids cannot alias it
  for (int64_t i = 0; i < length; ++i) {
    const Draw d = draws[i];
    const bool selected = kExact ? any & (packed_rank_key(d, true, static_cast<uint32_t>(i)) <= kth_key)
                                 : bernoulli_selected(d, a);
    write_token(i, maskable[i] & selected, ids, d, a, out_ids, labels);
  }
}

template <typename IdT>
void mask_tokens_kernel(const IdT* ids, const bool* maskable, const int64_t* row_ids, IdT* out_ids,
                        int64_t* labels, int64_t rows, int64_t length, const MaskArgs& args,
                        bool exact) {
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    RowDraws draws;
    for (int64_t b = begin; b < end; ++b) {
      const int64_t off = b * length;
      row_draws(args, row_ids[b], length, &draws);
      int64_t k = 0;
      uint64_t kth_key = 0;
      if (exact) {  // the k-th smallest packed key by nth_element: O(L)
        std::vector<uint64_t> keys = maskable_keys(draws, maskable + off, length);
        k = exact_count(static_cast<int64_t>(keys.size()), args);
        if (k > 0) {
          std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end());
          kth_key = keys[k - 1];
        }
      }
      auto write = exact ? write_masked_row<IdT, true> : write_masked_row<IdT, false>;
      write(ids + off, maskable + off, draws, k > 0, kth_key, args, out_ids + off, labels + off, length);
    }
  });
}

// One view's row of fully_explored_mask: tokens of segment `view` take their corrupted id.
template <typename IdT>
FASTMASK_CPU_CLONES void write_view_row(const IdT* __restrict ids, const int64_t* __restrict segment,
                                        const int64_t* __restrict corrupted, int64_t view, IdT* __restrict out_ids,
                                        int64_t* __restrict labels, int64_t length) {
  for (int64_t i = 0; i < length; ++i) {
    const bool chosen = segment[i] == view;
    const int64_t id = static_cast<int64_t>(ids[i]);
    out_ids[i] = static_cast<IdT>(chosen ? corrupted[i] : id);
    labels[i] = chosen ? id : kIgnoreIndex;
  }
}

// The segment of each of a row's n units (its maskable tokens, or its words), by unit index:
// contiguous blocks, or the rank of the unit's key (the draw at the unit's index, as a maskable
// position's key) mod K.
void unit_segments(const RowDraws& draws, const bool* units, int64_t length, int64_t num_segments, bool contiguous,
                   std::vector<uint64_t>* scratch, std::vector<int64_t>* segment) {
  segment->assign(length, -1);  // -1: not a unit
  if (contiguous) {
    const int64_t n = std::count(units, units + length, true);
    for (int64_t i = 0, j = 0; i < length; ++i) {
      if (units[i]) (*segment)[i] = contiguous_segment(j++, n, num_segments);
    }
    return;
  }
  std::vector<uint64_t> keys = maskable_keys(draws, units, length);
  sort_random_keys(&keys, scratch);
  for (size_t r = 0; r < keys.size(); ++r) (*segment)[keys[r] & 0xFFFFFFFFu] = static_cast<int64_t>(r) % num_segments;
}

// word_start != nullptr: the units are the row's words (reference.fully_explored_mask), unit w
// at index w, and each maskable token takes its word's segment.
template <typename IdT>
void fully_explored_kernel(const IdT* ids, const bool* maskable, const int64_t* row_ids,
                           IdT* out_ids, int64_t* labels, int64_t rows, int64_t length,
                           int64_t num_segments, bool contiguous, const MaskArgs& args, const bool* word_start) {
  const int64_t view_stride = rows * length;
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    RowDraws draws;
    std::vector<uint64_t> scratch;
    std::vector<int64_t> segment;
    std::vector<int64_t> word_segment;
    std::vector<int64_t> word;
    std::unique_ptr<bool[]> first_words(new bool[length]);  // units of the word partition: indices 0..W-1
    std::vector<int64_t> corrupted(length);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t off = b * length;
      const bool* row_maskable = maskable + off;
      row_draws(args, row_ids[b], length, &draws);
      if (word_start == nullptr) {
        unit_segments(draws, row_maskable, length, num_segments, contiguous, &scratch, &segment);
      } else {
        word.assign(length, -1);
        int64_t words = 0;
        for (int64_t i = 0; i < length; ++i) {
          if (!row_maskable[i]) continue;
          words += word_head(true, word_start[off + i], i > 0 && row_maskable[i - 1]);
          word[i] = words - 1;  // a row's first maskable token heads a word
        }
        std::fill(first_words.get(), first_words.get() + length, false);
        std::fill(first_words.get(), first_words.get() + words, true);
        unit_segments(draws, first_words.get(), length, num_segments, contiguous, &scratch, &word_segment);
        segment.assign(length, -1);
        for (int64_t i = 0; i < length; ++i) {
          if (word[i] >= 0) segment[i] = word_segment[word[i]];
        }
      }
      for (int64_t i = 0; i < length; ++i) {
        corrupted[i] = segment[i] >= 0 ? corrupted_id(static_cast<int64_t>(ids[off + i]), draws[i], args) : 0;
      }
      // View by view, so each view's row is written sequentially.
      for (int64_t v = 0; v < num_segments; ++v) {
        write_view_row<IdT>(ids + off, segment.data(), corrupted.data(), v, out_ids + v * view_stride + off,
                            labels + v * view_stride + off, length);
      }
    }
  });
}

// The kernels above, as the binding templates of masking_binding.h call them.
struct CpuMasking : CpuDevice {
  template <typename... A>
  static void maskable_mask(A... a) { maskable_kernel(a...); }
  template <typename... A>
  static void mask_tokens(A... a) { mask_tokens_kernel(a...); }
  template <typename... A>
  static void fully_explored_mask(A... a) { fully_explored_kernel(a...); }
};

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CPU, m) {
  using Backend = fastmask::CpuMasking;
  m.impl("maskable_mask_cpp", &fastmask::maskable_mask_binding<Backend>);
  m.impl("mask_tokens_cpp", &fastmask::mask_tokens_binding<Backend>);
  m.impl("fully_explored_mask_cpp", &fastmask::fully_explored_mask_binding<Backend>);
}
