/* Backend lookup by name, for stages' --backend options. */
#include "nn/nn.h"

#include <string.h>

#include "core/error.h"

/* Defined only in libfewsam_cuda.a, which the CUDA variants of the stages
 * link (build/cuda-bin/); elsewhere the weak reference stays NULL and the
 * program needs no CUDA library. */
extern const fs_nn_ops fs_nn_cuda __attribute__((weak));

const fs_nn_ops *fs_nn_backend(const char *name) {
    if (!name) {
        fs_error("no backend named");
        return NULL;
    }
    if (strcmp(name, "ref") == 0) return &fs_nn_ref;
    if (strcmp(name, "cpu") == 0) return &fs_nn_cpu;
    if (strcmp(name, "guard") == 0) return &fs_nn_guard;
    if (strcmp(name, "cuda") == 0) {
        if (!&fs_nn_cuda) {
            fs_error("backend 'cuda' is not in this program: run the CUDA build of it (build/cuda-bin/, made when "
                     "nvcc is found or with make CUDA=1)");
            return NULL;
        }
        if (!fs_nn_cuda.available()) {
            fs_error("backend 'cuda': no usable GPU (no driver or no device)");
            return NULL;
        }
        return &fs_nn_cuda;
    }
    fs_error("unknown backend '%s' (ref, cpu, guard or cuda)", name);
    return NULL;
}
