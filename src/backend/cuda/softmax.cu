// Softmax over the rows of contiguous [rows, n] data, the twins of the CPU
// backend's reduce.rs: one warp per row, the lanes reading the row side by
// side and meeting by shuffles. Sums accumulate in double, as the CPU's
// softmax does.

// softmax (take_log = 0) or log_softmax (take_log = 1) of each row. A row whose
// entries are all -inf gives probability 0 (log: -inf) instead of 0/0.
extern "C" __global__ void zf_softmax_rows(float* out, const float* x, i64 rows, i64 n, int take_log) {
    int lane = threadIdx.x & 31;
    for (i64 row = zf_warp_row(); row < rows; row += zf_warps()) {
        const float* src = x + row * n;
        float* dst = out + row * n;
        float max = -zf_inf();
        for (i64 j = lane; j < n; j += 32) max = fmaxf(max, src[j]);
        max = zf_warp_max(max);
        if (max == -zf_inf()) {
            for (i64 j = lane; j < n; j += 32) dst[j] = take_log ? -zf_inf() : 0.0f;
            continue;
        }
        double sum = 0.0;
        for (i64 j = lane; j < n; j += 32) {
            float e = expf(src[j] - max);
            if (!take_log) dst[j] = e;
            sum += (double)e;
        }
        sum = zf_warp_sum(sum);
        if (take_log) {
            float log_sum = (float)log(sum);
            for (i64 j = lane; j < n; j += 32) dst[j] = src[j] - max - log_sum;
        } else {
            float inv = (float)(1.0 / sum);
            for (i64 j = lane; j < n; j += 32) dst[j] *= inv;
        }
    }
}

// Causal softmax of scale * x over rows of `keys`, in blocks of `queries`
// rows: row i of a block (the query at position offset + i) sees keys
// 0..=offset + i; later keys get probability 0.
extern "C" __global__ void zf_causal_softmax_rows(float* out, const float* x, i64 rows, i64 keys, i64 queries,
                                                  i64 offset, float scale) {
    int lane = threadIdx.x & 31;
    for (i64 row = zf_warp_row(); row < rows; row += zf_warps()) {
        const float* src = x + row * keys;
        float* dst = out + row * keys;
        i64 visible = offset + row % queries + 1;
        if (visible > keys) visible = keys;
        float max = -zf_inf();
        for (i64 j = lane; j < visible; j += 32) max = fmaxf(max, src[j]);
        max = zf_warp_max(max) * scale;
        double sum = 0.0;
        for (i64 j = lane; j < visible; j += 32) {
            float e = expf(src[j] * scale - max);
            dst[j] = e;
            sum += (double)e;
        }
        float inv = (float)(1.0 / zf_warp_sum(sum));
        for (i64 j = lane; j < keys; j += 32) dst[j] = j < visible ? dst[j] * inv : 0.0f;
    }
}

// The backward of softmax(scale * x) over rows of n, from the output y and
// its gradient g: scale * y * (g - sum(g * y)).
extern "C" __global__ void zf_softmax_backward_rows(float* out, const float* y, const float* g, i64 rows, i64 n,
                                                    float scale) {
    int lane = threadIdx.x & 31;
    for (i64 row = zf_warp_row(); row < rows; row += zf_warps()) {
        const float* yr = y + row * n;
        const float* gr = g + row * n;
        double dot = 0.0;
        for (i64 j = lane; j < n; j += 32) dot += (double)yr[j] * (double)gr[j];
        float d = (float)zf_warp_sum(dot);
        for (i64 j = lane; j < n; j += 32) out[row * n + j] = scale * yr[j] * (gr[j] - d);
    }
}
