// Checks of the emulator itself: run as `selftest N`.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

__global__ void warp_sum_kernel(int *out) {
    int v = threadIdx.x + 1000 * blockIdx.x;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}
/* shuffles only in the first two warps of a 128-thread block */
__global__ void some_warps_kernel(int *out) {
    int v = threadIdx.x;
    if (threadIdx.x < 64)
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    out[threadIdx.x] = v;
}
/* a block tree reduction with a static shared array */
__global__ void block_sum_kernel(int *out) {
    __shared__ int s[256];
    s[threadIdx.x] = threadIdx.x;
    for (unsigned k = 128; k > 0; k >>= 1) {
        __syncthreads();
        if (threadIdx.x < k) s[threadIdx.x] += s[threadIdx.x + k];
    }
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}
/* deadlock: half a warp at a shuffle, the other half at __syncthreads */
__global__ void deadlock_kernel(int *out) {
    int v = threadIdx.x;
    if (threadIdx.x % 32 < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
    __syncthreads();
    out[threadIdx.x] = v;
}
/* a barrier that some threads never reach */
__global__ void exited_barrier_kernel(int *out) {
    if (threadIdx.x >= 40) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}
/* writes one float4 past its dynamic shared memory */
__global__ void smem_overrun_kernel(int *out, int n4) {
    extern __shared__ float4 sm[];
    if (threadIdx.x == 0) sm[n4] = make_float4(1, 2, 3, 4);
}
/* reads shared memory before anyone wrote it: NaN */
__global__ void uninit_kernel(float *out) {
    __shared__ float s[32];
    out[threadIdx.x] = s[threadIdx.x];
}
__global__ void __launch_bounds__(128) bounded_kernel(int *out) { out[threadIdx.x] = 1; }

int main(int argc, char **argv) {
    int c = argc > 1 ? atoi(argv[1]) : 0;
    int *d;
    cudaMalloc(&d, 4096 * sizeof(int));
    int h[4096];
    switch (c) {
    case 0: {
        warp_sum_kernel<<<3, 64>>>(d);
        cudaMemcpy(h, d, 192 * sizeof(int), cudaMemcpyDeviceToHost);
        int bad = 0;
        for (int b = 0; b < 3; b++)
            for (int t = 0; t < 64; t++) {
                int w = t / 32, want = 0;
                for (int l = 0; l < 32; l++) want += 32 * w + l + 1000 * b;
                bad += h[b * 64 + t] != want;
            }
        some_warps_kernel<<<1, 128>>>(d);
        cudaMemcpy(h, d, 128 * sizeof(int), cudaMemcpyDeviceToHost);
        for (int t = 0; t < 128; t++) bad += h[t] != (t < 64 ? (t / 32) * 1024 + 496 : t);
        block_sum_kernel<<<5, 256>>>(d);
        cudaMemcpy(h, d, 5 * sizeof(int), cudaMemcpyDeviceToHost);
        for (int b = 0; b < 5; b++) bad += h[b] != 255 * 256 / 2;
        printf("selftest 0 (shuffles, partial warps, block reduction): %s\n", bad ? "WRONG" : "right");
        return bad != 0;
    }
    case 1: deadlock_kernel<<<1, 64>>>(d); break;
    case 2: exited_barrier_kernel<<<1, 64>>>(d); break;
    case 3: smem_overrun_kernel<<<1, 32, 64 * 16>>>(d, 64); break;
    case 4: {
        smem_overrun_kernel<<<1, 32, 60 * 1024>>>(d, 0);
        cudaError_t e = cudaGetLastError();
        printf("selftest 4 (60 KiB dynamic shared memory without the attribute): %s\n", cudaGetErrorString(e));
        cudaFuncSetAttribute(smem_overrun_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 60 * 1024);
        smem_overrun_kernel<<<1, 32, 60 * 1024>>>(d, 0);
        printf("  with the attribute: %s\n", cudaGetErrorString(cudaGetLastError()));
        break;
    }
    case 5: {
        float *f = (float *)d;
        uninit_kernel<<<1, 32>>>(f);
        float hf[32];
        cudaMemcpy(hf, f, sizeof hf, cudaMemcpyDeviceToHost);
        printf("selftest 5 (uninitialised shared memory): %g\n", hf[0]);
        break;
    }
    case 6: bounded_kernel<<<1, 256>>>(d); break;
    }
    cudaDeviceSynchronize();
    return 0;
}
