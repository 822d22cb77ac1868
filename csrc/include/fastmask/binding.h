// Shared by the CPU and CUDA torch bindings (needs torch; the kernels' headers do not).
// Argument checks that stand between a direct torch.ops call and an out-of-bounds access,
// conversion of schema ints to MaskArgs, and dtype dispatch.
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/ATen.h>

#include "fastmask/masking.h"

namespace fastmask {

inline void check_ids(const at::Tensor& input_ids, c10::DeviceType device) {
  TORCH_CHECK(input_ids.dim() == 2, "input_ids must be 2-D (batch, length), got ", input_ids.dim(), "-D");
  TORCH_CHECK(input_ids.scalar_type() == at::kInt || input_ids.scalar_type() == at::kLong,
              "input_ids must be int32 or int64, got ", input_ids.scalar_type());
  TORCH_CHECK(input_ids.device().type() == device, "input_ids must be on ", device, ", got ",
              input_ids.device());
  TORCH_CHECK(input_ids.size(1) <= (int64_t{1} << 31), "input_ids rows longer than 2^31");
}

inline void check_maskable_args(const at::Tensor& input_ids, const std::optional<at::Tensor>& attention_mask,
                                const at::Tensor& special_ids, c10::DeviceType device) {
  check_ids(input_ids, device);
  if (attention_mask) {
    TORCH_CHECK(attention_mask->sizes() == input_ids.sizes(), "attention_mask must have the shape of input_ids ",
                input_ids.sizes(), ", got ", attention_mask->sizes());
    TORCH_CHECK(attention_mask->device() == input_ids.device(), "attention_mask must be on ", input_ids.device());
    const auto t = attention_mask->scalar_type();
    TORCH_CHECK(t == at::kBool || t == at::kInt || t == at::kLong,
                "attention_mask must be bool, int32 or int64, got ", t);
  }
  TORCH_CHECK(special_ids.dim() == 1 && special_ids.scalar_type() == at::kLong,
              "special_ids must be a 1-D int64 tensor");
  TORCH_CHECK(special_ids.device() == input_ids.device(), "special_ids must be on ", input_ids.device());
}

inline void check_mask_args(const at::Tensor& input_ids, const at::Tensor& maskable, const at::Tensor& row_ids,
                            c10::DeviceType device) {
  check_ids(input_ids, device);
  TORCH_CHECK(maskable.scalar_type() == at::kBool, "maskable must be bool, got ", maskable.scalar_type());
  TORCH_CHECK(maskable.sizes() == input_ids.sizes(), "maskable must have the shape of input_ids ",
              input_ids.sizes(), ", got ", maskable.sizes());
  TORCH_CHECK(maskable.device() == input_ids.device(), "maskable must be on ", input_ids.device());
  TORCH_CHECK(row_ids.dim() == 1 && row_ids.size(0) == input_ids.size(0) && row_ids.scalar_type() == at::kLong,
              "row_ids must be int64 of shape (", input_ids.size(0), ",)");
  TORCH_CHECK(row_ids.device() == input_ids.device(), "row_ids must be on ", input_ids.device());
}

inline MaskArgs make_mask_args(int64_t seed, int64_t epoch, int64_t select_threshold, int64_t mask_threshold,
                               int64_t random_threshold, int64_t mask_token_id, int64_t vocab_size) {
  constexpr int64_t one = int64_t{1} << kProbBits;
  TORCH_CHECK(seed >= 0, "seed must be >= 0, got ", seed);
  TORCH_CHECK(epoch >= 0 && epoch <= 0xFFFFFFFFll, "epoch must be in [0, 2^32), got ", epoch);
  TORCH_CHECK(select_threshold >= 0 && select_threshold <= one, "select_threshold must be in [0, 2^24]");
  TORCH_CHECK(mask_threshold >= 0 && random_threshold >= 0 && mask_threshold + random_threshold <= one,
              "mask_threshold + random_threshold must be in [0, 2^24]");
  TORCH_CHECK(vocab_size >= 1 && vocab_size <= 0x7FFFFFFFll, "vocab_size must be in [1, 2^31), got ", vocab_size);
  TORCH_CHECK(mask_token_id >= 0 && mask_token_id < vocab_size, "mask_token_id must be in [0, vocab_size), got ",
              mask_token_id);
  return MaskArgs{static_cast<uint64_t>(seed),
                  static_cast<uint32_t>(epoch),
                  static_cast<uint32_t>(select_threshold),
                  static_cast<uint32_t>(mask_threshold),
                  static_cast<uint32_t>(random_threshold),
                  mask_token_id,
                  vocab_size};
}

// The checks and MaskArgs of fully_explored_mask, shared by the CPU and CUDA bindings.
inline MaskArgs fully_explored_args(const at::Tensor& input_ids, const at::Tensor& maskable, const at::Tensor& row_ids,
                                    int64_t seed, int64_t epoch, int64_t num_segments, int64_t mask_threshold,
                                    int64_t random_threshold, int64_t mask_token_id, int64_t vocab_size,
                                    c10::DeviceType device) {
  check_mask_args(input_ids, maskable, row_ids, device);
  TORCH_CHECK(num_segments >= 1, "fully_explored_mask: num_segments must be >= 1, got ", num_segments);
  return make_mask_args(seed, epoch, 0, mask_threshold, random_threshold, mask_token_id, vocab_size);
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

}  // namespace fastmask
