/* The fast CPU backend's table (see nn/cpu/cpu.h for its threading model). */
#include "nn/cpu/cpu.h"
#include "nn/nn.h"
#include "nn/ref/ref.h"

const fs_nn_ops fs_nn_cpu = {
    .name = "cpu",
    .linear_forward = fs_nn_cpu_linear_forward,
    .layernorm_forward = fs_nn_cpu_layernorm_forward,
    .gelu_forward = fs_nn_cpu_gelu_forward,
    .relu_forward = fs_nn_cpu_relu_forward,
    .attention_forward = fs_nn_cpu_attention_forward,
    .attention_relpos_forward = fs_nn_cpu_attention_relpos_forward,
    .patch_embed_forward = fs_nn_cpu_patch_embed_forward,
    .conv3x3_forward = fs_nn_cpu_conv3x3_forward,
    .conv_transpose2x2_forward = fs_nn_cpu_conv_transpose2x2_forward,
    .resize_bilinear_forward = fs_nn_cpu_resize_bilinear_forward,
    .linear_backward = fs_nn_cpu_linear_backward,
    .layernorm_backward = fs_nn_cpu_layernorm_backward,
    .gelu_backward = fs_nn_cpu_gelu_backward,
    .relu_backward = fs_nn_cpu_relu_backward,
    .attention_backward = fs_nn_cpu_attention_backward,
    .attention_relpos_backward = fs_nn_cpu_attention_relpos_backward,
    .patch_embed_backward = fs_nn_cpu_patch_embed_backward,
    .conv3x3_backward = fs_nn_cpu_conv3x3_backward,
    .conv_transpose2x2_backward = fs_nn_cpu_conv_transpose2x2_backward,
    .resize_bilinear_backward = fs_nn_cpu_resize_bilinear_backward,
    FS_REF_HOST_ENTRIES,
};
