// Layer norm over the last dimension of contiguous [rows, d] data, the
// twins of the CPU backend's norm.rs: statistics in f32, the variance in a
// second pass around the mean. `w` and `b` may be null (ones and zeros).

// y = (x - mean) * rstd * w + b, a warp per row; stats holds every row's
// mean, then every row's rstd.
extern "C" __global__ void zf_layer_norm_rows(float* y, float* stats, const float* x, const float* w,
                                              const float* b, i64 rows, i64 d, float eps) {
    int lane = threadIdx.x & 31;
    for (i64 row = zf_warp_row(); row < rows; row += zf_warps()) {
        const float* src = x + row * d;
        float* dst = y + row * d;
        float sum = 0.0f;
        for (i64 j = lane; j < d; j += 32) sum += src[j];
        float mean = zf_warp_sum_f(sum) / (float)d;
        float squares = 0.0f;
        for (i64 j = lane; j < d; j += 32) {
            float c = src[j] - mean;
            squares += c * c;
        }
        float rstd = 1.0f / sqrtf(zf_warp_sum_f(squares) / (float)d + eps);
        for (i64 j = lane; j < d; j += 32) {
            float v = (src[j] - mean) * rstd;
            dst[j] = v * (w ? w[j] : 1.0f) + (b ? b[j] : 0.0f);
        }
        if (lane == 0) {
            stats[row] = mean;
            stats[rows + row] = rstd;
        }
    }
}

// The input gradient, a warp per row:
// dx = rstd * (g*w - mean(g*w) - xhat * mean(g*w*xhat)).
extern "C" __global__ void zf_layer_norm_backward_rows(float* dx, const float* x, const float* g, const float* w,
                                                       const float* stats, i64 rows, i64 d) {
    int lane = threadIdx.x & 31;
    for (i64 row = zf_warp_row(); row < rows; row += zf_warps()) {
        const float* xr = x + row * d;
        const float* gr = g + row * d;
        float mean = stats[row], rstd = stats[rows + row];
        float s1 = 0.0f, s2 = 0.0f;
        for (i64 j = lane; j < d; j += 32) {
            float dxhat = gr[j] * (w ? w[j] : 1.0f);
            s1 += dxhat;
            s2 += dxhat * (xr[j] - mean) * rstd;
        }
        float m1 = zf_warp_sum_f(s1) / (float)d, m2 = zf_warp_sum_f(s2) / (float)d;
        for (i64 j = lane; j < d; j += 32) {
            float xhat = (xr[j] - mean) * rstd;
            dx[row * d + j] = rstd * (gr[j] * (w ? w[j] : 1.0f) - m1 - xhat * m2);
        }
    }
}

// The weight and bias gradients in two deterministic passes, without
// atomics: each thread owns one column of one chunk of `chunk_rows` rows
// and sums g * xhat and g down it (neighbouring threads read neighbouring
// columns, so the reads coalesce) into partials[chunk]; the second kernel
// sums each column's partials in chunk order. The partials hold dweight's
// for every chunk, then dbias's.
extern "C" __global__ void zf_layer_norm_param_partials(float* partials, const float* x, const float* g,
                                                        const float* stats, i64 rows, i64 d, i64 chunk_rows) {
    i64 chunks = (rows + chunk_rows - 1) / chunk_rows;
    for (i64 i = zf_first_index(); i < chunks * d; i += zf_grid_stride()) {
        i64 chunk = i / d, col = i % d;
        i64 end = min((chunk + 1) * chunk_rows, rows);
        float dw = 0.0f, db = 0.0f;
        for (i64 row = chunk * chunk_rows; row < end; row++) {
            float gv = g[row * d + col];
            dw += gv * (x[row * d + col] - stats[row]) * stats[rows + row];
            db += gv;
        }
        partials[chunk * d + col] = dw;
        partials[(chunks + chunk) * d + col] = db;
    }
}

extern "C" __global__ void zf_layer_norm_param_sums(float* dw, float* db, const float* partials, i64 chunks,
                                                    i64 d) {
    for (i64 col = zf_first_index(); col < d; col += zf_grid_stride()) {
        float w = 0.0f, b = 0.0f;
        for (i64 c = 0; c < chunks; c++) {
            w += partials[c * d + col];
            b += partials[(chunks + c) * d + col];
        }
        dw[col] = w;
        db[col] = b;
    }
}
