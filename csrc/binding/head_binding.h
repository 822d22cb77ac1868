// Argument checks and the binding template of the vocabulary head's fused cross-entropy
// (linear_cross_entropy), shared by the CPU and CUDA torch bindings. The full contract is checked
// in Python (fastmask/checks.py); these checks stand between a direct torch.ops call and an
// out-of-bounds access, raising the same exception types.
//
// The chunk loop is the same on both devices: each chunk of rows gets its logits from the vendor
// GEMM (at::mm / at::addmm, in the inputs' dtype), converted to the accumulation dtype (float64
// for float64 inputs, else float32); Backend::cross_entropy_rows writes the rows' losses and,
// given grad_scale, overwrites the logits with their gradient; two more GEMMs give the chunk's
// share of the gradients. Only one chunk of logits is ever held. fastmask/reference.py's
// chunked_linear_cross_entropy is the same loop in Python.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>

#include <ATen/ATen.h>

namespace fastmask {

inline void check_head_matrix(const at::Tensor& t, const char* name, c10::DeviceType device) {
  TORCH_CHECK_VALUE(t.dim() == 2, "linear_cross_entropy: ", name, " must be 2-D, got ", t.dim(), "-D");
  const at::ScalarType dtype = t.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kDouble,
                   "linear_cross_entropy: ", name, " must be float32, float16, bfloat16 or float64, got ", dtype);
  TORCH_CHECK_VALUE(t.device().type() == device, "linear_cross_entropy: ", name, " must be on ", device, ", got ",
                    t.device());
}

inline void check_head_vector(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t size,
                              const at::Tensor& hidden) {
  TORCH_CHECK_VALUE(t.dim() == 1, "linear_cross_entropy: ", name, " must be 1-D, got ", t.dim(), "-D");
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, "linear_cross_entropy: ", name, " must be ", dtype, ", got ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(t.size(0) == size, "linear_cross_entropy: ", name, " must have ", size, " values, got ", t.size(0));
  TORCH_CHECK_VALUE(t.device() == hidden.device(), "linear_cross_entropy: ", name, " must be on ", hidden.device(),
                    " like hidden, got ", t.device());
}

inline at::ScalarType head_accumulation_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_linear_cross_entropy_args(const at::Tensor& hidden, const at::Tensor& weight,
                                            const std::optional<at::Tensor>& bias, const at::Tensor& labels,
                                            const std::optional<at::Tensor>& grad_scale, double z_loss,
                                            int64_t chunk_size, c10::DeviceType device) {
  check_head_matrix(hidden, "hidden", device);
  check_head_matrix(weight, "weight", device);
  TORCH_CHECK_TYPE(weight.scalar_type() == hidden.scalar_type(), "linear_cross_entropy: weight must have the dtype ",
                   "of hidden (", hidden.scalar_type(), "), got ", weight.scalar_type());
  TORCH_CHECK_VALUE(weight.device() == hidden.device(), "linear_cross_entropy: weight must be on ", hidden.device(),
                    " like hidden, got ", weight.device());
  TORCH_CHECK_VALUE(weight.size(1) == hidden.size(1), "linear_cross_entropy: weight must be (vocabulary, ",
                    hidden.size(1), ") for hidden of width ", hidden.size(1), ", got width ", weight.size(1));
  TORCH_CHECK_VALUE(weight.size(0) >= 1 && weight.size(0) < (int64_t{1} << 31),
                    "linear_cross_entropy: weight must have between 1 and 2^31 - 1 rows (the vocabulary), got ",
                    weight.size(0));
  if (bias) check_head_vector(*bias, "bias", hidden.scalar_type(), weight.size(0), hidden);
  check_head_vector(labels, "labels", at::kLong, hidden.size(0), hidden);
  if (grad_scale) {
    check_head_vector(*grad_scale, "grad_scale", head_accumulation_dtype(hidden.scalar_type()), hidden.size(0), hidden);
  }
  TORCH_CHECK_VALUE(z_loss >= 0 && z_loss < INFINITY, "linear_cross_entropy: z_loss must be a finite float >= 0, got ",
                    z_loss);
  TORCH_CHECK_VALUE(chunk_size >= 1 && chunk_size < (int64_t{1} << 31),
                    "linear_cross_entropy: chunk_size must be in [1, 2^31), got ", chunk_size);
}

// Backend::cross_entropy_rows(logits, labels, grad_scale or nullptr, losses, rows, vocab,
// ignore_index, z_loss) on a chunk's contiguous (rows, vocab) logits in the accumulation dtype T:
// fastmask.reference.cross_entropy_rows, the gradient written over the logits.
template <typename Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> linear_cross_entropy_binding(
    const at::Tensor& hidden, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const at::Tensor& labels, const std::optional<at::Tensor>& grad_scale, int64_t ignore_index, double z_loss,
    int64_t chunk_size) {
  check_linear_cross_entropy_args(hidden, weight, bias, labels, grad_scale, z_loss, chunk_size, Backend::kDevice);
  [[maybe_unused]] const typename Backend::Guard guard(hidden.device());
  const at::ScalarType acc = head_accumulation_dtype(hidden.scalar_type());
  const bool grads = grad_scale.has_value();
  const at::Tensor h = hidden.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor lab = labels.contiguous();
  const std::optional<at::Tensor> b = bias ? std::optional<at::Tensor>(bias->contiguous()) : std::nullopt;
  const at::Tensor scale = grads ? grad_scale->contiguous() : at::Tensor();
  const int64_t rows = h.size(0);
  const int64_t vocab = w.size(0);
  at::Tensor losses = at::empty({rows}, h.options().dtype(acc));
  const auto empty = [&] { return at::empty({0}, h.options()); };  // distinct tensors: outputs never alias
  at::Tensor grad_hidden = grads ? at::empty_like(h) : empty();
  // Half-precision gradients of the weight and bias accumulate over the chunks in float32.
  at::Tensor grad_w = grads ? at::zeros({vocab, w.size(1)}, w.options().dtype(acc)) : at::Tensor();
  at::Tensor grad_b = grads && b ? at::zeros({vocab}, w.options().dtype(acc)) : at::Tensor();
  const at::Tensor wt = w.t();
  for (int64_t start = 0; start < rows; start += chunk_size) {
    const int64_t n = std::min(chunk_size, rows - start);
    const at::Tensor hc = h.narrow(0, start, n);
    at::Tensor logits = (b ? at::addmm(*b, hc, wt) : at::mm(hc, wt)).to(acc).contiguous();
    AT_DISPATCH_FLOATING_TYPES(acc, "linear_cross_entropy", [&] {
      Backend::cross_entropy_rows(logits.data_ptr<scalar_t>(), lab.data_ptr<int64_t>() + start,
                                  grads ? scale.data_ptr<scalar_t>() + start : nullptr,
                                  losses.data_ptr<scalar_t>() + start, n, vocab, ignore_index, z_loss);
    });
    if (!grads) continue;
    const at::Tensor dz = logits.to(h.scalar_type());  // the same tensor for float32 and float64
    at::Tensor grad_hidden_chunk = grad_hidden.narrow(0, start, n);
    at::mm_out(grad_hidden_chunk, dz, w);
    if (acc == h.scalar_type()) {
      grad_w.addmm_(dz.t(), hc);
    } else {
      grad_w.add_(at::mm(dz.t(), hc));
    }
    if (b) grad_b.add_(logits.sum(0));
  }
  if (!grads) return {losses, grad_hidden, empty(), empty()};
  return {losses, grad_hidden, grad_w.to(w.scalar_type()), b ? grad_b.to(w.scalar_type()) : empty()};
}

}  // namespace fastmask
