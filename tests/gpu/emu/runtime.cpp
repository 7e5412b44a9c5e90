/* The emulator's runtime: fibers that run each CUDA thread of a block as its
 * own execution context, block barriers and warp rendezvous, shared memory,
 * kernel launches over a pool of host threads, streams and events, device
 * memory. How it is built and run: the Makefile's EMU rules and
 * tests/e2e/cuda_emulated.sh. Findings print as "EMU ERROR" / "EMU FATAL" on
 * stderr, and an "EMU SUMMARY" line at exit. Knobs (environment):
 *   EMU_ORDER=rev        blocks and threads scheduled last to first
 *   EMU_DEFER_STREAM=k   the k-th stream created runs as late as the events
 *                        waited on allow (2: fewsam's side stream)
 *   EMU_THREADS=n        host threads running blocks (default: the cores)
 *   EMU_STACK_KB=n       each fiber's stack (64, 256 under ASan)
 *   EMU_VERBOSE=1        one line per launch */
#include <assert.h>
#include <float.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#else
#define EMU_ASAN 0
#endif

__thread emu::ThreadInfo *emu_tls_cur;

/* ---- context switch (x86-64 SysV): callee-saved registers, MXCSR and the
 * x87 control word on the old stack, then the new stack's ---- */
extern "C" void emu_switch(void **save_sp, void *new_sp);
extern "C" void emu_fiber_entry(void);
__asm__(
    ".text\n"
    ".globl emu_switch\n"
    ".type emu_switch,@function\n"
    "emu_switch:\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  subq $8, %rsp\n"
    "  stmxcsr (%rsp)\n"
    "  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n"
    "  fldcw 4(%rsp)\n"
    "  addq $8, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size emu_switch, .-emu_switch\n"
    ".globl emu_fiber_entry\n"
    ".type emu_fiber_entry,@function\n"
    "emu_fiber_entry:\n"
    "  movq %r12, %rdi\n"
    "  call emu_fiber_main\n"
    "  ud2\n"
    ".size emu_fiber_entry, .-emu_fiber_entry\n");

namespace emu {

static std::atomic<long> g_errors{0};
static std::mutex g_print_mu;

void error(const char *fmt, ...) {
    std::lock_guard<std::mutex> lk(g_print_mu);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "EMU ERROR: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    va_end(ap);
    g_errors++;
}

void fatal(const char *fmt, ...) {
    {
        std::lock_guard<std::mutex> lk(g_print_mu);
        va_list ap;
        va_start(ap, fmt);
        fflush(stdout);
        fprintf(stderr, "EMU FATAL: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        fflush(stderr);
        va_end(ap);
    }
    abort();
}

static int env_int(const char *name, int def) {
    const char *s = getenv(name);
    return s && *s ? atoi(s) : def;
}

static struct Config {
    int reverse;       /* EMU_ORDER=rev: blocks and threads scheduled last to first */
    int threads;       /* EMU_THREADS: host threads running blocks */
    int defer_stream;  /* EMU_DEFER_STREAM=k: the k-th created stream runs as late as its waits allow */
    size_t stack;      /* EMU_STACK_KB */
    int verbose;       /* EMU_VERBOSE=1: one line per launch */
    Config() {
        const char *o = getenv("EMU_ORDER");
        reverse = o && !strcmp(o, "rev");
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = env_int("EMU_THREADS", n > 0 ? (int)n : 1);
        if (threads < 1) threads = 1;
        defer_stream = env_int("EMU_DEFER_STREAM", 0);
        stack = (size_t)env_int("EMU_STACK_KB", EMU_ASAN ? 256 : 64) * 1024;
        verbose = env_int("EMU_VERBOSE", 0);
    }
} cfg;

static void summary(void) {
    if (g_errors) fprintf(stderr, "EMU SUMMARY: %ld emulator-detected error(s)\n", g_errors.load());
    else fprintf(stderr, "EMU SUMMARY: no emulator-detected errors\n");
}
static int g_summary_registered = (atexit(summary), 1);

/* ---- H100-like device ---- */
enum : size_t {
    SMEM_DEFAULT = 48 * 1024,
    SMEM_OPTIN = 227 * 1024,
    MAX_THREADS = 1024,
    N_SM = 132,
};

float expf_fast(float x) {
    float t = x * 1.44269504088896341f;
    EMU_OPAQUE(t);
    float r = exp2f(t);
    if (r != 0.0f && r < FLT_MIN) r = 0.0f; /* .ftz */
    return r;
}

/* ---- fibers ---- */
enum { RUNNABLE, AT_BARRIER, AT_WARP, DONE };

struct Block;
struct Fiber : ThreadInfo {
    void *sp;
    char *stack_lo;
    size_t stack_size;
    unsigned lin;
    int state;
    void *fake;
    const char *file;
    int line;
};

struct Warp {
    unsigned arrived, mask, gen;
    int kind;
    const char *file;
    int line;
    uint64_t buf[2][32];
};

struct LaunchRec {
    const char *name;
    const void *kfn;
    dim3 grid, block;
    size_t smem, dyn_limit;
    std::function<void()> body;
    const char *file;
    int line;
    std::atomic<int> reported_bounds{0}, reported_exit_barrier{0}, reported_smem{0};
};

struct SVar {
    const char *key;
    void *p;
};

struct Block : BlockInfo {
    Fiber *f;
    int n, done, at_bar;
    std::vector<Warp> warps;
    void *sched_sp;
    LaunchRec *L;
    char *dyn;
    std::vector<SVar> svars;
    size_t static_bytes;
    bool deadlock;
};

struct Worker {
    std::vector<char *> stacks;
    std::vector<Fiber> fibers;
    const void *sched_bottom = nullptr;
    size_t sched_size = 0;
    Block *blk = nullptr;
};
static __thread Worker *tls_worker;

static char *new_stack(size_t size) {
    size_t page = 4096;
    char *p = (char *)mmap(nullptr, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                           -1, 0);
    if (p == MAP_FAILED) fatal("cannot map a fiber stack");
    mprotect(p, page, PROT_NONE); /* guard: a stack overflow faults */
    return p + page;
}

static inline Fiber *self() { return static_cast<Fiber *>(emu_tls_cur); }

/* switch from the running context to `to` (nullptr: the block's scheduler) */
static void switch_to(Block *b, Fiber *from, Fiber *to, bool dying) {
    void *dummy;
    void **save = from ? &from->sp : &b->sched_sp;
    void *target = to ? to->sp : b->sched_sp;
#if EMU_ASAN
    Worker *w = tls_worker;
    const void *bottom = to ? (const void *)to->stack_lo : w->sched_bottom;
    size_t size = to ? to->stack_size : w->sched_size;
    void *fake_local = nullptr;
    void **fake = dying ? nullptr : (from ? &from->fake : &fake_local);
    __sanitizer_start_switch_fiber(fake, bottom, size);
    emu_switch(dying ? &dummy : save, target);
    __sanitizer_finish_switch_fiber(from ? from->fake : fake_local, nullptr, nullptr);
#else
    emu_switch(dying ? &dummy : save, target);
#endif
    (void)dummy;
    if (from) emu_tls_cur = from;
}

static Fiber *pick_next(Block *b, Fiber *cur) {
    int n = b->n, start = cur ? (int)cur->lin : (cfg.reverse ? 0 : n - 1);
    for (int k = 1; k <= n; k++) {
        int i = cfg.reverse ? (start - k + 2 * n) % n : (start + k) % n;
        if (b->f[i].state == RUNNABLE) return &b->f[i];
    }
    return nullptr;
}

static void block_yield(Fiber *f) {
    Block *b = static_cast<Block *>(f->blk);
    Fiber *nx = pick_next(b, f);
    if (!nx) b->deadlock = b->done < b->n;
    switch_to(b, f, nx, false);
}

static void release_barrier(Block *b) {
    for (int i = 0; i < b->n; i++)
        if (b->f[i].state == AT_BARRIER) b->f[i].state = RUNNABLE;
    b->at_bar = 0;
}

static void barrier_after_exit(Block *b) {
    if (b->at_bar > 0 && b->at_bar == b->n - b->done) {
        if (!b->L->reported_exit_barrier.exchange(1))
            error("kernel %s (launched at %s:%d), block (%u,%u,%u): __syncthreads at %s:%d completed with %d of %d "
                  "threads exited (undefined behaviour: the barrier is not reached by every thread)",
                  b->L->name, b->L->file, b->L->line, b->bid.x, b->bid.y, b->bid.z, b->f[0].file ? b->f[0].file : "?",
                  b->f[0].line, b->done, b->n);
        release_barrier(b);
    }
}

extern "C" void emu_fiber_main(Fiber *f) {
#if EMU_ASAN
    const void *old_bottom;
    size_t old_size;
    __sanitizer_finish_switch_fiber(nullptr, &old_bottom, &old_size);
    Worker *w = tls_worker;
    if (!w->sched_bottom) w->sched_bottom = old_bottom, w->sched_size = old_size;
#endif
    emu_tls_cur = f;
    Block *b = static_cast<Block *>(f->blk);
    b->L->body();
    f = self();
    f->state = DONE;
    b->done++;
    barrier_after_exit(b);
    Fiber *nx = pick_next(b, f);
    if (!nx) b->deadlock = b->done < b->n;
    switch_to(b, nullptr, nx, true); /* never returns: the sched_sp save is discarded */
    __builtin_unreachable();
}

void syncthreads(const char *file, int line) {
    Fiber *f = self();
    Block *b = static_cast<Block *>(f->blk);
    f->file = file, f->line = line;
    f->state = AT_BARRIER;
    b->at_bar++;
    if (b->at_bar == b->n - b->done) {
        if (b->done > 0 && !b->L->reported_exit_barrier.exchange(1))
            error("kernel %s (launched at %s:%d), block (%u,%u,%u): __syncthreads at %s:%d with %d of %d threads "
                  "exited (undefined behaviour: the barrier is not reached by every thread)",
                  b->L->name, b->L->file, b->L->line, b->bid.x, b->bid.y, b->bid.z, file, line, b->done, b->n);
        release_barrier(b);
        return;
    }
    block_yield(f);
}

/* kind 1: shuffle (xor), kind 2: __syncwarp */
uint64_t warp_op(int kind, unsigned mask, uint64_t val, int lane_xor, const char *file, int line) {
    Fiber *f = self();
    Block *b = static_cast<Block *>(f->blk);
    unsigned w = f->lin / 32, lane = f->lin % 32;
    unsigned lanes_here = (unsigned)b->n - 32 * w >= 32 ? 32 : (unsigned)b->n - 32 * w;
    unsigned exist = lanes_here == 32 ? 0xffffffffu : ((1u << lanes_here) - 1);
    const char *what = kind == 1 ? "__shfl_xor_sync" : "__syncwarp";
    if (!(mask & (1u << lane)))
        fatal("kernel %s: %s at %s:%d by lane %u, which is not in its mask 0x%08x", b->L->name, what, file, line, lane,
              mask);
    if (mask & ~exist)
        fatal("kernel %s: %s at %s:%d: mask 0x%08x names lanes that do not exist (the warp has %u threads)",
              b->L->name, what, file, line, mask, lanes_here);
    Warp &W = b->warps[w];
    if (W.arrived == 0) {
        W.kind = kind, W.mask = mask, W.file = file, W.line = line;
    } else if (W.kind != kind || W.mask != mask) {
        error("kernel %s, block (%u,%u,%u), warp %u: lane %u is at %s (mask 0x%08x) %s:%d while other lanes are at "
              "%s (mask 0x%08x) %s:%d (divergent warp-synchronous code)",
              b->L->name, b->bid.x, b->bid.y, b->bid.z, w, lane, what, mask, file, line,
              W.kind == 1 ? "__shfl_xor_sync" : "__syncwarp", W.mask, W.file, W.line);
    }
    if (kind == 1) {
        unsigned src = lane ^ (unsigned)lane_xor;
        if (src >= 32 || !(mask & (1u << src)))
            error("kernel %s: __shfl_xor_sync at %s:%d: lane %u reads lane %u outside the mask 0x%08x (undefined)",
                  b->L->name, file, line, lane, src, mask);
    }
    unsigned gen = W.gen;
    W.buf[gen & 1][lane] = val;
    W.arrived |= 1u << lane;
    f->file = file, f->line = line;
    if ((W.arrived & W.mask) == W.mask) {
        for (unsigned l = 0; l < 32; l++)
            if (W.mask & (1u << l)) b->f[32 * w + l].state = RUNNABLE;
        W.arrived = 0;
        W.gen++;
    } else {
        f->state = AT_WARP;
        block_yield(f);
    }
    if (kind != 1) return 0;
    unsigned src = (lane ^ (unsigned)lane_xor) & 31;
    return W.buf[gen & 1][src];
}

void *shared_dynamic(void) {
    Block *b = static_cast<Block *>(self()->blk);
    return b->dyn;
}

void *shared_static(const char *key, size_t bytes, size_t align) {
    Block *b = static_cast<Block *>(self()->blk);
    for (auto &v : b->svars)
        if (v.key == key || !strcmp(v.key, key)) return v.p;
    void *p = nullptr;
    if (posix_memalign(&p, align < 16 ? 16 : align, bytes ? bytes : 1)) fatal("shared memory allocation");
    memset(p, 0xff, bytes); /* uninitialised shared memory reads as NaN */
    b->svars.push_back({key, p});
    b->static_bytes += bytes;
    LaunchRec *L = b->L;
    size_t total = b->static_bytes + L->smem;
    if ((b->static_bytes > SMEM_DEFAULT || total > (L->dyn_limit > SMEM_DEFAULT ? SMEM_OPTIN : SMEM_DEFAULT)) &&
        !L->reported_smem.exchange(1))
        error("kernel %s: %zu bytes of static + %zu of dynamic shared memory exceed the limit (%zu)", L->name,
              b->static_bytes, L->smem, L->dyn_limit > SMEM_DEFAULT ? (size_t)SMEM_OPTIN : (size_t)SMEM_DEFAULT);
    return p;
}

void check_launch_bounds(int max_threads, const char *file, int line) {
    Block *b = static_cast<Block *>(self()->blk);
    if (b->n > max_threads && !b->L->reported_bounds.exchange(1))
        error("kernel %s (%s:%d) has __launch_bounds__(%d) but was launched with %d threads a block (the launch "
              "fails on a GPU)",
              b->L->name, file, line, max_threads, b->n);
}

/* ---- running a grid ---- */

enum : uint32_t { CANARY = 0xC0FFEE11u };

static void run_block(Worker &w, LaunchRec &L, uint64_t lin) {
    Block b;
    uint64_t gx = L.grid.x, gy = L.grid.y;
    b.bid = uint3{(unsigned)(lin % gx), (unsigned)((lin / gx) % gy), (unsigned)(lin / (gx * gy))};
    b.bdim = L.block;
    b.gdim = L.grid;
    b.n = (int)(L.block.x * L.block.y * L.block.z);
    b.done = b.at_bar = 0;
    b.L = &L;
    b.static_bytes = 0;
    b.deadlock = false;
    b.warps.assign((b.n + 31) / 32, Warp{});
    /* dynamic shared memory: exactly what the launch asked for (ASan's redzone
     * catches an overrun), then a canary checked at the end */
    b.dyn = (char *)malloc(L.smem + sizeof(uint32_t) * 4);
    memset(b.dyn, 0xff, L.smem);
    for (int i = 0; i < 4; i++) {
        uint32_t c = CANARY;
        memcpy(b.dyn + L.smem + 4 * i, &c, 4);
    }
#if EMU_ASAN
    /* the canary words are off limits to the kernel */
    ASAN_POISON_MEMORY_REGION(b.dyn + L.smem, 16);
#endif
    while ((int)w.stacks.size() < b.n) w.stacks.push_back(new_stack(cfg.stack));
    if ((int)w.fibers.size() < b.n) w.fibers.resize(b.n);
    b.f = w.fibers.data();
    unsigned bx = L.block.x, by = L.block.y;
    for (int i = 0; i < b.n; i++) {
        Fiber &f = b.f[i];
        f.tid = uint3{i % bx, (i / bx) % by, i / (bx * by)};
        f.blk = &b;
        f.lin = (unsigned)i;
        f.state = RUNNABLE;
        f.fake = nullptr;
        f.file = nullptr;
        f.line = 0;
        f.stack_lo = w.stacks[i];
        f.stack_size = cfg.stack;
        uint64_t *top = (uint64_t *)(((uintptr_t)(f.stack_lo + cfg.stack)) & ~(uintptr_t)15);
        uint64_t *sp = top - 10;
        sp[0] = 0x1F80ull | (0x037Full << 32);
        sp[1] = sp[2] = sp[3] = 0;
        sp[4] = (uint64_t)(uintptr_t)&f; /* r12 */
        sp[5] = sp[6] = 0;
        sp[7] = (uint64_t)(uintptr_t)&emu_fiber_entry;
        sp[8] = sp[9] = 0;
        f.sp = sp;
    }
    w.blk = &b;
    Fiber *first = pick_next(&b, nullptr);
    switch_to(&b, nullptr, first, false);
    emu_tls_cur = nullptr;
    if (b.deadlock) {
        int cnt[4] = {0, 0, 0, 0};
        std::string where;
        for (int i = 0; i < b.n; i++) {
            cnt[b.f[i].state]++;
            if (b.f[i].state != DONE && where.size() < 600) {
                char buf[160];
                snprintf(buf, sizeof buf, " t%d:%s@%s:%d", i, b.f[i].state == AT_BARRIER ? "syncthreads" : "warp",
                         b.f[i].file ? b.f[i].file : "?", b.f[i].line);
                where += buf;
            }
        }
        fatal("DEADLOCK in kernel %s (launched at %s:%d), block (%u,%u,%u) of %d threads: %d at __syncthreads, %d at "
              "a warp op, %d exited;%s",
              L.name, L.file, L.line, b.bid.x, b.bid.y, b.bid.z, b.n, cnt[AT_BARRIER], cnt[AT_WARP], cnt[DONE],
              where.c_str());
    }
#if EMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(b.dyn + L.smem, 16);
#endif
    for (int i = 0; i < 4; i++) {
        uint32_t c;
        memcpy(&c, b.dyn + L.smem + 4 * i, 4);
        if (c != CANARY) {
            error("kernel %s (launched at %s:%d): dynamic shared memory written past its %zu bytes", L.name, L.file,
                  L.line, L.smem);
            break;
        }
    }
    free(b.dyn);
    for (auto &v : b.svars) free(v.p);
    w.blk = nullptr;
}

/* a pool of host threads; the calling thread works too */
struct Pool {
    std::vector<std::thread> th;
    std::mutex mu;
    std::condition_variable cv, done_cv;
    uint64_t job = 0;
    int busy = 0;
    LaunchRec *L = nullptr;
    uint64_t nblocks = 0;
    std::atomic<uint64_t> next{0};
    std::vector<Worker> workers;
    bool started = false;

    void work(Worker &w) {
        tls_worker = &w;
        for (;;) {
            uint64_t i = next.fetch_add(1);
            if (i >= nblocks) break;
            uint64_t lin = cfg.reverse ? nblocks - 1 - i : i;
            run_block(w, *L, lin);
        }
    }
    void start() {
        started = true;
        workers.resize(cfg.threads);
        for (int t = 1; t < cfg.threads; t++)
            th.emplace_back([this, t] {
                uint64_t seen = 0;
                for (;;) {
                    {
                        std::unique_lock<std::mutex> lk(mu);
                        cv.wait(lk, [&] { return job != seen; });
                        seen = job;
                    }
                    work(workers[t]);
                    std::lock_guard<std::mutex> lk(mu);
                    if (--busy == 0) done_cv.notify_all();
                }
            });
    }
    void run(LaunchRec &rec, uint64_t n) {
        if (!started) start();
        L = &rec;
        nblocks = n;
        next = 0;
        if (n == 1 || cfg.threads == 1) {
            work(workers[0]);
            return;
        }
        {
            std::lock_guard<std::mutex> lk(mu);
            busy = cfg.threads - 1;
            job++;
        }
        cv.notify_all();
        work(workers[0]);
        std::unique_lock<std::mutex> lk(mu);
        done_cv.wait(lk, [&] { return busy == 0; });
    }
};
static Pool *g_pool;

/* ---- last error, attributes ---- */
static cudaError_t g_last = cudaSuccess;
static cudaError_t set_err(cudaError_t e) {
    if (e != cudaSuccess) g_last = e;
    return e;
}
static std::unordered_map<const void *, int> g_dyn_attr;

void enqueue_launch(const char *name, const void *kfn, dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                    std::function<void()> body, const char *file, int line) {
    uint64_t nthreads = (uint64_t)block.x * block.y * block.z;
    uint64_t nblocks = (uint64_t)grid.x * grid.y * grid.z;
    auto it = g_dyn_attr.find(kfn);
    size_t dyn_limit = it != g_dyn_attr.end() ? (size_t)it->second : (size_t)SMEM_DEFAULT;
    if (dyn_limit < SMEM_DEFAULT) dyn_limit = SMEM_DEFAULT;
    const char *bad = nullptr;
    if (nthreads == 0 || nthreads > MAX_THREADS || block.x > 1024 || block.y > 1024 || block.z > 64)
        bad = "block size out of range";
    else if (nblocks == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
        bad = "grid size out of range";
    if (bad) {
        error("launch of %s at %s:%d: grid (%u,%u,%u) block (%u,%u,%u): %s", name, file, line, grid.x, grid.y, grid.z,
              block.x, block.y, block.z, bad);
        set_err(cudaErrorInvalidConfiguration);
        return;
    }
    if (smem > dyn_limit) {
        error("launch of %s at %s:%d: %zu bytes of dynamic shared memory, above the kernel's limit of %zu (%s)", name,
              file, line, smem, dyn_limit,
              it == g_dyn_attr.end() ? "no cudaFuncSetAttribute" : "set by cudaFuncSetAttribute");
        set_err(cudaErrorInvalidValue);
        return;
    }
    if (cfg.verbose)
        fprintf(stderr, "emu: launch %s grid (%u,%u,%u) block (%u,%u,%u) smem %zu\n", name, grid.x, grid.y, grid.z,
                block.x, block.y, block.z, smem);
    auto rec = std::make_shared<LaunchRec>();
    rec->name = name, rec->kfn = kfn, rec->grid = grid, rec->block = block, rec->smem = smem;
    rec->dyn_limit = dyn_limit, rec->body = std::move(body), rec->file = file, rec->line = line;
    enqueue(s, [rec, nblocks] {
        if (!g_pool) g_pool = new Pool;
        g_pool->run(*rec, nblocks);
    });
}

/* ---- device memory ---- */
static std::mutex g_mem_mu;
static std::map<uintptr_t, size_t> g_allocs;

bool is_device_range(const void *p, size_t bytes) {
    std::lock_guard<std::mutex> lk(g_mem_mu);
    uintptr_t a = (uintptr_t)p;
    auto it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin()) return false;
    --it;
    return a >= it->first && a + bytes <= it->first + (it->second ? it->second : 1);
}

void check_device_range(const char *what, const char *operand, const void *p, size_t bytes) {
    if (!is_device_range(p, bytes))
        error("%s: operand %s [%p, +%zu bytes) is not inside one device allocation", what, operand, p, bytes);
}

/* ---- streams and events ---- */
}  // namespace emu

struct EmuStream {
    int id;
    bool deferred;
    std::deque<std::function<void()>> q;
    uint64_t enq = 0, done = 0;
};
struct EmuEvent {
    EmuStream *s = nullptr;
    uint64_t seq = 0;
};

namespace emu {
static EmuStream g_legacy{0, false, {}, 0, 0};
static std::vector<EmuStream *> g_streams;
static int g_stream_count;

static EmuStream *S(cudaStream_t s) { return s ? s : &g_legacy; }

static void flush(EmuStream *s, uint64_t upto) {
    while (s->done < upto) {
        auto fn = std::move(s->q.front());
        s->q.pop_front();
        fn();
        s->done++;
    }
}
static void flush_all(void) {
    flush(&g_legacy, g_legacy.enq);
    for (auto *s : g_streams) flush(s, s->enq);
}

void enqueue(cudaStream_t st, std::function<void()> fn) {
    EmuStream *s = S(st);
    if (s == &g_legacy) flush_all(); /* the legacy stream orders with every blocking stream */
    s->q.push_back(std::move(fn));
    s->enq++;
    if (!s->deferred) flush(s, s->enq);
}
}  // namespace emu

using namespace emu;

/* ---- the runtime API ---- */
cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : set_err(cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int *d) {
    *d = 0;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (d != 0) return set_err(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "NVIDIA H100 80GB HBM3 (CPU emulation)");
    p->totalGlobalMem = (size_t)80 << 30;
    p->sharedMemPerBlock = SMEM_DEFAULT;
    p->sharedMemPerBlockOptin = SMEM_OPTIN;
    p->sharedMemPerMultiprocessor = 228 * 1024;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = MAX_THREADS;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff, p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->multiProcessorCount = N_SM;
    p->major = 9, p->minor = 0;
    p->maxThreadsPerMultiProcessor = 2048;
    p->l2CacheSize = 50 << 20;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d) {
    if (d != 0) return set_err(cudaErrorInvalidDevice);
    switch (a) {
    case cudaDevAttrMaxThreadsPerBlock: *v = MAX_THREADS; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = SMEM_DEFAULT; break;
    case cudaDevAttrWarpSize: *v = 32; break;
    case cudaDevAttrMultiProcessorCount: *v = N_SM; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = SMEM_OPTIN; break;
    default: return set_err(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}
cudaError_t cudaGetLastError(void) {
    cudaError_t e = g_last;
    g_last = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return g_last; }
const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    default: return "cudaErrorUnknown";
    }
}
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    default: return "unknown error";
    }
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
    void *q = nullptr;
    if (posix_memalign(&q, 256, bytes ? bytes : 1)) return set_err(cudaErrorMemoryAllocation);
    memset(q, 0xff, bytes); /* fresh device memory is not zeroed: make that visible */
    {
        std::lock_guard<std::mutex> lk(g_mem_mu);
        g_allocs[(uintptr_t)q] = bytes;
    }
    *p = q;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    flush_all(); /* cudaFree synchronises the device */
    {
        std::lock_guard<std::mutex> lk(g_mem_mu);
        auto it = g_allocs.find((uintptr_t)p);
        if (it == g_allocs.end()) {
            error("cudaFree(%p): not a device allocation", p);
            return set_err(cudaErrorInvalidValue);
        }
        g_allocs.erase(it);
    }
    free(p);
    return cudaSuccess;
}

static cudaError_t memcpy_impl(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s,
                               bool sync) {
    if (!bytes) return cudaSuccess;
    bool dd = is_device_range(dst, bytes), sd = is_device_range(src, bytes);
    bool want_dd = kind == cudaMemcpyDeviceToDevice || kind == cudaMemcpyHostToDevice;
    bool want_sd = kind == cudaMemcpyDeviceToDevice || kind == cudaMemcpyDeviceToHost;
    if (kind == cudaMemcpyDefault) want_dd = dd, want_sd = sd;
    if (dd != want_dd || sd != want_sd) {
        error("cudaMemcpy%s(%p <- %p, %zu bytes, kind %d): destination %s device memory, source %s", sync ? "" : "Async",
              dst, src, bytes, (int)kind, dd ? "in" : "NOT in", sd ? "in device memory" : "NOT in device memory");
        return set_err(cudaErrorInvalidValue);
    }
    uintptr_t a = (uintptr_t)dst, b = (uintptr_t)src;
    if (a < b + bytes && b < a + bytes) error("cudaMemcpy%s: overlapping ranges (undefined)", sync ? "" : "Async");
    if (!sd) { /* pageable host source: staged at the call */
        auto stage = std::make_shared<std::vector<char>>((const char *)src, (const char *)src + bytes);
        enqueue(s, [=] { memcpy(dst, stage->data(), bytes); });
    } else {
        enqueue(s, [=] { memcpy(dst, src, bytes); });
    }
    if (sync || !dd) cudaStreamSynchronize(s); /* to pageable host memory: returns when done */
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    return memcpy_impl(dst, src, bytes, kind, 0, true);
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
    return memcpy_impl(dst, src, bytes, kind, s, false);
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s) {
    if (!bytes) return cudaSuccess;
    if (!is_device_range(p, bytes)) {
        error("cudaMemset(%p, %zu bytes): not inside one device allocation", p, bytes);
        return set_err(cudaErrorInvalidValue);
    }
    enqueue(s, [=] { memset(p, v, bytes); });
    return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int v, size_t bytes) {
    cudaError_t e = cudaMemsetAsync(p, v, bytes, 0);
    flush_all();
    return e;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    EmuStream *st = new EmuStream;
    st->id = ++g_stream_count;
    st->deferred = cfg.defer_stream == st->id;
    g_streams.push_back(st);
    *s = st;
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (!s) return cudaSuccess;
    flush(s, s->enq);
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    EmuStream *st = S(s);
    if (st == &g_legacy) flush_all();
    else flush(st, st->enq);
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
    flush_all();
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) {
    *e = new EmuEvent;
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    if (!e) return set_err(cudaErrorInvalidResourceHandle);
    e->s = S(s);
    e->seq = e->s->enq;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (e->s) flush(e->s, e->seq);
    return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
    if (!e) return set_err(cudaErrorInvalidResourceHandle);
    if (!e->s) return cudaSuccess; /* never recorded: no dependency */
    EmuStream *src = e->s;
    uint64_t seq = e->seq;
    enqueue(s, [src, seq] { flush(src, seq); });
    return cudaSuccess;
}
cudaError_t emu_func_set_attribute(const void *f, cudaFuncAttribute a, int v) {
    if (a == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (v < 0 || (size_t)v > SMEM_OPTIN) return set_err(cudaErrorInvalidValue);
        g_dyn_attr[f] = v;
    }
    return cudaSuccess;
}
