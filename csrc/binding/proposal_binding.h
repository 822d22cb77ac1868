// proposal_mask's argument checks, its batch-level step and its binding template, shared by the
// CPU and CUDA torch bindings (needs torch; the kernels' headers in csrc/include do not). The
// checks here come after check_mask_args (masking_binding.h), which validates input_ids.
#pragma once

#include <cmath>
#include <cstdint>
#include <tuple>

#include <ATen/ATen.h>

#include "masking_binding.h"

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

// The binding template of proposal_mask, as masking_binding.h's (the Backend contract is at the
// top of that file): Backend::proposal_mask gets the contiguous scores tensor, whose dtype it
// dispatches on itself (the CPU kernel reads float32, the CUDA kernel each score type), and raw
// pointers and values for the rest, in the order of launch_proposal_mask (csrc/cuda/proposal.cuh).
// The sequence weights are divided by their batch mean here.
template <typename Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor> proposal_mask_binding(
    const at::Tensor& input_ids, const at::Tensor& scores, const at::Tensor& maskable, const at::Tensor& row_ids,
    const at::Tensor& seed, const at::Tensor& epoch, int64_t count_num, int64_t count_den, double uniform_mix,
    double temperature, int64_t sampling, bool sequence_weights, int64_t mask_threshold, int64_t random_threshold,
    int64_t mask_token_id, int64_t vocab_size, const std::optional<at::Tensor>& rate) {
  check_mask_args("proposal_mask", input_ids, maskable, row_ids, Backend::kDevice);
  check_scores(scores, input_ids);
  check_sampling(sampling);
  // Not a structured binding: lambdas may capture those only from C++20 on.
  const ProposalFloatArgs floats = proposal_float_args(uniform_mix, temperature);
  const MaskArgs args = make_mask_args("proposal_mask", input_ids, seed, epoch, 0, count_num, count_den, mask_threshold,
                                       random_threshold, mask_token_id, vocab_size, rate);
  [[maybe_unused]] const typename Backend::Guard guard(input_ids.device());
  const at::Tensor ids = input_ids.contiguous();
  at::Tensor out_ids = at::empty(ids.sizes(), ids.options());
  at::Tensor labels = at::empty(ids.sizes(), ids.options().dtype(at::kLong));
  at::Tensor weights = at::empty(ids.sizes(), ids.options().dtype(at::kFloat));
  const int64_t rows = ids.size(0);
  const int64_t length = ids.size(1);
  if (rows == 0 || length == 0) return {out_ids, labels, weights};
  const at::Tensor sc = scores.contiguous();
  const at::Tensor mask = maskable.contiguous();
  const at::Tensor rid = row_ids.contiguous();
  dispatch_ids(ids.scalar_type(), [&](auto id_tag) {
    using IdT = decltype(id_tag);
    Backend::proposal_mask(ids.data_ptr<IdT>(), sc, mask.data_ptr<bool>(), rid.data_ptr<int64_t>(),
                           out_ids.data_ptr<IdT>(), labels.data_ptr<int64_t>(), weights.data_ptr<float>(), rows,
                           length, args, floats.uniform_mix, floats.temperature, sampling, sequence_weights);
  });
  return {out_ids, labels, sequence_weights ? divide_by_batch_mean(weights) : weights};
}

}  // namespace fastmask
