// Moving data: strided copies (a view into contiguous memory, or into
// another view), adding into a view, filling, and dtype casts. Every
// kernel walks the logical elements in row-major order with a grid-stride
// loop; each operand maps the element's index to its own storage offset.

// dst[to(i)] = src[from(i)] for every element index i < n, for elements of
// 1, 4 or 8 bytes (every dtype is one of these widths).
template <class T>
__device__ void copy_strided(T* dst, const ZfLayout& to, const T* src, const ZfLayout& from, i64 n) {
    for (i64 i = zf_first_index(); i < n; i += zf_grid_stride()) {
        dst[zf_offset(to, i)] = src[zf_offset(from, i)];
    }
}

extern "C" __global__ void zf_copy_b1(u8* dst, ZfLayout to, const u8* src, ZfLayout from, i64 n) {
    copy_strided(dst, to, src, from, n);
}
extern "C" __global__ void zf_copy_b4(u32* dst, ZfLayout to, const u32* src, ZfLayout from, i64 n) {
    copy_strided(dst, to, src, from, n);
}
extern "C" __global__ void zf_copy_b8(u64* dst, ZfLayout to, const u64* src, ZfLayout from, i64 n) {
    copy_strided(dst, to, src, from, n);
}

// dst[to(i)] += src[from(i)]: gradient accumulation into a window.
extern "C" __global__ void zf_add_into_f32(float* dst, ZfLayout to, const float* src, ZfLayout from, i64 n) {
    for (i64 i = zf_first_index(); i < n; i += zf_grid_stride()) {
        dst[zf_offset(to, i)] += src[zf_offset(from, i)];
    }
}

extern "C" __global__ void zf_fill_f32(float* dst, float value, i64 n) {
    for (i64 i = zf_first_index(); i < n; i += zf_grid_stride()) dst[i] = value;
}

// Conversions with the CPU backend's (Rust's `as`) rules: float to integer
// truncates toward zero (rounds first for int8) and saturates, NaN to 0;
// anything to bool is `!= 0`; bool to a number is 0 or 1.
__device__ __forceinline__ i64 zf_f32_to_i64(float x) {
    if (x != x) return 0;
    if (x >= 9.223372e18f) return 0x7fffffffffffffffLL;
    if (x <= -9.223372e18f) return (i64)(-0x7fffffffffffffffLL - 1);
    return (i64)x;
}
__device__ __forceinline__ i8 zf_f32_to_i8(float x) {
    if (x != x) return 0;
    float r = roundf(x);
    return (i8)(r >= 127.0f ? 127.0f : (r <= -128.0f ? -128.0f : r));
}
__device__ __forceinline__ i8 zf_i64_to_i8(i64 x) { return (i8)(x > 127 ? 127 : (x < -128 ? -128 : x)); }

template <class From, class To, To (*convert)(From)>
__device__ void cast(To* dst, const From* src, const ZfLayout& from, i64 n) {
    for (i64 i = zf_first_index(); i < n; i += zf_grid_stride()) dst[i] = convert(src[zf_offset(from, i)]);
}
__device__ __forceinline__ u8 zf_f32_to_bool(float x) { return x != 0.0f; }
__device__ __forceinline__ float zf_i64_to_f32(i64 x) { return (float)x; }
__device__ __forceinline__ u8 zf_i64_to_bool(i64 x) { return x != 0; }
__device__ __forceinline__ float zf_bool_to_f32(u8 x) { return x ? 1.0f : 0.0f; }
__device__ __forceinline__ i64 zf_bool_to_i64(u8 x) { return x ? 1 : 0; }
__device__ __forceinline__ i8 zf_bool_to_i8(u8 x) { return x ? 1 : 0; }
__device__ __forceinline__ float zf_i8_to_f32(i8 x) { return (float)x; }
__device__ __forceinline__ i64 zf_i8_to_i64(i8 x) { return (i64)x; }
__device__ __forceinline__ u8 zf_i8_to_bool(i8 x) { return x != 0; }

extern "C" __global__ void zf_cast_f32_i64(i64* dst, const float* src, ZfLayout from, i64 n) {
    cast<float, i64, zf_f32_to_i64>(dst, src, from, n);
}
extern "C" __global__ void zf_cast_f32_bool(u8* dst, const float* src, ZfLayout from, i64 n) {
    cast<float, u8, zf_f32_to_bool>(dst, src, from, n);
}
extern "C" __global__ void zf_cast_f32_i8(i8* dst, const float* src, ZfLayout from, i64 n) {
    cast<float, i8, zf_f32_to_i8>(dst, src, from, n);
}
extern "C" __global__ void zf_cast_i64_f32(float* dst, const i64* src, ZfLayout from, i64 n) {
    cast<i64, float, zf_i64_to_f32>(dst, src, from, n);
}
extern "C" __global__ void zf_cast_i64_bool(u8* dst, const i64* src, ZfLayout from, i64 n) {
    cast<i64, u8, zf_i64_to_bool>(dst, src, from, n);
}
extern "C" __global__ void zf_cast_i64_i8(i8* dst, const i64* src, ZfLayout from, i64 n) {
    cast<i64, i8, zf_i64_to_i8>(dst, src, from, n);
}
extern "C" __global__ void zf_cast_bool_f32(float* dst, const u8* src, ZfLayout from, i64 n) {
    cast<u8, float, zf_bool_to_f32>(dst, src, from, n);
}
extern "C" __global__ void zf_cast_bool_i64(i64* dst, const u8* src, ZfLayout from, i64 n) {
    cast<u8, i64, zf_bool_to_i64>(dst, src, from, n);
}
extern "C" __global__ void zf_cast_bool_i8(i8* dst, const u8* src, ZfLayout from, i64 n) {
    cast<u8, i8, zf_bool_to_i8>(dst, src, from, n);
}
extern "C" __global__ void zf_cast_i8_f32(float* dst, const i8* src, ZfLayout from, i64 n) {
    cast<i8, float, zf_i8_to_f32>(dst, src, from, n);
}
extern "C" __global__ void zf_cast_i8_i64(i64* dst, const i8* src, ZfLayout from, i64 n) {
    cast<i8, i64, zf_i8_to_i64>(dst, src, from, n);
}
extern "C" __global__ void zf_cast_i8_bool(u8* dst, const i8* src, ZfLayout from, i64 n) {
    cast<i8, u8, zf_i8_to_bool>(dst, src, from, n);
}
