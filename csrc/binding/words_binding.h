// whole_word_mask's and span_mask's argument checks and binding templates, shared by the CPU and
// CUDA torch bindings (needs torch; the kernels' headers in csrc/include do not). Built on
// masking_binding.h: its guards of the ids, maskable, row ids and scalars, and masked_ids_binding.
// Backend (csrc/cpu/words_cpu.cpp CpuWords, its CUDA twin) supplies kDevice, Guard and
//   whole_word_mask(ids, maskable, word_start, row_ids, out_ids, labels, rows, length, MaskArgs, exact)
//   span_mask(ids, maskable, word_start, row_ids, out_ids, labels, rows, length, MaskArgs, SpanLengths, per_span)
#pragma once

#include <cstdint>
#include <tuple>

#include <ATen/ATen.h>

#include "fastmask/words.h"
#include "masking_binding.h"

namespace fastmask {

inline void check_word_args(const char* op, const at::Tensor& input_ids, const at::Tensor& maskable,
                            const at::Tensor& word_start, const at::Tensor& row_ids, c10::DeviceType device) {
  check_mask_args(op, input_ids, maskable, row_ids, device);
  check_word_start(op, word_start, input_ids);
}

// length_thresholds as the kernels take them: fewer than kMaxSpanWords, each in [0, 2^24], non-decreasing.
inline SpanLengths span_lengths(at::IntArrayRef thresholds) {
  constexpr const char* op = "span_mask";
  TORCH_CHECK_VALUE(thresholds.size() < static_cast<size_t>(kMaxSpanWords), op,
                    ": length_thresholds must have fewer than ", kMaxSpanWords, " entries, got ", thresholds.size());
  SpanLengths lengths{static_cast<int32_t>(thresholds.size()), {}};
  for (size_t t = 0; t < thresholds.size(); ++t) {
    TORCH_CHECK_VALUE(thresholds[t] >= 0 && thresholds[t] <= (int64_t{1} << kProbBits), op,
                      ": length_thresholds must be in [0, 2^24], got ", thresholds[t]);
    TORCH_CHECK_VALUE(t == 0 || thresholds[t - 1] <= thresholds[t], op,
                      ": length_thresholds must be non-decreasing, got ", thresholds);
    lengths.thresholds[t] = static_cast<uint32_t>(thresholds[t]);
  }
  return lengths;
}

// ---- The binding templates (see the top of masking_binding.h).

template <typename Backend>
std::tuple<at::Tensor, at::Tensor> whole_word_mask_binding(
    const at::Tensor& input_ids, const at::Tensor& maskable, const at::Tensor& word_start, const at::Tensor& row_ids,
    const at::Tensor& seed, const at::Tensor& epoch, int64_t select_threshold, int64_t count_num, int64_t count_den,
    int64_t mask_threshold, int64_t random_threshold, int64_t mask_token_id, int64_t vocab_size, bool exact,
    const std::optional<at::Tensor>& rate) {
  constexpr const char* op = "whole_word_mask";
  check_word_args(op, input_ids, maskable, word_start, row_ids, Backend::kDevice);
  const MaskArgs args = make_mask_args(op, input_ids, seed, epoch, select_threshold, count_num, count_den,
                                       mask_threshold, random_threshold, mask_token_id, vocab_size, rate);
  return masked_ids_binding<Backend>(
      input_ids, maskable, row_ids, input_ids.sizes(),
      [&](auto ids, const bool* mask, const int64_t* rid, auto out_ids, int64_t* labels, int64_t rows, int64_t length) {
        const at::Tensor starts = word_start.contiguous();
        Backend::whole_word_mask(ids, mask, starts.data_ptr<bool>(), rid, out_ids, labels, rows, length, args, exact);
      });
}

template <typename Backend>
std::tuple<at::Tensor, at::Tensor> span_mask_binding(
    const at::Tensor& input_ids, const at::Tensor& maskable, const at::Tensor& word_start, const at::Tensor& row_ids,
    const at::Tensor& seed, const at::Tensor& epoch, int64_t count_num, int64_t count_den,
    at::IntArrayRef length_thresholds, bool per_span, int64_t mask_threshold, int64_t random_threshold,
    int64_t mask_token_id, int64_t vocab_size, const std::optional<at::Tensor>& rate) {
  constexpr const char* op = "span_mask";
  check_word_args(op, input_ids, maskable, word_start, row_ids, Backend::kDevice);
  const SpanLengths lengths = span_lengths(length_thresholds);
  const MaskArgs args = make_mask_args(op, input_ids, seed, epoch, 0, count_num, count_den, mask_threshold,
                                       random_threshold, mask_token_id, vocab_size, rate);
  return masked_ids_binding<Backend>(
      input_ids, maskable, row_ids, input_ids.sizes(),
      [&](auto ids, const bool* mask, const int64_t* rid, auto out_ids, int64_t* labels, int64_t rows, int64_t length) {
        const at::Tensor starts = word_start.contiguous();
        Backend::span_mask(ids, mask, starts.data_ptr<bool>(), rid, out_ids, labels, rows, length, args, lengths,
                           per_span);
      });
}

}  // namespace fastmask
