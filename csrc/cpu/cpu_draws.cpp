#include "cpu_draws.h"

namespace fastmask {
namespace {

FASTMASK_CPU_CLONES void fill_draws(uint64_t seed, uint32_t epoch, uint64_t row_id, int64_t length,
                                    uint32_t* __restrict r0, uint32_t* __restrict r1, uint32_t* __restrict r2) {
  for (int64_t i = 0; i < length; ++i) {
    const Draw d = token_draw(seed, epoch, row_id, static_cast<uint32_t>(i));
    r0[i] = d.r0;
    r1[i] = d.r1;
    r2[i] = d.r2;
  }
}

}  // namespace

void row_draws(const MaskArgs& args, int64_t row_id, int64_t length, RowDraws* draws) {
  draws->r0.resize(length);
  draws->r1.resize(length);
  draws->r2.resize(length);
  fill_draws(args.seed, args.epoch, static_cast<uint64_t>(row_id), length, draws->r0.data(), draws->r1.data(),
             draws->r2.data());
}

}  // namespace fastmask
