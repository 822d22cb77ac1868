// The CUDA half of the binding templates (csrc/binding/<family>_binding.h): the device type, the
// device guard (the inputs' device is current while outputs are allocated and kernels launch),
// the stream kernels launch on and the launch-error check. Each family's Backend (CudaMasking,
// CudaGather, CudaProposal) adds its launchers. Needs a CUDA torch (c10/cuda).
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

namespace fastmask {

struct CudaDevice {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CUDA;
  using Guard = c10::cuda::CUDAGuard;
};

// The current stream of the current device (the guard's).
inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

inline void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel failed: ", cudaGetErrorString(err));
}

}  // namespace fastmask
