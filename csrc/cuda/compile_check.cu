// Torch-free compile check: instantiates every launcher for every type combination the bindings
// pass, so that `nvcc -c` proves the kernels build on machines without a CUDA torch (and ptxas -v
// reports every kernel: scripts/resource_budgets.py). Not needed at run time.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "gather.cuh"
#include "head.cuh"
#include "masking.cuh"
#include "proposal.cuh"
#include "words.cuh"

namespace fastmask {
namespace {

// The table of types: what each template argument of a launcher ranges over.
template <typename... T>
struct Types {};
template <typename T>
struct Tag {
  using type = T;
};
constexpr Types<int32_t, int64_t> kIds{};
constexpr Types<bool, int32_t, int64_t> kAttention{};  // the attention mask's (bool: none given)
constexpr Types<float, __half, __nv_bfloat16> kScores{};
constexpr Types<float, double> kAccumulation{};  // the fused cross-entropy's logits
// The gather binding passes 2-, 4- and 8-byte unsigned storage types; the floating types are
// instantiated too, to show that any element of those sizes works.
constexpr Types<uint16_t, uint32_t, uint64_t, float, double, __half, __nv_bfloat16> kElements{};

// Calls launcher(Tag<T>{}...) for every combination of one type T from each list: the launcher
// takes the address of launch_<op><T...>, which instantiates it and every kernel it launches.
template <typename Launcher, typename... Chosen>
void instantiate(const Launcher& launcher, Types<Chosen...>) {
  static_cast<void>(launcher(Tag<Chosen>{}...));
}
template <typename Launcher, typename... Chosen, typename... Options, typename... Lists>
void instantiate(const Launcher& launcher, Types<Chosen...>, Types<Options...>, Lists... lists) {
  (instantiate(launcher, Types<Chosen..., Options>{}, lists...), ...);
}

#define FASTMASK_INSTANTIATE(LAUNCHER, ...)                                                        \
  instantiate([](auto... tag) { return &LAUNCHER<typename decltype(tag)::type...>; }, Types<>{}, \
              __VA_ARGS__);

}  // namespace

// Every launcher, one line each: the launcher and the type lists of its template arguments.
void compile_check_launchers() {
  FASTMASK_INSTANTIATE(launch_maskable_mask, kIds, kAttention)
  FASTMASK_INSTANTIATE(launch_mask_tokens, kIds)
  FASTMASK_INSTANTIATE(launch_fully_explored_mask, kIds)
  FASTMASK_INSTANTIATE(launch_gather_masked, kElements)
  FASTMASK_INSTANTIATE(launch_scatter_masked, kElements)
  FASTMASK_INSTANTIATE(launch_proposal_mask, kIds, kScores)
  FASTMASK_INSTANTIATE(launch_whole_word_mask, kIds)
  FASTMASK_INSTANTIATE(launch_span_mask, kIds)
  FASTMASK_INSTANTIATE(launch_linear_cross_entropy, kAccumulation)
}

// launch_masked_positions is not a template: an external function makes nvcc emit it.
cudaError_t compile_check_masked_positions(const int64_t* labels, int64_t rows, int64_t length,
                                           int64_t capacity, int64_t* index, int64_t* out_labels,
                                           int64_t* count, cudaStream_t stream) {
  return launch_masked_positions(labels, rows, length, capacity, index, out_labels, count, stream);
}

}  // namespace fastmask
