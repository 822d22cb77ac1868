// Argument checks and binding templates of the sparse-gathering ops, shared by the CPU and CUDA
// torch bindings (needs torch; the kernels' headers in csrc/include do not). The full contract is
// checked in Python (fastmask/checks.py); these stand between a direct torch.ops call and an
// out-of-bounds access, raising the same exception types: after them, every size the kernels
// derive is consistent. Index values are not checked (that would read device memory); the
// kernels drop bad ones. The binding templates (at the end) follow masking_binding.h's, whose top
// says what a Backend supplies (here csrc/cpu/gather_cpu.cpp CpuGather, csrc/cuda/gather_cuda.cu
// CudaGather).
#pragma once

#include <cstdint>
#include <tuple>

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

// Gather and scatter copy bytes: calls f with an unsigned integer of the element's size.
template <typename F>
void dispatch_element_size(int64_t element_size, F&& f) {
  switch (element_size) {
    case 2:
      f(uint16_t{});
      break;
    case 4:
      f(uint32_t{});
      break;
    case 8:
      f(uint64_t{});
      break;
    default:
      TORCH_CHECK(false, "fastmask: unsupported element size ", element_size);
  }
}

// ---- The binding templates.

template <typename Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_positions_binding(const at::Tensor& labels, int64_t capacity) {
  check_masked_positions_args(labels, capacity, Backend::kDevice);
  [[maybe_unused]] const typename Backend::Guard guard(labels.device());
  const at::Tensor lab = labels.contiguous();
  const int64_t rows = lab.size(0);
  const int64_t length = lab.size(1);
  at::Tensor index = at::empty({rows, capacity}, lab.options());
  at::Tensor out_labels = at::empty({rows, capacity}, lab.options());
  at::Tensor count = at::empty({rows}, lab.options());
  if (rows == 0) return {index, out_labels, count};
  Backend::masked_positions(lab.data_ptr<int64_t>(), rows, length, capacity, index.data_ptr<int64_t>(),
                            out_labels.data_ptr<int64_t>(), count.data_ptr<int64_t>());
  return {index, out_labels, count};
}

// The sequence gather_masked and scatter_masked share after their checks: out of (rows, out_rows,
// width) like source, and kernel(source, index, out, rows, source rows, out rows, width) on the
// contiguous inputs, with elements of an unsigned storage type E of the dtype's size.
template <typename Backend, typename Kernel>
at::Tensor copy_rows_binding(const at::Tensor& source, const at::Tensor& index, int64_t out_rows, const Kernel& kernel) {
  [[maybe_unused]] const typename Backend::Guard guard(source.device());
  const at::Tensor src = source.contiguous();
  const at::Tensor idx = index.contiguous();
  const int64_t rows = src.size(0);
  const int64_t width = src.size(2);
  at::Tensor out = at::empty({rows, out_rows, width}, src.options());
  if (out.numel() == 0) return out;
  dispatch_element_size(src.element_size(), [&](auto tag) {
    using E = decltype(tag);
    kernel(static_cast<const E*>(src.data_ptr()), idx.data_ptr<int64_t>(), static_cast<E*>(out.data_ptr()), rows,
           src.size(1), out_rows, width);
  });
  return out;
}

// Backend::gather_masked(hidden, index, out, rows, length, capacity, width) copies row index[b, c]
// of hidden to row c of out for every slot of row b, zero-filling unused slots.
template <typename Backend>
at::Tensor gather_masked_binding(const at::Tensor& hidden, const at::Tensor& index) {
  check_gather_args(hidden, index, Backend::kDevice);
  return copy_rows_binding<Backend>(hidden, index, index.size(1), [](auto... pointers_and_sizes) {
    Backend::gather_masked(pointers_and_sizes...);
  });
}

// Backend::scatter_limits(values) checks what only that device's kernel limits, after the shared
// checks; Backend::scatter_masked(values, index, out, rows, length, capacity, width) writes every
// element of out (zeros where no slot lands).
template <typename Backend>
at::Tensor scatter_masked_binding(const at::Tensor& values, const at::Tensor& index, int64_t length) {
  check_scatter_args(values, index, length, Backend::kDevice);
  Backend::scatter_limits(values);
  return copy_rows_binding<Backend>(values, index, length, [](const auto* src, const int64_t* ix, auto* dst,
                                                            int64_t rows, int64_t capacity, int64_t out_length,
                                                            int64_t width) {
    Backend::scatter_masked(src, ix, dst, rows, out_length, capacity, width);
  });
}

}  // namespace fastmask
