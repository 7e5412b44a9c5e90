/* The CUDA backend's table (every pointer a device pointer; see
 * nn/cuda/cuda.h for the execution model and error handling). */
#include "nn/cuda/cuda.h"
#include "nn/cuda/kernels.h"

extern "C" const fs_nn_ops fs_nn_cuda = {
    .name = "cuda",
    .linear_forward = fs_cuda_linear_forward,
    .layernorm_forward = fs_cuda_layernorm_forward,
    .gelu_forward = fs_cuda_gelu_forward,
    .relu_forward = fs_cuda_relu_forward,
    .attention_forward = fs_cuda_attention_forward,
    .attention_relpos_forward = fs_cuda_attention_relpos_forward,
    .patch_embed_forward = fs_cuda_patch_embed_forward,
    .conv3x3_forward = fs_cuda_conv3x3_forward,
    .conv_transpose2x2_forward = fs_cuda_conv_transpose2x2_forward,
    .resize_bilinear_forward = fs_cuda_resize_bilinear_forward,
    .linear_backward = fs_cuda_linear_backward,
    .layernorm_backward = fs_cuda_layernorm_backward,
    .gelu_backward = fs_cuda_gelu_backward,
    .relu_backward = fs_cuda_relu_backward,
    .attention_backward = fs_cuda_attention_backward,
    .attention_relpos_backward = fs_cuda_attention_relpos_backward,
    .patch_embed_backward = fs_cuda_patch_embed_backward,
    .conv3x3_backward = fs_cuda_conv3x3_backward,
    .conv_transpose2x2_backward = fs_cuda_conv_transpose2x2_backward,
    .resize_bilinear_backward = fs_cuda_resize_bilinear_backward,
};
