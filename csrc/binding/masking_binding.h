// Shared by the CPU and CUDA torch bindings of the masking ops (needs torch; the kernels' headers
// in csrc/include do not): the argument checks and one binding template per op. The full argument
// contract is checked in Python (fastmask/checks.py) by the public wrappers and the fake kernels;
// these checks are the memory-safety guards of a direct torch.ops call, raising the same exception
// types (TypeError, ValueError) with the argument named.
//
// A binding template (<op>_binding<Backend>, at the end) is the op's kernel as registered: it
// checks the arguments, makes the inputs contiguous, allocates the outputs (contiguous, as the
// fakes in fastmask/library.py say), returns them as they are for an empty input, dispatches on
// the dtypes and calls the device's kernel. Backend (csrc/cpu/masking_cpu.cpp CpuMasking,
// csrc/cuda/masking_cuda.cu CudaMasking) supplies
//   kDevice    the device type the inputs must be on;
//   Guard      constructed from the inputs' device, alive while outputs are allocated and the
//              kernel runs (CUDA: makes that device current; CPU: nothing);
//   <op>(...)  a static function that runs the kernel on the raw pointers and sizes (never on an
//              empty input) and raises if it fails.
#pragma once

#include <cstdint>
#include <optional>
#include <tuple>

#include <ATen/ATen.h>

#include "fastmask/masking.h"

namespace fastmask {

inline void check_ids(const char* op, const at::Tensor& input_ids, c10::DeviceType device) {
  TORCH_CHECK_VALUE(input_ids.dim() == 2, op, ": input_ids must be 2-D (batch, length), got ", input_ids.dim(), "-D");
  TORCH_CHECK_TYPE(input_ids.scalar_type() == at::kInt || input_ids.scalar_type() == at::kLong, op,
                   ": input_ids must be int32 or int64, got ", input_ids.scalar_type());
  TORCH_CHECK_VALUE(input_ids.device().type() == device, op, ": input_ids must be on ", device, ", got ",
                    input_ids.device());
  TORCH_CHECK_VALUE(input_ids.size(1) <= (int64_t{1} << 31), op, ": input_ids rows must be at most 2^31 long");
}

// A (B, L) tensor that travels with input_ids.
inline void check_companion(const char* op, const char* name, const at::Tensor& t, const at::Tensor& input_ids) {
  TORCH_CHECK_VALUE(t.sizes() == input_ids.sizes(), op, ": ", name, " must have the shape of input_ids ",
                    input_ids.sizes(), ", got ", t.sizes());
  TORCH_CHECK_VALUE(t.device() == input_ids.device(), op, ": ", name, " must be on the device of input_ids (",
                    input_ids.device(), "), got ", t.device());
}

inline void check_maskable_args(const at::Tensor& input_ids, const std::optional<at::Tensor>& attention_mask,
                                const at::Tensor& special_ids, c10::DeviceType device) {
  constexpr const char* op = "maskable_mask";
  check_ids(op, input_ids, device);
  if (attention_mask) {
    check_companion(op, "attention_mask", *attention_mask, input_ids);
    const auto t = attention_mask->scalar_type();
    TORCH_CHECK_TYPE(t == at::kBool || t == at::kInt || t == at::kLong, op,
                     ": attention_mask must be bool, int32 or int64, got ", t);
  }
  TORCH_CHECK_VALUE(special_ids.dim() == 1, op, ": special_ids must be 1-D, got ", special_ids.dim(), "-D");
  TORCH_CHECK_TYPE(special_ids.scalar_type() == at::kLong, op, ": special_ids must be int64, got ",
                   special_ids.scalar_type());
  TORCH_CHECK_VALUE(special_ids.device() == input_ids.device(), op, ": special_ids must be on ", input_ids.device());
}

inline void check_mask_args(const char* op, const at::Tensor& input_ids, const at::Tensor& maskable,
                            const at::Tensor& row_ids, c10::DeviceType device) {
  check_ids(op, input_ids, device);
  TORCH_CHECK_TYPE(maskable.scalar_type() == at::kBool, op, ": maskable must be bool, got ", maskable.scalar_type());
  check_companion(op, "maskable", maskable, input_ids);
  TORCH_CHECK_TYPE(row_ids.scalar_type() == at::kLong, op, ": row_ids must be int64, got ", row_ids.scalar_type());
  TORCH_CHECK_VALUE(row_ids.dim() == 1 && row_ids.size(0) == input_ids.size(0), op,
                    ": row_ids must have shape (", input_ids.size(0), ",), got ", row_ids.sizes());
  TORCH_CHECK_VALUE(row_ids.device() == input_ids.device(), op, ": row_ids must be on ", input_ids.device());
}

// word_start: bool, shaped and placed like input_ids (whole_word_mask's, span_mask's and
// fully_explored_mask's word heads).
inline void check_word_start(const char* op, const at::Tensor& word_start, const at::Tensor& input_ids) {
  TORCH_CHECK_TYPE(word_start.scalar_type() == at::kBool, op, ": word_start must be bool, got ",
                   word_start.scalar_type());
  TORCH_CHECK_VALUE(word_start.dim() == 2, op, ": word_start must be 2-D (batch, length), got ", word_start.dim(),
                    "-D");
  check_companion(op, "word_start", word_start, input_ids);
}

// A seed or epoch: a 0-dim int64 tensor, read now when on the CPU (like an int); on the device of
// input_ids it is left to the kernel to read (returns the pointer).
inline const int64_t* philox_key_word(const char* op, const char* name, const at::Tensor& word,
                                      const at::Tensor& input_ids, int64_t* value) {
  TORCH_CHECK_TYPE(word.scalar_type() == at::kLong, op, ": ", name, " must be an int64 tensor, got ",
                   word.scalar_type());
  TORCH_CHECK_VALUE(word.dim() == 0, op, ": ", name, " must be 0-dim, got shape ", word.sizes());
  if (word.is_cpu()) {
    *value = *word.const_data_ptr<int64_t>();
    return nullptr;
  }
  TORCH_CHECK_VALUE(word.device() == input_ids.device(), op, ": ", name, " must be on the device of input_ids (",
                    input_ids.device(), ") or the CPU, got ", word.device());
  *value = 0;
  return word.const_data_ptr<int64_t>();
}

// A masking rate (select_threshold, count_num, count_den): an int64 (3,) tensor, read now when on
// the CPU (overriding the ints); on the device of input_ids left to the kernel (returns the pointer).
inline const int64_t* rate_words(const char* op, const std::optional<at::Tensor>& rate, const at::Tensor& input_ids,
                                 int64_t* select_threshold, int64_t* count_num, int64_t* count_den) {
  if (!rate || !rate->defined()) return nullptr;
  TORCH_CHECK_TYPE(rate->scalar_type() == at::kLong, op, ": rate must be an int64 tensor, got ", rate->scalar_type());
  TORCH_CHECK_VALUE(rate->dim() == 1 && rate->size(0) == 3 && rate->is_contiguous(), op,
                    ": rate must be a contiguous (3,) tensor (select_threshold, count_num, count_den), got shape ",
                    rate->sizes());
  if (rate->is_cpu()) {
    const int64_t* words = rate->const_data_ptr<int64_t>();
    *select_threshold = words[0];
    *count_num = words[1];
    *count_den = words[2];
    return nullptr;
  }
  TORCH_CHECK_VALUE(rate->device() == input_ids.device(), op, ": rate must be on the device of input_ids (",
                    input_ids.device(), ") or the CPU, got ", rate->device());
  return rate->const_data_ptr<int64_t>();
}

inline MaskArgs make_mask_args(const char* op, const at::Tensor& input_ids, const at::Tensor& seed,
                               const at::Tensor& epoch, int64_t select_threshold, int64_t count_num,
                               int64_t count_den, int64_t mask_threshold, int64_t random_threshold,
                               int64_t mask_token_id, int64_t vocab_size,
                               const std::optional<at::Tensor>& rate = std::nullopt) {
  constexpr int64_t one = int64_t{1} << kProbBits;
  constexpr int64_t max_den = (int64_t{1} << 31) - 1;
  int64_t seed_value = 0;
  int64_t epoch_value = 0;
  const int64_t* seed_ptr = philox_key_word(op, "seed", seed, input_ids, &seed_value);
  const int64_t* epoch_ptr = philox_key_word(op, "epoch", epoch, input_ids, &epoch_value);
  const int64_t* rate_ptr = rate_words(op, rate, input_ids, &select_threshold, &count_num, &count_den);
  TORCH_CHECK_VALUE(select_threshold >= 0 && select_threshold <= one, op,
                    ": select_threshold must be in [0, 2^24], got ", select_threshold);
  TORCH_CHECK_VALUE(count_den >= 1 && count_den <= max_den, op, ": count_den must be in [1, 2^31), got ", count_den);
  TORCH_CHECK_VALUE(count_num >= 0 && count_num <= count_den, op, ": count_num must be in [0, count_den], got ",
                    count_num);
  TORCH_CHECK_VALUE(mask_threshold >= 0 && mask_threshold <= one, op, ": mask_threshold must be in [0, 2^24], got ",
                    mask_threshold);
  TORCH_CHECK_VALUE(random_threshold >= 0 && mask_threshold + random_threshold <= one, op,
                    ": random_threshold must be in [0, 2^24 - mask_threshold], got ", random_threshold);
  TORCH_CHECK_VALUE(vocab_size >= 1 && vocab_size <= 0x7FFFFFFFll, op, ": vocab_size must be in [1, 2^31), got ",
                    vocab_size);
  TORCH_CHECK_VALUE(mask_token_id >= 0 && mask_token_id < vocab_size, op,
                    ": mask_token_id must be in [0, vocab_size), got ", mask_token_id);
  return MaskArgs{static_cast<uint64_t>(seed_value),
                  static_cast<uint32_t>(epoch_value),
                  seed_ptr,
                  epoch_ptr,
                  rate_ptr,
                  static_cast<uint32_t>(select_threshold),
                  count_num,
                  count_den,
                  static_cast<uint32_t>(mask_threshold),
                  static_cast<uint32_t>(random_threshold),
                  mask_token_id,
                  vocab_size};
}

// The checks and MaskArgs of fully_explored_mask, shared by the CPU and CUDA bindings.
inline MaskArgs fully_explored_args(const at::Tensor& input_ids, const at::Tensor& maskable, const at::Tensor& row_ids,
                                    const at::Tensor& seed, const at::Tensor& epoch, int64_t num_segments,
                                    int64_t mask_threshold,
                                    int64_t random_threshold, int64_t mask_token_id, int64_t vocab_size,
                                    c10::DeviceType device) {
  constexpr const char* op = "fully_explored_mask";
  check_mask_args(op, input_ids, maskable, row_ids, device);
  TORCH_CHECK_VALUE(num_segments >= 1 && num_segments < (int64_t{1} << 31), op,
                    ": num_segments must be in [1, 2^31), got ", num_segments);
  return make_mask_args(op, input_ids, seed, epoch, 0, 0, 1, mask_threshold, random_threshold, mask_token_id,
                        vocab_size);
}

// Calls f with a value of the C++ type of the ids (int32_t or int64_t).
template <typename F>
void dispatch_ids(at::ScalarType t, F&& f) {
  if (t == at::kInt) {
    f(int32_t{});
  } else {
    f(int64_t{});
  }
}

// Calls f with a value of the C++ type of the attention mask (bool when absent: unused).
template <typename F>
void dispatch_attention(const at::Tensor& attention, F&& f) {
  if (!attention.defined() || attention.scalar_type() == at::kBool) {
    f(bool{});
  } else if (attention.scalar_type() == at::kInt) {
    f(int32_t{});
  } else {
    f(int64_t{});
  }
}

// ---- The binding templates (see the top of this file).

template <typename Backend>
at::Tensor maskable_mask_binding(const at::Tensor& input_ids, const std::optional<at::Tensor>& attention_mask,
                                 const at::Tensor& special_ids) {
  check_maskable_args(input_ids, attention_mask, special_ids, Backend::kDevice);
  [[maybe_unused]] const typename Backend::Guard guard(input_ids.device());
  const at::Tensor ids = input_ids.contiguous();
  at::Tensor out = at::empty(ids.sizes(), ids.options().dtype(at::kBool));
  if (ids.numel() == 0) return out;
  const at::Tensor special = special_ids.contiguous();
  const at::Tensor attention =
      attention_mask && attention_mask->defined() ? attention_mask->contiguous() : at::Tensor();
  const int64_t* special_ptr = special.numel() > 0 ? special.data_ptr<int64_t>() : nullptr;
  dispatch_ids(ids.scalar_type(), [&](auto id_tag) {
    using IdT = decltype(id_tag);
    dispatch_attention(attention, [&](auto attn_tag) {
      using AttnT = decltype(attn_tag);
      const AttnT* attention_ptr = attention.defined() ? attention.data_ptr<AttnT>() : nullptr;
      Backend::maskable_mask(ids.data_ptr<IdT>(), attention_ptr, special_ptr, special.numel(),
                             out.data_ptr<bool>(), ids.size(0), ids.size(1));
    });
  });
  return out;
}

// The sequence mask_tokens and fully_explored_mask share after their checks: ids and labels of
// `shape` ((rows, length), or (views, rows, length)), and kernel(ids, maskable, row_ids, out_ids,
// labels, rows, length) on the contiguous inputs for each id type.
template <typename Backend, typename Kernel>
std::tuple<at::Tensor, at::Tensor> masked_ids_binding(const at::Tensor& input_ids, const at::Tensor& maskable,
                                                      const at::Tensor& row_ids, at::IntArrayRef shape,
                                                      const Kernel& kernel) {
  [[maybe_unused]] const typename Backend::Guard guard(input_ids.device());
  const at::Tensor ids = input_ids.contiguous();
  at::Tensor out_ids = at::empty(shape, ids.options());
  at::Tensor labels = at::empty(shape, ids.options().dtype(at::kLong));
  const int64_t rows = ids.size(0);
  const int64_t length = ids.size(1);
  if (rows == 0 || length == 0) return {out_ids, labels};
  const at::Tensor mask = maskable.contiguous();
  const at::Tensor rid = row_ids.contiguous();
  dispatch_ids(ids.scalar_type(), [&](auto id_tag) {
    using IdT = decltype(id_tag);
    kernel(ids.data_ptr<IdT>(), mask.data_ptr<bool>(), rid.data_ptr<int64_t>(), out_ids.data_ptr<IdT>(),
           labels.data_ptr<int64_t>(), rows, length);
  });
  return {out_ids, labels};
}

template <typename Backend>
std::tuple<at::Tensor, at::Tensor> mask_tokens_binding(
    const at::Tensor& input_ids, const at::Tensor& maskable, const at::Tensor& row_ids, const at::Tensor& seed,
    const at::Tensor& epoch, int64_t select_threshold, int64_t count_num, int64_t count_den, int64_t mask_threshold,
    int64_t random_threshold, int64_t mask_token_id, int64_t vocab_size, bool exact,
    const std::optional<at::Tensor>& rate) {
  check_mask_args("mask_tokens", input_ids, maskable, row_ids, Backend::kDevice);
  const MaskArgs args = make_mask_args("mask_tokens", input_ids, seed, epoch, select_threshold, count_num, count_den,
                                       mask_threshold, random_threshold, mask_token_id, vocab_size, rate);
  return masked_ids_binding<Backend>(input_ids, maskable, row_ids, input_ids.sizes(), [&](auto... pointers_and_sizes) {
    Backend::mask_tokens(pointers_and_sizes..., args, exact);
  });
}

template <typename Backend>
std::tuple<at::Tensor, at::Tensor> fully_explored_mask_binding(
    const at::Tensor& input_ids, const at::Tensor& maskable, const at::Tensor& row_ids, const at::Tensor& seed,
    const at::Tensor& epoch, int64_t num_segments, bool contiguous, int64_t mask_threshold,
    int64_t random_threshold, int64_t mask_token_id, int64_t vocab_size,
    const std::optional<at::Tensor>& word_start) {
  const MaskArgs args = fully_explored_args(input_ids, maskable, row_ids, seed, epoch, num_segments, mask_threshold,
                                            random_threshold, mask_token_id, vocab_size, Backend::kDevice);
  // Words partitioned when given (nullptr: tokens).
  const bool words = word_start && word_start->defined();
  if (words) check_word_start("fully_explored_mask", *word_start, input_ids);
  const at::Tensor starts = words ? word_start->contiguous() : at::Tensor();
  const bool* starts_ptr = starts.defined() ? starts.data_ptr<bool>() : nullptr;
  return masked_ids_binding<Backend>(input_ids, maskable, row_ids, {num_segments, input_ids.size(0), input_ids.size(1)},
                                     [&](auto... pointers_and_sizes) {
                                       Backend::fully_explored_mask(pointers_and_sizes..., num_segments, contiguous,
                                                                    args, starts_ptr);
                                     });
}

}  // namespace fastmask
