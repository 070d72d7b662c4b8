// Cross-entropy of contiguous [rows, classes] logits against i64 targets,
// fused with its log-softmax: the twins of the CPU backend's loss.rs. The
// mean and the count of counted targets stay on the device.

// Whether a row's target is counted (not `ignore_index`).
__device__ __forceinline__ bool zf_counted(i64 target, i64 ignore_index, int has_ignore) {
    return !(has_ignore && target == ignore_index);
}

// Each row's log-softmax into log_probs (a warp per row, sums in double
// as the CPU's) and its loss, -log_probs[target], into row_loss: 0 for an
// ignored target, NaN for one out of range (a kernel cannot panic, so the
// mean loss carries the error to whoever reads it).
extern "C" __global__ void zf_cross_entropy_rows(float* log_probs, float* row_loss, const float* x,
                                                 const i64* targets, i64 rows, i64 classes, i64 ignore_index,
                                                 int has_ignore) {
    int lane = threadIdx.x & 31;
    for (i64 row = zf_warp_row(); row < rows; row += zf_warps()) {
        const float* src = x + row * classes;
        float* dst = log_probs + row * classes;
        float max = -zf_inf();
        for (i64 j = lane; j < classes; j += 32) max = fmaxf(max, src[j]);
        max = zf_warp_max(max);
        double sum = 0.0;
        for (i64 j = lane; j < classes; j += 32) sum += (double)expf(src[j] - max);
        float log_sum = (float)log(zf_warp_sum(sum));
        for (i64 j = lane; j < classes; j += 32) dst[j] = src[j] - max - log_sum;
        if (lane == 0) {
            i64 t = targets[row];
            float loss = 0.0f;
            if (zf_counted(t, ignore_index, has_ignore))
                loss = (t >= 0 && t < classes) ? -(src[t] - max - log_sum) : zf_nan();
            row_loss[row] = loss;
        }
    }
}

// The mean of the counted rows' losses (in double, in a fixed order) and
// their count, by one block.
#define ZF_MEAN_THREADS 256
extern "C" __global__ void zf_cross_entropy_mean(float* loss, i64* count, const float* row_loss,
                                                 const i64* targets, i64 rows, i64 ignore_index, int has_ignore) {
    __shared__ double totals[ZF_MEAN_THREADS];
    __shared__ i64 counts[ZF_MEAN_THREADS];
    double total = 0.0;
    i64 counted = 0;
    for (i64 row = threadIdx.x; row < rows; row += blockDim.x) {
        if (zf_counted(targets[row], ignore_index, has_ignore)) {
            total += (double)row_loss[row];
            counted++;
        }
    }
    totals[threadIdx.x] = total;
    counts[threadIdx.x] = counted;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            totals[threadIdx.x] += totals[threadIdx.x + half];
            counts[threadIdx.x] += counts[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        loss[0] = (float)(totals[0] / (double)counts[0]);
        count[0] = counts[0];
    }
}

// (softmax - one_hot(target)) * g / count for counted rows, zeros for
// ignored ones; g and count are the device's one-element values.
extern "C" __global__ void zf_cross_entropy_backward(float* dx, const float* log_probs, const i64* targets,
                                                     const float* g, const i64* count, i64 rows, i64 classes,
                                                     i64 ignore_index, int has_ignore) {
    float scale = g[0] / (float)count[0];
    for (i64 i = zf_first_index(); i < rows * classes; i += zf_grid_stride()) {
        i64 row = i / classes, col = i % classes;
        i64 t = targets[row];
        float d = 0.0f;
        if (zf_counted(t, ignore_index, has_ignore)) {
            d = expf(log_probs[i]) * scale;
            if (col == t) d -= scale;
        }
        dx[i] = d;
    }
}
