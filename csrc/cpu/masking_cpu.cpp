// C++ CPU kernels of the masking ops: rows in parallel (at::parallel_for), the per-token logic
// from the shared headers so the CPU tests exercise exactly what the CUDA kernels run.
#include <algorithm>
#include <cstdint>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_draws.h"
#include "fastmask/masking.h"
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
                     int64_t num_special, bool* out, int64_t numel) {
  at::parallel_for(0, numel, 4096, [&](int64_t begin, int64_t end) {
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

template <typename IdT>
void fully_explored_kernel(const IdT* ids, const bool* maskable, const int64_t* row_ids,
                           IdT* out_ids, int64_t* labels, int64_t rows, int64_t length,
                           int64_t num_segments, bool contiguous, const MaskArgs& args) {
  const int64_t view_stride = rows * length;
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    RowDraws draws;
    std::vector<uint64_t> scratch;
    std::vector<int64_t> segment;
    std::vector<int64_t> corrupted(length);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t off = b * length;
      const bool* row_maskable = maskable + off;
      row_draws(args, row_ids[b], length, &draws);
      segment.assign(length, -1);  // -1: not maskable, never masked
      if (contiguous) {
        const int64_t n = std::count(row_maskable, row_maskable + length, true);
        for (int64_t i = 0, j = 0; i < length; ++i) {
          if (row_maskable[i]) segment[i] = contiguous_segment(j++, n, num_segments);
        }
      } else {
        std::vector<uint64_t> keys = maskable_keys(draws, row_maskable, length);
        sort_random_keys(&keys, &scratch);
        for (size_t r = 0; r < keys.size(); ++r) {
          segment[keys[r] & 0xFFFFFFFFu] = static_cast<int64_t>(r) % num_segments;
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

at::Tensor maskable_mask_cpu(const at::Tensor& input_ids, const std::optional<at::Tensor>& attention_mask,
                             const at::Tensor& special_ids) {
  check_maskable_args(input_ids, attention_mask, special_ids, at::kCPU);
  const at::Tensor ids = input_ids.contiguous();
  const at::Tensor special = special_ids.contiguous();
  at::Tensor out = at::empty(ids.sizes(), ids.options().dtype(at::kBool));
  const at::Tensor attention = attention_mask ? attention_mask->contiguous() : at::Tensor();
  dispatch_ids(ids.scalar_type(), [&](auto id_tag) {
    using IdT = decltype(id_tag);
    dispatch_attention(attention, [&](auto attn_tag) {
      using AttnT = decltype(attn_tag);
      maskable_kernel<IdT, AttnT>(ids.data_ptr<IdT>(),
                                  attention.defined() ? attention.data_ptr<AttnT>() : nullptr,
                                  special.data_ptr<int64_t>(), special.numel(),
                                  out.data_ptr<bool>(), ids.numel());
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> mask_tokens_cpu(
    const at::Tensor& input_ids, const at::Tensor& maskable, const at::Tensor& row_ids, const at::Tensor& seed,
    const at::Tensor& epoch, int64_t select_threshold, int64_t count_num, int64_t count_den, int64_t mask_threshold,
    int64_t random_threshold, int64_t mask_token_id, int64_t vocab_size, bool exact) {
  check_mask_args("mask_tokens", input_ids, maskable, row_ids, at::kCPU);
  const MaskArgs args = make_mask_args("mask_tokens", input_ids, seed, epoch, select_threshold, count_num, count_den,
                                       mask_threshold, random_threshold, mask_token_id, vocab_size);
  const at::Tensor ids = input_ids.contiguous();
  const at::Tensor mask = maskable.contiguous();
  const at::Tensor rid = row_ids.contiguous();
  at::Tensor out_ids = at::empty_like(ids);
  at::Tensor labels = at::empty(ids.sizes(), ids.options().dtype(at::kLong));
  dispatch_ids(ids.scalar_type(), [&](auto id_tag) {
    using IdT = decltype(id_tag);
    mask_tokens_kernel<IdT>(ids.data_ptr<IdT>(), mask.data_ptr<bool>(), rid.data_ptr<int64_t>(),
                            out_ids.data_ptr<IdT>(), labels.data_ptr<int64_t>(), ids.size(0),
                            ids.size(1), args, exact);
  });
  return {out_ids, labels};
}

std::tuple<at::Tensor, at::Tensor> fully_explored_mask_cpu(
    const at::Tensor& input_ids, const at::Tensor& maskable, const at::Tensor& row_ids, const at::Tensor& seed,
    const at::Tensor& epoch, int64_t num_segments, bool contiguous, int64_t mask_threshold,
    int64_t random_threshold, int64_t mask_token_id, int64_t vocab_size) {
  const MaskArgs args = fully_explored_args(input_ids, maskable, row_ids, seed, epoch, num_segments, mask_threshold,
                                            random_threshold, mask_token_id, vocab_size, at::kCPU);
  const at::Tensor ids = input_ids.contiguous();
  const at::Tensor mask = maskable.contiguous();
  const at::Tensor rid = row_ids.contiguous();
  at::Tensor out_ids = at::empty({num_segments, ids.size(0), ids.size(1)}, ids.options());
  at::Tensor labels = at::empty({num_segments, ids.size(0), ids.size(1)}, ids.options().dtype(at::kLong));
  dispatch_ids(ids.scalar_type(), [&](auto id_tag) {
    using IdT = decltype(id_tag);
    fully_explored_kernel<IdT>(ids.data_ptr<IdT>(), mask.data_ptr<bool>(), rid.data_ptr<int64_t>(),
                               out_ids.data_ptr<IdT>(), labels.data_ptr<int64_t>(), ids.size(0),
                               ids.size(1), num_segments, contiguous, args);
  });
  return {out_ids, labels};
}

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CPU, m) {
  m.impl("maskable_mask_cpp", &fastmask::maskable_mask_cpu);
  m.impl("mask_tokens_cpp", &fastmask::mask_tokens_cpu);
  m.impl("fully_explored_mask_cpp", &fastmask::fully_explored_mask_cpu);
}
