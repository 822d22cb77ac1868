// proposal_mask's argument checks and its batch-level step, shared by the CPU and CUDA torch
// bindings (needs torch; the kernels' headers in csrc/include do not). Call after check_mask_args
// (masking_binding.h), which validates input_ids.
#pragma once

#include <cmath>

#include <ATen/ATen.h>

namespace fastmask {

inline void check_scores(const at::Tensor& scores, const at::Tensor& input_ids) {
  const auto t = scores.scalar_type();
  TORCH_CHECK_TYPE(t == at::kFloat || t == at::kHalf || t == at::kBFloat16,
                   "proposal_mask: scores must be float32, float16 or bfloat16, got ", t);
  check_companion("proposal_mask", "scores", scores, input_ids);
}

// The sampling code (reference.SAMPLING_*; fastmask/checks.py says the same for the other entry points).
inline void check_sampling(int64_t sampling) {
  TORCH_CHECK_VALUE(sampling >= 0 && sampling <= 2,
                    "proposal_mask: sampling must be 0 (top-k), 1 (Poisson) or 2 (systematic), got ", sampling);
}

struct ProposalFloatArgs {
  float uniform_mix;
  float temperature;
};

// The schema's doubles as the float32 values the kernels use (round to nearest, as the reference's
// torch.tensor(value, dtype=float32)). A temperature that rounds to 0 or inf in float32 is kept:
// the kernels then compute what the reference computes with it.
inline ProposalFloatArgs proposal_float_args(double uniform_mix, double temperature) {
  TORCH_CHECK_VALUE(uniform_mix >= 0.0 && uniform_mix <= 1.0, "proposal_mask: uniform_mix must be in [0, 1], got ",
                    uniform_mix);
  TORCH_CHECK_VALUE(std::isfinite(temperature) && temperature > 0.0,
                    "proposal_mask: temperature must be a finite number > 0, got ", temperature);
  return ProposalFloatArgs{static_cast<float>(uniform_mix), static_cast<float>(temperature)};
}

// Sequence weights divided by the batch mean of the rows' weights (rows with a mask): the same
// tensor operations as reference.divide_by_batch_mean, on the device, with no host sync.
inline at::Tensor divide_by_batch_mean(const at::Tensor& weights) {
  if (weights.size(1) == 0) return weights;
  const at::Tensor row_weight = weights.amax(1);
  const at::Tensor has_mask = row_weight > 0;
  const at::Tensor mean = (row_weight * has_mask).sum() / has_mask.sum().clamp_min(1);
  return weights / at::where(mean > 0, mean, at::ones_like(mean));
}

}  // namespace fastmask
