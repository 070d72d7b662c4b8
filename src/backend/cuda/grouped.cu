// The grouped product of a mixture of experts, the twin of the CPU
// backend's matmul::grouped: rows offsets[e]..offsets[e + 1] of a
// contiguous [rows, in] matrix go through group e's [out, in] weight (and
// bias). The offsets stay on the device; each thread finds its row's group
// among them. Every sum runs in a fixed order, with no atomics, so a run's
// bits do not depend on the GPU's scheduling.

// The group holding `row`: the last e < groups with offsets[e] <= row (an
// empty group shares its start with the next, which the search passes).
__device__ __forceinline__ i64 zf_group_of(const i64* offsets, i64 groups, i64 row) {
    i64 lo = 0, hi = groups - 1;
    while (lo < hi) {
        i64 mid = (lo + hi + 1) / 2;
        if (offsets[mid] <= row) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

// out[r][o] = bias[e][o] + Σ_i x[r][i] · w[e][o][i] for row r of group e;
// `bias` may be null.
extern "C" __global__ void zf_grouped_matmul(float* out, const float* x, const float* w, const i64* offsets,
                                             const float* bias, i64 rows, i64 in, i64 out_features, i64 groups) {
    for (i64 at = zf_first_index(); at < rows * out_features; at += zf_grid_stride()) {
        i64 r = at / out_features, o = at % out_features;
        i64 e = zf_group_of(offsets, groups, r);
        const float* xr = x + r * in;
        const float* wo = w + (e * out_features + o) * in;
        float sum = 0.0f;
        for (i64 i = 0; i < in; i++) sum += xr[i] * wo[i];
        out[at] = (bias ? bias[e * out_features + o] : 0.0f) + sum;
    }
}

// d_x[r][i] = Σ_o g[r][o] · w[e][o][i] for row r of group e.
extern "C" __global__ void zf_grouped_matmul_dx(float* dx, const float* g, const float* w, const i64* offsets,
                                                i64 rows, i64 in, i64 out_features, i64 groups) {
    for (i64 at = zf_first_index(); at < rows * in; at += zf_grid_stride()) {
        i64 r = at / in, i = at % in;
        i64 e = zf_group_of(offsets, groups, r);
        const float* gr = g + r * out_features;
        const float* we = w + e * out_features * in + i;
        float sum = 0.0f;
        for (i64 o = 0; o < out_features; o++) sum += gr[o] * we[o * in];
        dx[at] = sum;
    }
}

// d_w[e][o][i] = Σ_r g[r][o] · x[r][i] and d_b[e][o] = Σ_r g[r][o] over
// group e's rows, in row order (zeros for an empty group). A thread per
// weight; the threads of i = 0 also write the bias's.
extern "C" __global__ void zf_grouped_matmul_dw(float* dw, float* db, const float* g, const float* x,
                                                const i64* offsets, i64 in, i64 out_features, i64 groups) {
    for (i64 at = zf_first_index(); at < groups * out_features * in; at += zf_grid_stride()) {
        i64 e = at / (out_features * in), o = (at / in) % out_features, i = at % in;
        float sum = 0.0f, bias = 0.0f;
        for (i64 r = offsets[e]; r < offsets[e + 1]; r++) {
            float gro = g[r * out_features + o];
            sum += gro * x[r * in + i];
            bias += gro;
        }
        dw[at] = sum;
        if (i == 0) db[e * out_features + o] = bias;
    }
}
