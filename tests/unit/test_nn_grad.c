/* nn: the reference backend's backward kernels against central finite
 * differences of its forward kernels.
 * Each case defines the scalar loss L = sum(out * R) for a fixed random R, so
 * the backward's dout is R; every element of every differentiable tensor is
 * checked against (L(x+h) - L(x-h)) / 2h (float32 forward, sums in double).
 * The same machinery checks the accumulate contract (+=, twice = double) and
 * that a NULL gradient pointer leaves the others unchanged. */
#include "test.h"

#include "core/rng.h"
#include "nn/nn.h"

#define MAX_T 4

/* One gradient check: the tensors the loss is differentiated by, the loss
 * (runs the forward on the current tensors) and the backward (accumulates
 * into g[t] for every non-NULL g[t]). */
typedef struct grad_case {
    const char *name;
    int nt;
    float *x[MAX_T];
    size_t len[MAX_T];
    const char *label[MAX_T];
    double (*loss)(struct grad_case *c);
    void (*backward)(struct grad_case *c, float *const *g);
    void *p; /* the case's own data */
    double h;
} grad_case;

static const fs_nn_ops *ops = &fs_nn_ref;
static char why[512];

/* Relative error with a floor: gradients here are O(1), and a float32 central
 * difference carries an absolute noise of about 1e-5 that a smaller
 * denominator would blow up. */
#define ERR_FLOOR 0.05
#define FD_TOL 1e-2

static double rel_err(double a, double b) {
    double m = fmax(fmax(fabs(a), fabs(b)), ERR_FLOOR);
    return fabs(a - b) / m;
}

static float *rand_buf(fs_rng *r, size_t n, double lo, double hi) {
    float *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) abort();
    for (size_t i = 0; i < n; i++) v[i] = (float)fs_rng_range(r, lo, hi);
    return v;
}

static float *zeros(size_t n) {
    float *v = calloc(n ? n : 1, sizeof *v);
    if (!v) abort();
    return v;
}

/* sum(out[n] * R[n]) in double */
static double dot(const float *out, const float *R, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)out[i] * R[i];
    return s;
}

/* Runs every check of a case; returns the max relative FD error, or -1 with
 * `why` set on a failure. */
static double check_case(grad_case *c) {
    float *g[MAX_T] = {0}, *g2[MAX_T] = {0}, *pre[MAX_T] = {0};
    double worst = 0;
    fs_rng r;
    fs_rng_init(&r, 99, 7);
    for (int t = 0; t < c->nt; t++) g[t] = zeros(c->len[t]);
    c->backward(c, g);

    /* central differences, every element */
    for (int t = 0; t < c->nt && worst >= 0; t++)
        for (size_t i = 0; i < c->len[t]; i++) {
            float x0 = c->x[t][i], xp = (float)(x0 + c->h), xm = (float)(x0 - c->h);
            c->x[t][i] = xp;
            double lp = c->loss(c);
            c->x[t][i] = xm;
            double lm = c->loss(c);
            c->x[t][i] = x0;
            double fd = (lp - lm) / ((double)xp - xm), e = rel_err(g[t][i], fd);
            if (e > worst) worst = e;
            if (e > FD_TOL) {
                snprintf(why, sizeof why, "%s: d%s[%zu] analytic %.7g vs finite difference %.7g (rel err %.3g)",
                         c->name, c->label[t], i, g[t][i], fd, e);
                worst = -1;
                break;
            }
        }

    /* accumulate: pre-filled buffers are added to, and two calls add twice */
    for (int t = 0; t < c->nt && worst >= 0; t++) {
        pre[t] = rand_buf(&r, c->len[t], -3, 3);
        g2[t] = malloc(c->len[t] * sizeof *g2[t]);
        memcpy(g2[t], pre[t], c->len[t] * sizeof *g2[t]);
    }
    if (worst >= 0) {
        c->backward(c, g2);
        c->backward(c, g2);
    }
    for (int t = 0; t < c->nt && worst >= 0; t++)
        for (size_t i = 0; i < c->len[t]; i++) {
            double want = (double)pre[t][i] + 2.0 * g[t][i];
            if (fabs(g2[t][i] - want) > 1e-5 * (fabs(pre[t][i]) + 2 * fabs(g[t][i])) + 1e-6) {
                snprintf(why, sizeof why, "%s: d%s[%zu] = %.7g after two calls on %.7g, want %.7g (gradient %.7g)",
                         c->name, c->label[t], i, g2[t][i], pre[t][i], want, g[t][i]);
                worst = -1;
                break;
            }
        }

    /* one gradient at a time, the others NULL: the same values */
    for (int t = 0; t < c->nt && c->nt > 1 && worst >= 0; t++) {
        float *only[MAX_T] = {0};
        only[t] = zeros(c->len[t]);
        c->backward(c, only);
        for (size_t i = 0; i < c->len[t]; i++)
            if (fabs(only[t][i] - g[t][i]) > 1e-6 * fabs(g[t][i]) + 1e-7) {
                snprintf(why, sizeof why, "%s: d%s[%zu] = %.7g alone, %.7g with the other gradients", c->name,
                         c->label[t], i, only[t][i], g[t][i]);
                worst = -1;
                break;
            }
        free(only[t]);
    }
    for (int t = 0; t < c->nt; t++) {
        free(g[t]);
        free(g2[t]);
        free(pre[t]);
    }
    if (worst >= 0) printf("# %s: max rel FD err %.2e\n", c->name, worst);
    return worst;
}

#define CHECK_CASE(c)                                  \
    do {                                               \
        double e_ = check_case(c);                     \
        CHECKF(e_ >= 0, "%s", why);                    \
    } while (0)

/* ---- linear ---- */

typedef struct {
    size_t M, K, N;
    float *bias, *out, *R;
} linear_p;

static double linear_loss(grad_case *c) {
    linear_p *p = c->p;
    ops->linear_forward(p->out, c->x[0], c->x[1], c->x[2], p->M, p->K, p->N);
    return dot(p->out, p->R, p->M * p->N);
}

static void linear_bwd(grad_case *c, float *const *g) {
    linear_p *p = c->p;
    ops->linear_backward(g[0], g[1], g[2], p->R, c->x[0], c->x[1], p->M, p->K, p->N);
}

static void linear_grad(void) {
    fs_rng r;
    fs_rng_init(&r, 1, 0);
    linear_p p = {.M = 7, .K = 5, .N = 3};
    p.out = zeros(p.M * p.N);
    p.R = rand_buf(&r, p.M * p.N, -1, 1);
    grad_case c = {.name = "linear", .nt = 3, .loss = linear_loss, .backward = linear_bwd, .p = &p, .h = 1e-2,
                   .x = {rand_buf(&r, p.M * p.K, -1, 1), rand_buf(&r, p.N * p.K, -1, 1), rand_buf(&r, p.N, -1, 1)},
                   .len = {p.M * p.K, p.N * p.K, p.N}, .label = {"inp", "w", "bias"}};
    CHECK_CASE(&c);
    /* dinp NULL with the parameter gradients wanted */
    float *dw = zeros(p.N * p.K), *db = zeros(p.N), *dw2 = zeros(p.N * p.K);
    ops->linear_backward(NULL, dw, db, p.R, c.x[0], c.x[1], p.M, p.K, p.N);
    ops->linear_backward(NULL, dw2, NULL, p.R, c.x[0], c.x[1], p.M, p.K, p.N);
    CHECK(!memcmp(dw, dw2, p.N * p.K * sizeof *dw));
    for (int t = 0; t < 3; t++) free(c.x[t]);
    free(p.out), free(p.R), free(dw), free(db), free(dw2);
}

/* ---- layernorm ---- */

typedef struct {
    size_t M, C;
    float eps, *out, *R;
} ln_p;

static double ln_loss(grad_case *c) {
    ln_p *p = c->p;
    ops->layernorm_forward(p->out, c->x[0], c->x[1], c->x[2], p->M, p->C, p->eps);
    return dot(p->out, p->R, p->M * p->C);
}

static void ln_bwd(grad_case *c, float *const *g) {
    ln_p *p = c->p;
    ops->layernorm_backward(g[0], g[1], g[2], p->R, c->x[0], c->x[1], p->M, p->C, p->eps);
}

static void layernorm_grad(void) {
    fs_rng r;
    fs_rng_init(&r, 2, 0);
    ln_p p = {.M = 7, .C = 5, .eps = 1e-5f};
    p.out = zeros(p.M * p.C);
    p.R = rand_buf(&r, p.M * p.C, -1, 1);
    /* inputs spread over [-2, 2] keep every row's variance well away from 0 */
    grad_case c = {.name = "layernorm", .nt = 3, .loss = ln_loss, .backward = ln_bwd, .p = &p, .h = 5e-3,
                   .x = {rand_buf(&r, p.M * p.C, -2, 2), rand_buf(&r, p.C, 0.5, 1.5), rand_buf(&r, p.C, -1, 1)},
                   .len = {p.M * p.C, p.C, p.C}, .label = {"inp", "w", "b"}};
    CHECK_CASE(&c);
    for (int t = 0; t < 3; t++) free(c.x[t]);
    free(p.out), free(p.R);
}

/* ---- gelu, relu ---- */

typedef struct {
    size_t n;
    int relu;
    float *out, *R;
} act_p;

static double act_loss(grad_case *c) {
    act_p *p = c->p;
    (p->relu ? ops->relu_forward : ops->gelu_forward)(p->out, c->x[0], p->n);
    return dot(p->out, p->R, p->n);
}

static void act_bwd(grad_case *c, float *const *g) {
    act_p *p = c->p;
    (p->relu ? ops->relu_backward : ops->gelu_backward)(g[0], c->x[0], p->R, p->n);
}

static void gelu_grad(void) {
    fs_rng r;
    fs_rng_init(&r, 3, 0);
    act_p p = {.n = 37};
    p.out = zeros(p.n);
    p.R = rand_buf(&r, p.n, -1, 1);
    grad_case c = {.name = "gelu", .nt = 1, .loss = act_loss, .backward = act_bwd, .p = &p, .h = 1e-2,
                   .x = {rand_buf(&r, p.n, -4, 4)}, .len = {p.n}, .label = {"inp"}};
    CHECK_CASE(&c);
    free(c.x[0]), free(p.out), free(p.R);
}

/* gelu'(x) = Phi(x) + x phi(x) at points where it is known independently:
 * gelu'(0) = 1/2, gelu'(+-1) = Phi(+-1) +- phi(1) with Phi(1) = 0.8413447461,
 * phi(1) = 0.2419707245; far tails 1 and 0; then the formula on a grid. */
static void gelu_backward_is_analytic_derivative(void) {
    float x[5] = {0.0f, 1.0f, -1.0f, 12.0f, -12.0f}, one[5] = {1, 1, 1, 1, 1}, d[5] = {0};
    double want[5] = {0.5, 0.8413447461 + 0.2419707245, 0.1586552539 - 0.2419707245, 1.0, 0.0};
    ops->gelu_backward(d, x, one, 5);
    for (int i = 0; i < 5; i++) CHECK_NEAR(d[i], want[i], 1e-6);
    for (int i = -60; i <= 60; i++) {
        float xi = (float)i / 10.0f, g = 0, dout = 0.75f;
        ops->gelu_backward(&g, &xi, &dout, 1);
        double phi = exp(-0.5 * (double)xi * xi) / sqrt(2 * M_PI), Phi = 0.5 * erfc(-(double)xi / sqrt(2.0));
        CHECK_NEAR(g, 0.75 * (Phi + xi * phi), 1e-6);
    }
}

static void relu_grad(void) {
    fs_rng r;
    fs_rng_init(&r, 4, 0);
    act_p p = {.n = 41, .relu = 1};
    p.out = zeros(p.n);
    p.R = rand_buf(&r, p.n, -1, 1);
    float *x = rand_buf(&r, p.n, 0.1, 2);
    for (size_t i = 0; i < p.n; i += 2) x[i] = -x[i]; /* half negative, none within 0.1 of the kink */
    grad_case c = {.name = "relu", .nt = 1, .loss = act_loss, .backward = act_bwd, .p = &p, .h = 1e-2,
                   .x = {x}, .len = {p.n}, .label = {"inp"}};
    CHECK_CASE(&c);
    free(x), free(p.out), free(p.R);
}

/* ---- attention ---- */

typedef struct {
    size_t B, Nq, Nk, H, D;
    float scale, *out, *R;
} attn_p;

static double attn_loss(grad_case *c) {
    attn_p *p = c->p;
    ops->attention_forward(p->out, c->x[0], c->x[1], c->x[2], p->B, p->Nq, p->Nk, p->H, p->D, p->scale);
    return dot(p->out, p->R, p->B * p->Nq * p->H * p->D);
}

static void attn_bwd(grad_case *c, float *const *g) {
    attn_p *p = c->p;
    ops->attention_backward(g[0], g[1], g[2], p->R, c->x[0], c->x[1], c->x[2], p->B, p->Nq, p->Nk, p->H, p->D,
                            p->scale);
}

static void attention_grad(void) {
    fs_rng r;
    fs_rng_init(&r, 5, 0);
    attn_p p = {.B = 2, .Nq = 3, .Nk = 5, .H = 2, .D = 4, .scale = 0.5f};
    size_t C = p.H * p.D, nq = p.B * p.Nq * C, nk = p.B * p.Nk * C;
    p.out = zeros(nq);
    p.R = rand_buf(&r, nq, -1, 1);
    grad_case c = {.name = "attention", .nt = 3, .loss = attn_loss, .backward = attn_bwd, .p = &p, .h = 1e-2,
                   .x = {rand_buf(&r, nq, -1.5, 1.5), rand_buf(&r, nk, -1.5, 1.5), rand_buf(&r, nk, -1, 1)},
                   .len = {nq, nk, nk}, .label = {"q", "k", "v"}};
    CHECK_CASE(&c);
    for (int t = 0; t < 3; t++) free(c.x[t]);
    free(p.out), free(p.R);
}

/* ---- attention with decomposed relative positions ---- */

typedef struct {
    size_t B, Hg, Wg, H, D;
    int use_rel; /* rel tables passed to the forward */
    float scale, *out, *R;
} relpos_p;

static double relpos_loss(grad_case *c) {
    relpos_p *p = c->p;
    ops->attention_relpos_forward(p->out, c->x[0], p->use_rel ? c->x[1] : NULL, p->use_rel ? c->x[2] : NULL, p->B,
                                  p->Hg, p->Wg, p->H, p->D, p->scale);
    return dot(p->out, p->R, p->B * p->Hg * p->Wg * p->H * p->D);
}

static void relpos_bwd(grad_case *c, float *const *g) {
    relpos_p *p = c->p;
    ops->attention_relpos_backward(g[0], c->nt > 1 ? g[1] : NULL, c->nt > 1 ? g[2] : NULL, p->R, c->x[0],
                                   p->use_rel ? c->x[1] : NULL, p->use_rel ? c->x[2] : NULL, p->B, p->Hg, p->Wg, p->H,
                                   p->D, p->scale);
}

/* One grid: FD through qkv and both tables; then the tables frozen (NULL
 * gradients) must leave dqkv as it was; then no tables at all. */
static int relpos_grid(size_t Hg, size_t Wg, uint64_t seed) {
    fs_rng r;
    fs_rng_init(&r, seed, 0);
    relpos_p p = {.B = 2, .Hg = Hg, .Wg = Wg, .H = 2, .D = 4, .use_rel = 1, .scale = 0.5f};
    size_t N = Hg * Wg, C = p.H * p.D, nqkv = p.B * N * 3 * C, RH = 2 * Hg - 1, RW = 2 * Wg - 1;
    p.out = zeros(p.B * N * C);
    p.R = rand_buf(&r, p.B * N * C, -1, 1);
    char name[64];
    snprintf(name, sizeof name, "attention_relpos %zux%zu", Hg, Wg);
    grad_case c = {.name = name, .nt = 3, .loss = relpos_loss, .backward = relpos_bwd, .p = &p, .h = 1e-2,
                   .x = {rand_buf(&r, nqkv, -1.2, 1.2), rand_buf(&r, RH * p.D, -0.8, 0.8),
                         rand_buf(&r, RW * p.D, -0.8, 0.8)},
                   .len = {nqkv, RH * p.D, RW * p.D}, .label = {"qkv", "rel_h", "rel_w"}};
    int ok = check_case(&c) >= 0;

    /* frozen tables: dqkv still carries the rel-pos path into q */
    float *g_all = zeros(nqkv), *gh = zeros(RH * p.D), *gw = zeros(RW * p.D), *g_frozen = zeros(nqkv);
    ops->attention_relpos_backward(g_all, gh, gw, p.R, c.x[0], c.x[1], c.x[2], p.B, Hg, Wg, p.H, p.D, p.scale);
    ops->attention_relpos_backward(g_frozen, NULL, NULL, p.R, c.x[0], c.x[1], c.x[2], p.B, Hg, Wg, p.H, p.D,
                                   p.scale);
    if (ok && memcmp(g_all, g_frozen, nqkv * sizeof *g_all)) {
        snprintf(why, sizeof why, "%s: dqkv changes when drel_h/drel_w are NULL", name);
        ok = 0;
    }

    /* no relative positions at all: FD through qkv alone */
    if (ok) {
        char name2[80];
        snprintf(name2, sizeof name2, "%s, no rel-pos", name);
        p.use_rel = 0;
        c.name = name2;
        c.nt = 1;
        ok = check_case(&c) >= 0;
    }
    for (int t = 0; t < 3; t++) free(c.x[t]);
    free(p.out), free(p.R), free(g_all), free(gh), free(gw), free(g_frozen);
    return ok;
}

static void attention_relpos_grad(void) {
    CHECKF(relpos_grid(3, 3, 6), "%s", why);
    CHECKF(relpos_grid(2, 5, 7), "%s", why);
}

/* Without rel-pos tables the encoder attention is attention_forward on the
 * q, k, v slices of qkv; so are its gradients. */
static void attention_relpos_matches_attention(void) {
    fs_rng r;
    fs_rng_init(&r, 8, 0);
    size_t B = 2, Hg = 2, Wg = 5, H = 2, D = 4, N = Hg * Wg, C = H * D;
    float scale = 0.5f;
    float *qkv = rand_buf(&r, B * N * 3 * C, -1.5, 1.5), *R = rand_buf(&r, B * N * C, -1, 1);
    float *q = zeros(B * N * C), *k = zeros(B * N * C), *v = zeros(B * N * C);
    for (size_t t = 0; t < B * N; t++) {
        memcpy(q + t * C, qkv + (t * 3 + 0) * C, C * sizeof *q);
        memcpy(k + t * C, qkv + (t * 3 + 1) * C, C * sizeof *k);
        memcpy(v + t * C, qkv + (t * 3 + 2) * C, C * sizeof *v);
    }
    float *o1 = zeros(B * N * C), *o2 = zeros(B * N * C);
    ops->attention_relpos_forward(o1, qkv, NULL, NULL, B, Hg, Wg, H, D, scale);
    ops->attention_forward(o2, q, k, v, B, N, N, H, D, scale);
    for (size_t i = 0; i < B * N * C; i++) CHECK_NEAR(o1[i], o2[i], 1e-6);

    float *dqkv = zeros(B * N * 3 * C), *dq = zeros(B * N * C), *dk = zeros(B * N * C), *dv = zeros(B * N * C);
    ops->attention_relpos_backward(dqkv, NULL, NULL, R, qkv, NULL, NULL, B, Hg, Wg, H, D, scale);
    ops->attention_backward(dq, dk, dv, R, q, k, v, B, N, N, H, D, scale);
    for (size_t t = 0; t < B * N; t++)
        for (size_t i = 0; i < C; i++) {
            CHECK_NEAR(dqkv[(t * 3 + 0) * C + i], dq[t * C + i], 1e-6);
            CHECK_NEAR(dqkv[(t * 3 + 1) * C + i], dk[t * C + i], 1e-6);
            CHECK_NEAR(dqkv[(t * 3 + 2) * C + i], dv[t * C + i], 1e-6);
        }
    free(qkv), free(R), free(q), free(k), free(v), free(o1), free(o2), free(dqkv), free(dq), free(dk), free(dv);
}

/* ---- convolutions ---- */

typedef struct {
    size_t B, Cin, Hi, Wi, P, C; /* patch_embed; conv3x3 and transpose use B, Hi (H), Wi (W), Cin, C (Cout) */
    float *out, *R;
    size_t nout;
} conv_p;

static double pe_loss(grad_case *c) {
    conv_p *p = c->p;
    ops->patch_embed_forward(p->out, c->x[0], c->x[1], c->x[2], p->B, p->Cin, p->Hi, p->Wi, p->P, p->C);
    return dot(p->out, p->R, p->nout);
}

static void pe_bwd(grad_case *c, float *const *g) {
    conv_p *p = c->p;
    ops->patch_embed_backward(g[0], g[1], g[2], p->R, c->x[0], c->x[1], p->B, p->Cin, p->Hi, p->Wi, p->P, p->C);
}

static void patch_embed_grad(void) {
    fs_rng r;
    fs_rng_init(&r, 9, 0);
    conv_p p = {.B = 2, .Cin = 3, .Hi = 6, .Wi = 4, .P = 2, .C = 5};
    p.nout = p.B * (p.Hi / p.P) * (p.Wi / p.P) * p.C;
    p.out = zeros(p.nout);
    p.R = rand_buf(&r, p.nout, -1, 1);
    size_t ni = p.B * p.Cin * p.Hi * p.Wi, nw = p.C * p.Cin * p.P * p.P;
    grad_case c = {.name = "patch_embed", .nt = 3, .loss = pe_loss, .backward = pe_bwd, .p = &p, .h = 1e-2,
                   .x = {rand_buf(&r, ni, -1, 1), rand_buf(&r, nw, -1, 1), rand_buf(&r, p.C, -1, 1)},
                   .len = {ni, nw, p.C}, .label = {"inp", "w", "b"}};
    CHECK_CASE(&c);
    for (int t = 0; t < 3; t++) free(c.x[t]);
    free(p.out), free(p.R);
}

static double c3_loss(grad_case *c) {
    conv_p *p = c->p;
    ops->conv3x3_forward(p->out, c->x[0], c->x[1], p->B, p->Hi, p->Wi, p->Cin, p->C);
    return dot(p->out, p->R, p->nout);
}

static void c3_bwd(grad_case *c, float *const *g) {
    conv_p *p = c->p;
    ops->conv3x3_backward(g[0], g[1], p->R, c->x[0], c->x[1], p->B, p->Hi, p->Wi, p->Cin, p->C);
}

static void conv3x3_grad(void) {
    fs_rng r;
    fs_rng_init(&r, 10, 0);
    conv_p p = {.B = 2, .Hi = 3, .Wi = 4, .Cin = 3, .C = 2};
    p.nout = p.B * p.Hi * p.Wi * p.C;
    p.out = zeros(p.nout);
    p.R = rand_buf(&r, p.nout, -1, 1);
    size_t ni = p.B * p.Hi * p.Wi * p.Cin, nw = p.C * p.Cin * 9;
    grad_case c = {.name = "conv3x3", .nt = 2, .loss = c3_loss, .backward = c3_bwd, .p = &p, .h = 1e-2,
                   .x = {rand_buf(&r, ni, -1, 1), rand_buf(&r, nw, -1, 1)}, .len = {ni, nw}, .label = {"inp", "w"}};
    CHECK_CASE(&c);
    for (int t = 0; t < 2; t++) free(c.x[t]);
    free(p.out), free(p.R);
}

static double ct_loss(grad_case *c) {
    conv_p *p = c->p;
    ops->conv_transpose2x2_forward(p->out, c->x[0], c->x[1], c->x[2], p->B, p->Hi, p->Wi, p->Cin, p->C);
    return dot(p->out, p->R, p->nout);
}

static void ct_bwd(grad_case *c, float *const *g) {
    conv_p *p = c->p;
    ops->conv_transpose2x2_backward(g[0], g[1], g[2], p->R, c->x[0], c->x[1], p->B, p->Hi, p->Wi, p->Cin, p->C);
}

static void conv_transpose2x2_grad(void) {
    fs_rng r;
    fs_rng_init(&r, 11, 0);
    conv_p p = {.B = 2, .Hi = 2, .Wi = 3, .Cin = 3, .C = 2};
    p.nout = p.B * 4 * p.Hi * p.Wi * p.C;
    p.out = zeros(p.nout);
    p.R = rand_buf(&r, p.nout, -1, 1);
    size_t ni = p.B * p.Hi * p.Wi * p.Cin, nw = p.Cin * p.C * 4;
    grad_case c = {.name = "conv_transpose2x2", .nt = 3, .loss = ct_loss, .backward = ct_bwd, .p = &p, .h = 1e-2,
                   .x = {rand_buf(&r, ni, -1, 1), rand_buf(&r, nw, -1, 1), rand_buf(&r, p.C, -1, 1)},
                   .len = {ni, nw, p.C}, .label = {"inp", "w", "b"}};
    CHECK_CASE(&c);
    for (int t = 0; t < 3; t++) free(c.x[t]);
    free(p.out), free(p.R);
}

/* ---- bilinear resize ---- */

typedef struct {
    size_t N, Hi, Wi, Ho, Wo;
    float *out, *R;
} rs_p;

static double rs_loss(grad_case *c) {
    rs_p *p = c->p;
    ops->resize_bilinear_forward(p->out, c->x[0], p->N, p->Hi, p->Wi, p->Ho, p->Wo);
    return dot(p->out, p->R, p->N * p->Ho * p->Wo);
}

static void rs_bwd(grad_case *c, float *const *g) {
    rs_p *p = c->p;
    ops->resize_bilinear_backward(g[0], p->R, p->N, p->Hi, p->Wi, p->Ho, p->Wo);
}

/* The resize is linear, so its backward must be its exact adjoint:
 * <resize(x), R> = <x, resize^T R> for any x, R; plus the FD check, on
 * upsampling, downsampling, mixed and identity shapes. */
static void resize_bilinear_grad(void) {
    static const size_t shapes[][4] = {{3, 5, 7, 4}, {8, 6, 3, 5}, {4, 4, 4, 4}, {1, 3, 4, 7}, {5, 2, 10, 2}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        fs_rng r;
        fs_rng_init(&r, 12, s);
        rs_p p = {.N = 2, .Hi = shapes[s][0], .Wi = shapes[s][1], .Ho = shapes[s][2], .Wo = shapes[s][3]};
        size_t ni = p.N * p.Hi * p.Wi, no = p.N * p.Ho * p.Wo;
        p.out = zeros(no);
        p.R = rand_buf(&r, no, -1, 1);
        char name[64];
        snprintf(name, sizeof name, "resize_bilinear %zux%zu->%zux%zu", p.Hi, p.Wi, p.Ho, p.Wo);
        grad_case c = {.name = name, .nt = 1, .loss = rs_loss, .backward = rs_bwd, .p = &p, .h = 1e-2,
                       .x = {rand_buf(&r, ni, -1, 1)}, .len = {ni}, .label = {"inp"}};
        double lhs = rs_loss(&c);
        float *g = zeros(ni);
        rs_bwd(&c, &g);
        double rhs = dot(c.x[0], g, ni);
        int adj_ok = fabs(lhs - rhs) <= 1e-5 * (fabs(lhs) + 1);
        int fd_ok = check_case(&c) >= 0;
        free(c.x[0]), free(p.out), free(p.R), free(g);
        CHECKF(adj_ok, "%s: <resize x, R> = %.9g but <x, resize^T R> = %.9g", name, lhs, rhs);
        CHECKF(fd_ok, "%s", why);
    }
}

int main(void) {
    RUN(linear_grad);
    RUN(layernorm_grad);
    RUN(gelu_grad);
    RUN(gelu_backward_is_analytic_derivative);
    RUN(relu_grad);
    RUN(attention_grad);
    RUN(attention_relpos_grad);
    RUN(attention_relpos_matches_attention);
    RUN(patch_embed_grad);
    RUN(conv3x3_grad);
    RUN(conv_transpose2x2_grad);
    RUN(resize_bilinear_grad);
    TEST_EXIT();
}
