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
