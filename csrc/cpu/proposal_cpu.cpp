// C++ CPU kernel of MAPNet proposal sampling: one row at a time (rows in parallel), the float
// arithmetic from fastmask/proposal.h (compiled with -ffp-contract=off) so that the sampled
// positions are bit-identical to every other backend.
#include <algorithm>
#include <cstdint>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "fastmask/binding.h"
#include "fastmask/proposal.h"
#include "fastmask/proposal_binding.h"

namespace fastmask {
namespace {

struct ProposalArgs {
  MaskArgs mask;
  float uniform_mix, temperature;
  bool poisson, sequence_weights;
};

template <typename IdT>
void proposal_row_kernel(const IdT* ids, const float* scores, const bool* maskable, uint64_t row_id,
                         const ProposalArgs& a, IdT* out_ids, int64_t* labels, float* weights, int64_t length,
                         std::vector<float>* q_buf, std::vector<float>* pi_buf, std::vector<uint64_t>* keys) {
  std::vector<float>& q = *q_buf;
  std::vector<float>& pi = *pi_buf;
  q.assign(length, 0.0f);
  pi.assign(length, 0.0f);
  int64_t n = 0;
  bool finite = true;
  float row_max = -__builtin_inff();
  for (int64_t i = 0; i < length; ++i) {
    if (!maskable[i]) continue;
    const float x = fdiv(scores[i], a.temperature);
    ++n;
    finite = finite && is_finite_f32(x);
    row_max = x > row_max ? x : row_max;
    q[i] = x;  // q holds x until the row's maximum is known
  }
  const int64_t k = exact_count(n, a.mask);
  uint64_t fixed_sum = 0;
  for (int64_t i = 0; i < length; ++i) {
    const float term = maskable[i] && finite ? proposal_term(q[i], row_max) : 0.0f;
    q[i] = term;
    fixed_sum += fixed_point(term);
  }
  const float z = normaliser(fixed_sum);
  const ProposalRow row = proposal_row(finite ? a.uniform_mix : 1.0f, n, k);
  for (int64_t i = 0; i < length; ++i) {
    if (!maskable[i]) continue;
    const float p = fdiv(q[i], z);
    q[i] = proposal_q(p, row);
    pi[i] = inclusion_probability(p, row);
  }
  // Top-k: the k smallest packed (key, position), found by nth_element.
  uint64_t kth_key = 0;
  if (!a.poisson && k > 0) {
    keys->clear();
    for (int64_t i = 0; i < length; ++i) {
      if (!maskable[i]) continue;
      const Draw d = token_draw(a.mask.seed, a.mask.epoch, row_id, static_cast<uint32_t>(i));
      keys->push_back((static_cast<uint64_t>(proposal_rank_key(d, q[i])) << 32) | static_cast<uint64_t>(i));
    }
    std::nth_element(keys->begin(), keys->begin() + (k - 1), keys->end());
    kth_key = (*keys)[k - 1];
  }
  float log_sum = 0.0f;
  for (int pass = 0; pass < (a.sequence_weights ? 2 : 1); ++pass) {
    const float row_weight = sequence_weight(log_sum);
    for (int64_t i = 0; i < length; ++i) {
      const Draw d = token_draw(a.mask.seed, a.mask.epoch, row_id, static_cast<uint32_t>(i));
      bool chosen = false;
      if (maskable[i]) {
        chosen = a.poisson ? poisson_selected(d, pi[i])
                           : k > 0 && ((static_cast<uint64_t>(proposal_rank_key(d, q[i])) << 32) |
                                       static_cast<uint64_t>(i)) <= kth_key;
      }
      if (a.sequence_weights && pass == 0) {  // first pass: the row's log-weight only
        if (chosen) log_sum = fadd(log_sum, sequence_log_term(q[i], row));
        continue;
      }
      const int64_t id = static_cast<int64_t>(ids[i]);
      out_ids[i] = static_cast<IdT>(chosen ? corrupted_id(id, d, a.mask) : id);
      labels[i] = chosen ? id : kIgnoreIndex;
      weights[i] = !chosen ? 0.0f : (a.sequence_weights ? row_weight : token_weight(pi[i], row));
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> proposal_mask_cpu(
    const at::Tensor& input_ids, const at::Tensor& scores, const at::Tensor& maskable, const at::Tensor& row_ids,
    int64_t seed, int64_t epoch, int64_t select_threshold, double uniform_mix, double temperature, bool poisson,
    bool sequence_weights, int64_t mask_threshold, int64_t random_threshold, int64_t mask_token_id,
    int64_t vocab_size) {
  check_mask_args(input_ids, maskable, row_ids, at::kCPU);
  check_scores(scores, input_ids);
  const auto [eps, temp] = proposal_float_args(uniform_mix, temperature);
  const ProposalArgs args{make_mask_args(seed, epoch, select_threshold, mask_threshold, random_threshold,
                                         mask_token_id, vocab_size),
                          eps, temp, poisson, sequence_weights};
  const at::Tensor ids = input_ids.contiguous();
  const at::Tensor sc = scores.to(at::kFloat).contiguous();
  const at::Tensor mask = maskable.contiguous();
  const at::Tensor rid = row_ids.contiguous();
  at::Tensor out_ids = at::empty_like(ids);
  at::Tensor labels = at::empty(ids.sizes(), ids.options().dtype(at::kLong));
  at::Tensor weights = at::empty(ids.sizes(), ids.options().dtype(at::kFloat));
  const int64_t rows = ids.size(0), length = ids.size(1);
  dispatch_ids(ids.scalar_type(), [&](auto id_tag) {
    using IdT = decltype(id_tag);
    const IdT* in = ids.data_ptr<IdT>();
    IdT* out = out_ids.data_ptr<IdT>();
    at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> q, pi;
      std::vector<uint64_t> keys;
      for (int64_t b = begin; b < end; ++b) {
        const int64_t off = b * length;
        proposal_row_kernel<IdT>(in + off, sc.data_ptr<float>() + off, mask.data_ptr<bool>() + off,
                                 static_cast<uint64_t>(rid.data_ptr<int64_t>()[b]), args, out + off,
                                 labels.data_ptr<int64_t>() + off, weights.data_ptr<float>() + off, length, &q,
                                 &pi, &keys);
      }
    });
  });
  return {out_ids, labels, weights};
}

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CPU, m) { m.impl("proposal_mask", &fastmask::proposal_mask_cpu); }
