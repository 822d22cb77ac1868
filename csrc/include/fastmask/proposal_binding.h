// Argument checks of proposal_mask shared by the CPU and CUDA torch bindings (needs torch; the
// kernels' headers do not), so a direct torch.ops call fails the same way on both devices.
// Call after check_mask_args (fastmask/binding.h), which validates input_ids.
#pragma once

#include <cmath>

#include <ATen/ATen.h>

namespace fastmask {

inline void check_scores(const at::Tensor& scores, const at::Tensor& input_ids) {
  TORCH_CHECK(scores.dim() == 2, "scores must be 2-D (batch, length), got ", scores.dim(), "-D");
  TORCH_CHECK(scores.sizes() == input_ids.sizes(), "scores must have the shape of input_ids ",
              input_ids.sizes(), ", got ", scores.sizes());
  TORCH_CHECK(scores.device() == input_ids.device(), "scores must be on ", input_ids.device(), ", got ",
              scores.device());
  const auto t = scores.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kHalf || t == at::kBFloat16,
              "scores must be float32, float16 or bfloat16, got ", t);
}

struct ProposalFloatArgs {
  float uniform_mix;
  float temperature;
};

// The schema's doubles as the float32 values the kernels use (round to nearest, as the reference's
// torch.tensor(value, dtype=float32)). A temperature that rounds to 0 or inf in float32 is kept:
// the kernels then compute what the reference computes with it.
inline ProposalFloatArgs proposal_float_args(double uniform_mix, double temperature) {
  TORCH_CHECK(uniform_mix >= 0.0 && uniform_mix <= 1.0, "uniform_mix must be in [0, 1], got ", uniform_mix);
  TORCH_CHECK(std::isfinite(temperature) && temperature > 0.0, "temperature must be a finite number > 0, got ",
              temperature);
  return ProposalFloatArgs{static_cast<float>(uniform_mix), static_cast<float>(temperature)};
}

}  // namespace fastmask
