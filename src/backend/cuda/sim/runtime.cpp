// The simulated GPU's per-CPU-thread state that kernels read through
// shim.h: the coordinates of the GPU thread running on this CPU thread.
#include "shim.h"

thread_local zf_sim_thread_t zf_sim_thread;

// Called by the scheduler (sim/fibers.rs) before it resumes a fiber.
extern "C" void zf_sim_enter(const zf_sim_thread_t* thread) { zf_sim_thread = *thread; }
