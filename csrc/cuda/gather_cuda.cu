// Torch binding of the CUDA kernels in gather.cuh: the launchers as gather_binding.h's templates
// call them (shared with the CPU binding: checks, contiguous inputs, outputs, so a direct torch.ops
// call fails the same way on both devices) and their registration. The op schemas are defined in
// Python (fastmask/library.py). Index values are never read on the host (no sync); the kernels
// drop out-of-range entries.
#include <torch/library.h>

#include <cstdint>

#include "cuda_binding.h"
#include "gather.cuh"
#include "gather_binding.h"

namespace fastmask {
namespace {

struct CudaGather : CudaDevice {
  static void masked_positions(const int64_t* labels, int64_t rows, int64_t length, int64_t capacity, int64_t* index,
                               int64_t* out_labels, int64_t* count) {
    check_launch(launch_masked_positions(labels, rows, length, capacity, index, out_labels, count, current_stream()),
                 "masked_positions");
  }

  template <typename E, typename... Sizes>
  static void gather_masked(const E* src, const int64_t* index, E* dst, Sizes... sizes) {
    check_launch(launch_gather_masked<E>(src, index, dst, sizes..., current_stream()), "gather_masked");
  }

  static void scatter_limits(const at::Tensor& values) {
    TORCH_CHECK(values.size(1) <= INT32_MAX, "scatter_masked: the CUDA kernel supports at most 2^31 - 1 ",
                "slots per row, got ", values.size(1));
  }

  template <typename E>
  static void scatter_masked(const E* src, const int64_t* index, E* dst, int64_t rows, int64_t length,
                             int64_t capacity, int64_t width) {
    // Slot of each output position; stream-ordered by the caching allocator, so freeing it on
    // return is safe while the kernels still run.
    at::Tensor slot_of_position =
        at::empty({rows, length}, at::TensorOptions(at::kInt).device(at::kCUDA, c10::cuda::current_device()));
    check_launch(launch_scatter_masked<E>(src, index, dst, slot_of_position.data_ptr<int32_t>(), rows, length,
                                          capacity, width, current_stream()),
                 "scatter_masked");
  }
};

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CUDA, m) {
  using Backend = fastmask::CudaGather;
  m.impl("masked_positions_cuda", &fastmask::masked_positions_binding<Backend>);
  m.impl("gather_masked_cuda", &fastmask::gather_masked_binding<Backend>);
  m.impl("scatter_masked_cuda", &fastmask::scatter_masked_binding<Backend>);
}
