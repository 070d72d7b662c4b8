// Rows of a table by i64 id (embeddings), gathering along a dimension,
// top-k indices and the gradient of a maximum: the twins of the CPU
// backend's index.rs.

// out[i, :] = w[ids[i], :]; a row of NaN for an id out of range (a kernel
// cannot panic, so the error reaches whoever reads the result).
extern "C" __global__ void zf_embedding(float* out, const float* w, const i64* ids, i64 n, i64 d, i64 vocab) {
    for (i64 i = zf_first_index(); i < n * d; i += zf_grid_stride()) {
        i64 id = ids[i / d];
        out[i] = (id >= 0 && id < vocab) ? w[id * d + i % d] : zf_nan();
    }
}

// The embedding gradient without atomics: a warp owns one table row, finds
// the positions holding its id (32 ids at a time, by ballot) and adds
// their gradient rows in position order, the CPU's order, so the sums are
// exact, deterministic and the CPU's bits. Every warp reads all n ids (8n
// bytes, kept in cache), the price of needing no sort.
extern "C" __global__ void zf_embedding_backward(float* dw, const float* g, const i64* ids, i64 n, i64 d,
                                                 i64 vocab) {
    int lane = threadIdx.x & 31;
    for (i64 row = zf_warp_row(); row < vocab; row += zf_warps()) {
        float* dst = dw + row * d;
        for (i64 j = lane; j < d; j += 32) dst[j] = 0.0f;
        for (i64 base = 0; base < n; base += 32) {
            i64 at = base + lane;
            unsigned int hits = __ballot_sync(0xffffffffu, at < n && ids[at] == row);
            while (hits) {
                int first = __ffs((int)hits) - 1;
                hits &= hits - 1;
                const float* src = g + (base + first) * d;
                for (i64 j = lane; j < d; j += 32) dst[j] += src[j];
            }
        }
    }
}

// The gradient of a maximum over the middle of [outer, n, inner]: g placed
// at each argmax, zeros elsewhere; a thread per element of the input.
extern "C" __global__ void zf_max_backward(float* dx, const float* g, const i64* argmax, i64 outer, i64 n,
                                           i64 inner) {
    for (i64 i = zf_first_index(); i < outer * n * inner; i += zf_grid_stride()) {
        i64 o = i / (n * inner), j = i / inner % n, c = i % inner;
        i64 at = o * inner + c;
        dx[i] = argmax[at] == j ? g[at] : 0.0f;
    }
}

// Gathering along dimension `dim` (torch.gather): out[k] = x[p with p[dim] =
// index[p]] for the k-th position p of the index's shape, row-major; NaN
// for an index outside 0..size. The layouts are unmerged (one entry per
// dimension); `size` and `stride` are x's along `dim`.
extern "C" __global__ void zf_gather_dim(float* out, const float* x, ZfLayout xl, const i64* index, ZfLayout il,
                                         int dim, i64 size, i64 stride, i64 n) {
    for (i64 k = zf_first_index(); k < n; k += zf_grid_stride()) {
        i64 rest = k, ox = xl.offset, oi = il.offset;
#pragma unroll
        for (int d = ZF_MAX_DIMS - 1; d >= 0; d--) {
            if (d < il.rank) {
                i64 c = rest % il.shape[d];
                rest /= il.shape[d];
                oi += c * il.strides[d];
                if (d != dim) ox += c * xl.strides[d];
            }
        }
        i64 i = index[oi];
        out[k] = (i >= 0 && i < size) ? x[ox + i * stride] : zf_nan();
    }
}

// The gradient of gathering, without atomics: a thread per element of the
// row-major output (layout ol) sums the gradient elements whose index
// points at it, walking `dim` of the index in order (the CPU's order, so
// the CPU's bits). `along`, `index_stride` and `g_stride` are the index's
// extent and the index's and g's strides along `dim`.
extern "C" __global__ void zf_scatter_add_dim(float* out, ZfLayout ol, const float* g, ZfLayout gl, const i64* index,
                                             ZfLayout il, int dim, i64 along, i64 index_stride, i64 g_stride,
                                             i64 n) {
    for (i64 e = zf_first_index(); e < n; e += zf_grid_stride()) {
        i64 rest = e, og = gl.offset, oi = il.offset, target = 0;
        bool inside = true;
#pragma unroll
        for (int d = ZF_MAX_DIMS - 1; d >= 0; d--) {
            if (d < ol.rank) {
                i64 c = rest % ol.shape[d];
                rest /= ol.shape[d];
                if (d == dim) {
                    target = c;
                } else {
                    inside = inside && c < il.shape[d];
                    og += c * gl.strides[d];
                    oi += c * il.strides[d];
                }
            }
        }
        float acc = 0.0f;
        if (inside)
            for (i64 j = 0; j < along; j++)
                if (index[oi + j * index_stride] == target) acc += g[og + j * g_stride];
        out[e] = acc;
    }
}

// Whether (a, i) comes before (b, j) in top-k order: NaN first, then larger
// values, equal values by lower index (the CPU's stable sort).
__device__ __forceinline__ bool zf_topk_before(float a, i64 i, float b, i64 j) {
    bool a_nan = a != a, b_nan = b != b;
    if (a_nan != b_nan) return a_nan;
    if (!a_nan && a != b) return a > b;
    return i < j;
}

// The indices of the k first of each column of [outer, n, inner] in top-k
// order, as [outer, k, inner]: a warp per column, k passes, each finding
// the first element after the previous pass's pick (lanes scan side by
// side, then meet by shuffles).
extern "C" __global__ void zf_topk_indices(i64* out, const float* x, i64 outer, i64 n, i64 inner, i64 k) {
    int lane = threadIdx.x & 31;
    for (i64 col = zf_warp_row(); col < outer * inner; col += zf_warps()) {
        i64 o = col / inner, c = col % inner;
        const float* src = x + o * n * inner + c;
        float prev = 0.0f;
        i64 prev_at = -1;
        for (i64 r = 0; r < k; r++) {
            float best = 0.0f;
            i64 best_at = -1;
            for (i64 j = lane; j < n; j += 32) {
                float v = src[j * inner];
                bool after = prev_at < 0 || zf_topk_before(prev, prev_at, v, j);
                if (after && (best_at < 0 || zf_topk_before(v, j, best, best_at))) {
                    best = v;
                    best_at = j;
                }
            }
            for (int delta = 16; delta > 0; delta /= 2) {
                float other = __shfl_xor_sync(0xffffffffu, best, delta);
                i64 other_at = __shfl_xor_sync(0xffffffffu, best_at, delta);
                if (other_at >= 0 && (best_at < 0 || zf_topk_before(other, other_at, best, best_at))) {
                    best = other;
                    best_at = other_at;
                }
            }
            if (lane == 0) out[(o * k + r) * inner + c] = best_at;
            prev = best;
            prev_at = best_at;
        }
    }
}
