/* Transport throughput of the sample stream: one worker process (this
 * binary again, --worker) serving 512x512 samples (f32 image + u8 label,
 * 1.25 MiB) in messages of --batch samples to a trainer-side fs_stream in
 * this process, over ipc:// and tcp://127.0.0.1. The worker's make() copies
 * a template, so the figure is the protocol and transport (zero-copy send,
 * one copy out of ZeroMQ's buffers on receipt) plus that copy. Baseline: a
 * plain single-threaded memcpy of the same bytes, measured in the same run.
 * Prints one JSON object on stdout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "data/sample.h"
#include "wire/stream.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct {
    size_t size;
    float *image;
    uint8_t *label;
} tmpl;

static int make_copy(void *ctx, uint64_t index, fs_sample *out) {
    tmpl *t = ctx;
    if (fs_sample_alloc(out, t->size, t->size)) return FS_ERR;
    memcpy(out->image, t->image, t->size * t->size * sizeof(float));
    memcpy(out->label, t->label, t->size * t->size);
    out->image[0] = (float)index;
    out->n_objects = 1;
    out->objects[0].cls = 1;
    return FS_OK;
}

static int worker(const char *ep, size_t size, size_t batch) {
    tmpl t = {size, malloc(size * size * sizeof(float)), malloc(size * size)};
    for (size_t i = 0; i < size * size; i++) {
        t.image[i] = (float)(i % 977) / 977.f;
        t.label[i] = (uint8_t)(i % 9);
    }
    fs_worker_settings set;
    fs_worker_settings_default(&set);
    set.capacity = 4 * batch;
    set.batch = batch;
    int rc = fs_worker_run(ep, make_copy, &t, &set, NULL);
    if (rc) fs_warn("%s", fs_error_msg());
    free(t.image);
    free(t.label);
    return rc ? 1 : 0;
}

/* GB/s of sample payload from a worker over endpoint (bind form). */
static double measure(const char *bind_ep, size_t size, size_t batch, size_t n, size_t warm) {
    fs_stream_settings set;
    fs_stream_settings_default(&set);
    set.credit = 8 * batch;
    set.end_index = warm + n;
    set.get_timeout_ms = 30000;
    fs_stream *s;
    if (fs_stream_open(&s, bind_ep, &set)) return -1;
    char sz[32], bt[32];
    snprintf(sz, sizeof sz, "%zu", size);
    snprintf(bt, sizeof bt, "%zu", batch);
    const char *ep = fs_stream_endpoint(s);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "bench_wire", "--worker", ep, sz, bt, (char *)NULL);
        _exit(127);
    }
    double t0 = 0, gb = 0;
    int ok = 1;
    for (size_t i = 0; i < warm + n && ok; i++) {
        if (i == warm) t0 = now_s();
        fs_sample x;
        if (fs_stream_get(s, i, &x)) {
            fs_warn("%s", fs_error_msg());
            ok = 0;
            break;
        }
        if (i >= warm) gb += (double)(x.h * x.w * (sizeof(float) + 1)) * 1e-9;
        fs_sample_free(&x);
    }
    double dt = now_s() - t0;
    fs_stream_close(s);
    int st;
    waitpid(pid, &st, 0);
    return ok ? gb / dt : -1;
}

static double memcpy_rate(size_t size, size_t n) {
    size_t bytes = size * size * (sizeof(float) + 1);
    char *a = malloc(bytes), *b = malloc(bytes);
    memset(a, 1, bytes);
    memset(b, 2, bytes);
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
        for (size_t i = 0; i < n; i++) {
            a[0] = (char)i;
            memcpy(b, a, bytes);
        }
        double r = (double)bytes * (double)n * 1e-9 / (now_s() - t0);
        if (b[0] != (char)(n - 1)) r = 0;
        if (r > best) best = r;
    }
    free(a);
    free(b);
    return best;
}

int main(int argc, char **argv) {
    fs_log_init("bench_wire");
    if (argc == 5 && !strcmp(argv[1], "--worker")) return worker(argv[2], strtoul(argv[3], NULL, 10), strtoul(argv[4], NULL, 10));
    size_t size = 512, batch = 8, n = 800, warm = 40;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--size")) size = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--batch")) batch = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--samples")) n = strtoul(argv[i + 1], NULL, 10);
    }
    if (size < 1 || size > 4096 || batch < 1 || batch > 64 || n < 1) {
        fprintf(stderr, "bench_wire: usage: bench_wire [--size N] [--batch B] [--samples N]\n");
        return 2;
    }
    fs_log_set_level(FS_LOG_WARN);
    char ipc[256];
    snprintf(ipc, sizeof ipc, "ipc:///tmp/fewsam-bench-wire-%d.ipc", (int)getpid());
    double r_ipc = measure(ipc, size, batch, n, warm);
    unlink(ipc + 6);
    double r_tcp = measure("tcp://127.0.0.1:*", size, batch, n, warm);
    double r_mem = memcpy_rate(size, n);
    if (r_ipc < 0 || r_tcp < 0) {
        fprintf(stderr, "bench_wire: a run failed\n");
        return 1;
    }
    printf("{\"size\": %zu, \"batch\": %zu, \"samples\": %zu, \"sample_bytes\": %zu, \"ipc_gbps\": %.3f, "
           "\"tcp_gbps\": %.3f, \"memcpy_gbps\": %.3f}\n",
           size, batch, n, size * size * (sizeof(float) + 1), r_ipc, r_tcp, r_mem);
    return 0;
}
