// What every kernel file of this folder shares, on the GPU (NVRTC compiles
// this prelude followed by the file) and on the simulated GPU (after
// sim/shim.h). NVRTC has no C library headers, so nothing here includes one.

#ifndef ZF_DYNAMIC_SHARED
// The launch's dynamic shared memory as an array of `type`: one byte array
// reinterpreted, so that kernels of one module can use different types.
#define ZF_DYNAMIC_SHARED(type, name)                                                  \
    extern __shared__ __align__(16) unsigned char zf_dynamic_shared[];                 \
    type* name = reinterpret_cast<type*>(zf_dynamic_shared)
#endif

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;
typedef signed char i8;
typedef unsigned char u8;

// The most dimensions a strided operand may have after merging; the
// launchers (layout.rs) merge what they can and copy what they cannot.
#define ZF_MAX_DIMS 6

// A strided view of one operand: shape, strides in elements (0 where
// broadcast) and offset. Rust's `KernelLayout` has the same layout.
struct ZfLayout {
    i64 shape[ZF_MAX_DIMS];
    i64 strides[ZF_MAX_DIMS];
    i64 offset;
    int rank;
    int contiguous;
};
static_assert(sizeof(ZfLayout) == 112, "ZfLayout must match Rust's KernelLayout");

// The storage offset of the `i`-th element in row-major order. The loop is
// unrolled so that every index into the layout is a constant: indexing a
// kernel parameter by a variable would copy it to local memory.
__device__ __forceinline__ i64 zf_offset(const ZfLayout& l, i64 i) {
    if (l.contiguous) return l.offset + i;
    i64 at = l.offset;
#pragma unroll
    for (int d = ZF_MAX_DIMS - 1; d >= 0; d--) {
        if (d < l.rank) {
            i64 size = l.shape[d];
            at += (i % size) * l.strides[d];
            i /= size;
        }
    }
    return at;
}

// Grid-stride loops: each thread takes elements `stride` apart, so the
// launchers size grids by the device (its multiprocessors), not the data.
__device__ __forceinline__ i64 zf_first_index() {
    return (i64)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ i64 zf_grid_stride() { return (i64)gridDim.x * blockDim.x; }

__device__ __forceinline__ float zf_nan() { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ float zf_inf() { return __int_as_float(0x7f800000); }

// Warp reductions by shuffle: every lane ends with the warp's result.
__device__ __forceinline__ float zf_warp_max(float v) {
    for (int delta = 16; delta > 0; delta /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, delta));
    return v;
}
__device__ __forceinline__ float zf_warp_sum_f(float v) {
    for (int delta = 16; delta > 0; delta /= 2) v += __shfl_xor_sync(0xffffffffu, v, delta);
    return v;
}
__device__ __forceinline__ double zf_warp_sum(double v) {
    for (int delta = 16; delta > 0; delta /= 2) v += __shfl_xor_sync(0xffffffffu, v, delta);
    return v;
}

// Kernels that give each row a warp: the warp's first row, and how many
// rows the grid's warps cover at a time.
__device__ __forceinline__ i64 zf_warp_row() { return (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; }
__device__ __forceinline__ i64 zf_warps() { return (i64)gridDim.x * (blockDim.x / 32); }
