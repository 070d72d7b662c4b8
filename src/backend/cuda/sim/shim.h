// CUDA's device-side language on the host: what a `.cu` kernel of
// src/backend/cuda/kernels needs to compile with the system C++ compiler
// and run on the simulated GPU (src/backend/cuda/sim).
//
// Every GPU thread of a block is a fiber on one CPU thread; the blocks of a
// grid run side by side on the CPU's threads. A barrier (`__syncthreads`,
// `__syncwarp`, every warp shuffle and vote) suspends the fiber until the
// threads it waits for arrive: the scheduler (sim/fibers.rs) counts them.
// `__shared__` variables are `thread_local`: every fiber of a block runs on
// the same CPU thread, and a CPU thread runs one block at a time.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __align__(n) alignas(n)

struct uint3 {
    unsigned int x, y, z;
};
typedef uint3 dim3;

// The running thread's coordinates and its block's memory, set by the
// scheduler before it resumes a fiber (sim/fibers.rs, `SimThread`).
struct zf_sim_thread_t {
    uint3 threadIdx;
    uint3 blockIdx;
    uint3 blockDim;
    uint3 gridDim;
    unsigned char* dynamic_shared;
    unsigned long long* warp_slots;
    // The barriers, in the scheduler: function pointers rather than
    // symbols, so that the kernels' archive needs nothing from the crate
    // at link time.
    void (*syncthreads)(void);
    void (*syncwarp)(unsigned int mask);
};
extern thread_local zf_sim_thread_t zf_sim_thread;

#define threadIdx (zf_sim_thread.threadIdx)
#define blockIdx (zf_sim_thread.blockIdx)
#define blockDim (zf_sim_thread.blockDim)
#define gridDim (zf_sim_thread.gridDim)
#define warpSize 32

// Dynamic shared memory (the launch's `shared_bytes`): `extern __shared__`
// has no host equivalent, so kernels name it through this macro, defined
// for the GPU in prelude.cuh.
#define ZF_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(zf_sim_thread.dynamic_shared)

__forceinline__ void __syncthreads() { zf_sim_thread.syncthreads(); }
__forceinline__ void __syncwarp(unsigned int mask = 0xffffffffu) { zf_sim_thread.syncwarp(mask); }
__forceinline__ void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
__forceinline__ void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// Warps: 32 consecutive threads of the block in x-major order.
__forceinline__ unsigned int zf_sim_linear_tid() {
    return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}
__forceinline__ unsigned int zf_sim_lane() { return zf_sim_linear_tid() & 31u; }

// Every lane of `mask` publishes `value` in its warp's slots, then reads
// lane `src`'s: a barrier on each side, so no lane overwrites a slot that
// another has not read yet.
template <class T>
T zf_sim_exchange(unsigned int mask, T value, unsigned int src) {
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    unsigned long long bits = 0;
    memcpy(&bits, &value, sizeof(T));
    zf_sim_thread.warp_slots[zf_sim_lane()] = bits;
    __syncwarp(mask);
    bits = zf_sim_thread.warp_slots[src & 31u];
    __syncwarp(mask);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}

template <class T>
T __shfl_sync(unsigned int mask, T value, int src_lane, int width = 32) {
    unsigned int lane = zf_sim_lane();
    unsigned int base = lane & ~(unsigned int)(width - 1);
    return zf_sim_exchange(mask, value, base + ((unsigned int)src_lane & (unsigned int)(width - 1)));
}

template <class T>
T __shfl_xor_sync(unsigned int mask, T value, int lane_mask, int width = 32) {
    unsigned int lane = zf_sim_lane();
    unsigned int src = lane ^ (unsigned int)lane_mask;
    // A source outside the caller's segment gives the caller's own value.
    if ((src & ~(unsigned int)(width - 1)) != (lane & ~(unsigned int)(width - 1))) src = lane;
    return zf_sim_exchange(mask, value, src);
}

template <class T>
T __shfl_down_sync(unsigned int mask, T value, unsigned int delta, int width = 32) {
    unsigned int lane = zf_sim_lane();
    unsigned int in_segment = lane & (unsigned int)(width - 1);
    unsigned int src = in_segment + delta < (unsigned int)width ? lane + delta : lane;
    return zf_sim_exchange(mask, value, src);
}

template <class T>
T __shfl_up_sync(unsigned int mask, T value, unsigned int delta, int width = 32) {
    unsigned int lane = zf_sim_lane();
    unsigned int in_segment = lane & (unsigned int)(width - 1);
    unsigned int src = in_segment >= delta ? lane - delta : lane;
    return zf_sim_exchange(mask, value, src);
}

__forceinline__ unsigned int __ballot_sync(unsigned int mask, int predicate) {
    zf_sim_thread.warp_slots[zf_sim_lane()] = predicate ? 1 : 0;
    __syncwarp(mask);
    unsigned int ballot = 0;
    for (unsigned int lane = 0; lane < 32; lane++) {
        if ((mask >> lane) & 1u && zf_sim_thread.warp_slots[lane]) ballot |= 1u << lane;
    }
    __syncwarp(mask);
    return ballot;
}
__forceinline__ int __any_sync(unsigned int mask, int predicate) {
    return __ballot_sync(mask, predicate) != 0;
}
__forceinline__ int __all_sync(unsigned int mask, int predicate) {
    return __ballot_sync(mask, !predicate) == 0;
}

// Atomics: blocks run side by side on CPU threads, so these are real ones.
#define ZF_SIM_ATOMIC_INT(T)                                                                       \
    __forceinline__ T atomicAdd(T* address, T value) {                                             \
        return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);                               \
    }                                                                                              \
    __forceinline__ T atomicSub(T* address, T value) {                                             \
        return __atomic_fetch_sub(address, value, __ATOMIC_RELAXED);                               \
    }                                                                                              \
    __forceinline__ T atomicExch(T* address, T value) {                                            \
        return __atomic_exchange_n(address, value, __ATOMIC_RELAXED);                              \
    }                                                                                              \
    __forceinline__ T atomicCAS(T* address, T compare, T value) {                                  \
        __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_RELAXED,             \
                                    __ATOMIC_RELAXED);                                             \
        return compare;                                                                            \
    }                                                                                              \
    __forceinline__ T atomicMax(T* address, T value) {                                             \
        T old = __atomic_load_n(address, __ATOMIC_RELAXED);                                        \
        while (old < value && !__atomic_compare_exchange_n(address, &old, value, true,             \
                                                           __ATOMIC_RELAXED, __ATOMIC_RELAXED)) { \
        }                                                                                          \
        return old;                                                                                \
    }                                                                                              \
    __forceinline__ T atomicMin(T* address, T value) {                                             \
        T old = __atomic_load_n(address, __ATOMIC_RELAXED);                                        \
        while (old > value && !__atomic_compare_exchange_n(address, &old, value, true,             \
                                                           __ATOMIC_RELAXED, __ATOMIC_RELAXED)) { \
        }                                                                                          \
        return old;                                                                                \
    }
ZF_SIM_ATOMIC_INT(int)
ZF_SIM_ATOMIC_INT(unsigned int)
ZF_SIM_ATOMIC_INT(unsigned long long)
#undef ZF_SIM_ATOMIC_INT

// Floating-point adds as a compare-and-swap loop on the bits, as the GPU
// did before it had them in hardware.
template <class F, class Bits>
F zf_sim_atomic_add_float(F* address, F value) {
    Bits* bits = reinterpret_cast<Bits*>(address);
    Bits old = __atomic_load_n(bits, __ATOMIC_RELAXED);
    for (;;) {
        F current;
        memcpy(&current, &old, sizeof(F));
        F sum = current + value;
        Bits desired;
        memcpy(&desired, &sum, sizeof(F));
        if (__atomic_compare_exchange_n(bits, &old, desired, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
            return current;
        }
    }
}
__forceinline__ float atomicAdd(float* address, float value) {
    return zf_sim_atomic_add_float<float, uint32_t>(address, value);
}
__forceinline__ double atomicAdd(double* address, double value) {
    return zf_sim_atomic_add_float<double, uint64_t>(address, value);
}

// Math: the device's names for the C library's functions and intrinsics.
__forceinline__ float rsqrtf(float x) { return 1.0f / sqrtf(x); }
__forceinline__ double rsqrt(double x) { return 1.0 / sqrt(x); }
__forceinline__ float __expf(float x) { return expf(x); }
__forceinline__ float __logf(float x) { return logf(x); }
__forceinline__ float __fdividef(float x, float y) { return x / y; }
__forceinline__ float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
__forceinline__ float __int_as_float(int x) { float f; memcpy(&f, &x, 4); return f; }
__forceinline__ int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
__forceinline__ float __uint_as_float(unsigned int x) { float f; memcpy(&f, &x, 4); return f; }
__forceinline__ unsigned int __float_as_uint(float x) { unsigned int i; memcpy(&i, &x, 4); return i; }
__forceinline__ unsigned int __umulhi(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a * b) >> 32);
}
__forceinline__ int __popc(unsigned int x) { return __builtin_popcount(x); }
__forceinline__ int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned int)x); }
__forceinline__ int __ffs(int x) { return __builtin_ffs(x); }
template <class T>
__forceinline__ T __ldg(const T* p) { return *p; }

__forceinline__ int min(int a, int b) { return a < b ? a : b; }
__forceinline__ int max(int a, int b) { return a > b ? a : b; }
__forceinline__ unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
__forceinline__ unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
__forceinline__ long long min(long long a, long long b) { return a < b ? a : b; }
__forceinline__ long long max(long long a, long long b) { return a > b ? a : b; }
__forceinline__ unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
__forceinline__ unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
__forceinline__ float min(float a, float b) { return fminf(a, b); }
__forceinline__ float max(float a, float b) { return fmaxf(a, b); }

// Launching: the driver hands a kernel its packed arguments, one pointer
// per parameter, as cuLaunchKernel does; this unpacks them into a call.
template <class... Params, size_t... I>
void zf_sim_call(void (*kernel)(Params...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<Params>>*>(args[I])...);
}
template <class... Params>
void zf_sim_invoke(void (*kernel)(Params...), void** args) {
    zf_sim_call(kernel, args, std::index_sequence_for<Params...>{});
}

// One entry of a module's table of kernels (build.rs writes the tables).
struct zf_sim_kernel {
    const char* name;
    void (*entry)(void** args);
};
