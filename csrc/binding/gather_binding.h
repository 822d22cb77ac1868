// Argument checks of the sparse-gathering ops, shared by the CPU and CUDA torch bindings (needs
// torch; the kernels' headers in csrc/include do not). The full contract is checked in Python
// (fastmask/checks.py); these stand between a direct torch.ops call and an out-of-bounds access,
// raising the same exception types: after them, every size the kernels derive is consistent.
// Index values are not checked (that would read device memory); the kernels drop bad ones.
#pragma once

#include <cstdint>

#include <ATen/ATen.h>

namespace fastmask {

inline bool is_gather_float_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble;
}

inline void check_gather_index(const char* op, const at::Tensor& index, const at::Tensor& data,
                               const char* data_name) {
  TORCH_CHECK_VALUE(index.dim() == 2, op, ": index must be 2-D (batch, capacity), got ", index.dim(), "-D");
  TORCH_CHECK_TYPE(index.scalar_type() == at::kLong, op, ": index must be int64, got ", index.scalar_type());
  TORCH_CHECK_VALUE(index.device() == data.device(), op, ": index must be on ", data.device(), " like ",
              data_name, ", got ", index.device());
  TORCH_CHECK_VALUE(index.size(0) == data.size(0), op, ": index has batch ", index.size(0), " but ", data_name,
              " has batch ", data.size(0));
}

inline void check_gather_data(const char* op, const at::Tensor& data, const char* name, c10::DeviceType device) {
  TORCH_CHECK_VALUE(data.dim() == 3, op, ": ", name, " must be 3-D (batch, rows, width), got ", data.dim(), "-D");
  TORCH_CHECK_TYPE(is_gather_float_dtype(data.scalar_type()), op, ": ", name,
              " must be float32, float16, bfloat16 or float64, got ", data.scalar_type());
  TORCH_CHECK_VALUE(data.device().type() == device, op, ": ", name, " must be on ", device, ", got ", data.device());
}

inline void check_masked_positions_args(const at::Tensor& labels, int64_t capacity, c10::DeviceType device) {
  TORCH_CHECK_VALUE(labels.dim() == 2, "masked_positions: labels must be 2-D (batch, length), got ", labels.dim(),
              "-D");
  TORCH_CHECK_TYPE(labels.scalar_type() == at::kLong, "masked_positions: labels must be int64, got ",
              labels.scalar_type());
  TORCH_CHECK_VALUE(labels.device().type() == device, "masked_positions: labels must be on ", device, ", got ",
              labels.device());
  TORCH_CHECK_VALUE(capacity >= 1 && capacity < (int64_t{1} << 31), "masked_positions: capacity must be in [1, 2^31), got ",
                    capacity);
}

inline void check_gather_args(const at::Tensor& hidden, const at::Tensor& index, c10::DeviceType device) {
  check_gather_data("gather_masked", hidden, "hidden", device);
  check_gather_index("gather_masked", index, hidden, "hidden");
}

inline void check_scatter_args(const at::Tensor& values, const at::Tensor& index, int64_t length,
                               c10::DeviceType device) {
  check_gather_data("scatter_masked", values, "values", device);
  check_gather_index("scatter_masked", index, values, "values");
  TORCH_CHECK_VALUE(index.size(1) == values.size(1), "scatter_masked: index has capacity ", index.size(1),
              " but values has ", values.size(1), " slots per row");
  TORCH_CHECK_VALUE(length >= 0, "scatter_masked: length must be >= 0, got ", length);
}

}  // namespace fastmask
