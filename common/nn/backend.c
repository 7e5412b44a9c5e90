/* Backend lookup by name, for stages' --backend options. */
#include "nn/nn.h"

#include <string.h>

const fs_nn_ops *fs_nn_backend(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "ref") == 0) return &fs_nn_ref;
    if (strcmp(name, "cpu") == 0) return &fs_nn_cpu;
    return NULL;
}
