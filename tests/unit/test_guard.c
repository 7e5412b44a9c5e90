/* guard: the cpu kernels on guarded memory. Results must be bit-for-bit
 * those of fs_nn_cpu on host copies of the same inputs (same alignment: the
 * host copies are page-aligned too, so vectorised loops split the same
 * way); and the guard must catch what a GPU would: a direct host read of
 * backend memory (SIGSEGV), a host pointer handed to a kernel, dimensions
 * running past an allocation, an upload from backend memory (SIGABRT with
 * one line naming the entry and the argument). Those run in forked children
 * whose stderr comes back through a pipe. */
#include "test.h"

#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"
#include "core/rng.h"
#include "nn/nn.h"

static fs_rng rng;
static const fs_nn_ops *const G = &fs_nn_guard;
static const fs_nn_ops *const C = &fs_nn_cpu;

/* ---- paired buffers: the same floats on the host and in guard memory ---- */

typedef struct {
    float *h, *d;
    size_t n;
} pair;

static float *page_floats(size_t n) {
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + 4095) / 4096 * 4096;
    float *p = aligned_alloc(4096, bytes);
    if (!p) {
        printf("FAIL setup: out of memory\n");
        exit(1);
    }
    return p;
}

static pair mk(size_t n, double lo, double hi) {
    pair p = {page_floats(n), G->alloc(n * sizeof(float)), n};
    if (!p.d) {
        printf("FAIL setup: guard alloc: %s\n", fs_error_msg());
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p.h[i] = (float)fs_rng_range(&rng, lo, hi);
    G->upload(p.d, p.h, n * sizeof(float));
    return p;
}

static pair mkr(size_t n) { return mk(n, -1, 1); }

/* 1 when the guard copy holds exactly the host copy's bits */
static int agree(pair p) {
    float *t = page_floats(p.n);
    G->download(t, p.d, p.n * sizeof(float));
    int same = memcmp(t, p.h, p.n * sizeof(float)) == 0;
    free(t);
    return same;
}

static void drop(pair *p) {
    free(p->h);
    G->free(p->d);
    p->h = p->d = NULL;
}

#define SAME(p) CHECKF(agree(p), "%s differs from fs_nn_cpu", #p)

/* ---- the table ---- */

#define ENTRIES(X)                                                                                                     \
    X(linear_forward) X(layernorm_forward) X(gelu_forward) X(relu_forward) X(attention_forward)                        \
    X(attention_relpos_forward) X(patch_embed_forward) X(conv3x3_forward) X(conv_transpose2x2_forward)                 \
    X(resize_bilinear_forward) X(linear_backward) X(layernorm_backward) X(gelu_backward) X(relu_backward)              \
    X(attention_backward) X(attention_relpos_backward) X(patch_embed_backward) X(conv3x3_backward)                     \
    X(conv_transpose2x2_backward) X(resize_bilinear_backward) X(available) X(alloc) X(free) X(upload) X(download)     \
    X(copy) X(zero) X(add) X(scale) X(add_rows) X(sum_rows) X(add_cols) X(take_cols) X(window_partition)             \
    X(window_unpartition) X(crop) X(adamw_update) X(sumsq)

static void table(void) {
    CHECK(fs_nn_backend("guard") == G);
    CHECK(!strcmp(G->name, "guard"));
    CHECK(G->device == 1);
    CHECK(G->available && G->available() == 1);
#define PARITY(e) CHECKF((G->e == NULL) == (C->e == NULL), "%s: NULL in one table only", #e);
    ENTRIES(PARITY)
#undef PARITY
}

/* ---- memory ---- */

static void alloc_zeroed(void) {
    size_t n = 10007; /* not a whole number of pages */
    unsigned char *d = G->alloc(n), *h = malloc(n);
    CHECK(d && h);
    memset(h, 0xa5, n);
    G->download(h, d, n);
    for (size_t i = 0; i < n; i++) CHECKF(h[i] == 0, "byte %zu is %u", i, h[i]);
    /* zero-byte allocations are distinct, and free(NULL) does nothing */
    void *z1 = G->alloc(0), *z2 = G->alloc(0);
    CHECK(z1 && z2 && z1 != z2);
    G->free(z1);
    G->free(z2);
    G->free(NULL);
    /* an absurd size fails cleanly */
    fs_error_clear();
    CHECK(G->alloc(SIZE_MAX - 10) == NULL);
    CHECK(strstr(fs_error_msg(), "out of memory") != NULL);
    G->free(d);
    free(h);
}

static void upload_download_copy_zero(void) {
    size_t n = 3000;
    pair a = mkr(n), b = mkr(n);
    SAME(a);
    /* copy a slice of a into b at an offset, zero another slice of a */
    G->copy(b.d + 100, a.d + 7, 500 * sizeof(float));
    memmove(b.h + 100, a.h + 7, 500 * sizeof(float));
    G->zero(a.d + 2000, 999 * sizeof(float));
    memset(a.h + 2000, 0, 999 * sizeof(float));
    SAME(a);
    SAME(b);
    /* a partial download from the middle */
    float part[10];
    G->download(part, b.d + 95, sizeof part);
    CHECK(memcmp(part, b.h + 95, sizeof part) == 0);
    /* zero-byte moves touch nothing, whatever the pointers */
    G->upload(NULL, NULL, 0);
    G->download(NULL, NULL, 0);
    drop(&a);
    drop(&b);
}

/* ---- the kernels, bit for bit ---- */

static void linear(void) {
    static const size_t cases[][4] = {{37, 65, 129, 1}, {5, 3, 2, 0}, {300, 77, 33, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t M = cases[k][0], K = cases[k][1], N = cases[k][2];
        pair x = mkr(M * K), w = mkr(N * K), b = mkr(N), out = mkr(M * N);
        const float *bh = cases[k][3] ? b.h : NULL, *bd = cases[k][3] ? b.d : NULL;
        C->linear_forward(out.h, x.h, w.h, bh, M, K, N);
        G->linear_forward(out.d, x.d, w.d, bd, M, K, N);
        SAME(out);
        /* backward on pre-filled gradients (they accumulate), all three, then dinp alone */
        pair dout = mkr(M * N), dx = mkr(M * K), dw = mkr(N * K), db = mkr(N);
        C->linear_backward(dx.h, dw.h, db.h, dout.h, x.h, w.h, M, K, N);
        G->linear_backward(dx.d, dw.d, db.d, dout.d, x.d, w.d, M, K, N);
        SAME(dx);
        SAME(dw);
        SAME(db);
        C->linear_backward(dx.h, NULL, NULL, dout.h, x.h, w.h, M, K, N);
        G->linear_backward(dx.d, NULL, NULL, dout.d, x.d, w.d, M, K, N);
        SAME(dx);
        drop(&x), drop(&w), drop(&b), drop(&out), drop(&dout), drop(&dx), drop(&dw), drop(&db);
    }
    /* tensors inside one arena allocation (pointers into its middle) */
    size_t M = 9, K = 17, N = 11, tot = M * K + N * K + N + M * N;
    pair arena = mkr(tot);
    float *xh = arena.h, *wh = xh + M * K, *bh = wh + N * K, *oh = bh + N;
    float *xd = arena.d, *wd = xd + M * K, *bd = wd + N * K, *od = bd + N;
    C->linear_forward(oh, xh, wh, bh, M, K, N);
    G->linear_forward(od, xd, wd, bd, M, K, N);
    SAME(arena);
    drop(&arena);
}

static void layernorm(void) {
    size_t M = 45, Cc = 96;
    pair x = mk(M * Cc, -3, 3), w = mkr(Cc), b = mkr(Cc), out = mkr(M * Cc);
    C->layernorm_forward(out.h, x.h, w.h, b.h, M, Cc, 1e-6f);
    G->layernorm_forward(out.d, x.d, w.d, b.d, M, Cc, 1e-6f);
    SAME(out);
    drop(&x), drop(&w), drop(&b), drop(&out);
}

static void attention(void) {
    size_t B = 2, Hg = 5, Wg = 7, H = 2, D = 8;
    float scale = 1.0f / sqrtf((float)D);
    pair qkv = mkr(B * Hg * Wg * 3 * H * D), rh = mkr((2 * Hg - 1) * D), rw = mkr((2 * Wg - 1) * D);
    pair out = mkr(B * Hg * Wg * H * D);
    C->attention_relpos_forward(out.h, qkv.h, rh.h, rw.h, B, Hg, Wg, H, D, scale);
    G->attention_relpos_forward(out.d, qkv.d, rh.d, rw.d, B, Hg, Wg, H, D, scale);
    SAME(out);
    C->attention_relpos_forward(out.h, qkv.h, NULL, NULL, B, Hg, Wg, H, D, scale);
    G->attention_relpos_forward(out.d, qkv.d, NULL, NULL, B, Hg, Wg, H, D, scale);
    SAME(out);
    /* the decoder's attention too */
    size_t Nq = 7, Nk = 33;
    pair q = mkr(B * Nq * H * D), k = mkr(B * Nk * H * D), v = mkr(B * Nk * H * D), o = mkr(B * Nq * H * D);
    C->attention_forward(o.h, q.h, k.h, v.h, B, Nq, Nk, H, D, scale);
    G->attention_forward(o.d, q.d, k.d, v.d, B, Nq, Nk, H, D, scale);
    SAME(o);
    drop(&qkv), drop(&rh), drop(&rw), drop(&out), drop(&q), drop(&k), drop(&v), drop(&o);
}

static void windows(void) {
    size_t B = 2, g = 7, ws = 3, Cc = 5, nw = 3;
    pair x = mkr(B * g * g * Cc), win = mkr(B * nw * nw * ws * ws * Cc);
    C->window_partition(win.h, x.h, B, g, ws, Cc);
    G->window_partition(win.d, x.d, B, g, ws, Cc);
    SAME(win);
    /* back, then back again accumulating (the residual add) */
    pair y = mkr(B * g * g * Cc);
    C->window_unpartition(y.h, win.h, B, g, ws, Cc, 0);
    G->window_unpartition(y.d, win.d, B, g, ws, Cc, 0);
    SAME(y);
    CHECK(memcmp(y.h, x.h, x.n * sizeof(float)) == 0);
    C->window_unpartition(y.h, win.h, B, g, ws, Cc, 1);
    G->window_unpartition(y.d, win.d, B, g, ws, Cc, 1);
    SAME(y);
    drop(&x), drop(&win), drop(&y);
}

static void glue(void) {
    size_t M = 9, ld = 13, off = 4, N = 5;
    pair wide = mkr(M * ld), narrow = mkr(M * N);
    C->add_cols(wide.h, ld, off, narrow.h, 0.5f, M, N);
    G->add_cols(wide.d, ld, off, narrow.d, 0.5f, M, N);
    SAME(wide);
    C->take_cols(narrow.h, wide.h, ld, off + 3, -2.0f, M, N);
    G->take_cols(narrow.d, wide.d, ld, off + 3, -2.0f, M, N);
    SAME(narrow);
    /* add_rows / sum_rows */
    size_t R = 31, Cc = 19;
    pair x = mkr(R * Cc), row = mkr(Cc);
    C->add_rows(x.h, row.h, R, Cc);
    G->add_rows(x.d, row.d, R, Cc);
    SAME(x);
    C->sum_rows(row.h, x.h, R, Cc);
    G->sum_rows(row.d, x.d, R, Cc);
    SAME(row);
    /* add (in place) and scale */
    pair a = mkr(1001), b = mkr(1001);
    C->add(a.h, a.h, b.h, a.n);
    G->add(a.d, a.d, b.d, a.n);
    SAME(a);
    C->scale(b.h, 0.3f, b.n);
    G->scale(b.d, 0.3f, b.n);
    SAME(b);
    drop(&wide), drop(&narrow), drop(&x), drop(&row), drop(&a), drop(&b);
}

static void optimiser(void) {
    size_t n = 4099;
    pair p = mkr(n), g = mk(n, -0.1, 0.1), m = mk(n, 0, 0), v = mk(n, 0, 0);
    const double hyper[5] = {1e-3, 0.9, 0.999, 1e-8, 0.01};
    for (size_t t = 1; t <= 3; t++) {
        C->adamw_update(p.h, g.h, m.h, v.h, n, hyper, t);
        G->adamw_update(p.d, g.d, m.d, v.d, n, hyper, t);
    }
    SAME(p);
    SAME(m);
    SAME(v);
    double s1 = C->sumsq(p.h, n), s2 = G->sumsq(p.d, n);
    CHECKF(memcmp(&s1, &s2, sizeof s1) == 0, "sumsq %.17g vs %.17g", s2, s1);
    CHECK(G->sumsq(p.d, 0) == 0.0);
    drop(&p), drop(&g), drop(&m), drop(&v);
}

static void resize_and_crop(void) {
    size_t N = 3, Hi = 17, Wi = 23, Ho = 40, Wo = 9;
    pair in = mkr(N * Hi * Wi), out = mkr(N * Ho * Wo);
    C->resize_bilinear_forward(out.h, in.h, N, Hi, Wi, Ho, Wo);
    G->resize_bilinear_forward(out.d, in.d, N, Hi, Wi, Ho, Wo);
    SAME(out);
    pair cr = mkr(11 * 6);
    C->crop(cr.h, in.h, Hi, Wi, 11, 6);
    G->crop(cr.d, in.d, Hi, Wi, 11, 6);
    SAME(cr);
    drop(&in), drop(&out), drop(&cr);
}

/* ---- what the guard must stop: in a child, stderr into a pipe ---- */

/* Runs fn in a child; returns its wait status and what it wrote to stderr. */
static int in_child(void (*fn)(void), char *err, size_t errsz) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        struct rlimit nocore = {0, 0};
        setrlimit(RLIMIT_CORE, &nocore);
        signal(SIGSEGV, SIG_DFL); /* not a sanitizer's report: the plain fault */
        fn();
        _exit(0);
    }
    close(fd[1]);
    size_t len = 0;
    ssize_t r;
    while ((r = read(fd[0], err + len, errsz - 1 - len)) > 0) {
        len += (size_t)r;
        if (len == errsz - 1) break;
    }
    err[len] = 0;
    close(fd[0]);
    int st;
    if (waitpid(pid, &st, 0) != pid) return -1;
    return st;
}

#define DIES_OF(st, sig) (WIFSIGNALED(st) && WTERMSIG(st) == (sig))

static void child_touches_memory(void) {
    float *d = G->alloc(64 * sizeof(float));
    float h[64] = {1};
    G->upload(d, h, sizeof h);
    G->scale(d, 2.0f, 64); /* after a kernel the pages are shut again */
    volatile float x = d[0];
    (void)x;
}

static void host_read_segfaults(void) {
    char err[1024];
    int st = in_child(child_touches_memory, err, sizeof err);
    CHECKF(DIES_OF(st, SIGSEGV), "wait status %#x, stderr: %s", st, err);
}

static void child_host_pointer(void) {
    size_t M = 4, K = 8, N = 3;
    float *out = G->alloc(M * N * sizeof(float)), *w = G->alloc(N * K * sizeof(float));
    float *inp = calloc(M * K, sizeof(float));
    G->linear_forward(out, inp, w, NULL, M, K, N);
}

static void host_pointer_aborts(void) {
    char err[1024];
    int st = in_child(child_host_pointer, err, sizeof err);
    CHECKF(DIES_OF(st, SIGABRT), "wait status %#x, stderr: %s", st, err);
    CHECKF(strstr(err, "fewsam guard: linear_forward: inp (") != NULL, "stderr: %s", err);
    CHECKF(strstr(err, ", 128 bytes) is not inside memory this backend allocated\n") != NULL, "stderr: %s", err);
    /* one line */
    CHECKF(strchr(err, '\n') == err + strlen(err) - 1, "stderr: %s", err);
}

static void child_past_end(void) {
    size_t M = 4, K = 8, N = 3;
    float *out = G->alloc(M * N * sizeof(float)), *inp = G->alloc((M + 1) * K * sizeof(float));
    float *w = G->alloc(N * K * sizeof(float));
    G->linear_forward(out, inp, w, NULL, M + 1, K, N); /* out holds M rows */
}

static void past_end_aborts(void) {
    char err[1024];
    int st = in_child(child_past_end, err, sizeof err);
    CHECKF(DIES_OF(st, SIGABRT), "wait status %#x, stderr: %s", st, err);
    CHECKF(strstr(err, "fewsam guard: linear_forward: out (") != NULL, "stderr: %s", err);
    CHECKF(strstr(err, ", 60 bytes) runs past the end") != NULL, "stderr: %s", err);
}

static void child_stride_past_end(void) {
    /* add_cols with a column offset that pushes the last row past the end */
    float *out = G->alloc(4 * 10 * sizeof(float)), *in = G->alloc(4 * 3 * sizeof(float));
    G->add_cols(out, 10, 8, in, 1.0f, 4, 3);
}

static void child_upload_from_guard(void) {
    float *a = G->alloc(256), *b = G->alloc(256);
    G->upload(b, a, 256);
}

static void child_use_after_free(void) {
    float *a = G->alloc(256);
    G->free(a);
    G->zero(a, 256);
}

static void child_free_middle(void) {
    float *a = G->alloc(256);
    G->free(a + 1);
}

static void child_adamw_hyper_in_guard(void) {
    float *p = G->alloc(64), *g = G->alloc(64), *m = G->alloc(64), *v = G->alloc(64);
    double *hyper = G->alloc(5 * sizeof(double));
    G->adamw_update(p, g, m, v, 16, hyper, 1);
}

static void other_misuse_aborts(void) {
    static const struct {
        void (*fn)(void);
        const char *want;
    } cases[] = {
        {child_stride_past_end, "fewsam guard: add_cols: out ("},
        {child_upload_from_guard, "fewsam guard: upload: the source ("},
        {child_use_after_free, "fewsam guard: zero: p ("},
        {child_free_middle, "fewsam guard: free: "},
        {child_adamw_hyper_in_guard, "fewsam guard: adamw_update: the hyper ("},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char err[1024];
        int st = in_child(cases[k].fn, err, sizeof err);
        CHECKF(DIES_OF(st, SIGABRT), "case %zu: wait status %#x, stderr: %s", k, st, err);
        CHECKF(strstr(err, cases[k].want) != NULL, "case %zu: stderr: %s", k, err);
    }
}

int main(void) {
    fs_rng_init(&rng, 20240612, 3);
    RUN(table);
    /* the children first, before the parent has started OpenMP's threads */
    RUN(host_read_segfaults);
    RUN(host_pointer_aborts);
    RUN(past_end_aborts);
    RUN(other_misuse_aborts);
    RUN(alloc_zeroed);
    RUN(upload_download_copy_zero);
    RUN(linear);
    RUN(layernorm);
    RUN(attention);
    RUN(windows);
    RUN(glue);
    RUN(optimiser);
    RUN(resize_and_crop);
    TEST_EXIT();
}
