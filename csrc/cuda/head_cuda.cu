// Torch binding of the CUDA row kernel in head.cuh: the Backend that head_binding.h's chunk loop
// (shared with the CPU binding: checks, GEMMs, outputs) calls, and its registration. The op schema
// is defined in Python (fastmask/library.py). Labels are never read on the host (no sync).
#include <torch/library.h>

#include <cstdint>

#include "cuda_binding.h"
#include "head.cuh"
#include "head_binding.h"

namespace fastmask {
namespace {

struct CudaHead : CudaDevice {
  template <typename T>
  static void cross_entropy_rows(T* logits, const int64_t* labels, const T* grad_scale, T* losses, int64_t rows,
                                 int64_t vocab, int64_t ignore_index, double z_loss) {
    check_launch(launch_linear_cross_entropy<T>(logits, labels, grad_scale, losses, rows, vocab, ignore_index,
                                                static_cast<T>(z_loss), current_stream()),
                 "linear_cross_entropy");
  }
};

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CUDA, m) {
  m.impl("linear_cross_entropy_cuda", &fastmask::linear_cross_entropy_binding<fastmask::CudaHead>);
}
