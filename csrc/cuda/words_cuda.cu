// Torch binding of the CUDA kernels in words.cuh: the launchers as words_binding.h's templates
// call them (shared with the CPU binding) and their registration. The op schemas are defined in
// Python (fastmask/library.py).
#include <torch/library.h>

#include <cstdint>

#include "cuda_binding.h"
#include "fastmask/words.h"
#include "words.cuh"
#include "words_binding.h"

namespace fastmask {
namespace {

// Span tiles are ranked in one thread block: longer rows are refused before any launch (the
// wrappers send them to another backend; a direct call gets this).
void check_ranked_length(const char* op, int64_t length) {
  TORCH_CHECK_VALUE(length <= kMaxRankedLength, op, ": input_ids rows have length ", length,
                    " but the CUDA kernel ranks at most ", kMaxRankedLength, " positions per row in this mode; ",
                    "use backend='triton' or backend='reference' for longer rows");
}

struct CudaWords : CudaDevice {
  template <typename IdT>
  static void whole_word_mask(const IdT* ids, const bool* maskable, const bool* word_start, const int64_t* row_ids,
                              IdT* out_ids, int64_t* labels, int64_t rows, int64_t length, const MaskArgs& args,
                              bool exact) {
    if (exact) check_ranked_length("whole_word_mask", length);
    check_launch(launch_whole_word_mask<IdT>(ids, maskable, word_start, row_ids, out_ids, labels, rows, length, args,
                                             exact, current_stream()),
                 "whole_word_mask");
  }

  template <typename IdT>
  static void span_mask(const IdT* ids, const bool* maskable, const bool* word_start, const int64_t* row_ids,
                        IdT* out_ids, int64_t* labels, int64_t rows, int64_t length, const MaskArgs& args,
                        const SpanLengths& lengths, bool per_span) {
    check_ranked_length("span_mask", length);
    check_launch(launch_span_mask<IdT>(ids, maskable, word_start, row_ids, out_ids, labels, rows, length, args,
                                       lengths, per_span, current_stream()),
                 "span_mask");
  }
};

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CUDA, m) {
  using Backend = fastmask::CudaWords;
  m.impl("whole_word_mask_cuda", &fastmask::whole_word_mask_binding<Backend>);
  m.impl("span_mask_cuda", &fastmask::span_mask_binding<Backend>);
}
