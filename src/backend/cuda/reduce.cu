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
