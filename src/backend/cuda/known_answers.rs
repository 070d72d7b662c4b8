//! Known answers for the device itself: the kernels of sim/shim_tests.cu
//! (shared memory and barriers, warp shuffles and votes, atomics) run
//! through the same driver calls as every backend kernel. On the simulated
//! GPU they test the shim; on a GPU, that the answers are the hardware's.
//! The tests of what only the simulator reports (a barrier half a block
//! reaches, launch limits, copies outside an allocation) run there alone.
//! Without a usable device each test is skipped with a printed reason,
//! unless `ZEROFORMER_REQUIRE_CUDA=1`.

use std::sync::Arc;

use super::SHIM_TESTS as MODULE;
use super::driver::{DevicePtr, Dim3};
use super::gpu::{DeviceBuffer, Gpu, gpu};
use super::launch;

/// CUDA device 0, or `None` with a printed reason.
fn device() -> Option<Arc<Gpu>> {
    match gpu(0) {
        Ok(gpu) => Some(gpu),
        Err(e) if std::env::var("ZEROFORMER_REQUIRE_CUDA").is_ok_and(|v| v == "1") => {
            panic!("{e} and ZEROFORMER_REQUIRE_CUDA=1")
        }
        Err(e) => {
            eprintln!("skipping on CUDA: {e}");
            None
        }
    }
}

/// The simulated GPU, for what only it reports.
#[cfg(feature = "cuda-sim")]
fn simulator() -> Arc<Gpu> {
    gpu(0).expect("the simulated GPU always opens")
}

fn upload<T: Copy>(gpu: &Arc<Gpu>, values: &[T]) -> DeviceBuffer {
    // SAFETY: plain numbers, read as bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    };
    gpu.upload(bytes)
}

fn download_i32(gpu: &Gpu, ptr: DevicePtr, len: usize) -> Vec<i32> {
    gpu.download(ptr, len * 4)
        .chunks_exact(4)
        .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
        .collect()
}

fn download_f32(gpu: &Gpu, ptr: DevicePtr, len: usize) -> Vec<f32> {
    gpu.download(ptr, len * 4)
        .chunks_exact(4)
        .map(|b| f32::from_ne_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn a_block_reduction_through_shared_memory_sums_each_block() {
    let Some(gpu) = device() else { return };
    let n = 1000;
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let (input, sums) = (upload(&gpu, &x), gpu.alloc(4 * 4));
    let (xp, sp, n32) = (input.ptr(), sums.ptr(), n);
    // SAFETY: the kernel reads `n` floats and writes one per block.
    unsafe {
        launch!(gpu, MODULE, "zf_test_block_sum", Dim3::x(4), Dim3::x(256), 256 * 4; xp, sp, n32)
    };
    let got = download_f32(&gpu, sums.ptr(), 4);
    let expected: Vec<f32> = (0..4)
        .map(|b| (b * 256..((b + 1) * 256).min(n)).map(|i| i as f32).sum())
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn a_warp_shuffle_scan_gives_prefix_sums_within_each_warp() {
    let Some(gpu) = device() else { return };
    let n = 100; // three full warps and a partial one, in two blocks
    let x: Vec<i32> = (0..n).map(|i| (i * 7 % 11) - 3).collect();
    let (input, out) = (upload(&gpu, &x), gpu.alloc(n as usize * 4));
    let (xp, op) = (input.ptr(), out.ptr());
    // SAFETY: reads and writes `n` ints.
    unsafe { launch!(gpu, MODULE, "zf_test_warp_scan", Dim3::x(2), Dim3::x(64), 0; xp, op, n) };
    let got = download_i32(&gpu, out.ptr(), n as usize);
    let mut expected = vec![0; n as usize];
    for (i, e) in expected.iter_mut().enumerate() {
        let start = i / 32 * 32;
        *e = x[start..=i].iter().sum();
    }
    assert_eq!(got, expected);
}

#[test]
fn warp_sums_maxima_broadcasts_and_votes_agree_with_the_host() {
    let Some(gpu) = device() else { return };
    // Warp 0 all positive; warp 1 mixed; warp 2 all negative or zero.
    let x: Vec<i32> = (0..96)
        .map(|i| match i / 32 {
            0 => i + 1,
            1 => {
                if i % 3 == 0 {
                    5
                } else {
                    -(i % 7)
                }
            }
            _ => -(i % 5),
        })
        .collect();
    let (input, out) = (upload(&gpu, &x), gpu.alloc((96 + 3 * 5) * 4));
    let (xp, op) = (input.ptr(), out.ptr());
    // SAFETY: reads 96 ints, writes 96 + 15.
    unsafe { launch!(gpu, MODULE, "zf_test_warp_ops", Dim3::x(1), Dim3::x(96), 0; xp, op) };
    let got = download_i32(&gpu, out.ptr(), 96 + 15);
    for w in 0..3 {
        let lanes = &x[w * 32..(w + 1) * 32];
        let sum: i32 = lanes.iter().sum();
        assert!(
            got[w * 32..(w + 1) * 32].iter().all(|&s| s == sum),
            "warp {w} sum"
        );
        let ballot = lanes
            .iter()
            .enumerate()
            .fold(0u32, |b, (l, &v)| if v > 0 { b | 1 << l } else { b });
        let expected = [
            *lanes.iter().max().unwrap(),
            lanes[5],
            ballot as i32,
            (ballot != 0) as i32,
            (ballot == u32::MAX) as i32,
        ];
        assert_eq!(&got[96 + w * 5..96 + w * 5 + 5], &expected, "warp {w}");
    }
}

#[test]
fn atomic_adds_from_every_block_count_a_histogram_exactly() {
    let Some(gpu) = device() else { return };
    let n = 10_000;
    let x: Vec<i32> = (0..n).map(|i| (i * i + 3 * i) % 17).collect();
    let (input, counts, total) = (upload(&gpu, &x), gpu.alloc(17 * 4), gpu.alloc(4));
    // SAFETY: zeroing what the kernel accumulates into.
    unsafe {
        gpu.memset(counts.ptr(), 0, 17 * 4);
        gpu.memset(total.ptr(), 0, 4);
    }
    let (xp, cp, tp) = (input.ptr(), counts.ptr(), total.ptr());
    // SAFETY: reads `n` ints in 0..17, adds into 17 counts and one float.
    unsafe {
        launch!(gpu, MODULE, "zf_test_histogram", Dim3::x(8), Dim3::x(128), 0; xp, n, cp, tp)
    };
    let got = download_i32(&gpu, counts.ptr(), 17);
    let mut expected = vec![0; 17];
    for &v in &x {
        expected[v as usize] += 1;
    }
    assert_eq!(got, expected);
    assert_eq!(download_f32(&gpu, total.ptr(), 1), vec![n as f32]);
}

#[test]
fn static_shared_memory_is_one_per_block() {
    let Some(gpu) = device() else { return };
    let out = gpu.alloc(6 * 32 * 4);
    let op = out.ptr();
    // SAFETY: writes one int per thread of six blocks of 32.
    unsafe { launch!(gpu, MODULE, "zf_test_static_shared", Dim3::x(6), Dim3::x(32), 0; op) };
    let got = download_i32(&gpu, out.ptr(), 6 * 32);
    let expected: Vec<i32> = (0..6 * 32).map(|i| 1000 * (i / 32) + i % 32).collect();
    assert_eq!(got, expected);
}

#[cfg(feature = "cuda-sim")]
#[test]
#[should_panic(
    expected = "kernel `zf_test_half_barrier`: a barrier in block (0, 0, 0) can never open: 32 of 64 threads wait at __syncthreads(), 32 have returned"
)]
fn a_barrier_half_the_block_reaches_fails_naming_the_kernel() {
    let gpu = simulator();
    let out = gpu.alloc(64 * 4);
    let op = out.ptr();
    // SAFETY: writes one int per thread.
    unsafe { launch!(gpu, MODULE, "zf_test_half_barrier", Dim3::x(1), Dim3::x(64), 0; op) };
}

#[cfg(feature = "cuda-sim")]
#[test]
#[should_panic(
    expected = "kernel `zf_test_static_shared`: 1025 threads per block (1025 x 1 x 1); a GPU allows at most 1024"
)]
fn a_launch_of_1025_threads_fails_naming_the_kernel() {
    let gpu = simulator();
    let out = gpu.alloc(1025 * 4);
    let op = out.ptr();
    // SAFETY: never runs: the launch is refused.
    unsafe { launch!(gpu, MODULE, "zf_test_static_shared", Dim3::x(1), Dim3::x(1025), 0; op) };
}

#[cfg(feature = "cuda-sim")]
#[test]
#[should_panic(
    expected = "kernel `zf_test_block_sum`: 65536 bytes of dynamic shared memory per block; this kernel may use at most 49152"
)]
fn more_dynamic_shared_memory_than_a_kernel_may_use_fails_naming_it() {
    let gpu = simulator();
    let (x, sums) = (gpu.alloc(4), gpu.alloc(4));
    let (xp, sp) = (x.ptr(), sums.ptr());
    // SAFETY: never runs: the launch is refused.
    unsafe {
        launch!(gpu, MODULE, "zf_test_block_sum", Dim3::x(1), Dim3::x(32), 65536; xp, sp, 1i32)
    };
}

#[test]
fn freed_buffers_are_reused_not_returned_to_the_device() {
    let Some(gpu) = device() else { return };
    // Ten rounds of two allocations: the first round may reach the driver,
    // the other nine reuse what it freed. Other tests share the device and
    // may allocate meanwhile, so any of three tries may show it; without
    // reuse every try reaches the driver 20 times.
    let reuses = || {
        let before = gpu.memory_stats().fresh_allocations;
        for _ in 0..10 {
            let a = gpu.alloc(3000);
            let b = gpu.alloc(5_000_000);
            drop((a, b));
        }
        gpu.memory_stats().fresh_allocations - before <= 2
    };
    assert!((0..3).any(|_| reuses()));
}

#[cfg(feature = "cuda-sim")]
#[test]
#[should_panic(expected = "simulated GPU: a copy to the host of 8 bytes at")]
fn a_copy_past_the_end_of_a_buffer_panics_instead_of_reading_host_memory() {
    let gpu = simulator();
    let buffer = gpu.alloc(512);
    gpu.download(buffer.ptr().offset(508), 8);
}
