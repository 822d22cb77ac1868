// Torch binding of the CUDA proposal-sampling kernels in proposal.cuh: the launcher as
// proposal_binding.h's template calls it (shared with the CPU binding: checks, contiguous inputs,
// outputs, the batch mean of sequence weights, so a direct torch.ops call fails the same way on
// both devices) and its registration. The op schema is defined in Python (fastmask/library.py).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include <cstdint>

#include "cuda_binding.h"
#include "proposal.cuh"
#include "proposal_binding.h"

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
  check_launch(err, "proposal_mask");
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

struct CudaProposal : CudaDevice {
  template <typename IdT>
  static void proposal_mask(const IdT* ids, const at::Tensor& scores, const bool* maskable, const int64_t* row_ids,
                            IdT* out_ids, int64_t* labels, float* weights, int64_t rows, int64_t length,
                            const MaskArgs& args, float uniform_mix, float temperature, int64_t sampling,
                            bool sequence_weights) {
    dispatch_scores(scores.scalar_type(), [&](auto score_tag) {
      using ScoreT = typename decltype(score_tag)::type;
      check_proposal_launch(
          launch_proposal_mask<IdT, ScoreT>(ids, static_cast<const ScoreT*>(scores.data_ptr()), maskable, row_ids,
                                            out_ids, labels, weights, rows, length, args, uniform_mix, temperature,
                                            sampling, sequence_weights, current_stream()),
          sampling, length);
    });
  }
};

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CUDA, m) {
  m.impl("proposal_mask_cuda", &fastmask::proposal_mask_binding<fastmask::CudaProposal>);
}
