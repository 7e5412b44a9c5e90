/* The credit protocol over ZeroMQ (schemas/wire.md): the trainer binds a
 * ROUTER and asks for samples by index; synthesizers connect DEALERs, say
 * hello with their capacity and answer exactly what they were asked. The
 * trainer never holds more than `credit` samples requested or buffered, a
 * worker never makes a sample it was not asked for, so both sides' memory
 * is bounded whatever their speeds. Heartbeats both ways on the same socket;
 * a silent worker is dropped and its indices asked of another. Samples are
 * handed out by index, so the result does not depend on who made them.
 *
 * One ZeroMQ context per process: fs_stream_open and fs_worker_run each
 * create theirs and end it before returning; do not run both at once in one
 * process, and fork before, not during. */
#ifndef FS_WIRE_STREAM_H
#define FS_WIRE_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "data/sample.h"

/* ---- trainer side ---- */

typedef struct {
    size_t credit;             /* samples requested or buffered, at most (16) */
    int heartbeat_ms;          /* 250 */
    int timeout_ms;            /* a worker silent this long is dropped (2000) */
    int get_timeout_ms;        /* fs_stream_get gives up after this long; 0 = never (0) */
    uint64_t first_index;      /* the first index fs_stream_get will ask for (0) */
    uint64_t end_index;        /* indices >= this are never requested (UINT64_MAX: no end) */
    size_t max_message_bytes;  /* one incoming message, all frames (256 MiB) */
    const char *curve_secret_key; /* Z85 secret key: CURVE-encrypt (NULL: plain) */
} fs_stream_settings;

typedef struct {
    uint64_t received;         /* samples accepted */
    uint64_t duplicates;       /* samples dropped: consumed, already here, or from a dropped worker */
    uint64_t rejected;         /* invalid messages (logged) */
    uint64_t peers_joined;     /* hellos from new workers */
    uint64_t peers_dropped;    /* silent, gone, or said bye */
    uint64_t rerequested;      /* indices asked again after their worker dropped */
    size_t peers;              /* workers now */
    size_t held;               /* requested + buffered now */
    size_t max_held;           /* the most requested + buffered at once (<= credit) */
} fs_stream_stats;

typedef struct fs_stream fs_stream;

void fs_stream_settings_default(fs_stream_settings *s);
/* Binds endpoint (ipc:///path, tcp://127.0.0.1:5555, a port of * for any) and
 * starts the I/O thread (it heartbeats and grants credit while the caller
 * trains). */
int fs_stream_open(fs_stream **out, const char *endpoint, const fs_stream_settings *set);
/* The endpoint actually bound (the port a '*' picked). */
const char *fs_stream_endpoint(const fs_stream *s);
/* Sample `index` into *out (allocated; fs_sample_free it), whichever worker
 * made it, blocking until it is here. Indices below it that were not taken
 * are skipped (dropped); an index already consumed is an error. One
 * consumer thread. FS_ERR on timeout, on a worker's error report for an
 * index, or when the stream failed. */
int fs_stream_get(fs_stream *s, uint64_t index, fs_sample *out);
void fs_stream_get_stats(fs_stream *s, fs_stream_stats *out);
/* Says bye to every worker (they exit) and releases everything. */
void fs_stream_close(fs_stream *s);

/* ---- synthesizer side ---- */

/* Fills sample `index` (fs_sample_alloc, then the pixels and objects); must
 * be a pure function of (its seed, index). FS_ERR stops the worker, and
 * the trainer is told which index failed and why. */
typedef int (*fs_make_fn)(void *ctx, uint64_t index, fs_sample *out);

typedef struct {
    size_t capacity;           /* requests queued at most, told in hello (8) */
    size_t batch;              /* samples per message, at most (1) */
    int heartbeat_ms;          /* 250 */
    int timeout_ms;            /* trainer silent this long: forget the queue, hello again (2000) */
    int give_up_ms;            /* trainer silent this long: return FS_ERR; 0 = never (120000) */
    const char *name;          /* told in hello, for the trainer's logs (NULL: "pid N") */
    const char *curve_server_key; /* the trainer's Z85 public key: CURVE (NULL: plain) */
} fs_worker_settings;

typedef struct {
    uint64_t samples;          /* made and sent */
    uint64_t messages;         /* sample messages sent */
    uint64_t rejected;         /* invalid messages from the trainer (logged) */
    uint64_t resets;           /* hellos after the first */
} fs_worker_stats;

void fs_worker_settings_default(fs_worker_settings *s);
/* Connects to the trainer at endpoint and answers its requests with make()
 * until the trainer says bye (FS_OK), SIGINT or SIGTERM arrives (bye to the
 * trainer, FS_OK), make fails or the trainer is silent for give_up_ms
 * (FS_ERR). Single-threaded on purpose: heartbeats go out between samples,
 * so a worker stuck in make() stops heartbeating and is dropped; one make()
 * must take well under timeout_ms. stats may be NULL. */
int fs_worker_run(const char *endpoint, fs_make_fn make, void *ctx, const fs_worker_settings *set,
                  fs_worker_stats *stats);

#endif
