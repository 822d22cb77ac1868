// CUDA kernels of fastmask's sparse-gathering ops and their torch-free host launchers.
// Only the CUDA runtime, CUB and the fastmask headers are used, so `nvcc -c` checks this file on
// machines whose torch has no CUDA. The executable specification is fastmask/reference.py.
// All arrays are contiguous row-major; launchers return the launch's cudaError_t.
//
// Index values are never read on the host. An index entry outside [0, length) (the -1 of an
// unused slot, or any bad value) is dropped: gather writes a zero row, scatter writes nothing from
// that slot. So no kernel here accesses memory out of bounds whatever the index holds. Duplicate
// positions in one row of a scatter index leave one of the slots' rows (unspecified which).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include <cub/block/block_scan.cuh>

#include "fastmask/masking.h"

namespace fastmask {
namespace kernels {

constexpr int kPositionThreads = 256;
constexpr int kPositionItems = 4;  // per thread and tile: tiles of 1024 positions
constexpr int kSlotMapThreads = 256;
constexpr int kCopyThreads = 256;  // 8 warps, one output row per warp at a time
constexpr int kCopyUnroll = 4;     // loads in flight per lane before its stores
constexpr int64_t kMaxCopyBlocks = 1 << 16;      // grid-stride loops cover the rest
constexpr int64_t kMaxGatherRowBlocks = 0x7fffffff;  // gridDim.x limit; row loops cover the rest

// One block per row (row loop for huge batches): tiles of kThreads * kItems positions in a
// blocked arrangement (thread t holds consecutive positions), so the block-wide exclusive scan of
// the labelled flags gives each labelled token its rank in position order; the running count is
// carried across tiles. Slots past the row's count are filled here too (no memset).
template <int kThreads, int kItems>
__global__ void __launch_bounds__(kThreads)
    masked_positions_kernel(const int64_t* __restrict__ labels, int64_t* __restrict__ index,
                            int64_t* __restrict__ out_labels, int64_t* __restrict__ count,
                            int64_t rows, int64_t length, int64_t capacity) {
  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  constexpr int64_t kTile = static_cast<int64_t>(kThreads) * kItems;
  const int tid = static_cast<int>(threadIdx.x);

  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t* in = labels + row * length;
    int64_t* idx = index + row * capacity;
    int64_t* lab = out_labels + row * capacity;

    int64_t offset = 0;  // labelled positions in earlier tiles; the same in every thread
    for (int64_t start = 0; start < length; start += kTile) {
      const int64_t first = start + static_cast<int64_t>(tid) * kItems;
      int64_t value[kItems];
      int flag[kItems];
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const int64_t p = first + i;
        value[i] = p < length ? in[p] : kIgnoreIndex;
        flag[i] = value[i] != kIgnoreIndex ? 1 : 0;
      }
      int rank[kItems];
      int tile_count = 0;
      Scan(scan_storage).ExclusiveSum(flag, rank, tile_count);
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const int64_t slot = offset + rank[i];
        if (flag[i] && slot < capacity) {  // later tokens overflow: counted, not stored
          idx[slot] = first + i;
          lab[slot] = value[i];
        }
      }
      offset += tile_count;
      __syncthreads();  // the next tile reuses scan_storage
    }

    const int64_t used = offset < capacity ? offset : capacity;
    for (int64_t slot = used + tid; slot < capacity; slot += kThreads) {
      idx[slot] = -1;
      lab[slot] = kIgnoreIndex;
    }
    if (tid == 0) count[row] = offset;
  }
}

// Inverse of a scatter index: slot_of_position[b, l] = c where index[b, c] == l, else -1.
// One block per row of the batch, working in global memory so that any length fits: the block
// fills its row with -1, then (after a barrier, which orders the block's global writes) writes
// the slot ids. Rows are disjoint, so no atomics and no ordering between blocks are needed.
template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    slot_map_kernel(const int64_t* __restrict__ index, int32_t* __restrict__ slot_of_position,
                    int64_t rows, int64_t length, int64_t capacity) {
  const int tid = static_cast<int>(threadIdx.x);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    int32_t* map = slot_of_position + row * length;
    const int64_t* idx = index + row * capacity;
    for (int64_t p = tid; p < length; p += kThreads) map[p] = -1;
    __syncthreads();
    for (int64_t c = tid; c < capacity; c += kThreads) {
      const int64_t p = idx[c];
      if (p >= 0 && p < length) map[p] = static_cast<int32_t>(c);  // bad entries are dropped
    }
    // The next row touches other entries: no barrier needed.
  }
}

// Dense row copy shared by gather and scatter. Output row r (of out_rows rows of `units` U's) is
// row (r / inner) * bound + k of src with k = select[r], or zeros when k is outside [0, bound).
// Gather: select = index, inner = capacity, bound = length. Scatter: select = slot map,
// inner = length, bound = capacity. One warp per output row (grid-stride), U is the widest
// access the row size and pointer alignment allow (16-byte vectors normally).
template <typename U, typename S>
__global__ void __launch_bounds__(kCopyThreads)
    copy_rows_kernel(const U* __restrict__ src, const S* __restrict__ select, U* __restrict__ out,
                     int64_t out_rows, int64_t inner, int64_t bound, int64_t units) {
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const int64_t first_warp = (static_cast<int64_t>(blockIdx.x) * kCopyThreads + threadIdx.x) >> 5;
  const int64_t num_warps = (static_cast<int64_t>(gridDim.x) * kCopyThreads) >> 5;
  // 32-bit division is much cheaper than the emulated 64-bit one; the branch is uniform.
  const bool small = out_rows <= static_cast<int64_t>(UINT32_MAX);

  for (int64_t r = first_warp; r < out_rows; r += num_warps) {
    const int64_t k = static_cast<int64_t>(select[r]);
    U* dst = out + r * units;
    if (k >= 0 && k < bound) {  // uniform across the warp
      const int64_t b = small ? static_cast<int64_t>(static_cast<uint32_t>(r) / static_cast<uint32_t>(inner))
                              : r / inner;
      const U* from = src + (b * bound + k) * units;
      for (int64_t v = lane; v < units; v += 32 * kCopyUnroll) {
        U buf[kCopyUnroll];
#pragma unroll
        for (int u = 0; u < kCopyUnroll; ++u) {
          const int64_t i = v + 32 * u;
          if (i < units) buf[u] = from[i];
        }
#pragma unroll
        for (int u = 0; u < kCopyUnroll; ++u) {
          const int64_t i = v + 32 * u;
          if (i < units) dst[i] = buf[u];
        }
      }
    } else {
      const U zero{};
      for (int64_t v = lane; v < units; v += 32) dst[v] = zero;
    }
  }
}

inline unsigned int gather_row_blocks(int64_t rows) {
  return static_cast<unsigned int>(rows < kMaxGatherRowBlocks ? rows : kMaxGatherRowBlocks);
}

inline unsigned int copy_blocks(int64_t out_rows) {
  constexpr int64_t warps = kCopyThreads / 32;
  int64_t blocks = (out_rows + warps - 1) / warps;
  if (blocks > kMaxCopyBlocks) blocks = kMaxCopyBlocks;
  return static_cast<unsigned int>(blocks);
}

template <typename U, typename S>
cudaError_t launch_copy_rows_as(const void* src, const S* select, void* out, int64_t out_rows,
                                int64_t inner, int64_t bound, int64_t row_bytes, cudaStream_t stream) {
  copy_rows_kernel<U, S><<<copy_blocks(out_rows), kCopyThreads, 0, stream>>>(
      static_cast<const U*>(src), select, static_cast<U*>(out), out_rows, inner, bound,
      row_bytes / static_cast<int64_t>(sizeof(U)));
  return cudaGetLastError();
}

// Picks the widest unit (16, 8, 4 or 2 bytes) dividing the row size and both pointers. Only the
// bytes are copied, so the element type matters only through its size. Needs out_rows >= 1,
// inner >= 1.
template <typename T, typename S>
cudaError_t launch_copy_rows(const T* src, const S* select, T* out, int64_t out_rows, int64_t inner,
                             int64_t bound, int64_t width, cudaStream_t stream) {
  static_assert(sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8, "elements of 2, 4 or 8 bytes");
  const int64_t row_bytes = width * static_cast<int64_t>(sizeof(T));
  const uintptr_t bits = reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(out) |
                         static_cast<uintptr_t>(row_bytes);
  if (bits % sizeof(T) != 0) return cudaErrorInvalidValue;  // misaligned elements (never from torch)
  if (bits % 16 == 0) {
    return launch_copy_rows_as<uint4, S>(src, select, out, out_rows, inner, bound, row_bytes, stream);
  }
  if (bits % 8 == 0) {
    return launch_copy_rows_as<uint2, S>(src, select, out, out_rows, inner, bound, row_bytes, stream);
  }
  if (bits % 4 == 0) {
    return launch_copy_rows_as<uint32_t, S>(src, select, out, out_rows, inner, bound, row_bytes, stream);
  }
  return launch_copy_rows_as<uint16_t, S>(src, select, out, out_rows, inner, bound, row_bytes, stream);
}

}  // namespace kernels

// labels (rows, length) -> index (rows, capacity): ascending positions of labels != -100, -1 in
// unused slots; out_labels (rows, capacity): their labels, -100 in unused slots; count (rows,):
// labelled tokens per row (may exceed capacity; the overflow is dropped).
inline cudaError_t launch_masked_positions(const int64_t* labels, int64_t rows, int64_t length,
                                           int64_t capacity, int64_t* index, int64_t* out_labels,
                                           int64_t* count, cudaStream_t stream) {
  if (rows < 0 || length < 0 || capacity < 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;  // length == 0 or capacity == 0 still write count (and fill)
  kernels::masked_positions_kernel<kernels::kPositionThreads, kernels::kPositionItems>
      <<<kernels::gather_row_blocks(rows), kernels::kPositionThreads, 0, stream>>>(
          labels, index, out_labels, count, rows, length, capacity);
  return cudaGetLastError();
}

// hidden (rows, length, width) -> out (rows, capacity, width): out[b, c] = hidden[b, index[b, c]],
// zeros where index[b, c] is outside [0, length). T is any 2-, 4- or 8-byte element type (the
// binding passes uint16_t / uint32_t / uint64_t storage: a pure copy is bit-exact for any dtype).
template <typename T>
cudaError_t launch_gather_masked(const T* hidden, const int64_t* index, T* out, int64_t rows,
                                 int64_t length, int64_t capacity, int64_t width, cudaStream_t stream) {
  if (rows < 0 || length < 0 || capacity < 0 || width < 0) return cudaErrorInvalidValue;
  if (rows == 0 || capacity == 0 || width == 0) return cudaSuccess;
  // length == 0 still launches: every slot is dropped and its row zero-filled.
  return kernels::launch_copy_rows<T, int64_t>(hidden, index, out, rows * capacity, capacity, length,
                                               width, stream);
}

// values (rows, capacity, width) -> out (rows, length, width): out[b, index[b, c]] = values[b, c],
// every other row zeros; the whole output is written (no memset needed). slot_of_position is
// scratch of rows * length int32 entries. capacity must fit in int32 (else cudaErrorInvalidValue).
// Two launches: the per-row inverse map (slot_map_kernel), then the dense copy of every output
// row, which thus needs no atomics and writes each row exactly once.
template <typename T>
cudaError_t launch_scatter_masked(const T* values, const int64_t* index, T* out,
                                  int32_t* slot_of_position, int64_t rows, int64_t length,
                                  int64_t capacity, int64_t width, cudaStream_t stream) {
  if (rows < 0 || length < 0 || capacity < 0 || width < 0) return cudaErrorInvalidValue;
  if (rows == 0 || length == 0 || width == 0) return cudaSuccess;
  if (capacity > static_cast<int64_t>(INT32_MAX)) return cudaErrorInvalidValue;
  kernels::slot_map_kernel<kernels::kSlotMapThreads>
      <<<kernels::gather_row_blocks(rows), kernels::kSlotMapThreads, 0, stream>>>(
          index, slot_of_position, rows, length, capacity);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  return kernels::launch_copy_rows<T, int32_t>(values, slot_of_position, out, rows * length, length,
                                               capacity, width, stream);
}

}  // namespace fastmask
