// C++ CPU kernels of the sparse-gathering ops. Gather and scatter are row copies (memcpy of
// width * element size bytes), so one dtype-free implementation serves every float dtype.
// Checks, contiguous inputs and the outputs: the binding templates of gather_binding.h.
#include <cstdint>
#include <cstring>

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_binding.h"
#include "fastmask/masking.h"
#include "gather_binding.h"

namespace fastmask {
namespace {

void masked_positions_kernel(const int64_t* in, int64_t rows, int64_t length, int64_t capacity, int64_t* idx,
                             int64_t* out, int64_t* cnt) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      int64_t n = 0;
      for (int64_t l = 0; l < length; ++l) {
        const int64_t label = in[b * length + l];
        if (label == kIgnoreIndex) continue;
        if (n < capacity) {
          idx[b * capacity + n] = l;
          out[b * capacity + n] = label;
        }
        ++n;
      }
      for (int64_t c = n; c < capacity; ++c) {
        idx[b * capacity + c] = -1;
        out[b * capacity + c] = kIgnoreIndex;
      }
      cnt[b] = n;
    }
  });
}

// Copies row ix[b, c] of src (rows of width elements of element_size bytes) to row c of dst, for
// every slot of row b; an index outside [0, length) (-1: unused slot) zero-fills the row instead.
void gather_rows(const void* source, const int64_t* ix, void* destination, int64_t rows, int64_t length,
                 int64_t capacity, int64_t width, int64_t element_size) {
  const char* src = static_cast<const char*>(source);
  char* dst = static_cast<char*>(destination);
  const int64_t row_bytes = width * element_size;
  at::parallel_for(0, rows * capacity, 64, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      const int64_t l = ix[s];
      char* to = dst + s * row_bytes;
      if (l >= 0 && l < length) {
        std::memcpy(to, src + ((s / capacity) * length + l) * row_bytes, row_bytes);
      } else {
        std::memset(to, 0, row_bytes);
      }
    }
  });
}

// The inverse: row c of src to row ix[b, c] of dst, zeros where no slot lands.
void scatter_rows(const void* source, const int64_t* ix, void* destination, int64_t rows, int64_t length,
                  int64_t capacity, int64_t width, int64_t element_size) {
  const char* src = static_cast<const char*>(source);
  char* dst = static_cast<char*>(destination);
  const int64_t row_bytes = width * element_size;
  // By row of the batch: positions are unique within a row, so no two slots write one place.
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      std::memset(dst + b * length * row_bytes, 0, length * row_bytes);
      for (int64_t c = 0; c < capacity; ++c) {
        const int64_t l = ix[b * capacity + c];
        if (l >= 0 && l < length) {
          std::memcpy(dst + (b * length + l) * row_bytes, src + (b * capacity + c) * row_bytes, row_bytes);
        }
      }
    }
  });
}

// The kernels above, as the binding templates of gather_binding.h call them: one byte-copying
// implementation for every element type E.
struct CpuGather : CpuDevice {
  template <typename... A>
  static void masked_positions(A... a) { masked_positions_kernel(a...); }
  template <typename E, typename... Sizes>
  static void gather_masked(const E* src, const int64_t* ix, E* dst, Sizes... sizes) {
    gather_rows(src, ix, dst, sizes..., int64_t{sizeof(E)});
  }
  static void scatter_limits(const at::Tensor&) {}
  template <typename E, typename... Sizes>
  static void scatter_masked(const E* src, const int64_t* ix, E* dst, Sizes... sizes) {
    scatter_rows(src, ix, dst, sizes..., int64_t{sizeof(E)});
  }
};

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CPU, m) {
  using Backend = fastmask::CpuGather;
  m.impl("masked_positions_cpp", &fastmask::masked_positions_binding<Backend>);
  m.impl("gather_masked_cpp", &fastmask::gather_masked_binding<Backend>);
  m.impl("scatter_masked_cpp", &fastmask::scatter_masked_binding<Backend>);
}
