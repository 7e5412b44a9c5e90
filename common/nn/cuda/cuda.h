/* The CUDA backend of the layer kernels (fs_nn_cuda) and the device memory
 * helpers its callers need. Every pointer handed to fs_nn_cuda's entries is a
 * DEVICE pointer (from fs_cuda_alloc); shapes, layouts and the accumulate
 * semantics of the backward entries are those of nn/nn.h.
 *
 * Execution model: one main CUDA stream and cuBLAS handle per process,
 * created on first use (not thread-safe: one host thread drives the GPU).
 * Kernels are queued on that stream and return before they finish;
 * fs_cuda_to_host and fs_cuda_sync wait for them. A second stream takes the
 * weight-gradient products of linear_backward, so that they overlap the
 * input-gradient product (small LoRA products leave most of the GPU idle);
 * the entry joins it before returning, so callers see one ordered stream.
 * The forward product of a linear layer with a bias runs through cublasLt
 * with the bias added in the product's epilogue (one pass over the output
 * instead of two); shapes or alignments it has no algorithm for fall back
 * to cublasGemmEx after a bias kernel.
 *
 * Errors: the kernels' signatures cannot report failure, so a CUDA or cuBLAS
 * error inside an entry prints one line naming the kernel and the error
 * string ("fewsam cuda: linear_forward: cublasGemmEx: ...") to stderr and
 * exits with status 1, as the CPU backend does when memory runs out. An
 * error of a kernel that already returned shows up at the next
 * synchronising call; FEWSAM_CUDA_SYNC=1 in the environment synchronises
 * after every launch so that the message names the kernel at fault.
 * The memory helpers instead return FS_OK / FS_ERR (NULL for fs_cuda_alloc)
 * with a message in fs_error_msg().
 *
 * Reductions (bias, LayerNorm and relative-table gradients) sum partials in
 * a fixed order and no kernel uses atomics, so results repeat run to run on
 * the same GPU and math mode.
 *
 * The table's memory entries (alloc .. zero) make it a device backend for the
 * model (nn/nn.h): fs_sam_bind puts a model's tensors in its memory. The
 * environment variable FEWSAM_CUDA_MATH (fp32, tf32, bf16) sets the math
 * mode at first use, for programs that have no option for it.
 *
 * Built only when nvcc is present, into libfewsam_cuda.a; link it with
 * -L/usr/local/cuda/lib64 -lcublasLt -lcublas -lcudart -lstdc++ (never -lcuda). */
#ifndef FS_NN_CUDA_H
#define FS_NN_CUDA_H

#include <stddef.h>

#include "nn/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const fs_nn_ops fs_nn_cuda;

/* 1 when a usable GPU is present, 0 otherwise (no driver, no device, or any
 * error of cudaGetDeviceCount); never exits. Cached after the first call. */
int fs_cuda_available(void);

/* The name of device 0 ("NVIDIA H100 80GB HBM3"), or "none". */
const char *fs_cuda_device_name(void);

/* Matrix-product precision of the cuBLAS calls (linear, convolutions):
 * "fp32" (the default: exact fp32), "tf32" (tensor cores, 10-bit mantissa
 * inputs, fp32 accumulate) or "bf16" (inputs rounded to bfloat16 inside
 * cuBLAS, fp32 accumulate). Storage stays fp32 either way, and the
 * attention kernels always compute in fp32. Returns FS_OK, or FS_ERR for an
 * unknown name (the setting is then unchanged). */
int fs_nn_cuda_set_math(const char *mode);
const char *fs_nn_cuda_math(void);

/* The side stream (FEWSAM_CUDA_STREAMS=0 at start-up turns it off) and the
 * fused-bias cublasLt products (FEWSAM_CUDA_LT=0): on by default; off runs
 * the plain path, for tests and benchmarks that compare the two. */
void fs_nn_cuda_set_streams(int on);
void fs_nn_cuda_set_lt(int on);

/* Device memory. fs_cuda_alloc(0) returns a valid unique pointer;
 * fs_cuda_free(NULL) does nothing. Copies wait for the stream first, so
 * they see the results of every kernel queued before them, and the host
 * buffer may be reused as soon as they return. */
void *fs_cuda_alloc(size_t bytes);
void fs_cuda_free(void *p);
int fs_cuda_to_device(void *dst, const void *src, size_t bytes);
int fs_cuda_to_host(void *dst, const void *src, size_t bytes);
/* Queued on the stream (ordered with the kernels). */
int fs_cuda_memset(void *p, int byte, size_t bytes);
/* Waits for every queued kernel; reports an asynchronous error. */
int fs_cuda_sync(void);

/* Device bytes held now and at most since the last reset (fs_cuda_alloc,
 * the table's alloc, and the kernels' own scratch). */
size_t fs_cuda_mem_in_use(void);
size_t fs_cuda_mem_peak(void);
void fs_cuda_mem_reset_peak(void);

#ifdef __cplusplus
}
#endif

#endif
