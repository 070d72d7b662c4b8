// The AdamW update, fused and in place: the twin of the CPU backend's
// optim.rs, PyTorch's formulas in the same order of operations.

// `scale` (null: 1) multiplies the gradient (a clipping factor computed on
// the device); a NaN scale skips the step, as the CPU's does.
extern "C" __global__ void zf_adam_update(float* w, const float* g, float* m, float* v, i64 n, float lr, float beta1,
                                          float beta2, float eps, float step_size, float bias2_sqrt, float l2,
                                          float decay, const float* scale) {
    float s = scale ? scale[0] : 1.0f;
    if (s != s) return;
    float keep = 1.0f - lr * decay;
    for (i64 i = zf_first_index(); i < n; i += zf_grid_stride()) {
        float gi = g[i] * s;
        float wi = w[i];
        if (l2 != 0.0f) gi = gi + l2 * wi;
        if (decay != 0.0f) wi *= keep;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bias2_sqrt + eps;
        w[i] = wi - step_size * mi / denom;
    }
}
