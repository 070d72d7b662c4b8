// Counter-based random numbers: Philox4x32-10, the twin of the CPU
// backend's backend/cpu/random.rs. Element i under a key is word i % 4 of
// the block at counter i / 4, so both devices draw the same numbers.

__device__ __forceinline__ void zf_philox4x32_10(u32 c[4], u32 k0, u32 k1) {
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        u64 p0 = (u64)0xD2511F53u * c[0];
        u64 p1 = (u64)0xCD9E8D57u * c[2];
        u32 next[4] = {(u32)(p1 >> 32) ^ c[1] ^ k0, (u32)p1, (u32)(p0 >> 32) ^ c[3] ^ k1, (u32)p0};
        c[0] = next[0];
        c[1] = next[1];
        c[2] = next[2];
        c[3] = next[3];
    }
}

// n inverted-dropout factors: 0 where the element's uniform number (its
// word's top 24 bits over 2^24) is below p, `scale` elsewhere. One thread
// per block of four.
extern "C" __global__ void zf_dropout_mask(float* out, i64 n, float p, float scale, u32 key_lo, u32 key_hi) {
    i64 blocks = (n + 3) / 4;
    for (i64 b = zf_first_index(); b < blocks; b += zf_grid_stride()) {
        u32 c[4] = {(u32)b, (u32)((u64)b >> 32), 0, 0};
        zf_philox4x32_10(c, key_lo, key_hi);
        for (int j = 0; j < 4 && b * 4 + j < n; j++) {
            float u = (float)(c[j] >> 8) * (1.0f / 16777216.0f);
            out[b * 4 + j] = u < p ? 0.0f : scale;
        }
    }
}
