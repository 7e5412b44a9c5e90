/* wire: the message format (every rejection kind, in memory and over real
 * sockets) and the credit protocol between real processes: this binary
 * re-executes itself as a worker (--worker), as a sender of malformed
 * messages (--evil; --evil-trainer plays a trainer sending malformed
 * messages to a real synthesizer, for tests/py/test_synth_stream.py) and checks determinism, dead and hung workers, late
 * joiners, bounded memory, CURVE and clean shutdown. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <msgpack.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/sample.h"
#include "wire/msg.h"
#include "wire/stream.h"

/* ---------------- deterministic fake samples ---------------- */

typedef struct {
    uint64_t seed;
    int delay_ms;
    size_t size;
    long fail_at;
} fake_ctx;

static int fake_make(void *vctx, uint64_t index, fs_sample *out) {
    fake_ctx *c = vctx;
    if (c->delay_ms) usleep((useconds_t)c->delay_ms * 1000);
    if (c->fail_at >= 0 && index == (uint64_t)c->fail_at) return fs_error("sample %llu is cursed", (unsigned long long)index);
    if (fs_sample_alloc(out, c->size, c->size + 3)) return FS_ERR;
    size_t n = out->h * out->w;
    for (size_t i = 0; i < n; i++) {
        uint64_t r = fs_hash64(c->seed, index, i);
        out->image[i] = (float)(r >> 40) / (float)(1 << 24);
        out->label[i] = (uint8_t)(r & 7);
    }
    fs_rng g;
    fs_rng_init(&g, c->seed, index | (UINT64_C(1) << 60));
    out->n_objects = index % 5;
    for (size_t j = 0; j < out->n_objects; j++) {
        out->objects[j].cls = (uint8_t)(1 + fs_rng_below(&g, 8));
        for (int q = 0; q < 2; q++) out->objects[j].point[q] = (float)fs_rng_range(&g, 0, 64);
        for (int q = 0; q < 4; q++) out->objects[j].box[q] = (float)fs_rng_range(&g, 0, 64);
    }
    out->index = index;
    return FS_OK;
}

static uint64_t sample_hash(const fs_sample *s) {
    uint64_t h = FS_FNV_OFFSET;
    h = fs_fnv1a(h, &s->index, sizeof s->index);
    h = fs_fnv1a(h, &s->h, sizeof s->h);
    h = fs_fnv1a(h, &s->w, sizeof s->w);
    h = fs_fnv1a(h, s->image, s->h * s->w * sizeof(float));
    h = fs_fnv1a(h, s->label, s->h * s->w);
    h = fs_fnv1a(h, &s->n_objects, sizeof s->n_objects);
    for (size_t j = 0; j < s->n_objects; j++) {
        h = fs_fnv1a(h, &s->objects[j].cls, 1);
        h = fs_fnv1a(h, s->objects[j].point, sizeof s->objects[j].point);
        h = fs_fnv1a(h, s->objects[j].box, sizeof s->objects[j].box);
    }
    return h;
}

static uint64_t expected_hash(uint64_t seed, uint64_t index, size_t size) {
    fake_ctx c = {seed, 0, size, -1};
    fs_sample s;
    memset(&s, 0, sizeof s);
    fake_make(&c, index, &s);
    uint64_t h = sample_hash(&s);
    fs_sample_free(&s);
    return h;
}

/* ---------------- processes ---------------- */

static int64_t ms_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Runs this binary again with args (NULL-terminated), stderr to log. */
static pid_t spawn(const char *log, const char *const *args) {
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)"/proc/self/exe";
    for (; args[n - 1] && n < 31; n++) argv[n] = (char *)args[n - 1];
    argv[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        if (log) {
            int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) dup2(fd, 2);
        }
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 1);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    return pid;
}

typedef struct {
    const char *endpoint;
    uint64_t seed;
    int delay_ms, capacity, batch, size, fail_at;
    const char *report, *curve, *log;
} wopt;

static pid_t spawn_worker(const wopt *o) {
    char seed[32], delay[32], cap[32], batch[32], size[32], fail[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    snprintf(delay, sizeof delay, "%d", o->delay_ms);
    snprintf(cap, sizeof cap, "%d", o->capacity ? o->capacity : 4);
    snprintf(batch, sizeof batch, "%d", o->batch ? o->batch : 1);
    snprintf(size, sizeof size, "%d", o->size ? o->size : 32);
    snprintf(fail, sizeof fail, "%d", o->fail_at ? o->fail_at : -1);
    const char *args[24] = {"--worker", o->endpoint, "--seed", seed, "--delay-ms", delay, "--capacity", cap,
                            "--batch", batch, "--size", size, "--fail-at", fail};
    int n = 14;
    if (o->report) {
        args[n++] = "--report";
        args[n++] = o->report;
    }
    if (o->curve) {
        args[n++] = "--curve-server";
        args[n++] = o->curve;
    }
    args[n] = NULL;
    return spawn(o->log, args);
}

/* Exit status of pid, or -1 after ms (then it is killed). */
static int wait_exit(pid_t pid, int ms) {
    int64_t end = ms_now() + ms;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (ms_now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(5000);
    }
}

static long rss_kb(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
    fclose(f);
    return kb;
}

/* The file's text, or "" when it cannot be read. */
static char *slurp(const char *path) {
    unsigned char *b;
    size_t n;
    return fs_read_file(path, &b, &n) ? strdup("") : (char *)b;
}

static int redirect_stderr(const char *path) {
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    return saved;
}

static void restore_stderr(int saved) {
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
}

static char tmpdir[PATH_MAX];

static const char *endpoint(const char *name) {
    static char ep[PATH_MAX + 16];
    snprintf(ep, sizeof ep, "ipc://%s/%s.ipc", tmpdir, name);
    return ep;
}

static void fast_settings(fs_stream_settings *set, size_t credit, uint64_t end) {
    fs_stream_settings_default(set);
    set->credit = credit;
    set->heartbeat_ms = 50;
    set->timeout_ms = 500;
    set->get_timeout_ms = 20000;
    set->end_index = end;
}

/* ---------------- malformed headers (shared by the unit test and --evil) ---------------- */

static msgpack_sbuffer sb;
static msgpack_packer pk;
static void B(void) {
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
}
static void S(const char *s) {
    msgpack_pack_str(&pk, strlen(s));
    msgpack_pack_str_body(&pk, s, strlen(s));
}
static void U(uint64_t v) { msgpack_pack_uint64(&pk, v); }
static void M(size_t n) { msgpack_pack_map(&pk, n); }
static void A(size_t n) { msgpack_pack_array(&pk, n); }
static void head(size_t n, uint64_t v, const char *type, uint64_t seq) {
    M(n);
    S("v");
    U(v);
    S("type");
    S(type);
    S("seq");
    U(seq);
}
static void tensor(const char *name, const char *dtype, int ndim, const uint32_t *shape, uint64_t bytes) {
    M(4);
    S("name");
    S(name);
    S("dtype");
    S(dtype);
    S("shape");
    A((size_t)ndim);
    for (int k = 0; k < ndim; k++) U(shape[k]);
    S("bytes");
    U(bytes);
}

/* One 4x4 sample with one object; variant breaks one thing. */
static void sample_header(uint64_t seq, uint64_t index, int variant) {
    B();
    head(5, 1, "sample", seq);
    S("indices");
    A(1);
    U(index);
    S("tensors");
    uint32_t hw[2] = {4, 4}, one[1] = {1}, pr[2] = {1, 6}, five[5] = {1, 1, 1, 1, 1}, big[2] = {70000, 1},
             huge[4] = {65536, 65536, 65536, 65536}, lab[2] = {4, 5};
    A(variant == 6 ? 3 : 4);
    if (variant == 1) tensor("image", "q7", 2, hw, 64);
    else if (variant == 2) tensor("image", "f32", 5, five, 4);
    else if (variant == 3) tensor("image", "f32", 2, big, 280000);
    else if (variant == 4) tensor("image", "f32", 2, hw, 65);
    else if (variant == 5) tensor("image", "f32", 4, huge, 0);
    else if (variant == 8) {
        M(1);
        S("colour");
        U(1);
    } else tensor("image", "f32", 2, hw, 64);
    if (variant == 7) tensor("label", "u8", 2, lab, 20);
    else tensor("label", "u8", 2, hw, 16);
    tensor("cls", "u8", 1, one, 1);
    if (variant != 6) tensor("prompts", "f32", 2, pr, 24);
}

typedef struct {
    const char *expect;
    int worker_too; /* also a malformed message for a worker */
} bad;

/* Builds malformed header k into sb (seq given); NULL expect past the end. */
static bad bad_header(int k, uint64_t seq) {
    B();
    switch (k) {
    case 0: msgpack_sbuffer_write(&sb, "\xc1", 1); return (bad){"not valid msgpack", 1};
    case 1: M(3); S("v"); U(1); return (bad){"more msgpack elements in", 0};
    case 2: head(3, 1, "heartbeat", seq); msgpack_sbuffer_write(&sb, "", 1); return (bad){"stray bytes", 0};
    case 3: A(2); U(1); U(2); return (bad){"not a map", 0};
    case 4: M(1); S("v"); msgpack_sbuffer_write(&sb, "\xdd\x7f\xff\xff\xff", 5); return (bad){"more msgpack elements", 0};
    case 5: head(4, 1, "heartbeat", seq); S("foo"); U(1); return (bad){"unknown key 'foo'", 0};
    case 6: M(4); S("v"); U(1); S("v"); U(1); S("type"); S("bye"); S("seq"); U(seq); return (bad){"duplicate key 'v'", 0};
    case 7: M(2); S("type"); S("bye"); S("seq"); U(seq); return (bad){"no version", 0};
    case 8: head(3, 2, "heartbeat", seq); return (bad){"unsupported version 2", 1};
    case 9: M(3); S("v"); S("1"); S("type"); S("bye"); S("seq"); U(seq); return (bad){"'v' is not an unsigned integer", 0};
    case 10: head(3, 1, "gimme", seq); return (bad){"unknown message type 'gimme'", 1};
    case 11: M(2); S("v"); U(1); S("type"); S("bye"); return (bad){"no sequence number", 0};
    case 12: M(3); S("v"); U(1); S("type"); S("bye"); S("seq"); msgpack_pack_int64(&pk, -1); return (bad){"'seq' is not an unsigned integer", 0};
    case 13: head(4, 1, "heartbeat", seq); S("capacity"); U(3); return (bad){"key 'capacity' is not allowed in a 'heartbeat' message", 1};
    case 14: head(3, 1, "hello", seq); return (bad){"'hello' message without 'capacity'", 0};
    case 15: head(4, 1, "hello", seq); S("capacity"); U(0); return (bad){"capacity 0 outside", 0};
    case 16: head(4, 1, "hello", seq); S("capacity"); U(5000); return (bad){"capacity 5000 outside", 0};
    case 17: head(4, 1, "request", seq); S("indices"); U(5); return (bad){"'indices' is not an array", 1};
    case 18: head(4, 1, "request", seq); S("indices"); A(0); return (bad){"0 indices, outside", 1};
    case 19: head(4, 1, "request", seq); S("indices"); A(1025); for (int i = 0; i < 1025; i++) U((uint64_t)i); return (bad){"1025 indices, outside", 1};
    case 20: head(4, 1, "request", seq); S("indices"); A(1); S("7"); return (bad){"'indices[]' is not an unsigned integer", 1};
    case 21: head(4, 1, "request", seq); S("indices"); A(1); U(UINT64_C(1) << 63); return (bad){"out of range", 1};
    case 22: head(4, 1, "request", seq); S("indices"); A(2); U(3); U(2); return (bad){"not strictly increasing", 1};
    case 23: { char name[301]; memset(name, 'x', 300); name[300] = 0; head(5, 1, "hello", seq); S("capacity"); U(1); S("name"); S(name); return (bad){"'name' of 300 bytes is over", 0}; }
    case 24: sample_header(seq, 0, 1); return (bad){"unknown dtype 'q7'", 0};
    case 25: sample_header(seq, 0, 2); return (bad){"rank 5 over the cap", 0};
    case 26: sample_header(seq, 0, 3); return (bad){"dimension 70000 over the cap", 0};
    case 27: sample_header(seq, 0, 4); return (bad){"make 64 bytes, the header says 65", 0};
    case 28: sample_header(seq, 0, 5); return (bad){"message cap", 0};
    case 29: sample_header(seq, 0, 6); return (bad){"3 tensors for 1 samples", 0};
    case 30: sample_header(seq, 0, 7); return (bad){"expected 'label' u8", 0};
    case 31: sample_header(seq, 0, 8); return (bad){"tensor 0: unknown key 'colour'", 0};
    case 32: {
        uint32_t one[1] = {1};
        head(5, 1, "sample", seq); S("indices"); A(1); U(0); S("tensors"); A(257);
        for (int i = 0; i < 257; i++) tensor("cls", "u8", 1, one, 1);
        return (bad){"257 tensors, over the cap", 0};
    }
    case 33: { char *big = malloc(70001); memset(big, 'y', 70000); big[70000] = 0; head(4, 1, "error", seq); S("reason"); S(big); free(big); return (bad){"header of 700", 1}; }
    case 34: return (bad){"empty header frame", 1};
    default: return (bad){NULL, 0};
    }
}

/* ---------------- child modes ---------------- */

static int worker_main(int argc, char **argv) {
    fs_log_init("wire-worker");
    fake_ctx c = {1, 0, 32, -1};
    fs_worker_settings set;
    fs_worker_settings_default(&set);
    set.heartbeat_ms = 50;
    set.timeout_ms = 500;
    set.give_up_ms = 20000;
    const char *report = NULL, *ep = argv[2];
    for (int i = 3; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--seed")) c.seed = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--delay-ms")) c.delay_ms = atoi(v);
        else if (!strcmp(k, "--capacity")) set.capacity = (size_t)atoi(v);
        else if (!strcmp(k, "--batch")) set.batch = (size_t)atoi(v);
        else if (!strcmp(k, "--size")) c.size = (size_t)atoi(v);
        else if (!strcmp(k, "--fail-at")) c.fail_at = atol(v);
        else if (!strcmp(k, "--report")) report = v;
        else if (!strcmp(k, "--curve-server")) set.curve_server_key = v;
    }
    fs_worker_stats st;
    int rc = fs_worker_run(ep, fake_make, &c, &set, &st);
    if (rc) fs_warn("worker: %s", fs_error_msg());
    if (report) {
        FILE *f = fopen(report, "w");
        if (f) {
            fprintf(f, "%llu %llu %llu\n", (unsigned long long)st.samples, (unsigned long long)st.rejected,
                    (unsigned long long)st.resets);
            fclose(f);
        }
    }
    return rc ? 1 : 0;
}

static void *evil_ctx, *evil_sock;
static uint64_t evil_seq = 100;

static void evil_send(const void *hdr, size_t len, int nframes, const size_t *sizes) {
    zmq_send(evil_sock, hdr, len, nframes ? ZMQ_SNDMORE : 0);
    for (int i = 0; i < nframes; i++) {
        char *z = calloc(1, sizes[i] ? sizes[i] : 1);
        zmq_send(evil_sock, z, sizes[i], i + 1 < nframes ? ZMQ_SNDMORE : 0);
        free(z);
    }
}

/* A sample for index with its object's class and first prompt value set. */
static void evil_sample(uint64_t index, uint8_t cls, float prompt0) {
    sample_header(++evil_seq, index, 0);
    zmq_send(evil_sock, sb.data, sb.size, ZMQ_SNDMORE);
    float img[16] = {0}, pr[6] = {prompt0, 0, 0, 0, 1, 1};
    uint8_t lab[16] = {0};
    zmq_send(evil_sock, img, sizeof img, ZMQ_SNDMORE);
    zmq_send(evil_sock, lab, sizeof lab, ZMQ_SNDMORE);
    zmq_send(evil_sock, &cls, 1, ZMQ_SNDMORE);
    zmq_send(evil_sock, pr, sizeof pr, 0);
}

/* Waits for a request from the trainer; its first index, or -1. */
static long evil_wait_request(void) {
    fs_wire_in *in = fs_wire_in_new();
    long got = -1;
    int64_t end = ms_now() + 3000;
    while (got < 0 && ms_now() < end) {
        zmq_pollitem_t it = {evil_sock, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 50);
        int fatal;
        while (fs_wire_recv(evil_sock, 0, 1 << 20, in, &fatal) == FS_OK)
            if (in->msg.type == FS_MSG_REQUEST) got = (long)in->msg.indices[0];
    }
    fs_wire_in_free(in);
    return got;
}

/* Sends every kind of malformed message to the trainer at argv[2] and
 * writes the reasons the trainer must log to argv[3], one a line. */
static int evil_main(int argc, char **argv) {
    if (argc < 4) return 2;
    FILE *out = fopen(argv[3], "w");
    evil_ctx = zmq_ctx_new();
    evil_sock = zmq_socket(evil_ctx, ZMQ_DEALER);
    int linger = 2000;
    zmq_setsockopt(evil_sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(evil_sock, argv[2]);
    msgpack_sbuffer_init(&sb);
    B();
    head(4, 1, "hello", ++evil_seq);
    S("capacity");
    U(1);
    evil_send(sb.data, sb.size, 0, NULL);
    for (int k = 0;; k++) {
        bad b = bad_header(k, ++evil_seq);
        if (!b.expect) break;
        evil_send(sb.data, sb.size, 0, NULL);
        fprintf(out, "%s\n", b.expect);
    }
    size_t ok[4] = {64, 16, 1, 24};
    sample_header(++evil_seq, 0, 0);
    evil_send(sb.data, sb.size, 3, ok);
    fprintf(out, "truncated message: the header announces 4 tensor frames, 3 arrived\n");
    size_t extra[5] = {64, 16, 1, 24, 8};
    sample_header(++evil_seq, 0, 0);
    evil_send(sb.data, sb.size, 5, extra);
    fprintf(out, "1 extra frames after the 4 announced\n");
    size_t wrong[4] = {60, 16, 1, 24};
    sample_header(++evil_seq, 0, 0);
    evil_send(sb.data, sb.size, 4, wrong);
    fprintf(out, "frame of 60 bytes, the header says 64\n");
    size_t fat[4] = {600000, 600000, 1, 24};
    sample_header(++evil_seq, 0, 0);
    evil_send(sb.data, sb.size, 4, fat);
    fprintf(out, "over the 1048576-byte cap\n");
    B();
    head(3, 1, "heartbeat", 50);
    evil_send(sb.data, sb.size, 0, NULL);
    fprintf(out, "seq 50 not after\n");
    B();
    head(4, 1, "request", ++evil_seq);
    S("indices");
    A(1);
    U(3);
    evil_send(sb.data, sb.size, 0, NULL);
    fprintf(out, "unexpected 'request' from a worker\n");
    evil_sample(999999, 1, 0.f);
    fprintf(out, "sample 999999 was not requested of it\n");
    long idx = evil_wait_request();
    if (idx >= 0) {
        evil_sample((uint64_t)idx, 0, 0.f);
        fprintf(out, "has class 0\n");
        idx = evil_wait_request();
        if (idx >= 0) {
            evil_sample((uint64_t)idx, 1, NAN);
            fprintf(out, "non-finite prompt\n");
        }
    }
    B();
    head(3, 1, "bye", ++evil_seq);
    evil_send(sb.data, sb.size, 0, NULL);
    /* last: a frame over the trainer's ZMQ_MAXMSGSIZE (libzmq drops the
     * connection before allocating it; nothing to log, it must survive) */
    size_t huge[1] = {2 << 20};
    evil_send(sb.data, sb.size, 1, huge);
    fclose(out);
    zmq_close(evil_sock);
    zmq_ctx_term(evil_ctx);
    return 0;
}

/* ---------------- format tests ---------------- */

static void format_roundtrip(void) {
    static fs_msg m, d;
    for (int t = 0; t < FS_MSG_NTYPES; t++) {
        memset(&m, 0, sizeof m);
        m.type = (fs_msg_type)t;
        m.seq = 1234567890123ULL + (uint64_t)t;
        if (t == FS_MSG_HELLO) {
            m.capacity = 17;
            strcpy(m.text, "pid 42");
        }
        if (t == FS_MSG_REQUEST || t == FS_MSG_SAMPLE || t == FS_MSG_ERROR) {
            m.n_indices = t == FS_MSG_SAMPLE ? 2 : 3;
            for (size_t i = 0; i < m.n_indices; i++) m.indices[i] = 10 + 7 * i;
        }
        if (t == FS_MSG_ERROR) {
            strcpy(m.text, "cannot make it");
            m.has_ref = 1;
            m.ref = 99;
        }
        if (t == FS_MSG_SAMPLE) {
            fs_sample s = {.h = 5, .w = 7, .n_objects = 2};
            m.n_tensors = 8;
            fs_wire_sample_tensors(&s, m.tensors);
            fs_wire_sample_tensors(&s, m.tensors + 4);
        }
        char *buf;
        size_t len;
        CHECK(fs_msg_encode(&m, &buf, &len) == FS_OK);
        int rc = fs_msg_decode(buf, len, 1 << 20, &d);
        free(buf);
        CHECKF(rc == FS_OK, "%s: %s", fs_msg_type_name(m.type), fs_error_msg());
        CHECK(d.type == m.type && d.seq == m.seq && d.capacity == m.capacity && !strcmp(d.text, m.text));
        CHECK(d.n_indices == m.n_indices && !memcmp(d.indices, m.indices, m.n_indices * 8));
        CHECK(d.has_ref == m.has_ref && d.ref == m.ref && d.n_tensors == m.n_tensors);
        for (size_t i = 0; i < m.n_tensors; i++) {
            CHECK(!strcmp(d.tensors[i].name, m.tensors[i].name) && d.tensors[i].dtype == m.tensors[i].dtype);
            CHECK(d.tensors[i].ndim == m.tensors[i].ndim && d.tensors[i].nbytes == m.tensors[i].nbytes);
            CHECK(!memcmp(d.tensors[i].shape, m.tensors[i].shape, sizeof m.tensors[i].shape));
        }
    }
}

static void format_rejects_each_kind(void) {
    static fs_msg d;
    int n = 0;
    for (int k = 0;; k++) {
        bad b = bad_header(k, 5);
        if (!b.expect) break;
        int rc = fs_msg_decode(sb.data ? sb.data : "", sb.size, 1 << 20, &d);
        CHECKF(rc == FS_ERR, "case %d (%s) accepted", k, b.expect);
        CHECKF(strstr(fs_error_msg(), b.expect) != NULL, "case %d: '%s' lacks '%s'", k, fs_error_msg(), b.expect);
        n++;
    }
    CHECK(n == 35);
    sample_header(5, 3, 0); /* the valid baseline of the sample variants */
    CHECKF(fs_msg_decode(sb.data, sb.size, 1 << 20, &d) == FS_OK, "%s", fs_error_msg());
    /* every truncation of a valid header is rejected, never read past */
    for (size_t cut = 0; cut < sb.size; cut++) CHECK(fs_msg_decode(sb.data, cut, 1 << 20, &d) == FS_ERR);
    /* and random bit flips never crash (some are still valid) */
    char *copy = malloc(sb.size);
    fs_rng g;
    fs_rng_init(&g, 7, 0);
    for (int i = 0; i < 20000; i++) {
        memcpy(copy, sb.data, sb.size);
        for (int f = 0; f < 3; f++) copy[fs_rng_below(&g, sb.size)] ^= (char)(1 << fs_rng_below(&g, 8));
        fs_msg_decode(copy, sb.size, 1 << 20, &d);
    }
    free(copy);
}

static void key_loading(void) {
    char pub[41], sec[41], key[41], path[PATH_MAX + 32];
    if (!zmq_has("curve")) SKIP("libzmq without CURVE");
    CHECK(zmq_curve_keypair(pub, sec) == 0);
    CHECK(fs_wire_key_load(pub, key) == FS_OK && !strcmp(key, pub));
    snprintf(path, sizeof path, "%s/key.txt", tmpdir);
    FILE *f = fopen(path, "w");
    fprintf(f, "%s\n", sec);
    fclose(f);
    CHECK(fs_wire_key_load(path, key) == FS_OK && !strcmp(key, sec));
    f = fopen(path, "w");
    fprintf(f, "short\n");
    fclose(f);
    CHECK(fs_wire_key_load(path, key) == FS_ERR && strstr(fs_error_msg(), "not a CURVE key"));
}

/* ---------------- protocol tests (real processes) ---------------- */

/* Reads indices [0, n) from a stream into hashes. */
static int consume(fs_stream *s, uint64_t n, uint64_t *hashes, void (*each)(uint64_t i, void *arg), void *arg) {
    for (uint64_t i = 0; i < n; i++) {
        fs_sample x;
        if (fs_stream_get(s, i, &x)) return FS_ERR;
        hashes[i] = sample_hash(&x);
        fs_sample_free(&x);
        if (each) each(i, arg);
    }
    return FS_OK;
}

static int run_workers(const char *ep, int nworkers, uint64_t n, uint64_t *hashes, int delay_ms) {
    fs_stream_settings set;
    fast_settings(&set, 8, n);
    fs_stream *s;
    if (fs_stream_open(&s, ep, &set)) return FS_ERR;
    pid_t pids[8];
    for (int k = 0; k < nworkers; k++) {
        wopt o = {.endpoint = ep, .seed = 11, .delay_ms = delay_ms, .batch = (size_t)(1 + k % 2)};
        pids[k] = spawn_worker(&o);
    }
    int rc = consume(s, n, hashes, NULL, NULL);
    fs_stream_stats st;
    fs_stream_get_stats(s, &st);
    fs_stream_close(s);
    for (int k = 0; k < nworkers; k++)
        if (wait_exit(pids[k], 5000) != 0) rc = fs_error("worker %d did not exit cleanly after bye", k);
    if (!rc && st.max_held > 8) rc = fs_error("held %zu samples with a credit of 8", st.max_held);
    return rc;
}

static void stream_1_and_3_workers_identical(void) {
    enum { N = 120 };
    uint64_t *h1 = calloc(N, 8), *h3 = calloc(N, 8);
    CHECKF(run_workers(endpoint("a1"), 1, N, h1, 0) == FS_OK, "%s", fs_error_msg());
    CHECKF(run_workers(endpoint("a3"), 3, N, h3, 1) == FS_OK, "%s", fs_error_msg());
    for (uint64_t i = 0; i < N; i++) {
        CHECKF(h1[i] == h3[i], "sample %llu differs between 1 and 3 workers", (unsigned long long)i);
        CHECKF(h1[i] == expected_hash(11, i, 32), "sample %llu differs from the local one", (unsigned long long)i);
    }
    free(h1);
    free(h3);
}

typedef struct {
    pid_t *pids;
    uint64_t at, resume_at;
    int sig;
} chaos;

static void chaos_step(uint64_t i, void *arg) {
    chaos *c = arg;
    if (i == c->at) kill(c->pids[0], c->sig);
    if (c->resume_at && i == c->resume_at) kill(c->pids[0], SIGCONT);
}

/* 240 samples from 3 workers while worker 0 gets sig at sample 40 (and
 * SIGCONT at resume_at when non-zero); FS_ERR names what went wrong. */
static int chaos_run(int sig, uint64_t resume_at, fs_stream_stats *st) {
    enum { N = 240 };
    const char *ep = endpoint(sig == SIGKILL ? "kill" : "stop");
    fs_stream_settings set;
    fast_settings(&set, 12, N);
    fs_stream *s;
    if (fs_stream_open(&s, ep, &set)) return FS_ERR;
    pid_t pids[3];
    for (int k = 0; k < 3; k++) {
        wopt o = {.endpoint = ep, .seed = 5, .delay_ms = 2, .capacity = 4};
        pids[k] = spawn_worker(&o);
    }
    chaos c = {pids, 40, resume_at, sig};
    uint64_t *h = calloc(N, 8);
    int rc = consume(s, N, h, chaos_step, &c);
    fs_stream_get_stats(s, st);
    fs_stream_close(s);
    for (int k = 0; k < 3; k++) wait_exit(pids[k], k == 0 ? 3000 : 5000);
    for (uint64_t i = 0; i < N && !rc; i++)
        if (h[i] != expected_hash(5, i, 32)) rc = fs_error("sample %llu differs", (unsigned long long)i);
    free(h);
    return rc;
}

static void stream_survives_sigkill(void) {
    fs_stream_stats st;
    CHECKF(chaos_run(SIGKILL, 0, &st) == FS_OK, "%s", fs_error_msg());
    CHECKF(st.peers_dropped >= 1 && st.peers_joined >= 3, "dropped %llu joined %llu",
           (unsigned long long)st.peers_dropped, (unsigned long long)st.peers_joined);
    CHECK(st.max_held <= 12);
}

static void stream_drops_hung_worker(void) {
    /* SIGSTOP at sample 40: dropped after the timeout, its indices asked of
     * the others; SIGCONT at 200: it learns it was dropped and joins again */
    fs_stream_stats st;
    CHECKF(chaos_run(SIGSTOP, 200, &st) == FS_OK, "%s", fs_error_msg());
    CHECKF(st.peers_dropped >= 1 && st.rerequested >= 1, "dropped %llu rerequested %llu",
           (unsigned long long)st.peers_dropped, (unsigned long long)st.rerequested);
    CHECK(st.max_held <= 12);
}

static void stream_uses_late_joiner(void) {
    enum { N = 150 };
    const char *ep = endpoint("late");
    char report[PATH_MAX + 32];
    snprintf(report, sizeof report, "%s/late.report", tmpdir);
    unlink(report);
    fs_stream_settings set;
    fast_settings(&set, 8, N);
    fs_stream *s;
    CHECK(fs_stream_open(&s, ep, &set) == FS_OK);
    wopt o1 = {.endpoint = ep, .seed = 3, .delay_ms = 10};
    pid_t p1 = spawn_worker(&o1), p2 = -1;
    uint64_t *h = calloc(N, 8);
    int rc = FS_OK;
    for (uint64_t i = 0; i < N && !rc; i++) {
        if (i == 20) {
            wopt o2 = {.endpoint = ep, .seed = 3, .delay_ms = 0, .report = report};
            p2 = spawn_worker(&o2);
        }
        fs_sample x;
        rc = fs_stream_get(s, i, &x);
        if (!rc) {
            h[i] = sample_hash(&x);
            fs_sample_free(&x);
        }
    }
    fs_stream_stats st;
    fs_stream_get_stats(s, &st);
    fs_stream_close(s);
    CHECK(wait_exit(p1, 5000) == 0);
    CHECK(wait_exit(p2, 5000) == 0);
    CHECKF(rc == FS_OK, "%s", fs_error_msg());
    for (uint64_t i = 0; i < N; i++) CHECK(h[i] == expected_hash(3, i, 32));
    free(h);
    char *r = slurp(report);
    unsigned long long made = strtoull(r, NULL, 10);
    free(r);
    CHECKF(made > 20, "the late worker made %llu samples", made);
    CHECK(st.peers_joined >= 2);
}

static void stream_memory_bounded(void) {
    /* fast workers, a consumer sleeping 4 ms per sample: without credit the
     * workers would run ~100x ahead (a 256x259 sample is 331 KB) */
    enum { N = 500, WARM = 100 };
    const char *ep = endpoint("mem");
    fs_stream_settings set;
    fast_settings(&set, 8, N);
    fs_stream *s;
    CHECK(fs_stream_open(&s, ep, &set) == FS_OK);
    pid_t pids[2];
    for (int k = 0; k < 2; k++) {
        wopt o = {.endpoint = ep, .seed = 9, .delay_ms = 0, .size = 256, .capacity = 8, .batch = 2};
        pids[k] = spawn_worker(&o);
    }
    long base[3] = {0}, peak[3] = {0};
    pid_t who[3] = {getpid(), pids[0], pids[1]};
    int rc = FS_OK;
    for (uint64_t i = 0; i < N && !rc; i++) {
        fs_sample x;
        rc = fs_stream_get(s, i, &x);
        if (!rc && sample_hash(&x) != expected_hash(9, i, 256)) rc = fs_error("sample %llu differs", (unsigned long long)i);
        fs_sample_free(&x);
        usleep(4000);
        for (int k = 0; k < 3; k++) {
            long r = rss_kb(who[k]);
            if (i == WARM) base[k] = r;
            if (i > WARM && r > peak[k]) peak[k] = r;
        }
    }
    fs_stream_stats st;
    fs_stream_get_stats(s, &st);
    fs_stream_close(s);
    for (int k = 0; k < 2; k++) CHECK(wait_exit(pids[k], 5000) == 0);
    CHECKF(rc == FS_OK, "%s", fs_error_msg());
    fprintf(stderr, "memory: RSS kB at sample %d -> peak after: trainer %ld -> %ld, workers %ld -> %ld, %ld -> %ld; "
            "max held %zu (credit 8)\n", WARM, base[0], peak[0], base[1], peak[1], base[2], peak[2], st.max_held);
#ifndef __SANITIZE_ADDRESS__ /* ASan's quarantine holds freed memory: RSS grows by design */
    for (int k = 0; k < 3; k++)
        CHECKF(base[k] > 0 && peak[k] - base[k] < 4096, "process %d grew from %ld to %ld kB", k, base[k], peak[k]);
#endif
    CHECK(st.max_held <= 8);
}

static int log_has_all(const char *logtext, const char *expect_path, char *missing, size_t cap) {
    FILE *f = fopen(expect_path, "r");
    if (!f) return 0;
    char line[512];
    int all = 1, n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0]) continue;
        n++;
        if (!strstr(logtext, line)) {
            all = 0;
            snprintf(missing, cap, "%s", line);
        }
    }
    fclose(f);
    return all && n > 0;
}

static void trainer_rejects_malformed(void) {
    const char *ep = endpoint("evil");
    char log[PATH_MAX + 32], expect[PATH_MAX + 32];
    snprintf(log, sizeof log, "%s/trainer.log", tmpdir);
    snprintf(expect, sizeof expect, "%s/evil.expect", tmpdir);
    fs_stream_settings set;
    fast_settings(&set, 4, 30);
    set.timeout_ms = 2000;
    set.max_message_bytes = 1 << 20;
    fs_stream *s;
    CHECK(fs_stream_open(&s, ep, &set) == FS_OK);
    int saved = redirect_stderr(log);
    const char *args[] = {"--evil", ep, expect, NULL};
    pid_t evil = spawn(NULL, args);
    int evil_rc = wait_exit(evil, 15000);
    usleep(300000);
    fs_stream_stats mid;
    fs_stream_get_stats(s, &mid);
    /* after all that, a normal worker still serves a normal run */
    wopt o = {.endpoint = ep, .seed = 21};
    pid_t w = spawn_worker(&o);
    uint64_t h[30];
    int rc = consume(s, 30, h, NULL, NULL);
    fs_stream_close(s);
    restore_stderr(saved);
    CHECK(evil_rc == 0);
    CHECK(wait_exit(w, 5000) == 0);
    CHECKF(rc == FS_OK, "%s", fs_error_msg());
    for (int i = 0; i < 30; i++) CHECK(h[i] == expected_hash(21, (uint64_t)i, 32));
    char *text = slurp(log), missing[512] = "";
    int all = log_has_all(text, expect, missing, sizeof missing);
    free(text);
    CHECKF(all, "the trainer's log lacks '%s'", missing);
    CHECKF(mid.rejected >= 35 + 9, "%llu rejected", (unsigned long long)mid.rejected);
}

/* A fake trainer on the bound ROUTER r: waits for a worker's hello, sends it
 * every malformed message a worker must reject (the reasons its log must
 * show go to expects, *ne of them), then a proper request for index 7, whose
 * answer lands in *served (left zeroed when none came), and bye. FS_ERR when
 * no hello came. Shared by worker_rejects_malformed and --evil-trainer. */
static char expect_room[128];
static int evil_trainer_session(void *r, const char **expects, int *ne, fs_sample *served) {
    memset(served, 0, sizeof *served);
    *ne = 0;
    fs_wire_in *in = fs_wire_in_new();
    int64_t end = ms_now() + 10000;
    int got = 0, fatal;
    while (!got && ms_now() < end) {
        zmq_pollitem_t it = {r, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 50);
        if (fs_wire_recv(r, 1, 1 << 20, in, &fatal) == FS_OK && in->msg.type == FS_MSG_HELLO) got = 1;
    }
    if (!got) {
        fs_wire_in_free(in);
        return fs_error("no hello from the worker");
    }
    uint8_t id[256];
    size_t idl = in->peer_len, cap = in->msg.capacity;
    uint64_t hello_seq = in->msg.seq;
    memcpy(id, in->peer, idl);
    static const char filler[128] = {0};
    uint64_t seq = 1000;
    msgpack_sbuffer_init(&sb);
#define TO_WORKER(nframes, ...)                                               \
    do {                                                                      \
        zmq_send(r, id, idl, ZMQ_SNDMORE);                                    \
        zmq_send(r, sb.data ? sb.data : "", sb.size, (nframes) ? ZMQ_SNDMORE : 0); \
        size_t fs_[] = {0, __VA_ARGS__};                                      \
        for (int q = 0; q < (nframes); q++)                                   \
            zmq_send(r, filler, fs_[q + 1], q + 1 < (nframes) ? ZMQ_SNDMORE : 0); \
    } while (0)
    B();
    head(4, 1, "heartbeat", ++seq); /* the acknowledgement of its hello */
    S("ref");
    U(hello_seq);
    TO_WORKER(0, 0);
    for (int k = 0;; k++) {
        bad b = bad_header(k, ++seq);
        if (!b.expect) break;
        if (!b.worker_too) continue;
        TO_WORKER(0, 0);
        expects[(*ne)++] = b.expect;
    }
    if (cap < 1024) { /* one more than its room */
        B();
        head(4, 1, "request", ++seq);
        S("indices");
        A(cap + 1);
        for (size_t i = 0; i <= cap; i++) U((uint64_t)i);
        TO_WORKER(0, 0);
        snprintf(expect_room, sizeof expect_room, "request for %zu samples with room for %zu", cap + 1, cap);
        expects[(*ne)++] = expect_room;
    }
    B();
    head(4, 1, "request", ++seq);
    S("indices");
    A(1);
    U(1);
    TO_WORKER(1, 8);
    expects[(*ne)++] = "1 extra frames after the 0 announced";
    sample_header(++seq, 1, 0);
    TO_WORKER(4, 64, 16, 1, 24);
    expects[(*ne)++] = "unexpected 'sample'";
    B();
    head(3, 1, "heartbeat", 5);
    TO_WORKER(0, 0);
    expects[(*ne)++] = "seq 5 not after";
    /* and a proper request is still served */
    B();
    head(4, 1, "request", ++seq);
    S("indices");
    A(1);
    U(7);
    TO_WORKER(0, 0);
    end = ms_now() + 5000;
    while (!served->image && ms_now() < end) {
        zmq_pollitem_t it = {r, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 50);
        if (fs_wire_recv(r, 1, 64 << 20, in, &fatal) == FS_OK && in->msg.type == FS_MSG_SAMPLE)
            if (fs_wire_unpack_samples(in, served) != FS_OK) memset(served, 0, sizeof *served);
    }
    B();
    head(3, 1, "bye", ++seq);
    TO_WORKER(0, 0);
#undef TO_WORKER
    fs_wire_in_free(in);
    return FS_OK;
}

/* --evil-trainer ENDPOINT EXPECT SAMPLE: binds ENDPOINT, plays the session
 * above with the first worker that says hello (a real synthesizer), writes
 * the reasons its log must show to EXPECT, one a line, and its answer for
 * sample 7 to SAMPLE (h, w as two u32, the image as f32, the label as u8). */
static int evil_trainer_main(int argc, char **argv) {
    if (argc < 5) return 2;
    fs_log_init("evil-trainer");
    void *ctx = zmq_ctx_new(), *r = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 3000;
    zmq_setsockopt(r, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(r, argv[2]) != 0) {
        fprintf(stderr, "evil-trainer: cannot bind %s: %s\n", argv[2], zmq_strerror(errno));
        return 1;
    }
    const char *expects[64];
    int ne = 0;
    fs_sample x;
    int rc = evil_trainer_session(r, expects, &ne, &x);
    /* stay a moment, so that the bye reaches the worker before the socket goes */
    for (int64_t end = ms_now() + 1000; ms_now() < end;) {
        zmq_pollitem_t it = {r, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 50);
        zmq_msg_t m;
        zmq_msg_init(&m);
        while (zmq_msg_recv(&m, r, ZMQ_DONTWAIT) >= 0) continue;
        zmq_msg_close(&m);
    }
    zmq_close(r);
    zmq_ctx_term(ctx);
    if (rc) {
        fprintf(stderr, "evil-trainer: %s\n", fs_error_msg());
        return 1;
    }
    FILE *f = fopen(argv[3], "w");
    for (int k = 0; f && k < ne; k++) fprintf(f, "%s\n", expects[k]);
    if (f) fclose(f);
    f = fopen(argv[4], "wb");
    if (f && x.image) {
        uint32_t hw[2] = {(uint32_t)x.h, (uint32_t)x.w};
        fwrite(hw, sizeof hw, 1, f);
        fwrite(x.image, sizeof *x.image, x.h * x.w, f);
        fwrite(x.label, 1, x.h * x.w, f);
    }
    if (f) fclose(f);
    int served = x.image != NULL;
    fs_sample_free(&x);
    msgpack_sbuffer_destroy(&sb);
    return served ? 0 : 1;
}

static void worker_rejects_malformed(void) {
    const char *ep = endpoint("wk");
    char log[PATH_MAX + 32], report[PATH_MAX + 32];
    snprintf(log, sizeof log, "%s/worker.log", tmpdir);
    snprintf(report, sizeof report, "%s/worker.report", tmpdir);
    unlink(log);
    void *ctx = zmq_ctx_new(), *r = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 500;
    zmq_setsockopt(r, ZMQ_LINGER, &linger, sizeof linger);
    CHECK(zmq_bind(r, ep) == 0);
    wopt o = {.endpoint = ep, .seed = 4, .capacity = 4, .report = report, .log = log};
    pid_t w = spawn_worker(&o);
    const char *expects[64];
    int ne = 0;
    fs_sample x;
    int got = evil_trainer_session(r, expects, &ne, &x) == FS_OK;
    uint64_t h = x.image ? sample_hash(&x) : 0;
    fs_sample_free(&x);
    int wrc = wait_exit(w, 5000);
    zmq_close(r);
    zmq_ctx_term(ctx);
    CHECK(got);
    CHECK(wrc == 0);
    CHECKF(ne == 16, "%d malformed messages sent", ne);
    CHECKF(h == expected_hash(4, 7, 32), "the proper request was not served right");
    char *text = slurp(log);
    for (int k = 0; k < ne; k++) CHECKF(strstr(text, expects[k]) != NULL, "the worker's log lacks '%s'", expects[k]);
    free(text);
    text = slurp(report);
    unsigned long long made = 0, rejected = 0;
    sscanf(text, "%llu %llu", &made, &rejected);
    free(text);
    CHECKF(rejected == (unsigned long long)ne, "worker rejected %llu of %d", rejected, ne);
}

static void worker_error_reaches_get(void) {
    const char *ep = endpoint("fail");
    fs_stream_settings set;
    fast_settings(&set, 4, 20);
    fs_stream *s;
    CHECK(fs_stream_open(&s, ep, &set) == FS_OK);
    char log[PATH_MAX + 32];
    snprintf(log, sizeof log, "%s/fail.log", tmpdir);
    int saved = redirect_stderr(log);
    wopt o = {.endpoint = ep, .seed = 2, .fail_at = 5, .log = log};
    pid_t w = spawn_worker(&o);
    int rc = FS_OK;
    uint64_t i;
    for (i = 0; i < 20 && !rc; i++) {
        fs_sample x;
        rc = fs_stream_get(s, i, &x);
        if (!rc) fs_sample_free(&x);
    }
    char msg[512];
    snprintf(msg, sizeof msg, "%s", fs_error_msg());
    fs_stream_close(s);
    restore_stderr(saved);
    CHECK(rc == FS_ERR && i == 6);
    CHECKF(strstr(msg, "cannot make sample 5: sample 5 is cursed") != NULL, "%s", msg);
    CHECK(wait_exit(w, 5000) == 1);
}

static void worker_sigterm_says_bye(void) {
    const char *ep = endpoint("term");
    fs_stream_settings set;
    fast_settings(&set, 4, 1000);
    set.timeout_ms = 10000; /* only the bye can drop it this fast */
    set.get_timeout_ms = 3000;
    fs_stream *s;
    CHECK(fs_stream_open(&s, ep, &set) == FS_OK);
    wopt o = {.endpoint = ep, .seed = 2, .delay_ms = 5};
    pid_t w = spawn_worker(&o);
    fs_sample x;
    int rc = fs_stream_get(s, 0, &x);
    if (!rc) fs_sample_free(&x);
    kill(w, SIGTERM);
    int wrc = wait_exit(w, 3000);
    fs_stream_stats st = {0};
    for (int k = 0; k < 100 && st.peers_dropped == 0; k++) {
        usleep(10000);
        fs_stream_get_stats(s, &st);
    }
    fs_stream_close(s);
    CHECK(rc == FS_OK);
    CHECK(wrc == 0);
    CHECK(st.peers_dropped == 1 && st.peers == 0);
}

static void stream_curve(void) {
    if (!zmq_has("curve")) SKIP("libzmq without CURVE");
    char pub[41], sec[41];
    CHECK(zmq_curve_keypair(pub, sec) == 0);
    const char *ep = endpoint("curve");
    fs_stream_settings set;
    fast_settings(&set, 4, 10);
    set.curve_secret_key = sec;
    fs_stream *s;
    CHECK(fs_stream_open(&s, ep, &set) == FS_OK);
    /* a plaintext worker cannot even say hello to a CURVE trainer */
    char log[PATH_MAX + 32];
    snprintf(log, sizeof log, "%s/plain.log", tmpdir);
    wopt plain = {.endpoint = ep, .seed = 8, .log = log};
    pid_t p = spawn_worker(&plain);
    usleep(400000);
    fs_stream_stats st;
    fs_stream_get_stats(s, &st);
    CHECK(st.peers_joined == 0);
    kill(p, SIGKILL);
    wait_exit(p, 2000);
    wopt o = {.endpoint = ep, .seed = 8, .curve = pub};
    pid_t w = spawn_worker(&o);
    uint64_t h[10];
    int rc = consume(s, 10, h, NULL, NULL);
    fs_stream_close(s);
    CHECK(wait_exit(w, 5000) == 0);
    CHECKF(rc == FS_OK, "%s", fs_error_msg());
    for (int i = 0; i < 10; i++) CHECK(h[i] == expected_hash(8, (uint64_t)i, 32));
}

static void get_skips_and_refuses_the_past(void) {
    const char *ep = endpoint("skip");
    fs_stream_settings set;
    fast_settings(&set, 4, 40);
    set.first_index = 10;
    fs_stream *s;
    CHECK(fs_stream_open(&s, ep, &set) == FS_OK);
    wopt o = {.endpoint = ep, .seed = 6};
    pid_t w = spawn_worker(&o);
    fs_sample x;
    int rc1 = fs_stream_get(s, 10, &x);
    uint64_t h1 = rc1 ? 0 : sample_hash(&x);
    if (!rc1) fs_sample_free(&x);
    int rc2 = fs_stream_get(s, 25, &x); /* skips 11 .. 24 */
    uint64_t h2 = rc2 ? 0 : sample_hash(&x);
    if (!rc2) fs_sample_free(&x);
    int rc3 = fs_stream_get(s, 20, &x);
    int rc4 = fs_stream_get(s, 40, &x);
    fs_stream_close(s);
    CHECK(wait_exit(w, 5000) == 0);
    CHECK(rc1 == FS_OK && h1 == expected_hash(6, 10, 32));
    CHECK(rc2 == FS_OK && h2 == expected_hash(6, 25, 32));
    CHECK(rc3 == FS_ERR && rc4 == FS_ERR);
}

int main(int argc, char **argv) {
    if (argc > 2 && !strcmp(argv[1], "--worker")) return worker_main(argc, argv);
    if (argc > 2 && !strcmp(argv[1], "--evil")) return evil_main(argc, argv);
    if (argc > 2 && !strcmp(argv[1], "--evil-trainer")) return evil_trainer_main(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    const char *d = test_tmp_dir("wire");
    if (!realpath(d, tmpdir)) snprintf(tmpdir, sizeof tmpdir, "%s", d);
    fs_log_init("test_wire");
    RUN(format_roundtrip);
    RUN(format_rejects_each_kind);
    RUN(key_loading);
    RUN(stream_1_and_3_workers_identical);
    RUN(stream_survives_sigkill);
    RUN(stream_drops_hung_worker);
    RUN(stream_uses_late_joiner);
    RUN(stream_memory_bounded);
    RUN(trainer_rejects_malformed);
    RUN(worker_rejects_malformed);
    RUN(worker_error_reaches_get);
    RUN(worker_sigterm_says_bye);
    RUN(stream_curve);
    RUN(get_skips_and_refuses_the_past);
    msgpack_sbuffer_destroy(&sb);
    TEST_EXIT();
}
