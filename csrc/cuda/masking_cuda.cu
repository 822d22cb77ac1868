// Torch binding of the CUDA kernels in masking.cuh. The op schemas are defined in Python
// (fastmask/library.py); argument checks and MaskArgs come from masking_binding.h, shared with the
// CPU binding, so a direct torch.ops call fails the same way on both devices.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>
#include <optional>
#include <tuple>

#include "masking_binding.h"
#include "masking.cuh"

namespace fastmask {
namespace {

void check_launch(cudaError_t err, const char* op, bool ranked, int64_t length) {
  if (err == cudaSuccess) return;
  TORCH_CHECK(!(ranked && err == cudaErrorInvalidValue && length > kMaxRankedLength), op,
              ": input_ids rows have length ", length, " but the CUDA kernel ranks at most ",
              kMaxRankedLength, " positions per row in this mode; use backend='triton' or ",
              "backend='reference' for longer rows");
  TORCH_CHECK(false, op, ": CUDA kernel failed: ", cudaGetErrorString(err));
}

cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream().stream(); }

at::Tensor maskable_mask_cuda(const at::Tensor& input_ids, const std::optional<at::Tensor>& attention_mask,
                              const at::Tensor& special_ids) {
  check_maskable_args(input_ids, attention_mask, special_ids, at::kCUDA);
  const c10::cuda::CUDAGuard device_guard(input_ids.device());
  const at::Tensor ids = input_ids.contiguous();
  at::Tensor out = at::empty(ids.sizes(), ids.options().dtype(at::kBool));
  if (ids.numel() == 0) return out;
  const at::Tensor special = special_ids.contiguous();
  const at::Tensor attention =
      attention_mask && attention_mask->defined() ? attention_mask->contiguous() : at::Tensor();
  const int64_t* special_ptr = special.numel() > 0 ? special.data_ptr<int64_t>() : nullptr;
  cudaError_t err = cudaSuccess;
  dispatch_ids(ids.scalar_type(), [&](auto id_tag) {
    using IdT = decltype(id_tag);
    dispatch_attention(attention, [&](auto attn_tag) {
      using AttnT = decltype(attn_tag);
      err = launch_maskable_mask<IdT, AttnT>(
          ids.data_ptr<IdT>(), attention.defined() ? attention.data_ptr<AttnT>() : nullptr,
          special_ptr, special.numel(), out.data_ptr<bool>(), ids.size(0), ids.size(1),
          current_stream());
    });
  });
  check_launch(err, "maskable_mask", /*ranked=*/false, ids.size(1));
  return out;
}

std::tuple<at::Tensor, at::Tensor> mask_tokens_cuda(
    const at::Tensor& input_ids, const at::Tensor& maskable, const at::Tensor& row_ids, const at::Tensor& seed,
    const at::Tensor& epoch, int64_t select_threshold, int64_t count_num, int64_t count_den, int64_t mask_threshold,
    int64_t random_threshold, int64_t mask_token_id, int64_t vocab_size, bool exact) {
  check_mask_args("mask_tokens", input_ids, maskable, row_ids, at::kCUDA);
  const MaskArgs args = make_mask_args("mask_tokens", input_ids, seed, epoch, select_threshold, count_num, count_den,
                                       mask_threshold, random_threshold, mask_token_id, vocab_size);
  const c10::cuda::CUDAGuard device_guard(input_ids.device());
  const at::Tensor ids = input_ids.contiguous();
  at::Tensor out_ids = at::empty(ids.sizes(), ids.options());
  at::Tensor labels = at::empty(ids.sizes(), ids.options().dtype(at::kLong));
  const int64_t rows = ids.size(0);
  const int64_t length = ids.size(1);
  if (rows == 0 || length == 0) return {out_ids, labels};
  const at::Tensor mask = maskable.contiguous();
  const at::Tensor rid = row_ids.contiguous();
  cudaError_t err = cudaSuccess;
  dispatch_ids(ids.scalar_type(), [&](auto id_tag) {
    using IdT = decltype(id_tag);
    err = launch_mask_tokens<IdT>(ids.data_ptr<IdT>(), mask.data_ptr<bool>(), rid.data_ptr<int64_t>(),
                                  out_ids.data_ptr<IdT>(), labels.data_ptr<int64_t>(), rows, length,
                                  args, exact, current_stream());
  });
  check_launch(err, "mask_tokens", /*ranked=*/exact, length);
  return {out_ids, labels};
}

std::tuple<at::Tensor, at::Tensor> fully_explored_mask_cuda(
    const at::Tensor& input_ids, const at::Tensor& maskable, const at::Tensor& row_ids, const at::Tensor& seed,
    const at::Tensor& epoch, int64_t num_segments, bool contiguous, int64_t mask_threshold,
    int64_t random_threshold, int64_t mask_token_id, int64_t vocab_size) {
  const MaskArgs args = fully_explored_args(input_ids, maskable, row_ids, seed, epoch, num_segments, mask_threshold,
                                            random_threshold, mask_token_id, vocab_size, at::kCUDA);
  const c10::cuda::CUDAGuard device_guard(input_ids.device());
  const at::Tensor ids = input_ids.contiguous();
  const int64_t rows = ids.size(0);
  const int64_t length = ids.size(1);
  at::Tensor out_ids = at::empty({num_segments, rows, length}, ids.options());
  at::Tensor labels = at::empty({num_segments, rows, length}, ids.options().dtype(at::kLong));
  if (rows == 0 || length == 0) return {out_ids, labels};
  const at::Tensor mask = maskable.contiguous();
  const at::Tensor rid = row_ids.contiguous();
  cudaError_t err = cudaSuccess;
  dispatch_ids(ids.scalar_type(), [&](auto id_tag) {
    using IdT = decltype(id_tag);
    err = launch_fully_explored_mask<IdT>(ids.data_ptr<IdT>(), mask.data_ptr<bool>(),
                                          rid.data_ptr<int64_t>(), out_ids.data_ptr<IdT>(),
                                          labels.data_ptr<int64_t>(), rows, length, num_segments,
                                          contiguous, args, current_stream());
  });
  check_launch(err, "fully_explored_mask", /*ranked=*/!contiguous, length);
  return {out_ids, labels};
}

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CUDA, m) {
  m.impl("maskable_mask_cuda", &fastmask::maskable_mask_cuda);
  m.impl("mask_tokens_cuda", &fastmask::mask_tokens_cuda);
  m.impl("fully_explored_mask_cuda", &fastmask::fully_explored_mask_cuda);
}
