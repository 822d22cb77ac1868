// CUDA row kernel of the vocabulary head's fused cross-entropy (linear_cross_entropy) and its
// torch-free host launcher. The chunk loop (vendor GEMMs) is csrc/binding/head_binding.h's; this
// kernel is its row function on one chunk's contiguous (rows, vocab) logits in the accumulation
// dtype T (float, or double for float64 inputs). The per-row arithmetic is fastmask/head.h,
// shared with the CPU kernel; the executable specification is fastmask/reference.py's
// cross_entropy_rows. Floats: within tests/test_head.py's tolerance table, not bit-exact.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include <cub/block/block_reduce.cuh>

#include "fastmask/head.h"

namespace fastmask {
namespace kernels {

constexpr int kHeadThreads = 256;  // one block per row; V = 30,522 is ~120 logits per thread

__device__ __forceinline__ float head_exp(float x) { return expf(x); }
__device__ __forceinline__ double head_exp(double x) { return exp(x); }
__device__ __forceinline__ float head_log(float x) { return logf(x); }
__device__ __forceinline__ double head_log(double x) { return log(x); }

// A running logsumexp: the maximum seen and the sum of exp(x - max).
template <typename T>
struct MaxSum {
  T max;
  T sum;
};

template <typename T>
struct CombineMaxSum {
  __device__ __forceinline__ MaxSum<T> operator()(const MaxSum<T>& a, const MaxSum<T>& b) const {
    const T max = a.max < b.max ? b.max : a.max;
    if (max == -INFINITY) return {max, T(0)};  // both empty: exp(-inf - -inf) would be NaN
    return {max, a.sum * head_exp(a.max - max) + b.sum * head_exp(b.max - max)};
  }
};

// One block per row. Pass 1: each thread's online logsumexp over a strided share of the row,
// combined across the block. Pass 2, given grad_scale: each logit overwritten with its gradient.
// Ignored rows skip pass 1 (a zero loss, and a zero gradient row).
template <typename T>
__global__ void __launch_bounds__(kHeadThreads)
    cross_entropy_rows_kernel(T* __restrict__ logits, const int64_t* __restrict__ labels,
                              const T* __restrict__ grad_scale, T* __restrict__ losses, int64_t vocab,
                              int64_t ignore_index, T z_loss) {
  using Reduce = cub::BlockReduce<MaxSum<T>, kHeadThreads>;
  __shared__ typename Reduce::TempStorage reduce_storage;
  __shared__ T lse_shared;
  const int64_t r = blockIdx.x;
  T* x = logits + r * vocab;
  const int64_t label = labels[r];
  const HeadRow row = head_row(label, vocab, ignore_index);
  if (row == HeadRow::kIgnored) {  // uniform across the block: no barrier is skipped by part of it
    if (threadIdx.x == 0) losses[r] = T(0);
    if (grad_scale != nullptr) {
      for (int64_t j = threadIdx.x; j < vocab; j += kHeadThreads) x[j] = T(0);
    }
    return;
  }
  MaxSum<T> local{-INFINITY, T(0)};
  for (int64_t j = threadIdx.x; j < vocab; j += kHeadThreads) {
    const T v = x[j];
    if (v > local.max) {
      local.sum = local.sum * head_exp(local.max - v) + T(1);
      local.max = v;
    } else if (v != -INFINITY) {  // a NaN logit makes the sum NaN, as in the reference
      local.sum += head_exp(v - local.max);
    }
  }
  const MaxSum<T> total = Reduce(reduce_storage).Reduce(local, CombineMaxSum<T>());
  if (threadIdx.x == 0) {
    const T lse = total.max + head_log(total.sum);
    lse_shared = lse;
    losses[r] = head_row_loss(row, lse, row == HeadRow::kLabelled ? x[label] : T(0), z_loss);
  }
  __syncthreads();  // publishes lse_shared; thread 0 has read x[label] before it is overwritten
  if (grad_scale == nullptr) return;
  const T lse = lse_shared;
  const T scale = grad_scale[r];
  const T factor = head_softmax_factor(row, lse, scale, z_loss);
  for (int64_t j = threadIdx.x; j < vocab; j += kHeadThreads) {
    x[j] = head_exp(x[j] - lse) * factor - (j == label ? scale : T(0));
  }
}

}  // namespace kernels

// reference.cross_entropy_rows on `rows` rows of `vocab` logits: losses written, and given
// grad_scale (else nullptr) each logit overwritten with its gradient. The row function of the
// linear_cross_entropy op (the binding's chunk loop calls it once per chunk).
template <typename T>
cudaError_t launch_linear_cross_entropy(T* logits, const int64_t* labels, const T* grad_scale, T* losses,
                                        int64_t rows, int64_t vocab, int64_t ignore_index, T z_loss,
                                        cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  kernels::cross_entropy_rows_kernel<T><<<static_cast<unsigned>(rows), kernels::kHeadThreads, 0, stream>>>(
      logits, labels, grad_scale, losses, vocab, ignore_index, z_loss);
  return cudaGetLastError();
}

}  // namespace fastmask
