// Torch binding of the CUDA kernels in masking.cuh: the launchers as masking_binding.h's templates
// call them (shared with the CPU binding: checks, contiguous inputs, outputs, so a direct torch.ops
// call fails the same way on both devices) and their registration. The op schemas are defined in
// Python (fastmask/library.py).
#include <torch/library.h>

#include <cstdint>

#include "cuda_binding.h"
#include "masking.cuh"
#include "masking_binding.h"

namespace fastmask {
namespace {

// Ranked modes sort a row in one thread block: longer rows are refused.
void check_masking_launch(cudaError_t err, const char* op, bool ranked, int64_t length) {
  if (err == cudaSuccess) return;
  TORCH_CHECK(!(ranked && err == cudaErrorInvalidValue && length > kMaxRankedLength), op,
              ": input_ids rows have length ", length, " but the CUDA kernel ranks at most ",
              kMaxRankedLength, " positions per row in this mode; use backend='triton' or ",
              "backend='reference' for longer rows");
  check_launch(err, op);
}

struct CudaMasking : CudaDevice {
  template <typename IdT, typename AttnT>
  static void maskable_mask(const IdT* ids, const AttnT* attention, const int64_t* special, int64_t num_special,
                            bool* out, int64_t rows, int64_t length) {
    check_masking_launch(launch_maskable_mask<IdT, AttnT>(ids, attention, special, num_special, out, rows, length,
                                                          current_stream()),
                         "maskable_mask", /*ranked=*/false, length);
  }

  template <typename IdT>
  static void mask_tokens(const IdT* ids, const bool* maskable, const int64_t* row_ids, IdT* out_ids,
                          int64_t* labels, int64_t rows, int64_t length, const MaskArgs& args, bool exact) {
    check_masking_launch(launch_mask_tokens<IdT>(ids, maskable, row_ids, out_ids, labels, rows, length, args, exact,
                                                 current_stream()),
                         "mask_tokens", /*ranked=*/exact, length);
  }

  template <typename IdT>
  static void fully_explored_mask(const IdT* ids, const bool* maskable, const int64_t* row_ids, IdT* out_ids,
                                  int64_t* labels, int64_t rows, int64_t length, int64_t num_segments,
                                  bool contiguous, const MaskArgs& args, const bool* word_start) {
    check_masking_launch(launch_fully_explored_mask<IdT>(ids, maskable, word_start, row_ids, out_ids, labels, rows,
                                                         length, num_segments, contiguous, args, current_stream()),
                         "fully_explored_mask", /*ranked=*/!contiguous, length);
  }
};

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CUDA, m) {
  using Backend = fastmask::CudaMasking;
  m.impl("maskable_mask_cuda", &fastmask::maskable_mask_binding<Backend>);
  m.impl("mask_tokens_cuda", &fastmask::mask_tokens_binding<Backend>);
  m.impl("fully_explored_mask_cuda", &fastmask::fully_explored_mask_binding<Backend>);
}
