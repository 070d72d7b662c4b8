//! Running a kernel's grid on the CPU: each block on one CPU thread (blocks
//! side by side through rayon), each GPU thread of the block a fiber
//! (corosensei), switched only at barriers.
//!
//! The scheduler resumes a block's unfinished threads in turn. A thread
//! runs until it returns or waits at a barrier (`__syncthreads`, or a warp
//! barrier under `__syncwarp`, a shuffle or a vote); a barrier opens when
//! the last thread it waits for arrives. A thread that never waits runs
//! start to finish on one stack, which the next thread reuses, so a kernel
//! without barriers costs a call per thread, not a stack. A round in which
//! no thread moves while some still wait is a barrier that can never open
//! (some threads returned, or waited elsewhere): the launch panics naming
//! the kernel, as the GPU would hang or misbehave.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use rayon::prelude::*;

use crate::backend::cuda::driver::Dim3;

/// A kernel's entry as the shim exposes it: its packed arguments, one
/// pointer per parameter, as `cuLaunchKernel` takes them.
pub type Entry = unsafe extern "C" fn(args: *mut *mut c_void);

/// One kernel launch.
pub struct Launch<'a> {
    /// The kernel's name, for messages.
    pub name: &'a str,
    /// Its entry.
    pub entry: Entry,
    /// Blocks in the grid.
    pub grid: Dim3,
    /// Threads in a block.
    pub block: Dim3,
    /// Dynamic shared memory per block, in bytes.
    pub shared_bytes: usize,
    /// The most dynamic shared memory this kernel may ask for.
    pub max_shared_bytes: usize,
    /// The packed arguments.
    pub args: *mut *mut c_void,
}

/// Threads per block, as every CUDA GPU since compute capability 2.0.
pub const MAX_THREADS_PER_BLOCK: u32 = 1024;
/// Dynamic shared memory a kernel gets without opting in (48 KiB).
pub const DEFAULT_MAX_SHARED_BYTES: usize = 48 * 1024;

/// The running GPU thread as shim.h reads it (`zf_sim_thread_t`).
#[repr(C)]
struct SimThread {
    thread_idx: Dim3,
    block_idx: Dim3,
    block_dim: Dim3,
    grid_dim: Dim3,
    dynamic_shared: *mut u8,
    warp_slots: *mut u64,
    syncthreads: extern "C" fn(),
    syncwarp: extern "C" fn(u32),
}

unsafe extern "C" {
    /// Sets the running thread's coordinates (sim/runtime.cpp).
    fn zf_sim_enter(thread: *const SimThread);
}

/// A fiber's stack: enough for the kernels' locals and the shim's calls.
const STACK_BYTES: usize = 256 * 1024;

thread_local! {
    /// The block this CPU thread is running, for the barrier hooks.
    static BLOCK: Cell<*const Block> = const { Cell::new(std::ptr::null()) };
    /// Stacks of finished fibers, reused by the next.
    static STACKS: RefCell<Vec<DefaultStack>> = const { RefCell::new(Vec::new()) };
    /// This CPU thread's dynamic shared memory and warp slots.
    static MEMORY: RefCell<(Vec<u128>, Vec<u64>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs every block of the grid. Panics naming the kernel when the launch
/// breaks a GPU's limits or a barrier can never open.
///
/// # Safety
/// `launch.args` must hold one pointer per kernel parameter, each to a
/// value of that parameter's type, and every pointer those values hold
/// must be valid for what the kernel does with it.
pub unsafe fn run(launch: &Launch) {
    check_limits(launch);
    let blocks = launch.grid.count();
    let shared = SendLaunch(launch);
    let run_one = move |b: u64| {
        let launch = shared.get();
        // SAFETY: the caller vouches for the arguments.
        unsafe { run_block(launch, launch.grid.at(b)) }
    };
    if blocks == 1 {
        run_one(0);
    } else {
        (0..blocks).into_par_iter().for_each(run_one);
    }
}

/// The launch shared by the CPU threads that run its blocks: the kernel
/// reads the arguments only, and writes device memory as a GPU would.
#[derive(Clone, Copy)]
struct SendLaunch<'a>(&'a Launch<'a>);
// SAFETY: the raw argument pointers are read, never written, by the blocks.
unsafe impl Send for SendLaunch<'_> {}
unsafe impl Sync for SendLaunch<'_> {}

impl<'a> SendLaunch<'a> {
    fn get(self) -> &'a Launch<'a> {
        self.0
    }
}

fn check_limits(launch: &Launch) {
    let (name, grid, block) = (launch.name, launch.grid, launch.block);
    let threads = block.count();
    let fail = |what: String| -> ! { panic!("kernel `{name}`: {what}") };
    if grid.count() == 0 || threads == 0 {
        fail(format!(
            "an empty launch ({} x {} x {} blocks of {} x {} x {} threads)",
            grid.x, grid.y, grid.z, block.x, block.y, block.z
        ));
    }
    if threads > MAX_THREADS_PER_BLOCK as u64 || block.x > 1024 || block.y > 1024 || block.z > 64 {
        fail(format!(
            "{threads} threads per block ({} x {} x {}); a GPU allows at most {MAX_THREADS_PER_BLOCK}, and 1024 x 1024 x 64 along the axes",
            block.x, block.y, block.z
        ));
    }
    if grid.x > i32::MAX as u32 || grid.y > 65_535 || grid.z > 65_535 {
        fail(format!(
            "a grid of {} x {} x {} blocks; a GPU allows at most 2^31 - 1 x 65535 x 65535",
            grid.x, grid.y, grid.z
        ));
    }
    if launch.shared_bytes > launch.max_shared_bytes {
        fail(format!(
            "{} bytes of dynamic shared memory per block; this kernel may use at most {}",
            launch.shared_bytes, launch.max_shared_bytes
        ));
    }
}

/// What a thread of the running block is doing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    AtBlockBarrier,
    AtWarpBarrier,
    Returned,
}

/// A barrier's count of arrivals; `generation` moves on when it opens.
#[derive(Default)]
struct Barrier {
    arrived: Cell<u32>,
    generation: Cell<u64>,
}

/// The running block: its barriers and its threads' states, reached by
/// the barrier hooks through `BLOCK`. Fibers of one block share a CPU
/// thread and run one at a time, so cells suffice.
struct Block {
    threads: u32,
    block_barrier: Barrier,
    warp_barriers: Vec<Barrier>,
    states: Vec<Cell<State>>,
    yielders: Vec<Cell<*const Yielder<(), ()>>>,
    current: Cell<u32>,
    /// Whether any thread arrived at a barrier or returned this round.
    progress: Cell<bool>,
}

impl Block {
    /// Arrives at `barrier`, which opens at `expected` arrivals, and
    /// suspends the calling fiber until it does.
    fn wait(&self, barrier: &Barrier, expected: u32, state: State) {
        let generation = barrier.generation.get();
        self.progress.set(true);
        let arrived = barrier.arrived.get() + 1;
        if arrived >= expected {
            barrier.arrived.set(0);
            barrier.generation.set(generation + 1);
            return;
        }
        barrier.arrived.set(arrived);
        let me = self.current.get() as usize;
        self.states[me].set(state);
        while barrier.generation.get() == generation {
            let yielder = self.yielders[me].get();
            // SAFETY: set by this fiber when it started; the fiber is running.
            unsafe { (*yielder).suspend(()) };
        }
        self.states[me].set(State::Running);
    }

    /// The threads of warp `warp` that exist (the last warp of a block
    /// whose size is not a multiple of 32 is partial), as a lane mask.
    fn lanes(&self, warp: u32) -> u32 {
        let present = (self.threads - warp * 32).min(32);
        if present == 32 {
            u32::MAX
        } else {
            (1u32 << present) - 1
        }
    }
}

extern "C" fn syncthreads() {
    BLOCK.with(|b| {
        // SAFETY: set by `run_block` for as long as its fibers run.
        let block = unsafe { &*b.get() };
        block.wait(&block.block_barrier, block.threads, State::AtBlockBarrier);
    })
}

extern "C" fn syncwarp(mask: u32) {
    BLOCK.with(|b| {
        // SAFETY: as in `syncthreads`.
        let block = unsafe { &*b.get() };
        let warp = block.current.get() / 32;
        let expected = (mask & block.lanes(warp)).count_ones();
        block.wait(
            &block.warp_barriers[warp as usize],
            expected,
            State::AtWarpBarrier,
        );
    })
}

type Fiber = Coroutine<(), (), (), DefaultStack>;

/// Runs one block to completion on this CPU thread.
///
/// # Safety
/// As [`run`].
unsafe fn run_block(launch: &Launch, block_idx: Dim3) {
    let threads = launch.block.count() as u32;
    let warps = threads.div_ceil(32);
    let block = Block {
        threads,
        block_barrier: Barrier::default(),
        warp_barriers: (0..warps).map(|_| Barrier::default()).collect(),
        states: (0..threads).map(|_| Cell::new(State::Running)).collect(),
        yielders: (0..threads).map(|_| Cell::new(std::ptr::null())).collect(),
        current: Cell::new(0),
        progress: Cell::new(false),
    };
    let (mut shared, mut slots) = MEMORY.with(|m| std::mem::take(&mut *m.borrow_mut()));
    // Shared memory starts as NaN bytes, not zeros: a kernel that reads
    // before it writes shows it.
    shared.clear();
    shared.resize(launch.shared_bytes.div_ceil(16), u128::MAX);
    slots.clear();
    slots.resize(warps as usize * 32, 0);
    let previous = BLOCK.with(|b| b.replace(&block));

    let mut fibers: Vec<Option<Fiber>> = (0..threads).map(|_| None).collect();
    let mut remaining = threads;
    while remaining > 0 {
        block.progress.set(false);
        for t in 0..threads {
            let index = t as usize;
            if block.states[index].get() == State::Returned {
                continue;
            }
            block.current.set(t);
            let thread = SimThread {
                thread_idx: launch.block.at(t as u64),
                block_idx,
                block_dim: launch.block,
                grid_dim: launch.grid,
                dynamic_shared: shared.as_mut_ptr().cast(),
                warp_slots: slots[(t / 32) as usize * 32..].as_mut_ptr(),
                syncthreads,
                syncwarp,
            };
            // SAFETY: a plain copy of the coordinates into shim state.
            unsafe { zf_sim_enter(&thread) };
            let fiber = fibers[index].get_or_insert_with(|| start(&block, t, launch));
            if let CoroutineResult::Return(()) = fiber.resume(()) {
                block.states[index].set(State::Returned);
                block.progress.set(true);
                remaining -= 1;
                let stack = fibers[index]
                    .take()
                    .expect("a fiber just returned")
                    .into_stack();
                STACKS.with(|s| s.borrow_mut().push(stack));
            }
        }
        if remaining > 0 && !block.progress.get() {
            let message = stuck(launch.name, block_idx, &block);
            for fiber in fibers.iter_mut().flatten() {
                // SAFETY: a kernel's frames hold nothing to drop.
                unsafe { fiber.force_reset() };
            }
            BLOCK.with(|b| b.set(previous));
            panic!("{message}");
        }
    }
    BLOCK.with(|b| b.set(previous));
    MEMORY.with(|m| *m.borrow_mut() = (shared, slots));
}

/// A fiber for thread `t` of `block`, on a reused stack when there is one.
fn start(block: &Block, t: u32, launch: &Launch) -> Fiber {
    let stack = STACKS
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| DefaultStack::new(STACK_BYTES).expect("allocating a fiber stack"));
    let yielder_slot: *const Cell<*const Yielder<(), ()>> = &block.yielders[t as usize];
    let (entry, args) = (launch.entry, launch.args as usize);
    Coroutine::with_stack(stack, move |yielder: &Yielder<(), ()>, ()| {
        // SAFETY: the block outlives its fibers; the caller of `run`
        // vouches for the entry and its arguments.
        unsafe {
            (*yielder_slot).set(yielder);
            entry(args as *mut *mut c_void);
        }
    })
}

/// Why no thread of the block can move: which barrier waits for whom.
fn stuck(name: &str, at: Dim3, block: &Block) -> String {
    let count = |s: State| block.states.iter().filter(|c| c.get() == s).count();
    let (at_block, at_warp, returned) = (
        count(State::AtBlockBarrier),
        count(State::AtWarpBarrier),
        count(State::Returned),
    );
    let mut message = format!(
        "kernel `{name}`: a barrier in block ({}, {}, {}) can never open: ",
        at.x, at.y, at.z
    );
    if at_block > 0 {
        message += &format!(
            "{at_block} of {} threads wait at __syncthreads()",
            block.threads
        );
    }
    if at_warp > 0 {
        if at_block > 0 {
            message += ", ";
        }
        message += &format!("{at_warp} wait at a warp barrier (__syncwarp, a shuffle or a vote)");
    }
    message
        + &format!(
            ", {returned} have returned (every thread of the block must reach __syncthreads, every lane of the mask a warp barrier)"
        )
}
