/* synthesizer: exemplars -> synthetic labelled samples (data/synth.h).
 * Offline mode writes samples first..first+count-1 as a fewsam.slices shard
 * with their prompts; --preview draws some as a PNG grid; --connect streams
 * them to a trainer over ZeroMQ (wire/stream.h), answering the indices it
 * asks for. Every sample is a pure function of (seed, index), so shards
 * written by different processes over overlapping index ranges agree byte
 * for byte, and a trainer's result does not depend on how many
 * synthesizers answer it. */
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli.h"
#include "core/error.h"
#include "core/log.h"
#include "data/synth.h"
#include "data/synth_opts.h"
#include "preview.h"
#include "wire/msg.h"
#include "wire/stream.h"

static const char usage_head[] =
    "usage: synthesizer --exemplars FILE.h5 --out FILE.h5 --count N [options]\n"
    "       synthesizer --exemplars FILE.h5 --preview N --preview-out FILE.png [options]\n"
    "       synthesizer --exemplars FILE.h5 --connect ENDPOINT [options]\n"
    "\n"
    "Exemplar-guided synthesis (after ELSNet): objects cut from the exemplars,\n"
    "transformed and pasted on a transformed background slice; prompts drawn\n"
    "from the final label map. Sample i depends only on (seed, i) and the\n"
    "settings.\n"
    "\n"
    "  --exemplars FILE.h5  exemplar shard (fewsam.slices) with labelled objects\n"
    "  --out FILE.h5        write samples I..I+N-1 as a fewsam.slices shard with\n"
    "                       prompt datasets (schemas/slices.md)\n"
    "  --count N            number of samples\n"
    "  --first-index I      first sample index (0)\n"
    "  --seed N             random seed (0; a trainer's --seed)\n"
    "  --threads N          worker threads (default: OpenMP's; --connect: 1)\n"
    "  --preview N          also draw samples I..I+N-1 as a PNG grid\n"
    "  --preview-out FILE   the preview (default with --out: FILE_preview.png)\n"
    "\n"
    "streaming to a trainer (schemas/wire.md): give the trainer's --data, --seed\n"
    "and synthesis settings; it checks samples against its own now and then:\n"
    "  --connect ENDPOINT   the trainer's --stream endpoint (ipc:///path or\n"
    "                       tcp://host:port); answer its requests until it says\n"
    "                       bye, or SIGTERM / SIGINT (bye, exit 0)\n"
    "  --name NAME          told to the trainer for its logs (default: pid N)\n"
    "  --capacity N         requests queued at most (8)\n"
    "  --per-message N      samples per message at most (1)\n"
    "  --heartbeat-ms N     heartbeat interval (250)\n"
    "  --timeout-ms N       trainer silent this long: hello again (2000)\n"
    "  --give-up S          trainer silent S seconds: exit 1 (120; 0 = never)\n"
    "  --curve-server-key K the trainer's CURVE public key (Z85, or a file\n"
    "                       holding it): encrypted transport\n"
    "\n"
    "synthesis settings (give the trainer the same):\n";

static void print_usage(void) {
    fputs(usage_head, stdout);
    fputs(fs_synth_opts_usage, stdout);
    fputs("  -h, --help           this help\n", stdout);
}

/* Sample i into out with scratch w: the one producer every mode uses. */
static int make_sample(const fs_synth *s, fs_synth_scratch *w, uint64_t i, fs_sample *out) {
    return fs_synth_sample_with(s, w, i, out, NULL);
}

/* Errors are thread-local: a worker's message is carried to the main thread. */
static char worker_error[512];

static int make_sample_mt(const fs_synth *s, fs_synth_scratch *w, uint64_t i, fs_sample *out) {
    if (!make_sample(s, w, i, out)) return FS_OK;
#pragma omp critical(synth_error)
    if (!worker_error[0]) snprintf(worker_error, sizeof worker_error, "sample %llu: %s", (unsigned long long)i, fs_error_msg());
    return FS_ERR;
}

static void die_worker(void) {
    fs_error("%s", worker_error);
    fs_cli_die();
}

/* ---- streaming ---- */

typedef struct {
    const fs_synth *s;
    fs_synth_scratch *w;
} stream_ctx;

/* fs_make_fn: out arrives zeroed, fs_synth_sample_with allocates it. */
static int make_streamed(void *vctx, uint64_t index, fs_sample *out) {
    stream_ctx *c = vctx;
    memset(out, 0, sizeof *out);
    return make_sample(c->s, c->w, index, out);
}

static int run_connected(const fs_synth *s, const char *endpoint, const fs_worker_settings *set) {
    stream_ctx c = {s, NULL};
    if (fs_synth_scratch_new(s, &c.w)) return FS_ERR;
    fs_worker_stats st = {0};
    fs_info("connecting to the trainer at %s", endpoint);
    int rc = fs_worker_run(endpoint, make_streamed, &c, set, &st);
    fs_info("made %llu samples in %llu messages; %llu invalid messages from the trainer rejected; %llu resets",
            (unsigned long long)st.samples, (unsigned long long)st.messages, (unsigned long long)st.rejected,
            (unsigned long long)st.resets);
    fs_synth_scratch_free(c.w);
    return rc;
}

/* ---- options ---- */

enum {
    O_EXEMPLARS = 256, O_OUT, O_COUNT, O_FIRST, O_SEED, O_THREADS, O_PREVIEW, O_PREVIEW_OUT, O_CONNECT, O_NAME,
    O_CAPACITY, O_PERMSG, O_HEARTBEAT, O_TIMEOUT, O_GIVEUP, O_CURVE
};

int main(int argc, char **argv) {
    fs_cli_init(argc, argv);
    struct option opts[24 + FS_SYNTH_N_OPTS] = {
        {"exemplars", required_argument, 0, O_EXEMPLARS}, {"out", required_argument, 0, O_OUT},
        {"count", required_argument, 0, O_COUNT}, {"first-index", required_argument, 0, O_FIRST},
        {"seed", required_argument, 0, O_SEED}, {"threads", required_argument, 0, O_THREADS},
        {"preview", required_argument, 0, O_PREVIEW}, {"preview-out", required_argument, 0, O_PREVIEW_OUT},
        {"connect", required_argument, 0, O_CONNECT}, {"name", required_argument, 0, O_NAME},
        {"capacity", required_argument, 0, O_CAPACITY}, {"per-message", required_argument, 0, O_PERMSG},
        {"heartbeat-ms", required_argument, 0, O_HEARTBEAT}, {"timeout-ms", required_argument, 0, O_TIMEOUT},
        {"give-up", required_argument, 0, O_GIVEUP}, {"curve-server-key", required_argument, 0, O_CURVE},
        {"help", no_argument, 0, 'h'}};
    size_t no = 17;
    no += fs_synth_opts_add(opts + no);
    opts[no] = (struct option){0, 0, 0, 0};

    fs_synth_opts so;
    fs_synth_opts_init(&so, argc, argv);
    fs_synth_config cfg;
    fs_worker_settings ws;
    fs_worker_settings_default(&ws);
    const char *exemplars = NULL, *out = NULL, *preview_out = NULL, *connect = NULL, *curve = NULL;
    long count = -1, preview = 0, threads = 0;
    uint64_t first = 0, seed = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (fs_synth_opts_apply(&so, c, optarg)) continue;
        switch (c) {
        case O_EXEMPLARS: exemplars = optarg; break;
        case O_OUT: out = optarg; break;
        case O_COUNT: count = fs_cli_long("count", optarg, 0, 1000000000L); break;
        case O_FIRST: first = fs_cli_u64("first-index", optarg); break;
        case O_SEED: seed = fs_cli_u64("seed", optarg); break;
        case O_THREADS: threads = fs_cli_long("threads", optarg, 1, 1024); break;
        case O_PREVIEW: preview = fs_cli_long("preview", optarg, 1, 256); break;
        case O_PREVIEW_OUT: preview_out = optarg; break;
        case O_CONNECT: connect = optarg; break;
        case O_NAME:
            if (strlen(optarg) > 200) fs_cli_usage_error("--name: at most 200 bytes");
            ws.name = optarg;
            break;
        case O_CAPACITY: ws.capacity = (size_t)fs_cli_long("capacity", optarg, 1, 4096); break;
        case O_PERMSG: ws.batch = (size_t)fs_cli_long("per-message", optarg, 1, 64); break;
        case O_HEARTBEAT: ws.heartbeat_ms = (int)fs_cli_long("heartbeat-ms", optarg, 10, 600000); break;
        case O_TIMEOUT: ws.timeout_ms = (int)fs_cli_long("timeout-ms", optarg, 20, 3600000); break;
        case O_GIVEUP: ws.give_up_ms = (int)(1000 * fs_cli_long("give-up", optarg, 0, 2000000)); break;
        case O_CURVE: curve = optarg; break;
        case 'h': print_usage(); return FS_EXIT_OK;
        default: fs_cli_bad_option(argc, argv);
        }
    }
    cfg = so.cfg;
    cfg.seed = seed;
    const char *backgrounds = so.backgrounds;
    if (optind < argc) fs_cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!exemplars) fs_cli_usage_error("--exemplars is required");
    if (connect && (out || preview || count >= 0))
        fs_cli_usage_error("--connect streams samples: no --out, --count or --preview with it");
    if (!connect && !out && !preview) fs_cli_usage_error("give --out (with --count), --preview or --connect");
    if (out && count < 0) fs_cli_usage_error("--out needs --count");
    if (!out && count >= 0) fs_cli_usage_error("--count needs --out");
    if (ws.heartbeat_ms * 2 > ws.timeout_ms)
        fs_cli_usage_error("--timeout-ms %d must be at least twice --heartbeat-ms %d", ws.timeout_ms, ws.heartbeat_ms);
    char pbuf[4200];
    if (preview && !preview_out) {
        if (!out) fs_cli_usage_error("--preview needs --preview-out (or --out)");
        size_t len = strlen(out);
        if (len > 3 && !strcmp(out + len - 3, ".h5")) len -= 3;
        snprintf(pbuf, sizeof pbuf, "%.*s_preview.png", (int)len, out);
        preview_out = pbuf;
    }
    if (preview_out && !preview) fs_cli_usage_error("--preview-out needs --preview N");
    if (fs_synth_config_check(&cfg)) fs_cli_usage_error("%s", fs_error_msg());
    char curve_key[41];
    if (curve) {
        if (fs_wire_key_load(curve, curve_key)) fs_cli_die();
        ws.curve_server_key = curve_key;
    }
    if (threads) omp_set_num_threads((int)threads);
    else if (connect) omp_set_num_threads(1); /* one sample at a time: run more processes for more cores */

    fs_synth *s;
    if (fs_synth_open(&s, exemplars, backgrounds, &cfg)) fs_cli_die();
    size_t H, W;
    fs_synth_size(s, &H, &W);
    char settings[2048];
    fs_synth_config_describe(&cfg, settings, sizeof settings);
    fs_info("%zu objects to cut (%s) from '%s'%s%s; samples %zux%zu%s", fs_synth_candidates(s),
            fs_synth_cut_name(cfg.cut), exemplars, backgrounds ? ", backgrounds from " : "",
            backgrounds ? backgrounds : "", H, W, connect ? ", as the trainer asks" : "");

    if (connect) {
        int rc = run_connected(s, connect, &ws);
        fs_synth_free(s);
        if (rc) fs_cli_die();
        return FS_EXIT_OK;
    }

    const int nt = omp_get_max_threads();
    const size_t chunk = (size_t)nt * 8;
    fs_synth_scratch **scr = calloc((size_t)nt, sizeof *scr);
    size_t nbuf = chunk > (size_t)preview ? chunk : (size_t)preview;
    fs_sample *buf = calloc(nbuf, sizeof *buf);
    if (!scr || !buf) {
        fs_error("out of memory");
        fs_cli_die();
    }
    for (int t = 0; t < nt; t++)
        if (fs_synth_scratch_new(s, &scr[t])) fs_cli_die();
    for (size_t i = 0; i < nbuf; i++)
        if (fs_sample_alloc(&buf[i], H, W)) fs_cli_die();

    if (out) {
        fs_shard_meta meta;
        if (fs_shard_meta_copy(&meta, fs_synth_meta(s))) fs_cli_die();
        free(meta.provenance);
        size_t plen = strlen(exemplars) + strlen(settings) + (backgrounds ? strlen(backgrounds) : 0) + 256;
        meta.provenance = malloc(plen);
        if (!meta.provenance) { fs_error("out of memory"); fs_cli_die(); }
        snprintf(meta.provenance, plen, "fewsam synthesizer; exemplars %s; backgrounds %s; first index %llu; count %ld; %s",
                 exemplars, backgrounds ? backgrounds : "(exemplars)", (unsigned long long)first, count, settings);
        fs_synth_writer *wr;
        if (fs_synth_writer_open(&wr, out, &meta, H, W, cfg.seed, first, cfg.prompts, settings)) fs_cli_die();
        fs_shard_meta_free(&meta);
        for (size_t done = 0; done < (size_t)count;) {
            const size_t n = (size_t)count - done < chunk ? (size_t)count - done : chunk;
            int failed = 0;
#pragma omp parallel for schedule(dynamic) reduction(| : failed)
            for (size_t i = 0; i < n; i++)
                if (make_sample_mt(s, scr[omp_get_thread_num()], first + done + i, &buf[i])) failed = 1;
            if (failed) {
                fs_synth_writer_abort(wr);
                die_worker();
            }
            for (size_t i = 0; i < n; i++)
                if (fs_synth_writer_add(wr, &buf[i])) {
                    fs_synth_writer_abort(wr);
                    fs_cli_die();
                }
            done += n;
            fs_progress("synthesizing", done, (size_t)count);
        }
        if (fs_synth_writer_commit(wr)) fs_cli_die();
        fs_info("wrote %ld samples to '%s'", count, out);
    }
    if (preview) {
        int failed = 0;
#pragma omp parallel for schedule(dynamic) reduction(| : failed)
        for (long i = 0; i < preview; i++)
            if (make_sample_mt(s, scr[omp_get_thread_num()], first + (uint64_t)i, &buf[i])) failed = 1;
        if (failed) die_worker();
        if (preview_write(preview_out, buf, (size_t)preview)) fs_cli_die();
        fs_info("wrote a preview of %ld samples to '%s'", preview, preview_out);
    }
    for (size_t i = 0; i < nbuf; i++) fs_sample_free(&buf[i]);
    free(buf);
    for (int t = 0; t < nt; t++) fs_synth_scratch_free(scr[t]);
    free(scr);
    fs_synth_free(s);
    return FS_EXIT_OK;
}
