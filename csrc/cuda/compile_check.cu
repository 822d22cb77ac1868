// Torch-free compile check: instantiates every launcher for every dtype combination so that
// `nvcc -c` proves the kernels build on machines without a CUDA torch. Not needed at run time.
#include <cstdint>

#include "masking.cuh"

namespace fastmask {

#define FASTMASK_INSTANTIATE_MASKABLE(IdT, AttnT)                                                  \
  template cudaError_t launch_maskable_mask<IdT, AttnT>(const IdT*, const AttnT*, const int64_t*, \
                                                        int64_t, bool*, int64_t, int64_t,         \
                                                        cudaStream_t);

#define FASTMASK_INSTANTIATE_MASKING(IdT)                                                          \
  FASTMASK_INSTANTIATE_MASKABLE(IdT, bool)                                                         \
  FASTMASK_INSTANTIATE_MASKABLE(IdT, int32_t)                                                      \
  FASTMASK_INSTANTIATE_MASKABLE(IdT, int64_t)                                                      \
  template cudaError_t launch_mask_tokens<IdT>(const IdT*, const bool*, const int64_t*, IdT*,      \
                                               int64_t*, int64_t, int64_t, const MaskArgs&, bool,  \
                                               cudaStream_t);                                      \
  template cudaError_t launch_fully_explored_mask<IdT>(const IdT*, const bool*, const int64_t*,    \
                                                       IdT*, int64_t*, int64_t, int64_t, int64_t,  \
                                                       bool, const MaskArgs&, cudaStream_t);

FASTMASK_INSTANTIATE_MASKING(int32_t)
FASTMASK_INSTANTIATE_MASKING(int64_t)

#undef FASTMASK_INSTANTIATE_MASKING
#undef FASTMASK_INSTANTIATE_MASKABLE

}  // namespace fastmask

// Sparse-gathering launchers (gather.cuh). The binding passes 2-, 4- and 8-byte unsigned storage
// types; the floating types are instantiated too, to show that any element of those sizes works.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "gather.cuh"

namespace fastmask {

// launch_masked_positions is not a template: an external function makes nvcc emit it.
cudaError_t compile_check_masked_positions(const int64_t* labels, int64_t rows, int64_t length,
                                           int64_t capacity, int64_t* index, int64_t* out_labels,
                                           int64_t* count, cudaStream_t stream) {
  return launch_masked_positions(labels, rows, length, capacity, index, out_labels, count, stream);
}

#define FASTMASK_INSTANTIATE_GATHER(T)                                                             \
  template cudaError_t launch_gather_masked<T>(const T*, const int64_t*, T*, int64_t, int64_t,     \
                                               int64_t, int64_t, cudaStream_t);                    \
  template cudaError_t launch_scatter_masked<T>(const T*, const int64_t*, T*, int32_t*, int64_t,   \
                                                int64_t, int64_t, int64_t, cudaStream_t);

FASTMASK_INSTANTIATE_GATHER(uint16_t)
FASTMASK_INSTANTIATE_GATHER(uint32_t)
FASTMASK_INSTANTIATE_GATHER(uint64_t)
FASTMASK_INSTANTIATE_GATHER(float)
FASTMASK_INSTANTIATE_GATHER(double)
FASTMASK_INSTANTIATE_GATHER(__half)
FASTMASK_INSTANTIATE_GATHER(__nv_bfloat16)

#undef FASTMASK_INSTANTIATE_GATHER

}  // namespace fastmask

// Proposal-sampling launcher (proposal.cuh), for every id and score type.
#include "proposal.cuh"

namespace fastmask {

#define FASTMASK_INSTANTIATE_PROPOSAL(IdT, ScoreT)                                                 \
  template cudaError_t launch_proposal_mask<IdT, ScoreT>(                                          \
      const IdT*, const ScoreT*, const bool*, const int64_t*, IdT*, int64_t*, float*, int64_t,     \
      int64_t, const MaskArgs&, float, float, int64_t, bool, cudaStream_t);

FASTMASK_INSTANTIATE_PROPOSAL(int32_t, float)
FASTMASK_INSTANTIATE_PROPOSAL(int32_t, __half)
FASTMASK_INSTANTIATE_PROPOSAL(int32_t, __nv_bfloat16)
FASTMASK_INSTANTIATE_PROPOSAL(int64_t, float)
FASTMASK_INSTANTIATE_PROPOSAL(int64_t, __half)
FASTMASK_INSTANTIATE_PROPOSAL(int64_t, __nv_bfloat16)

#undef FASTMASK_INSTANTIATE_PROPOSAL

}  // namespace fastmask
