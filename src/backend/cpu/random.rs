//! Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel
//! random numbers: as easy as 1, 2, 3", SC 2011), the generator cuRAND and
//! PyTorch's GPU dropout use. Element `i` of a draw under `key` is word
//! `i % 4` of the block at counter `i / 4`, so any thread of any device
//! computes any element alone, and every device gets the same numbers.
//! kernels/random.cu on the CUDA side is this file's twin.

use rayon::prelude::*;

use super::{PARALLEL_CHUNK, PARALLEL_THRESHOLD, pool};

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// The 128 random bits of block `counter` under `key`.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// The uniform number in `[0, 1)` of element `index` under `key`: its
/// word's top 24 bits, exact in f32.
fn uniform(block: &[u32; 4], index: usize) -> f32 {
    (block[index % 4] >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// The key words of a 64-bit key.
fn key_words(key: u64) -> [u32; 2] {
    [key as u32, (key >> 32) as u32]
}

/// `len` inverted-dropout factors: 0 where the element's uniform number is
/// below `p`, `1 / (1 - p)` elsewhere.
pub fn dropout_mask(len: usize, p: f32, key: u64) -> Vec<f32> {
    let (key, scale) = (key_words(key), 1.0 / (1.0 - p));
    let mut out = pool::take(len);
    let fill = |start: usize, chunk: &mut [f32]| {
        // Chunks start at multiples of 4, so each covers whole blocks.
        for (b, quad) in chunk.chunks_mut(4).enumerate() {
            let block_index = (start / 4 + b) as u64;
            let block = philox4x32_10([block_index as u32, (block_index >> 32) as u32, 0, 0], key);
            for (j, v) in quad.iter_mut().enumerate() {
                *v = if uniform(&block, j) < p { 0.0 } else { scale };
            }
        }
    };
    if len < PARALLEL_THRESHOLD {
        fill(0, &mut out);
    } else {
        out.par_chunks_mut(PARALLEL_CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| fill(c * PARALLEL_CHUNK, chunk));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_random123s_known_answers() {
        // Random123's kat_vectors for philox4x32-10.
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn masks_drop_about_p_of_the_elements_and_scale_the_rest() {
        let n = 100_000; // parallel chunks, and a tail that is not a whole block
        let mask = dropout_mask(n + 3, 0.3, 42);
        let dropped = mask.iter().filter(|&&v| v == 0.0).count() as f64 / (n + 3) as f64;
        assert!((dropped - 0.3).abs() < 0.01, "{dropped}");
        assert!(mask.iter().all(|&v| v == 0.0 || v == 1.0 / 0.7));
        // Each element depends only on its index: a shorter draw is a prefix.
        assert_eq!(dropout_mask(10, 0.3, 42), mask[..10]);
        assert_ne!(dropout_mask(10, 0.3, 43), mask[..10]);
    }
}
