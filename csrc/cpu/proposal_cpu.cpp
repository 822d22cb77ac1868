// C++ CPU kernel of MAPNet proposal sampling: one row at a time (rows in parallel), the float
// arithmetic from fastmask/proposal.h (compiled with -ffp-contract=off) so that the sampled
// positions are bit-identical to every other backend.
#include <algorithm>
#include <cstdint>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_binding.h"
#include "cpu_draws.h"
#include "fastmask/proposal.h"
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
  std::vector<uint64_t> keys, order, sort_scratch;
  std::vector<int64_t> weights, uncapped;
};

// Systematic sampling of one row (reference.systematic_selection), with the per-token integer
// steps of fastmask/proposal.h that the CUDA kernel runs too: selected[i] = 1 for the k chosen
// positions, 0 elsewhere, and pi[i] their exact inclusion probabilities. u is the r3 word of the
// row's position 0.
void systematic_row(const bool* maskable, const std::vector<float>& q, const RowDraws& draws, int64_t k,
                    uint32_t u, int64_t length, RowScratch* scratch, uint64_t* selected, float* pi) {
  std::vector<int64_t>& w = scratch->weights;
  std::vector<int64_t>& uncapped = scratch->uncapped;  // positions of the uncapped maskable tokens
  w.resize(length);
  uncapped.clear();
  for (int64_t i = 0; i < length; ++i) {
    w[i] = systematic_weight(q[i], maskable[i]);
    selected[i] = 0;
    if (maskable[i]) uncapped.push_back(i);
  }
  // Capping, round by round as the CUDA kernel does: each round caps (selected = 1) every uncapped
  // position with (k - m) W >= A, from the m and A at the round's start; stop when none is.
  int64_t m = 0;
  int64_t total = 0;  // A: the uncapped total, final once a round caps nothing
  for (;;) {
    total = 0;
    for (const int64_t i : uncapped) total += w[i];
    size_t kept = 0;
    for (const int64_t i : uncapped) {
      if (systematic_caps(w[i], k - m, total)) {
        selected[i] = 1;
      } else {
        uncapped[kept++] = i;
      }
    }
    const int64_t fresh = static_cast<int64_t>(uncapped.size() - kept);
    uncapped.resize(kept);
    if (fresh == 0) break;
    m += fresh;
  }
  const int64_t r = k - m;
  const int64_t divisor = total > 1 ? total : 1;
  for (int64_t i = 0; i < length; ++i) pi[i] = selected[i] ? 1.0f : 0.0f;
  if (r == 0) return;  // every point count is 0: nothing is drawn
  // The r draws: uncapped positions in ranking order (capped and non-maskable ones add 0 to the
  // cumulative weight, so leaving them out changes no C_i).
  const int64_t offset = systematic_offset(u, total);
  std::vector<uint64_t>& order = scratch->order;
  order.clear();
  for (const int64_t i : uncapped) order.push_back(packed_rank_key(draws[i], true, static_cast<uint32_t>(i)));
  sort_random_keys(&order, &scratch->sort_scratch);
  int64_t cumulative = 0;
  for (const uint64_t key : order) {
    const int64_t i = static_cast<int64_t>(key & 0xFFFFFFFFu);
    cumulative += w[i];
    if (systematic_drawn(r, cumulative, w[i], offset, divisor)) {
      selected[i] = 1;
      pi[i] = systematic_inclusion(false, r, w[i], divisor);
    }
  }
}

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
  // Poisson and systematic: packed[i] = 1 iff selected. Top-k: packed (key, position), whose k
  // smallest nth_element finds.
  std::vector<uint64_t>& packed = scratch->keys;
  packed.resize(length);
  const bool flagged = a.sampling != kSamplingTopK;
  if (a.sampling == kSamplingPoisson) {
    for (int64_t i = 0; i < length; ++i) packed[i] = maskable[i] && poisson_selected(draws[i], pi[i]);
  } else if (a.sampling == kSamplingSystematic) {
    const uint32_t u = length > 0 ? token_draw(a.mask.seed, a.mask.epoch, row_id, 0).r3 : 0u;
    systematic_row(maskable, q, draws, k, u, length, scratch, packed.data(), pi.data());
  } else {
    std::vector<uint32_t>& key = scratch->rank_keys;
    key.resize(length);
    rank_keys(draws.r0.data(), q.data(), key.data(), length);
    for (int64_t i = 0; i < length; ++i) {  // non-maskable positions: all ones, never among the k
      packed[i] = maskable[i] ? (static_cast<uint64_t>(key[i]) << 32) | static_cast<uint64_t>(i) : ~uint64_t{0};
    }
  }
  uint64_t kth_key = 0;
  if (!flagged && k > 0) {
    std::vector<uint64_t> order(packed);  // non-maskable entries are the largest: never among the k
    std::nth_element(order.begin(), order.begin() + (k - 1), order.end());
    kth_key = order[k - 1];
  }
  auto chosen = [&](int64_t i) {
    return maskable[i] && (flagged ? packed[i] == 1 : k > 0 && packed[i] <= kth_key);
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

// The kernel above, as proposal_binding.h's template calls it: rows in parallel, scores as float32.
struct CpuProposal : CpuDevice {
  template <typename IdT>
  static void proposal_mask(const IdT* ids, const at::Tensor& scores, const bool* maskable, const int64_t* row_ids,
                            IdT* out_ids, int64_t* labels, float* weights, int64_t rows, int64_t length,
                            const MaskArgs& mask, float uniform_mix, float temperature, int64_t sampling,
                            bool sequence_weights) {
    const ProposalArgs args{mask, uniform_mix, temperature, sampling, sequence_weights};
    const at::Tensor sc = scores.to(at::kFloat);
    const float* score = sc.data_ptr<float>();
    at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
      RowScratch scratch;
      for (int64_t b = begin; b < end; ++b) {
        const int64_t off = b * length;
        proposal_row_kernel<IdT>(ids + off, score + off, maskable + off, static_cast<uint64_t>(row_ids[b]), args,
                                 out_ids + off, labels + off, weights + off, length, &scratch);
      }
    });
  }
};

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CPU, m) {
  m.impl("proposal_mask_cpp", &fastmask::proposal_mask_binding<fastmask::CpuProposal>);
}
