// Elementwise functions with strides and broadcasting: one output element
// per logical index, each operand reading through its own layout. The op
// is a code the launcher (elementwise.rs) maps from the Rust enums; a
// switch on it is uniform across the grid, so it costs no divergence.
// Each formula is the CPU backend's (backend/cpu/unary.rs, storage.rs).

#define ZF_SQRT_2_OVER_PI 0.7978845608028654f
#define ZF_FRAC_1_SQRT_2 0.7071067811865476f
#define ZF_FRAC_1_SQRT_2PI 0.3989422804014327f
#define ZF_GELU_TANH_COEF 0.044715f

__device__ __forceinline__ float zf_sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

__device__ __forceinline__ float zf_unary(int op, float x, float p, float q) {
    switch (op) {
        case 0: return -x;
        case 1: return fabsf(x);
        case 2: return sinf(x);
        case 3: return cosf(x);
        case 4: return x < p ? p : (x > q ? q : x);
        case 5: return expf(x);
        case 6: return logf(x);
        case 7: return sqrtf(x);
        case 8: return tanhf(x);
        case 9: return zf_sigmoid(x);
        case 10: return x > 0.0f ? x : 0.0f;
        case 11: return 0.5f * x * (1.0f + erff(x * ZF_FRAC_1_SQRT_2));
        case 12: {
            float u = ZF_SQRT_2_OVER_PI * (x + ZF_GELU_TANH_COEF * x * x * x);
            return 0.5f * x * (1.0f + tanhf(u));
        }
        case 13: return x * zf_sigmoid(x);
        case 14: return x + p;
        case 15: return x * p;
        default: return powf(x, p);
    }
}

// The derivative at input x with output y.
__device__ __forceinline__ float zf_derivative(int op, float x, float y, float p, float q) {
    switch (op) {
        case 0: return -1.0f;
        case 1: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
        case 2: return cosf(x);
        case 3: return -sinf(x);
        case 4: return x >= p && x <= q ? 1.0f : 0.0f;
        case 5: return y;
        case 6: return 1.0f / x;
        case 7: return 0.5f / y;
        case 8: return 1.0f - y * y;
        case 9: return y * (1.0f - y);
        case 10: return x > 0.0f ? 1.0f : 0.0f;
        case 11:
            return 0.5f * (1.0f + erff(x * ZF_FRAC_1_SQRT_2)) + x * expf(-0.5f * x * x) * ZF_FRAC_1_SQRT_2PI;
        case 12: {
            // tanh and sech² from one exponential, so that both saturate
            // exactly far out (as the CPU's fast_tanh_sech2).
            float u = ZF_SQRT_2_OVER_PI * (x + ZF_GELU_TANH_COEF * x * x * x);
            float e = expf(-2.0f * fabsf(u));
            float r = 1.0f / (1.0f + e);
            float t = copysignf((1.0f - e) * r, u);
            float sech2 = 4.0f * e * r * r;
            return 0.5f * (1.0f + t) + 0.5f * x * sech2 * ZF_SQRT_2_OVER_PI * (1.0f + 3.0f * ZF_GELU_TANH_COEF * x * x);
        }
        case 13: {
            float s = zf_sigmoid(x);
            return s * (1.0f + x * (1.0f - s));
        }
        case 14: return 1.0f;
        case 15: return p;
        default: return p * powf(x, p - 1.0f);
    }
}

extern "C" __global__ void zf_unary(float* out, const float* x, ZfLayout lx, int op, float p, float q, i64 n) {
    for (i64 i = zf_first_index(); i < n; i += zf_grid_stride()) {
        out[i] = zf_unary(op, x[zf_offset(lx, i)], p, q);
    }
}

extern "C" __global__ void zf_unary_backward(float* out, const float* g, ZfLayout lg, const float* x, ZfLayout lx,
                                             const float* y, ZfLayout ly, int op, float p, float q, i64 n) {
    for (i64 i = zf_first_index(); i < n; i += zf_grid_stride()) {
        out[i] = g[zf_offset(lg, i)] * zf_derivative(op, x[zf_offset(lx, i)], y[zf_offset(ly, i)], p, q);
    }
}

extern "C" __global__ void zf_binary(float* out, const float* a, ZfLayout la, const float* b, ZfLayout lb, int op,
                                     i64 n) {
    for (i64 i = zf_first_index(); i < n; i += zf_grid_stride()) {
        float x = a[zf_offset(la, i)], y = b[zf_offset(lb, i)];
        float r;
        switch (op) {
            case 0: r = x + y; break;
            case 1: r = x - y; break;
            case 2: r = x * y; break;
            case 3: r = x / y; break;
            // NaN wins either way, as in PyTorch.
            case 4: r = (x > y || x != x) ? x : y; break;
            default: r = (x < y || x != x) ? x : y; break;
        }
        out[i] = r;
    }
}

extern "C" __global__ void zf_compare(u8* out, const float* a, ZfLayout la, const float* b, ZfLayout lb, int op,
                                      i64 n) {
    for (i64 i = zf_first_index(); i < n; i += zf_grid_stride()) {
        float x = a[zf_offset(la, i)], y = b[zf_offset(lb, i)];
        bool r;
        switch (op) {
            case 0: r = x < y; break;
            case 1: r = x <= y; break;
            case 2: r = x > y; break;
            case 3: r = x >= y; break;
            case 4: r = x == y; break;
            default: r = x != y; break;
        }
        out[i] = r;
    }
}

extern "C" __global__ void zf_where(float* out, const u8* c, ZfLayout lc, const float* a, ZfLayout la, const float* b,
                                    ZfLayout lb, i64 n) {
    for (i64 i = zf_first_index(); i < n; i += zf_grid_stride()) {
        out[i] = c[zf_offset(lc, i)] ? a[zf_offset(la, i)] : b[zf_offset(lb, i)];
    }
}
