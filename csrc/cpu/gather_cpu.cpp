// C++ CPU kernels of the sparse-gathering ops. Gather and scatter are row copies (memcpy of
// width * element size bytes), so one dtype-free implementation serves every float dtype.
#include <cstdint>
#include <cstring>

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "gather_binding.h"
#include "fastmask/masking.h"

namespace fastmask {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_positions_cpu(const at::Tensor& labels, int64_t capacity) {
  check_masked_positions_args(labels, capacity, at::kCPU);
  const at::Tensor lab = labels.contiguous();
  const int64_t rows = lab.size(0), length = lab.size(1);
  at::Tensor index = at::empty({rows, capacity}, lab.options());
  at::Tensor out_labels = at::empty({rows, capacity}, lab.options());
  at::Tensor count = at::empty({rows}, lab.options());
  const int64_t* in = lab.data_ptr<int64_t>();
  int64_t* idx = index.data_ptr<int64_t>();
  int64_t* out = out_labels.data_ptr<int64_t>();
  int64_t* cnt = count.data_ptr<int64_t>();
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
  return {index, out_labels, count};
}

// Copies row index[b, c] of src (rows of `row_bytes`) to row c of dst, for every slot of row b;
// an index outside [0, src_rows) (-1: unused slot) zero-fills the row instead.
at::Tensor gather_masked_cpu(const at::Tensor& hidden, const at::Tensor& index) {
  check_gather_args(hidden, index, at::kCPU);
  const at::Tensor h = hidden.contiguous();
  const at::Tensor idx = index.contiguous();
  const int64_t rows = h.size(0), length = h.size(1), capacity = idx.size(1);
  at::Tensor out = at::empty({rows, capacity, h.size(2)}, h.options());
  const int64_t row_bytes = h.size(2) * h.element_size();
  const char* src = static_cast<const char*>(h.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  const int64_t* ix = idx.data_ptr<int64_t>();
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
  return out;
}

at::Tensor scatter_masked_cpu(const at::Tensor& values, const at::Tensor& index, int64_t length) {
  check_scatter_args(values, index, length, at::kCPU);
  const at::Tensor v = values.contiguous();
  const at::Tensor idx = index.contiguous();
  const int64_t rows = v.size(0), capacity = v.size(1);
  at::Tensor out = at::zeros({rows, length, v.size(2)}, v.options());
  const int64_t row_bytes = v.size(2) * v.element_size();
  const char* src = static_cast<const char*>(v.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  const int64_t* ix = idx.data_ptr<int64_t>();
  // By row of the batch: positions are unique within a row, so no two slots write one place.
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t c = 0; c < capacity; ++c) {
        const int64_t l = ix[b * capacity + c];
        if (l >= 0 && l < length) {
          std::memcpy(dst + (b * length + l) * row_bytes, src + (b * capacity + c) * row_bytes, row_bytes);
        }
      }
    }
  });
  return out;
}

}  // namespace
}  // namespace fastmask

TORCH_LIBRARY_IMPL(fastmask, CPU, m) {
  m.impl("masked_positions_cpp", &fastmask::masked_positions_cpu);
  m.impl("gather_masked_cpp", &fastmask::gather_masked_cpu);
  m.impl("scatter_masked_cpp", &fastmask::scatter_masked_cpu);
}
