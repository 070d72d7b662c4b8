// Int8 weights for decoding: the twins of the CPU backend's quantized.rs.
// A weight row is stored as int8 with one f32 scale, max|w| / 127.

// q = round(w / scale), a warp per row of cols; scale 0 (and q 0) for a
// row of zeros.
extern "C" __global__ void zf_quantize_rows(i8* q, float* scales, const float* w, i64 rows, i64 cols) {
    int lane = threadIdx.x & 31;
    for (i64 row = zf_warp_row(); row < rows; row += zf_warps()) {
        const float* src = w + row * cols;
        float max = 0.0f;
        for (i64 j = lane; j < cols; j += 32) max = fmaxf(max, fabsf(src[j]));
        max = zf_warp_max(max);
        if (lane == 0) scales[row] = max / 127.0f;
        float inv = max > 0.0f ? 127.0f / max : 0.0f;
        for (i64 j = lane; j < cols; j += 32)
            q[row * cols + j] = (i8)fminf(fmaxf(roundf(src[j] * inv), -127.0f), 127.0f);
    }
}

// out[i, r] = scales[r] * sum_j x[i, j] * q[r, j] for f32 x [m, k] and int8
// q [n, k]: a warp per weight row r, which it reads once from memory for
// every row of x (decoding has one or a few), the lanes side by side
// along k.
extern "C" __global__ void zf_matmul_int8(float* out, const float* x, const i8* q, const float* scales, i64 m, i64 k,
                                          i64 n) {
    int lane = threadIdx.x & 31;
    for (i64 r = zf_warp_row(); r < n; r += zf_warps()) {
        const i8* row = q + r * k;
        for (i64 i = 0; i < m; i++) {
            const float* xi = x + i * k;
            float acc = 0.0f;
            for (i64 j = lane; j < k; j += 32) acc += xi[j] * (float)row[j];
            acc = zf_warp_sum_f(acc);
            if (lane == 0) out[i * n + r] = acc * scales[r];
        }
    }
}
