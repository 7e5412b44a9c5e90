/* CPU emulation of the parts of the CUDA runtime and device language that
 * fewsam's common/nn/cuda sources use. Compiled as C++ with g++; the .cu files
 * go through tests/gpu/emu/transform.py first (kernel launches, __shared__,
 * __launch_bounds__). Not a real CUDA header. */
#ifndef EMU_CUDA_RUNTIME_H
#define EMU_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

/* ---- qualifiers ---- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __constant__
#define __managed__

/* ---- vector types ---- */
struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 u) : x(u.x), y(u.y), z(u.z) {}
};
struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};
struct __attribute__((aligned(8))) float2 {
    float x, y;
};
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline float2 make_float2(float x, float y) { return float2{x, y}; }

/* ---- errors and runtime types ---- */
enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchFailure = 719,
    cudaErrorUnknown = 999,
};
typedef cudaError_t cudaError;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

struct EmuStream;
struct EmuEvent;
typedef EmuStream *cudaStream_t;
typedef EmuEvent *cudaEvent_t;
#define cudaEventDefault 0x00u
#define cudaEventBlockingSync 0x01u
#define cudaEventDisableTiming 0x02u
#define cudaStreamDefault 0x00u
#define cudaStreamNonBlocking 0x01u

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    size_t sharedMemPerBlockOptin;
    size_t sharedMemPerMultiprocessor;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int multiProcessorCount;
    int major, minor;
    int maxThreadsPerMultiProcessor;
    size_t l2CacheSize;
};

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaMalloc(void **p, size_t bytes);
template <typename T>
static inline cudaError_t cudaMalloc(T **p, size_t bytes) {
    return cudaMalloc((void **)p, bytes);
}
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemset(void *p, int v, size_t bytes);
cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s = 0);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t emu_func_set_attribute(const void *f, cudaFuncAttribute a, int v);
template <typename F>
static inline cudaError_t cudaFuncSetAttribute(F *f, cudaFuncAttribute a, int v) {
    return emu_func_set_attribute((const void *)f, a, v);
}

/* ---- the device side: per-thread context of the running fiber ---- */
namespace emu {
struct BlockInfo {
    uint3 bid;
    dim3 bdim, gdim;
};
struct ThreadInfo {
    uint3 tid;
    BlockInfo *blk;
};
void syncthreads(const char *file, int line);
uint64_t warp_op(int kind, unsigned mask, uint64_t val, int src_lane_xor, const char *file, int line);
void *shared_static(const char *key, size_t bytes, size_t align);
void *shared_dynamic(void);
void check_launch_bounds(int max_threads, const char *file, int line);
float expf_fast(float x);

template <typename T>
static inline T shfl_xor(unsigned mask, T v, int lane_mask, int width, const char *file, int line) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type over 8 bytes");
    if (width != 32) lane_mask &= (width - 1); /* stays within the segment (width a power of 2) */
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    u = warp_op(1, mask, u, lane_mask, file, line);
    T r;
    memcpy(&r, &u, sizeof r);
    return r;
}
}  // namespace emu
extern __thread emu::ThreadInfo *emu_tls_cur;

#define threadIdx (emu_tls_cur->tid)
#define blockIdx (emu_tls_cur->blk->bid)
#define blockDim (emu_tls_cur->blk->bdim)
#define gridDim (emu_tls_cur->blk->gdim)

#define __syncthreads() ::emu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) ((void)::emu::warp_op(2, emu_syncwarp_mask(__VA_ARGS__), 0, 0, __FILE__, __LINE__))
static inline unsigned emu_syncwarp_mask(unsigned m = 0xffffffffu) { return m; }
#define __shfl_xor_sync(mask, v, lm, ...) ::emu::shfl_xor((mask), (v), (lm), emu_width(__VA_ARGS__), __FILE__, __LINE__)
static inline int emu_width(int w = 32) { return w; }

/* ---- arithmetic intrinsics: each operation rounded on its own (the empty
 * asm keeps the compiler from fusing it into a multiply-add) ---- */
#define EMU_OPAQUE(v) __asm__("" : "+x"(v))
static inline float __fmul_rn(float a, float b) { float r = a * b; EMU_OPAQUE(r); return r; }
static inline float __fadd_rn(float a, float b) { float r = a + b; EMU_OPAQUE(r); return r; }
static inline float __fsub_rn(float a, float b) { float r = a - b; EMU_OPAQUE(r); return r; }
static inline float __fdiv_rn(float a, float b) { float r = a / b; EMU_OPAQUE(r); return r; }
static inline double __dmul_rn(double a, double b) { double r = a * b; EMU_OPAQUE(r); return r; }
static inline double __dadd_rn(double a, double b) { double r = a + b; EMU_OPAQUE(r); return r; }
static inline double __dsub_rn(double a, double b) { double r = a - b; EMU_OPAQUE(r); return r; }
static inline double __ddiv_rn(double a, double b) { double r = a / b; EMU_OPAQUE(r); return r; }
static inline double __dsqrt_rn(double a) { double r = sqrt(a); EMU_OPAQUE(r); return r; }
static inline float __fsqrt_rn(float a) { float r = sqrtf(a); EMU_OPAQUE(r); return r; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
/* __expf: the GPU's ex2.approx of x * log2(e) (the product rounded to float) */
#define __expf(x) ::emu::expf_fast(x)
#define __logf(x) logf(x)

/* CUDA's device min / max overloads */
template <typename A, typename B>
static inline typename std::common_type<A, B>::type min(A a, B b) {
    typedef typename std::common_type<A, B>::type T;
    return (T)a < (T)b ? (T)a : (T)b;
}
template <typename A, typename B>
static inline typename std::common_type<A, B>::type max(A a, B b) {
    typedef typename std::common_type<A, B>::type T;
    return (T)a > (T)b ? (T)a : (T)b;
}

/* ---- kernel launches: transform.py turns k<<<g, b, s, st>>>(args) into
 * ::emu::Launch(g, b, s, st).go("k", k, args) ---- */
namespace emu {
void enqueue_launch(const char *name, const void *kfn, dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                    std::function<void()> body, const char *file, int line);
struct Launch {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    const char *file;
    int line;
    Launch(dim3 g, dim3 b, size_t sm = 0, cudaStream_t st = 0) : grid(g), block(b), smem(sm), stream(st) {}
    Launch &at(const char *f, int l) {
        file = f;
        line = l;
        return *this;
    }
    template <typename... P, typename... A>
    void go(const char *name, void (*k)(P...), A &&...a) {
        static_assert(sizeof...(P) == sizeof...(A), "kernel argument count");
        /* the arguments are copied at the launch, as the GPU does */
        auto args = std::make_shared<std::tuple<typename std::decay<P>::type...>>(std::forward<A>(a)...);
        enqueue_launch(name, (const void *)k, grid, block, smem, stream, [k, args]() { std::apply(k, *args); }, file,
                       line);
    }
};
}  // namespace emu

#endif
