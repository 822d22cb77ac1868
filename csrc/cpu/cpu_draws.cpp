#include "cpu_draws.h"

#include <algorithm>

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

void sort_random_keys(std::vector<uint64_t>* keys, std::vector<uint64_t>* scratch) {
  const size_t n = keys->size();
  if (n < 64) {
    std::sort(keys->begin(), keys->end());
    return;
  }
  int bits = 1;
  while ((size_t{1} << bits) < n && bits < 20) ++bits;
  const int shift = 63 - bits;  // rank keys occupy bits 32..62 of the packed key
  std::vector<uint32_t> start((size_t{1} << bits) + 1, 0);
  for (uint64_t k : *keys) ++start[(k >> shift) + 1];
  for (size_t b = 1; b < start.size(); ++b) start[b] += start[b - 1];
  scratch->resize(n);
  std::vector<uint32_t> fill(start.begin(), start.end() - 1);
  for (uint64_t k : *keys) (*scratch)[fill[k >> shift]++] = k;
  for (size_t b = 0; b + 1 < start.size(); ++b) {
    std::sort(scratch->begin() + start[b], scratch->begin() + start[b + 1]);  // about one key each
  }
  keys->swap(*scratch);
}

}  // namespace fastmask
