// C++ CPU kernel of MAPNet proposal sampling: one row at a time (rows in parallel), the float
// arithmetic from fastmask/proposal.h (compiled with -ffp-contract=off) so that the sampled
// positions are bit-identical to every other backend.
#include <algorithm>
#include <cstdint>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_draws.h"
#include "fastmask/proposal.h"
#include "masking_binding.h"
#include "proposal_binding.h"

namespace fastmask {
namespace {

struct ProposalArgs {
  MaskArgs mask;
  float uniform_mix, temperature;
  int64_t sampling;  // reference.SAMPLING_*
  bool sequence_weights;
};

// The ranking key of every position: the costly loop of top-k sampling (a canonical log and a
// division per token), kept free of selects so that it vectorises.
FASTMASK_CPU_CLONES void rank_keys(const uint32_t* __restrict r0, const float* __restrict q,
                                   uint32_t* __restrict keys, int64_t length) {
  for (int64_t i = 0; i < length; ++i) keys[i] = proposal_rank_key(Draw{r0[i], 0, 0, 0}, q[i]);
}

// Per-row scratch, reused across the rows of one thread.
struct RowScratch {
  RowDraws draws;
  std::vector<float> q, pi;
  std::vector<uint32_t> rank_keys;
  std::vector<uint64_t> keys;
};

template <typename IdT>
void proposal_row_kernel(const IdT* ids, const float* scores, const bool* maskable, uint64_t row_id,
                         const ProposalArgs& a, IdT* out_ids, int64_t* labels, float* weights, int64_t length,
                         RowScratch* scratch) {
  RowDraws& draws = scratch->draws;
  row_draws(a.mask, static_cast<int64_t>(row_id), length, &draws);
  std::vector<float>& q = scratch->q;
  std::vector<float>& pi = scratch->pi;
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
  std::vector<uint64_t>& packed = scratch->keys;
  packed.resize(length);
  if ((a.sampling == kSamplingPoisson)) {
    for (int64_t i = 0; i < length; ++i) packed[i] = maskable[i] && poisson_selected(draws[i], pi[i]);
  } else {
    std::vector<uint32_t>& key = scratch->rank_keys;
    key.resize(length);
    rank_keys(draws.r0.data(), q.data(), key.data(), length);
    for (int64_t i = 0; i < length; ++i) {  // non-maskable positions: all ones, never among the k
      packed[i] = maskable[i] ? (static_cast<uint64_t>(key[i]) << 32) | static_cast<uint64_t>(i) : ~uint64_t{0};
    }
  }
  uint64_t kth_key = 0;
  if (!(a.sampling == kSamplingPoisson) && k > 0) {
    std::vector<uint64_t> order(packed);  // non-maskable entries are the largest: never among the k
    std::nth_element(order.begin(), order.begin() + (k - 1), order.end());
    kth_key = order[k - 1];
  }
  auto chosen = [&](int64_t i) {
    return maskable[i] && ((a.sampling == kSamplingPoisson) ? packed[i] == 1 : k > 0 && packed[i] <= kth_key);
  };
  float log_sum = 0.0f;
  if (a.sequence_weights) {
    for (int64_t i = 0; i < length; ++i) {
      if (chosen(i)) log_sum = fadd(log_sum, sequence_log_term(q[i], row));
    }
  }
  const float row_weight = sequence_weight(log_sum);
  for (int64_t i = 0; i < length; ++i) {
    const bool c = chosen(i);
    const int64_t id = static_cast<int64_t>(ids[i]);
    out_ids[i] = static_cast<IdT>(c ? corrupted_id(id, draws[i], a.mask) : id);
    labels[i] = c ? id : kIgnoreIndex;
    weights[i] = !c ? 0.0f : (a.sequence_weights ? row_weight : token_weight(pi[i], row));
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> proposal_mask_cpu(
    const at::Tensor& input_ids, const at::Tensor& scores, const at::Tensor& maskable, const at::Tensor& row_ids,
    const at::Tensor& seed, const at::Tensor& epoch, int64_t count_num, int64_t count_den, double uniform_mix,
    double temperature, int64_t sampling, bool sequence_weights, int64_t mask_threshold, int64_t random_threshold,
    int64_t mask_token_id, int64_t vocab_size) {
  check_mask_args("proposal_mask", input_ids, maskable, row_ids, at::kCPU);
  check_scores(scores, input_ids);
  TORCH_CHECK_NOT_IMPLEMENTED(sampling != kSamplingSystematic, "proposal_mask: systematic sampling on CPU: not yet");
  const auto [eps, temp] = proposal_float_args(uniform_mix, temperature);
  const ProposalArgs args{make_mask_args("proposal_mask", input_ids, seed, epoch, 0, count_num, count_den,
                                         mask_threshold, random_threshold, mask_token_id, vocab_size),
                          eps, temp, sampling, sequence_weights};
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
      RowScratch scratch;
      for (int64_t b = begin; b < end; ++b) {
        const int64_t off = b * length;
        proposal_row_kernel<IdT>(in + off, sc.data_ptr<float>() + off, mask.data_ptr<bool>() + off,
                                 static_cast<uint64_t>(rid.data_ptr<int64_t>()[b]), args, out + off,
                                 labels.data_ptr<int64_t>() + off, weights.data_ptr<float>() + off, length,
                                 &scratch);
      }
    });
  });
  return {out_ids, labels, sequence_weights ? divide_by_batch_mean(weights) : weights};
}

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CPU, m) { m.impl("proposal_mask_cpp", &fastmask::proposal_mask_cpu); }
