// Torch binding of the CUDA proposal-sampling kernels in proposal.cuh. The op schema is defined in
// Python (fastmask/library.py); argument checks come from masking_binding.h and
// proposal_binding.h, shared with the CPU binding, so a direct torch.ops call fails the same way
// on both devices.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>

#include "masking_binding.h"
#include "proposal_binding.h"
#include "proposal.cuh"

namespace fastmask {
namespace {

// Top-k and systematic sampling rank the row in one thread block: longer rows are refused.
void check_proposal_launch(cudaError_t err, int64_t sampling, int64_t length) {
  if (err == cudaSuccess) return;
  TORCH_CHECK(!(sampling != kSamplingPoisson && err == cudaErrorInvalidValue && length > kMaxRankedLength),
              "proposal_mask: input_ids rows have length ", length, " but the CUDA kernel samples ",
              sampling == kSamplingSystematic ? "systematic" : "top-k", " from at most ", kMaxRankedLength,
              " positions per row (it ranks a row in one thread block); use sampling='poisson', ",
              "backend='triton' or backend='reference' for longer rows");
  TORCH_CHECK(false, "proposal_mask: CUDA kernel failed: ", cudaGetErrorString(err));
}

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f with a TypeTag of the CUDA type of the scores (layout-compatible with torch's).
template <typename F>
void dispatch_scores(at::ScalarType t, F&& f) {
  if (t == at::kFloat) {
    f(TypeTag<float>{});
  } else if (t == at::kHalf) {
    f(TypeTag<__half>{});
  } else if (t == at::kBFloat16) {
    f(TypeTag<__nv_bfloat16>{});
  } else {
    TORCH_CHECK_TYPE(false, "proposal_mask: scores must be float32, float16 or bfloat16, got ", t);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> proposal_mask_cuda(
    const at::Tensor& input_ids, const at::Tensor& scores, const at::Tensor& maskable, const at::Tensor& row_ids,
    const at::Tensor& seed, const at::Tensor& epoch, int64_t count_num, int64_t count_den, double uniform_mix,
    double temperature, int64_t sampling, bool sequence_weights, int64_t mask_threshold, int64_t random_threshold,
    int64_t mask_token_id, int64_t vocab_size) {
  check_mask_args("proposal_mask", input_ids, maskable, row_ids, at::kCUDA);
  check_scores(scores, input_ids);
  check_sampling(sampling);
  // Not a structured binding: lambdas may capture those only from C++20 on.
  const ProposalFloatArgs floats = proposal_float_args(uniform_mix, temperature);
  const MaskArgs args = make_mask_args("proposal_mask", input_ids, seed, epoch, 0, count_num, count_den, mask_threshold,
                                       random_threshold, mask_token_id, vocab_size);
  const c10::cuda::CUDAGuard device_guard(input_ids.device());
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
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  cudaError_t err = cudaSuccess;
  dispatch_ids(ids.scalar_type(), [&](auto id_tag) {
    using IdT = decltype(id_tag);
    dispatch_scores(sc.scalar_type(), [&](auto score_tag) {
      using ScoreT = typename decltype(score_tag)::type;
      err = launch_proposal_mask<IdT, ScoreT>(
          ids.data_ptr<IdT>(), static_cast<const ScoreT*>(sc.data_ptr()), mask.data_ptr<bool>(),
          rid.data_ptr<int64_t>(), out_ids.data_ptr<IdT>(), labels.data_ptr<int64_t>(),
          weights.data_ptr<float>(), rows, length, args, floats.uniform_mix, floats.temperature, sampling,
          sequence_weights, stream);
    });
  });
  check_proposal_launch(err, sampling, length);
  return {out_ids, labels, sequence_weights ? divide_by_batch_mean(weights) : weights};
}

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CUDA, m) { m.impl("proposal_mask_cuda", &fastmask::proposal_mask_cuda); }
