// The per-row arithmetic of the fused cross-entropy (linear_cross_entropy), shared by the CPU and
// CUDA row kernels (torch-free). The executable specification is fastmask/reference.py's
// cross_entropy_rows: with lse the row's logsumexp and y its label,
//   loss = lse - logit[y] + z_loss * lse^2          (0 on ignored rows, NaN for y outside [0, V))
//   grad[j] = s * (exp(logit[j] - lse) * (1 + 2 z_loss lse) - [j == y])
#pragma once

#include <cstdint>
#include <limits>

#include "fastmask/philox.h"  // FASTMASK_HD

namespace fastmask {

// What a row's label makes of it.
enum class HeadRow { kIgnored, kLabelled, kOutOfRange };

FASTMASK_HD HeadRow head_row(int64_t label, int64_t vocab, int64_t ignore_index) {
  if (label == ignore_index) return HeadRow::kIgnored;
  return label >= 0 && label < vocab ? HeadRow::kLabelled : HeadRow::kOutOfRange;
}

template <typename T>
FASTMASK_HD T head_row_loss(HeadRow row, T lse, T target, T z_loss) {
  if (row == HeadRow::kIgnored) return T(0);
  if (row == HeadRow::kOutOfRange) return std::numeric_limits<T>::quiet_NaN();
  return lse - target + z_loss * lse * lse;
}

// The factor of every softmax term of a row's gradient: s (1 + 2 z_loss lse); 0 on ignored rows
// and NaN on out-of-range ones (their whole gradient row).
template <typename T>
FASTMASK_HD T head_softmax_factor(HeadRow row, T lse, T scale, T z_loss) {
  if (row == HeadRow::kIgnored) return T(0);
  if (row == HeadRow::kOutOfRange) return std::numeric_limits<T>::quiet_NaN();
  return scale * (T(1) + T(2) * z_loss * lse);
}

}  // namespace fastmask
