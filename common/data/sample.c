#include "data/sample.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int fs_sample_alloc(fs_sample *s, size_t h, size_t w) {
    memset(s, 0, sizeof *s);
    if (h == 0 || w == 0 || h > 65536 || w > 65536) return fs_error("sample size %zux%zu out of range", h, w);
    s->image = calloc(h * w, sizeof *s->image);
    s->label = calloc(h * w, 1);
    if (!s->image || !s->label) {
        fs_sample_free(s);
        return fs_error("out of memory for a %zux%zu sample", h, w);
    }
    s->h = h;
    s->w = w;
    return FS_OK;
}

void fs_sample_free(fs_sample *s) {
    free(s->image);
    free(s->label);
    s->image = NULL;
    s->label = NULL;
}
