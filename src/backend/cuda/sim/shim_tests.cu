// Kernels with known answers that check the simulated GPU's shim
// (sim/tests.rs runs them): shared memory and block barriers, warp
// shuffles and votes, atomics, and a barrier only half a block reaches.

// Each block sums its `blockDim.x` elements of `x` (zeros past `n`) by a
// tree in dynamic shared memory, one barrier per level.
extern "C" __global__ void zf_test_block_sum(const float* x, float* sums, int n) {
    ZF_DYNAMIC_SHARED(float, partial);
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    partial[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (unsigned int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) sums[blockIdx.x] = partial[0];
}

// Inclusive prefix sums within each warp, by shuffles up (Hillis-Steele).
extern "C" __global__ void zf_test_warp_scan(const int* x, int* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int value = i < n ? x[i] : 0;
    int lane = threadIdx.x & 31;
    for (int delta = 1; delta < 32; delta *= 2) {
        int up = __shfl_up_sync(0xffffffffu, value, delta);
        if (lane >= delta) value += up;
    }
    if (i < n) out[i] = value;
}

// Per warp: the sum by butterfly (xor) shuffles, the maximum by shuffles
// down, a broadcast of lane 5's value, and votes on `x > 0`.
extern "C" __global__ void zf_test_warp_ops(const int* x, int* out) {
    int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    int value = x[threadIdx.x];
    int sum = value;
    for (int mask = 16; mask > 0; mask /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, mask);
    int best = value;
    for (int delta = 16; delta > 0; delta /= 2) best = max(best, __shfl_down_sync(0xffffffffu, best, delta));
    int fifth = __shfl_sync(0xffffffffu, value, 5);
    unsigned int ballot = __ballot_sync(0xffffffffu, value > 0);
    int any = __any_sync(0xffffffffu, value > 0);
    int all = __all_sync(0xffffffffu, value > 0);
    out[threadIdx.x] = sum;
    if (lane == 0) {
        int* w = out + blockDim.x + warp * 5;
        w[0] = best;
        w[1] = fifth;
        w[2] = (int)ballot;
        w[3] = any;
        w[4] = all;
    }
}

// Counts of each value of `x` (all in 0..bins) by atomic adds from every
// block, and the total in a float by atomic float adds.
extern "C" __global__ void zf_test_histogram(const int* x, int n, unsigned int* counts, float* total) {
    for (i64 i = zf_first_index(); i < n; i += zf_grid_stride()) {
        atomicAdd(&counts[x[i]], 1u);
        atomicAdd(total, 1.0f);
    }
}

// Static shared memory, written by one thread and read by all after a
// barrier: each block's threads copy the block's index plus their own.
extern "C" __global__ void zf_test_static_shared(int* out) {
    __shared__ int base;
    if (threadIdx.x == 0) base = 1000 * blockIdx.x;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = base + threadIdx.x;
}

// A barrier only the first half of the block reaches: a bug the GPU would
// hang on, which the simulator reports.
extern "C" __global__ void zf_test_half_barrier(int* out) {
    if (threadIdx.x < blockDim.x / 2) __syncthreads();
    out[threadIdx.x] = 1;
}
