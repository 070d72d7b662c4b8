// Reductions over the middle axis of contiguous data viewed as
// [outer, n, inner], giving [outer, inner]. Sums accumulate in double, as
// the CPU backend's do, so both agree to f32's last digit.

// One thread per output: coalesced when `inner` is large (neighbouring
// threads read neighbouring columns).
extern "C" __global__ void zf_sum_axis(float* out, const float* x, i64 outer, i64 n, i64 inner) {
    for (i64 i = zf_first_index(); i < outer * inner; i += zf_grid_stride()) {
        i64 o = i / inner, c = i % inner;
        const float* column = x + o * n * inner + c;
        double acc = 0.0;
        for (i64 j = 0; j < n; j++) acc += (double)column[j * inner];
        out[i] = (float)acc;
    }
}

// One warp per row (inner == 1): the lanes read the row side by side and
// meet by shuffles.
extern "C" __global__ void zf_sum_rows(float* out, const float* x, i64 rows, i64 n) {
    i64 warps = (i64)gridDim.x * (blockDim.x / 32);
    int lane = threadIdx.x & 31;
    for (i64 row = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; row < rows; row += warps) {
        const float* r = x + row * n;
        double acc = 0.0;
        for (i64 j = lane; j < n; j += 32) acc += (double)r[j];
        for (int delta = 16; delta > 0; delta /= 2) acc += __shfl_down_sync(0xffffffffu, acc, delta);
        if (lane == 0) out[row] = (float)acc;
    }
}

// Maxima and the index of each one's first occurrence; NaN wins.
extern "C" __global__ void zf_max_axis(float* out, i64* argmax, const float* x, i64 outer, i64 n, i64 inner) {
    for (i64 i = zf_first_index(); i < outer * inner; i += zf_grid_stride()) {
        i64 o = i / inner, c = i % inner;
        const float* column = x + o * n * inner + c;
        float best = column[0];
        i64 at = 0;
        for (i64 j = 1; j < n; j++) {
            float v = column[j * inner];
            if (v > best || (v != v && best == best)) {
                best = v;
                at = j;
            }
        }
        out[i] = best;
        argmax[i] = at;
    }
}

// The sum of squares of n contiguous elements in two deterministic passes
// (a gradient norm, without a host read): each block sums a grid-stride
// share in double into partials[block]; one block then sums the partials.
#define ZF_SQUARES_THREADS 256
__device__ __forceinline__ double zf_block_sum(double v) {
    __shared__ double sums[ZF_SQUARES_THREADS];
    sums[threadIdx.x] = v;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) sums[threadIdx.x] += sums[threadIdx.x + half];
        __syncthreads();
    }
    return sums[0];
}

extern "C" __global__ void zf_sum_of_squares_partials(double* partials, const float* x, i64 n) {
    double acc = 0.0;
    for (i64 i = zf_first_index(); i < n; i += zf_grid_stride()) acc += (double)x[i] * (double)x[i];
    double total = zf_block_sum(acc);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

extern "C" __global__ void zf_sum_of_squares_total(float* out, const double* partials, i64 blocks) {
    double acc = 0.0;
    for (i64 i = threadIdx.x; i < blocks; i += blockDim.x) acc += partials[i];
    double total = zf_block_sum(acc);
    if (threadIdx.x == 0) out[0] = (float)total;
}

// Running sums along the middle of [outer, n, inner] (from the end when
// `reverse`), in double as the CPU's: a thread per column.
extern "C" __global__ void zf_cumsum_axis(float* out, const float* x, i64 outer, i64 n, i64 inner, int reverse) {
    for (i64 col = zf_first_index(); col < outer * inner; col += zf_grid_stride()) {
        i64 base = col / inner * n * inner + col % inner;
        double acc = 0.0;
        for (i64 step = 0; step < n; step++) {
            i64 at = base + (reverse ? n - 1 - step : step) * inner;
            acc += (double)x[at];
            out[at] = (float)acc;
        }
    }
}
