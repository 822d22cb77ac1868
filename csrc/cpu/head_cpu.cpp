// C++ CPU row kernel of the fused cross-entropy (linear_cross_entropy); the chunk loop, checks and
// outputs are head_binding.h's, the arithmetic csrc/include/fastmask/head.h's.
#include <cmath>
#include <cstdint>
#include <cstring>

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_binding.h"
#include "fastmask/head.h"
#include "head_binding.h"

namespace fastmask {
namespace {

template <typename T>
void cross_entropy_rows_kernel(T* logits, const int64_t* labels, const T* grad_scale, T* losses, int64_t rows,
                               int64_t vocab, int64_t ignore_index, double z_loss) {
  const T z = static_cast<T>(z_loss);
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T* x = logits + r * vocab;
      const HeadRow row = head_row(labels[r], vocab, ignore_index);
      if (row == HeadRow::kIgnored) {  // nothing to compute: ignored rows cost a memset
        losses[r] = T(0);
        if (grad_scale != nullptr) std::memset(x, 0, vocab * sizeof(T));
        continue;
      }
      // Three passes, one exp per logit: the maximum; exp(x - max), summed (and, for the gradient,
      // stored over x); then x scaled by the softmax factor over the sum.
      T max = x[0];
      for (int64_t j = 1; j < vocab; ++j) max = std::fmax(max, x[j]);
      const T target = row == HeadRow::kLabelled ? x[labels[r]] : T(0);
      T sum = 0;
      if (grad_scale == nullptr) {
        for (int64_t j = 0; j < vocab; ++j) sum += std::exp(x[j] - max);
      } else {
        for (int64_t j = 0; j < vocab; ++j) sum += (x[j] = std::exp(x[j] - max));
      }
      const T lse = max + std::log(sum);
      losses[r] = head_row_loss(row, lse, target, z);
      if (grad_scale == nullptr) continue;
      const T factor = head_softmax_factor(row, lse, grad_scale[r], z) / sum;
      for (int64_t j = 0; j < vocab; ++j) x[j] *= factor;
      if (row == HeadRow::kLabelled) x[labels[r]] -= grad_scale[r];
    }
  });
}

struct CpuHead : CpuDevice {
  template <typename T, typename... A>
  static void cross_entropy_rows(T* logits, A... a) { cross_entropy_rows_kernel(logits, a...); }
};

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CPU, m) {
  m.impl("linear_cross_entropy_cpp", &fastmask::linear_cross_entropy_binding<fastmask::CpuHead>);
}
