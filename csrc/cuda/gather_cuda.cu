// Torch binding of the CUDA kernels in gather.cuh. The op schemas are defined in Python
// (fastmask/library.py); argument checks come from gather_binding.h, shared with the CPU
// binding, so a direct torch.ops call fails the same way on both devices. Index values are never
// read on the host (no sync); the kernels drop out-of-range entries.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>

#include "gather_binding.h"
#include "gather.cuh"

namespace fastmask {
namespace {

void check_gather_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel failed: ", cudaGetErrorString(err));
}

cudaStream_t gather_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

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

std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_positions_cuda(const at::Tensor& labels,
                                                                      int64_t capacity) {
  check_masked_positions_args(labels, capacity, at::kCUDA);
  const c10::cuda::CUDAGuard device_guard(labels.device());
  const at::Tensor lab = labels.contiguous();
  const int64_t rows = lab.size(0);
  const int64_t length = lab.size(1);
  at::Tensor index = at::empty({rows, capacity}, lab.options());
  at::Tensor out_labels = at::empty({rows, capacity}, lab.options());
  at::Tensor count = at::empty({rows}, lab.options());
  if (rows == 0) return {index, out_labels, count};
  const cudaError_t err = launch_masked_positions(
      lab.data_ptr<int64_t>(), rows, length, capacity, index.data_ptr<int64_t>(),
      out_labels.data_ptr<int64_t>(), count.data_ptr<int64_t>(), gather_stream());
  check_gather_launch(err, "masked_positions");
  return {index, out_labels, count};
}

at::Tensor gather_masked_cuda(const at::Tensor& hidden, const at::Tensor& index) {
  check_gather_args(hidden, index, at::kCUDA);
  const c10::cuda::CUDAGuard device_guard(hidden.device());
  const at::Tensor h = hidden.contiguous();
  const at::Tensor idx = index.contiguous();
  const int64_t rows = h.size(0);
  const int64_t length = h.size(1);
  const int64_t width = h.size(2);
  const int64_t capacity = idx.size(1);
  at::Tensor out = at::empty({rows, capacity, width}, h.options());
  if (out.numel() == 0) return out;
  cudaError_t err = cudaSuccess;
  dispatch_element_size(h.element_size(), [&](auto tag) {
    using E = decltype(tag);
    err = launch_gather_masked<E>(static_cast<const E*>(h.data_ptr()), idx.data_ptr<int64_t>(),
                                  static_cast<E*>(out.data_ptr()), rows, length, capacity, width,
                                  gather_stream());
  });
  check_gather_launch(err, "gather_masked");
  return out;
}

at::Tensor scatter_masked_cuda(const at::Tensor& values, const at::Tensor& index, int64_t length) {
  check_scatter_args(values, index, length, at::kCUDA);
  TORCH_CHECK(values.size(1) <= INT32_MAX, "scatter_masked: the CUDA kernel supports at most 2^31 - 1 ",
              "slots per row, got ", values.size(1));
  const c10::cuda::CUDAGuard device_guard(values.device());
  const at::Tensor v = values.contiguous();
  const at::Tensor idx = index.contiguous();
  const int64_t rows = v.size(0);
  const int64_t capacity = v.size(1);
  const int64_t width = v.size(2);
  at::Tensor out = at::empty({rows, length, width}, v.options());
  if (out.numel() == 0) return out;
  // Slot of each output position; stream-ordered by the caching allocator, so freeing it on
  // return is safe while the kernels still run.
  at::Tensor slot_of_position = at::empty({rows, length}, idx.options().dtype(at::kInt));
  cudaError_t err = cudaSuccess;
  dispatch_element_size(v.element_size(), [&](auto tag) {
    using E = decltype(tag);
    err = launch_scatter_masked<E>(static_cast<const E*>(v.data_ptr()), idx.data_ptr<int64_t>(),
                                   static_cast<E*>(out.data_ptr()), slot_of_position.data_ptr<int32_t>(),
                                   rows, length, capacity, width, gather_stream());
  });
  check_gather_launch(err, "scatter_masked");
  return out;
}

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CUDA, m) {
  m.impl("masked_positions_cuda", &fastmask::masked_positions_cuda);
  m.impl("gather_masked_cuda", &fastmask::gather_masked_cuda);
  m.impl("scatter_masked_cuda", &fastmask::scatter_masked_cuda);
}
