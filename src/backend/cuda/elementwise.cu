// Elementwise functions with strides and broadcasting: one output element
// per logical index, each operand reading through its own layout. Each op
// of the tables in src/backend/op_tables.rs has its functions here, named
// after its row (`zf_unary_gelu_tanh` for GeluTanh), and the switches below
// are made from the generated `ZF_UNARY_OPS` and its siblings
// (op_tables.cuh): a row without its functions does not compile. The op's
// code is uniform across the grid, so the switch costs no divergence. Each
// formula is the CPU backend's (backend/cpu/elementwise.rs).

#define ZF_SQRT_2_OVER_PI 0.7978845608028654f
#define ZF_FRAC_1_SQRT_2 0.7071067811865476f
#define ZF_FRAC_1_SQRT_2PI 0.3989422804014327f
#define ZF_GELU_TANH_COEF 0.044715f

__device__ __forceinline__ float zf_sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

// A unary op's value at `x` and its derivative at `x` with output `y`; `p`
// and `q` are its parameters (`Clamp(lo, hi)`, `AddScalar(c)`, ...).
#define ZF_UNARY(name, value, derivative)                                                         \
    __device__ __forceinline__ float zf_unary_##name(float x, float p, float q) { return value; } \
    __device__ __forceinline__ float zf_unary_##name##_derivative(float x, float y, float p, float q) { return derivative; }

ZF_UNARY(neg, -x, -1.0f)
ZF_UNARY(abs, fabsf(x), x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f))
ZF_UNARY(sin, sinf(x), cosf(x))
ZF_UNARY(cos, cosf(x), -sinf(x))
ZF_UNARY(clamp, x < p ? p : (x > q ? q : x), x >= p && x <= q ? 1.0f : 0.0f)
ZF_UNARY(exp, expf(x), y)
ZF_UNARY(log, logf(x), 1.0f / x)
ZF_UNARY(sqrt, sqrtf(x), 0.5f / y)
ZF_UNARY(tanh, tanhf(x), 1.0f - y * y)
ZF_UNARY(sigmoid, zf_sigmoid(x), y * (1.0f - y))
ZF_UNARY(relu, x > 0.0f ? x : 0.0f, x > 0.0f ? 1.0f : 0.0f)
ZF_UNARY(gelu, 0.5f * x * (1.0f + erff(x * ZF_FRAC_1_SQRT_2)),
         0.5f * (1.0f + erff(x * ZF_FRAC_1_SQRT_2)) + x * expf(-0.5f * x * x) * ZF_FRAC_1_SQRT_2PI)
ZF_UNARY(add_scalar, x + p, 1.0f)
ZF_UNARY(mul_scalar, x * p, p)
ZF_UNARY(powf, powf(x, p), p * powf(x, p - 1.0f))

__device__ __forceinline__ float zf_unary_gelu_tanh(float x, float p, float q) {
    float u = ZF_SQRT_2_OVER_PI * (x + ZF_GELU_TANH_COEF * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

__device__ __forceinline__ float zf_unary_gelu_tanh_derivative(float x, float y, float p, float q) {
    // tanh and sech² from one exponential, so that both saturate exactly
    // far out (as the CPU's fast_tanh_sech2).
    float u = ZF_SQRT_2_OVER_PI * (x + ZF_GELU_TANH_COEF * x * x * x);
    float e = expf(-2.0f * fabsf(u));
    float r = 1.0f / (1.0f + e);
    float t = copysignf((1.0f - e) * r, u);
    float sech2 = 4.0f * e * r * r;
    return 0.5f * (1.0f + t) + 0.5f * x * sech2 * ZF_SQRT_2_OVER_PI * (1.0f + 3.0f * ZF_GELU_TANH_COEF * x * x);
}

__device__ __forceinline__ float zf_unary_silu(float x, float p, float q) { return x * zf_sigmoid(x); }

__device__ __forceinline__ float zf_unary_silu_derivative(float x, float y, float p, float q) {
    float s = zf_sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
}

// A binary op's value; NaN wins `maximum` and `minimum` either way, as in
// PyTorch.
#define ZF_BINARY(name, value) \
    __device__ __forceinline__ float zf_binary_##name(float a, float b) { return value; }

ZF_BINARY(add, a + b)
ZF_BINARY(sub, a - b)
ZF_BINARY(mul, a * b)
ZF_BINARY(div, a / b)
ZF_BINARY(maximum, (a > b || a != a) ? a : b)
ZF_BINARY(minimum, (a < b || a != a) ? a : b)

#define ZF_COMPARE(name, value) \
    __device__ __forceinline__ bool zf_compare_##name(float a, float b) { return value; }

ZF_COMPARE(lt, a < b)
ZF_COMPARE(le, a <= b)
ZF_COMPARE(gt, a > b)
ZF_COMPARE(ge, a >= b)
ZF_COMPARE(eq, a == b)
ZF_COMPARE(ne, a != b)

// The switches, one case per row of each table. A code outside the table
// (which the launchers never pass) gives NaN or false.
__device__ __forceinline__ float zf_unary(int op, float x, float p, float q) {
#define ZF_CASE(code, name) case code: return zf_unary_##name(x, p, q);
    switch (op) { ZF_UNARY_OPS(ZF_CASE) }
#undef ZF_CASE
    return zf_nan();
}

__device__ __forceinline__ float zf_derivative(int op, float x, float y, float p, float q) {
#define ZF_CASE(code, name) case code: return zf_unary_##name##_derivative(x, y, p, q);
    switch (op) { ZF_UNARY_OPS(ZF_CASE) }
#undef ZF_CASE
    return zf_nan();
}

__device__ __forceinline__ float zf_binary(int op, float a, float b) {
#define ZF_CASE(code, name) case code: return zf_binary_##name(a, b);
    switch (op) { ZF_BINARY_OPS(ZF_CASE) }
#undef ZF_CASE
    return zf_nan();
}

__device__ __forceinline__ bool zf_compare(int op, float a, float b) {
#define ZF_CASE(code, name) case code: return zf_compare_##name(a, b);
    switch (op) { ZF_COMPARE_OPS(ZF_CASE) }
#undef ZF_CASE
    return false;
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
        out[i] = zf_binary(op, a[zf_offset(la, i)], b[zf_offset(lb, i)]);
    }
}

extern "C" __global__ void zf_compare(u8* out, const float* a, ZfLayout la, const float* b, ZfLayout lb, int op,
                                      i64 n) {
    for (i64 i = zf_first_index(); i < n; i += zf_grid_stride()) {
        out[i] = zf_compare(op, a[zf_offset(la, i)], b[zf_offset(lb, i)]);
    }
}

extern "C" __global__ void zf_where(float* out, const u8* c, ZfLayout lc, const float* a, ZfLayout la, const float* b,
                                    ZfLayout lb, i64 n) {
    for (i64 i = zf_first_index(); i < n; i += zf_grid_stride()) {
        out[i] = c[zf_offset(lc, i)] ? a[zf_offset(la, i)] : b[zf_offset(lb, i)];
    }
}
