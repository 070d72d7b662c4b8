// Fused attention, flash-style: the twins of the CPU backend's
// attention.rs. Scores are never stored: each block holds a few rows of
// its own (queries, or keys in the backward) and walks tiles of 32 rows of
// the other side through shared memory, a lane per tiled row for the dot
// products and a lane per column of the head for the accumulations, so
// memory stays O(T). The forward keeps an online softmax and saves each
// query's logsumexp; the backward recomputes the probabilities tile by
// tile from it, in two passes (dQ by query rows, dK and dV by key rows)
// that need no atomics.

#define ZF_ATT_TILE 32
#define ZF_ATT_WARPS 4
#define ZF_ATT_ROWS_PER_WARP 2
#define ZF_ATT_OWN_ROWS (ZF_ATT_WARPS * ZF_ATT_ROWS_PER_WARP)
// The head width a lane's accumulators cover: 4 columns a lane.
#define ZF_ATT_MAX_D 128
#define ZF_ATT_COLS (ZF_ATT_MAX_D / 32)

// One operand of shape [batch, heads, time, d], its last dimension
// contiguous: the address of its first element and the other strides.
// Rust's `HeadsArg` has the same layout.
struct ZfHeads {
    const float* data;
    i64 batch_stride, head_stride, time_stride;
};
static_assert(sizeof(ZfHeads) == 32, "ZfHeads must match Rust's HeadsArg");

// The shapes and masking shared by every attention kernel; Rust's
// `AttentionArgs` has the same layout. Query i sees key j when
// j <= past + i (if causal), j > past + i - window (if window > 0: a
// sliding window, always causal) and key j of its sequence is not padded.
struct ZfAttention {
    i64 batch, heads, tq, tk, d, past;
    float scale;
    int causal;
    i64 window;
};
static_assert(sizeof(ZfAttention) == 64, "ZfAttention must match Rust's AttentionArgs");

__device__ __forceinline__ const float* zf_head_row(const ZfHeads& h, i64 bh, i64 heads, i64 t) {
    return h.data + (bh / heads) * h.batch_stride + (bh % heads) * h.head_stride + t * h.time_stride;
}

__device__ __forceinline__ bool zf_visible(const ZfAttention& a, const u8* padding, i64 bh, i64 i, i64 j) {
    if (a.causal && j > a.past + i) return false;
    if (a.window > 0 && j <= a.past + i - a.window) return false;
    return !(padding && padding[(bh / a.heads) * a.tk + j]);
}

// Copies `count` rows of d from `src` (row `first` onward, zeros past
// `limit`) into shared rows `stride` floats apart, by the whole block.
__device__ __forceinline__ void zf_load_rows(float* dst, i64 stride, const ZfHeads& src, i64 bh, i64 heads, i64 first,
                                             i64 count, i64 limit, i64 d) {
    for (i64 e = threadIdx.x; e < count * d; e += blockDim.x) {
        i64 r = e / d, c = e % d;
        dst[r * stride + c] = first + r < limit ? zf_head_row(src, bh, heads, first + r)[c] : 0.0f;
    }
}

// Puts each lane's `value` in the warp's 32 floats of shared `scratch`
// for every lane to read: two warp barriers (the first lets the lanes
// finish reading what was there), where a broadcast by shuffles would take
// one per value.
__device__ __forceinline__ void zf_share(float* scratch, float value) {
    __syncwarp();
    scratch[threadIdx.x & 31] = value;
    __syncwarp();
}

// The sum over the tile's 32 rows of weights[jj] * tile[jj][col] for each
// of the lane's columns, added to acc (lanes hold columns lane + 32c); the
// weights are a warp's shared 32 floats.
__device__ __forceinline__ void zf_accumulate(float acc[ZF_ATT_COLS], const float* weights, const float* tile,
                                              i64 stride, i64 d) {
    int lane = threadIdx.x & 31;
    for (int jj = 0; jj < ZF_ATT_TILE; jj++) {
        float w = weights[jj];
        if (w == 0.0f) continue;
#pragma unroll
        for (int c = 0; c < ZF_ATT_COLS; c++) {
            i64 col = lane + 32 * c;
            if (col < d) acc[c] += w * tile[jj * stride + col];
        }
    }
}

// The dot product of shared row `a` with shared row `b`, in four partial
// sums: a quarter of one running sum's rounding error (as the CPU's vector
// lanes), and four independent chains of multiply-adds.
__device__ __forceinline__ float zf_dot(const float* a, const float* b, i64 d) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    i64 t = 0;
    for (; t + 4 <= d; t += 4) {
        s0 += a[t] * b[t];
        s1 += a[t + 1] * b[t + 1];
        s2 += a[t + 2] * b[t + 2];
        s3 += a[t + 3] * b[t + 3];
    }
    for (; t < d; t++) s0 += a[t] * b[t];
    return (s0 + s1) + (s2 + s3);
}

// The keys a block of queries first..first+count can see at most.
__device__ __forceinline__ i64 zf_key_limit(const ZfAttention& a, i64 first, i64 count) {
    i64 last = min(first + count, a.tq) - 1;
    return a.causal ? min(a.tk, a.past + last + 1) : a.tk;
}

// The first key tile (a multiple of the tile) that query `first` sees: 0
// unless a window hides the keys before it.
__device__ __forceinline__ i64 zf_first_key_tile(const ZfAttention& a, i64 first) {
    i64 key = a.window > 0 ? max(a.past + first + 1 - a.window, (i64)0) : 0;
    return key / ZF_ATT_TILE * ZF_ATT_TILE;
}

// The queries that can see some key of first..first+count: 0..end.
__device__ __forceinline__ i64 zf_query_limit(const ZfAttention& a, i64 first, i64 count) {
    if (a.window <= 0) return a.tq;
    i64 last_key = min(first + count, a.tk) - 1;
    return max(min(a.tq, last_key + a.window - a.past), (i64)0);
}

// out [bh, tq, d] (contiguous) and lse [bh, tq]; a row that sees no key
// gets zeros and lse = -inf. Dynamic shared memory: OWN_ROWS x d queries,
// then two tiles of 32 x (d + 1) keys and values, then 32 floats a warp.
extern "C" __global__ void zf_attention_forward(float* out, float* lse, ZfHeads q, ZfHeads k, ZfHeads v,
                                                const u8* padding, ZfAttention a) {
    ZF_DYNAMIC_SHARED(float, shared);
    i64 d = a.d, stride = d + 1;
    float* qs = shared;
    float* ks = qs + ZF_ATT_OWN_ROWS * d;
    float* vs = ks + ZF_ATT_TILE * stride;
    int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    float* scratch = vs + ZF_ATT_TILE * stride + warp * 32;
    i64 tiles_per_head = (a.tq + ZF_ATT_OWN_ROWS - 1) / ZF_ATT_OWN_ROWS;
    for (i64 block = blockIdx.x; block < a.batch * a.heads * tiles_per_head; block += gridDim.x) {
        i64 bh = block / tiles_per_head, first = block % tiles_per_head * ZF_ATT_OWN_ROWS;
        __syncthreads();
        zf_load_rows(qs, d, q, bh, a.heads, first, ZF_ATT_OWN_ROWS, a.tq, d);
        float max[ZF_ATT_ROWS_PER_WARP], sum[ZF_ATT_ROWS_PER_WARP], acc[ZF_ATT_ROWS_PER_WARP][ZF_ATT_COLS];
#pragma unroll
        for (int r = 0; r < ZF_ATT_ROWS_PER_WARP; r++) {
            max[r] = -zf_inf();
            sum[r] = 0.0f;
#pragma unroll
            for (int c = 0; c < ZF_ATT_COLS; c++) acc[r][c] = 0.0f;
        }
        i64 limit = zf_key_limit(a, first, ZF_ATT_OWN_ROWS);
        for (i64 kt = zf_first_key_tile(a, first); kt < limit; kt += ZF_ATT_TILE) {
            __syncthreads();
            zf_load_rows(ks, stride, k, bh, a.heads, kt, ZF_ATT_TILE, a.tk, d);
            zf_load_rows(vs, stride, v, bh, a.heads, kt, ZF_ATT_TILE, a.tk, d);
            __syncthreads();
#pragma unroll
            for (int r = 0; r < ZF_ATT_ROWS_PER_WARP; r++) {
                i64 own = warp * ZF_ATT_ROWS_PER_WARP + r, i = first + own, j = kt + lane;
                if (i >= a.tq) continue;
                float s = -zf_inf();
                if (j < limit && zf_visible(a, padding, bh, i, j)) s = a.scale * zf_dot(qs + own * d, ks + lane * stride, d);
                // The tile's maximum and sum read from shared memory by
                // every lane (a few barriers, not a shuffle tree each).
                zf_share(scratch, s);
                float tile_max = -zf_inf();
                for (int jj = 0; jj < ZF_ATT_TILE; jj++) tile_max = fmaxf(tile_max, scratch[jj]);
                float new_max = fmaxf(max[r], tile_max);
                if (new_max == -zf_inf()) continue;  // nothing visible yet
                zf_share(scratch, s == -zf_inf() ? 0.0f : expf(s - new_max));
                float tile_sum = 0.0f;
                for (int jj = 0; jj < ZF_ATT_TILE; jj++) tile_sum += scratch[jj];
                float rescale = expf(max[r] - new_max);
                sum[r] = sum[r] * rescale + tile_sum;
                max[r] = new_max;
#pragma unroll
                for (int c = 0; c < ZF_ATT_COLS; c++) acc[r][c] *= rescale;
                zf_accumulate(acc[r], scratch, vs, stride, d);
            }
        }
#pragma unroll
        for (int r = 0; r < ZF_ATT_ROWS_PER_WARP; r++) {
            i64 i = first + warp * ZF_ATT_ROWS_PER_WARP + r;
            if (i >= a.tq) continue;
            float inv = sum[r] == 0.0f ? 0.0f : 1.0f / sum[r];
#pragma unroll
            for (int c = 0; c < ZF_ATT_COLS; c++) {
                i64 col = lane + 32 * c;
                if (col < d) out[(bh * a.tq + i) * d + col] = acc[r][c] * inv;
            }
            if (lane == 0) lse[bh * a.tq + i] = sum[r] == 0.0f ? -zf_inf() : max[r] + logf(sum[r]);
        }
    }
}

// delta[row] = sum_t dout[row, t] * out[row, t], a warp per query row: the
// softmax backward's row term.
extern "C" __global__ void zf_attention_delta(float* delta, ZfHeads dout, ZfHeads out, ZfAttention a) {
    int lane = threadIdx.x & 31;
    for (i64 row = zf_warp_row(); row < a.batch * a.heads * a.tq; row += zf_warps()) {
        i64 bh = row / a.tq, i = row % a.tq;
        const float* g = zf_head_row(dout, bh, a.heads, i);
        const float* o = zf_head_row(out, bh, a.heads, i);
        float s = 0.0f;
        for (i64 t = lane; t < a.d; t += 32) s += g[t] * o[t];
        s = zf_warp_sum_f(s);
        if (lane == 0) delta[row] = s;
    }
}

// The probability of query i for key j recomputed from the query's
// logsumexp (0 when hidden, or when the query sees no key).
__device__ __forceinline__ float zf_probability(float score, float row_lse) {
    return row_lse == -zf_inf() ? 0.0f : expf(score - row_lse);
}

// dq [bh, tq, d] (contiguous): by query rows, as the forward, walking key
// tiles: dq_i = scale * sum_j p_ij (dp_ij - delta_i) k_j with
// dp_ij = dout_i . v_j. Shared: OWN_ROWS x d queries and as many output
// gradients, then 32 x (d + 1) keys and values, then 32 floats a warp.
extern "C" __global__ void zf_attention_backward_dq(float* dq, ZfHeads q, ZfHeads k, ZfHeads v, ZfHeads dout,
                                                    const float* lse, const float* delta, const u8* padding,
                                                    ZfAttention a) {
    ZF_DYNAMIC_SHARED(float, shared);
    i64 d = a.d, stride = d + 1;
    float* qs = shared;
    float* gs = qs + ZF_ATT_OWN_ROWS * d;
    float* ks = gs + ZF_ATT_OWN_ROWS * d;
    float* vs = ks + ZF_ATT_TILE * stride;
    int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    float* scratch = vs + ZF_ATT_TILE * stride + warp * 32;
    i64 tiles_per_head = (a.tq + ZF_ATT_OWN_ROWS - 1) / ZF_ATT_OWN_ROWS;
    for (i64 block = blockIdx.x; block < a.batch * a.heads * tiles_per_head; block += gridDim.x) {
        i64 bh = block / tiles_per_head, first = block % tiles_per_head * ZF_ATT_OWN_ROWS;
        __syncthreads();
        zf_load_rows(qs, d, q, bh, a.heads, first, ZF_ATT_OWN_ROWS, a.tq, d);
        zf_load_rows(gs, d, dout, bh, a.heads, first, ZF_ATT_OWN_ROWS, a.tq, d);
        float acc[ZF_ATT_ROWS_PER_WARP][ZF_ATT_COLS];
#pragma unroll
        for (int r = 0; r < ZF_ATT_ROWS_PER_WARP; r++)
#pragma unroll
            for (int c = 0; c < ZF_ATT_COLS; c++) acc[r][c] = 0.0f;
        i64 limit = zf_key_limit(a, first, ZF_ATT_OWN_ROWS);
        for (i64 kt = zf_first_key_tile(a, first); kt < limit; kt += ZF_ATT_TILE) {
            __syncthreads();
            zf_load_rows(ks, stride, k, bh, a.heads, kt, ZF_ATT_TILE, a.tk, d);
            zf_load_rows(vs, stride, v, bh, a.heads, kt, ZF_ATT_TILE, a.tk, d);
            __syncthreads();
#pragma unroll
            for (int r = 0; r < ZF_ATT_ROWS_PER_WARP; r++) {
                i64 own = warp * ZF_ATT_ROWS_PER_WARP + r, i = first + own, j = kt + lane;
                if (i >= a.tq) continue;
                float ds = 0.0f;
                if (j < limit && zf_visible(a, padding, bh, i, j)) {
                    float s = a.scale * zf_dot(qs + own * d, ks + lane * stride, d);
                    float p = zf_probability(s, lse[bh * a.tq + i]);
                    ds = p * (zf_dot(gs + own * d, vs + lane * stride, d) - delta[bh * a.tq + i]);
                }
                zf_share(scratch, ds);
                zf_accumulate(acc[r], scratch, ks, stride, d);
            }
        }
#pragma unroll
        for (int r = 0; r < ZF_ATT_ROWS_PER_WARP; r++) {
            i64 i = first + warp * ZF_ATT_ROWS_PER_WARP + r;
            if (i >= a.tq) continue;
#pragma unroll
            for (int c = 0; c < ZF_ATT_COLS; c++) {
                i64 col = lane + 32 * c;
                if (col < d) dq[(bh * a.tq + i) * d + col] = a.scale * acc[r][c];
            }
        }
    }
}

// dk and dv [bh, tk, d] (contiguous): by key rows, walking query tiles:
// dv_j = sum_i p_ij dout_i and dk_j = scale * sum_i p_ij (dp_ij - delta_i) q_i.
// Shared: OWN_ROWS x d keys and as many values, then 32 x (d + 1) queries
// and output gradients, then the tile's 32 logsumexps and deltas, then 64
// floats a warp.
extern "C" __global__ void zf_attention_backward_dkv(float* dk, float* dv, ZfHeads q, ZfHeads k, ZfHeads v,
                                                     ZfHeads dout, const float* lse, const float* delta,
                                                     const u8* padding, ZfAttention a) {
    ZF_DYNAMIC_SHARED(float, shared);
    i64 d = a.d, stride = d + 1;
    float* ks = shared;
    float* vs = ks + ZF_ATT_OWN_ROWS * d;
    float* qs = vs + ZF_ATT_OWN_ROWS * d;
    float* gs = qs + ZF_ATT_TILE * stride;
    float* lses = gs + ZF_ATT_TILE * stride;
    float* deltas = lses + ZF_ATT_TILE;
    int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    float* scratch = deltas + ZF_ATT_TILE + warp * 64;
    i64 tiles_per_head = (a.tk + ZF_ATT_OWN_ROWS - 1) / ZF_ATT_OWN_ROWS;
    for (i64 block = blockIdx.x; block < a.batch * a.heads * tiles_per_head; block += gridDim.x) {
        i64 bh = block / tiles_per_head, first = block % tiles_per_head * ZF_ATT_OWN_ROWS;
        __syncthreads();
        zf_load_rows(ks, d, k, bh, a.heads, first, ZF_ATT_OWN_ROWS, a.tk, d);
        zf_load_rows(vs, d, v, bh, a.heads, first, ZF_ATT_OWN_ROWS, a.tk, d);
        float dk_acc[ZF_ATT_ROWS_PER_WARP][ZF_ATT_COLS], dv_acc[ZF_ATT_ROWS_PER_WARP][ZF_ATT_COLS];
#pragma unroll
        for (int r = 0; r < ZF_ATT_ROWS_PER_WARP; r++)
#pragma unroll
            for (int c = 0; c < ZF_ATT_COLS; c++) dk_acc[r][c] = dv_acc[r][c] = 0.0f;
        // The first query that can see this block's first key.
        i64 start = a.causal ? max(first - a.past, (i64)0) / ZF_ATT_TILE * ZF_ATT_TILE : 0;
        i64 end = zf_query_limit(a, first, ZF_ATT_OWN_ROWS);
        for (i64 qt = start; qt < end; qt += ZF_ATT_TILE) {
            __syncthreads();
            zf_load_rows(qs, stride, q, bh, a.heads, qt, ZF_ATT_TILE, a.tq, d);
            zf_load_rows(gs, stride, dout, bh, a.heads, qt, ZF_ATT_TILE, a.tq, d);
            if (threadIdx.x < ZF_ATT_TILE) {
                i64 i = qt + threadIdx.x;
                lses[threadIdx.x] = i < a.tq ? lse[bh * a.tq + i] : -zf_inf();
                deltas[threadIdx.x] = i < a.tq ? delta[bh * a.tq + i] : 0.0f;
            }
            __syncthreads();
#pragma unroll
            for (int r = 0; r < ZF_ATT_ROWS_PER_WARP; r++) {
                i64 own = warp * ZF_ATT_ROWS_PER_WARP + r, j = first + own, i = qt + lane;
                if (j >= a.tk) continue;
                float p = 0.0f, ds = 0.0f;
                if (i < a.tq && zf_visible(a, padding, bh, i, j)) {
                    float s = a.scale * zf_dot(qs + lane * stride, ks + own * d, d);
                    p = zf_probability(s, lses[lane]);
                    ds = p * (zf_dot(gs + lane * stride, vs + own * d, d) - deltas[lane]);
                }
                __syncwarp();
                scratch[lane] = p;
                scratch[32 + lane] = ds;
                __syncwarp();
                zf_accumulate(dv_acc[r], scratch, gs, stride, d);
                zf_accumulate(dk_acc[r], scratch + 32, qs, stride, d);
            }
        }
#pragma unroll
        for (int r = 0; r < ZF_ATT_ROWS_PER_WARP; r++) {
            i64 j = first + warp * ZF_ATT_ROWS_PER_WARP + r;
            if (j >= a.tk) continue;
#pragma unroll
            for (int c = 0; c < ZF_ATT_COLS; c++) {
                i64 col = lane + 32 * c;
                if (col < d) {
                    dk[(bh * a.tk + j) * d + col] = a.scale * dk_acc[r][c];
                    dv[(bh * a.tk + j) * d + col] = dv_acc[r][c];
                }
            }
        }
    }
}
