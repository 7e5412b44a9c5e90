#include "wire/stream.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "core/error.h"
#include "core/log.h"
#include "wire/msg.h"

#define MAX_PEERS 4096

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Sequence numbers start from the wall clock in microseconds, so that a
 * restarted process continues above anything its peers saw before. */
static uint64_t seq_start(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static int set_int(void *sock, int opt, int v) { return zmq_setsockopt(sock, opt, &v, sizeof v); }

/* Reads and discards whatever arrives for ms. Closing a socket right after
 * queueing a message lost that message now and then (libzmq 4.3.4, even
 * with ZMQ_LINGER) when unread input was pending; a short drain before the
 * close lets the last "bye" go out. */
static void drain(void *sock, int ms) {
    int64_t end = now_ms() + ms;
    for (int64_t left = ms; left > 0; left = end - now_ms()) {
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, (long)left) < 0 && errno != EINTR) return;
        zmq_msg_t m;
        zmq_msg_init(&m);
        while (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) >= 0) {
        }
        zmq_msg_close(&m);
    }
}

/* ======================= trainer side ======================= */

enum { SLOT_FREE, SLOT_REQUESTED, SLOT_ARRIVED };

typedef struct {
    uint64_t index; /* the index this slot stands for now */
    int state;
    uint64_t owner; /* uid of the peer asked, when requested */
    fs_sample sample;
} slot;

typedef struct {
    uint8_t id[256];
    size_t id_len;
    uint64_t uid;
    char name[FS_WIRE_MAX_TEXT];
    size_t capacity;
    uint64_t *owed; /* indices asked of it and not yet delivered */
    size_t n_owed, grant_from;
    int64_t last_seen, last_sent;
    uint64_t last_seq;
} peer;

struct fs_stream {
    fs_stream_settings set;
    char curve_key[41];
    char endpoint[256];
    void *ctx, *sock;
    int wake_fd;
    pthread_t thread;
    int thread_started;
    /* I/O thread only */
    fs_wire_in *in;
    fs_sample *tmp;
    peer *peers;
    size_t n_peers;
    uint64_t next_uid, seq;
    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t next;
    slot *ring;
    size_t buffered, owed_total;
    int stop, failed;
    char fail_msg[512];
    fs_stream_stats stats;
};

void fs_stream_settings_default(fs_stream_settings *s) {
    memset(s, 0, sizeof *s);
    s->credit = 16;
    s->heartbeat_ms = 250;
    s->timeout_ms = 2000;
    s->end_index = UINT64_MAX;
    s->max_message_bytes = FS_WIRE_DEFAULT_MAX_BYTES;
}

static slot *slot_of(fs_stream *s, uint64_t index) { return &s->ring[index % s->set.credit]; }

static void wake(fs_stream *s) {
    uint64_t one = 1;
    if (write(s->wake_fd, &one, sizeof one) < 0) { /* already pending: fine */
    }
}

static void update_held(fs_stream *s) {
    s->stats.held = s->owed_total + s->buffered;
    if (s->stats.held > s->stats.max_held) s->stats.max_held = s->stats.held;
}

static const char *peer_label(const peer *p, char *buf, size_t cap) {
    char id[80];
    fs_wire_peer_str(p->id, p->id_len, id, sizeof id);
    snprintf(buf, cap, "%s (%s)", id, p->name[0] ? p->name : "unnamed");
    return buf;
}

static void stream_fail(fs_stream *s, const char *msg) {
    pthread_mutex_lock(&s->mu);
    if (!s->failed) snprintf(s->fail_msg, sizeof s->fail_msg, "%s", msg);
    s->failed = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static uint64_t next_seq(fs_stream *s) { return ++s->seq; }

static int send_to(fs_stream *s, peer *p, fs_msg *m, int64_t now) {
    m->seq = next_seq(s);
    int rc = fs_wire_send(s->sock, p->id, p->id_len, m);
    if (rc == FS_OK) p->last_sent = now;
    return rc;
}

/* Forgets what p owes: those indices still wanted become free to ask again. */
static void requeue(fs_stream *s, peer *p) {
    pthread_mutex_lock(&s->mu);
    for (size_t k = 0; k < p->n_owed; k++) {
        uint64_t i = p->owed[k];
        if (i < s->next || i - s->next >= s->set.credit) continue;
        slot *sl = slot_of(s, i);
        if (sl->index == i && sl->state == SLOT_REQUESTED && sl->owner == p->uid) {
            sl->state = SLOT_FREE;
            s->stats.rerequested++;
        }
    }
    s->owed_total -= p->n_owed;
    p->n_owed = p->grant_from = 0;
    update_held(s);
    pthread_mutex_unlock(&s->mu);
}

static void drop_peer(fs_stream *s, peer *p, const char *why) {
    char lb[400];
    size_t owed = p->n_owed;
    requeue(s, p);
    fs_info("dropped %s: %s; %zu of its indices to ask again", peer_label(p, lb, sizeof lb), why, owed);
    free(p->owed);
    size_t k = (size_t)(p - s->peers);
    memmove(&s->peers[k], &s->peers[k + 1], (s->n_peers - k - 1) * sizeof *p);
    s->n_peers--;
    pthread_mutex_lock(&s->mu);
    s->stats.peers_dropped++;
    s->stats.peers = s->n_peers;
    pthread_mutex_unlock(&s->mu);
}

static peer *find_peer(fs_stream *s, const uint8_t *id, size_t len) {
    for (size_t k = 0; k < s->n_peers; k++)
        if (s->peers[k].id_len == len && !memcmp(s->peers[k].id, id, len)) return &s->peers[k];
    return NULL;
}

static void reject(fs_stream *s, const fs_wire_in *in, const char *why) {
    char id[80];
    fs_wire_peer_str(in->peer, in->peer_len, id, sizeof id);
    fs_warn("rejected a message from %s: %s", id, why);
    pthread_mutex_lock(&s->mu);
    s->stats.rejected++;
    pthread_mutex_unlock(&s->mu);
}

static void on_hello(fs_stream *s, peer *p, const fs_wire_in *in, int64_t now) {
    const fs_msg *m = &in->msg;
    int fresh = !p;
    if (fresh) {
        if (s->n_peers == MAX_PEERS) {
            reject(s, in, "too many workers");
            return;
        }
        p = &s->peers[s->n_peers++];
        memset(p, 0, sizeof *p);
        memcpy(p->id, in->peer, in->peer_len);
        p->id_len = in->peer_len;
        p->uid = ++s->next_uid;
        p->last_sent = now;
    } else {
        requeue(s, p); /* a worker that says hello again has forgotten its queue */
    }
    uint64_t *owed = realloc(p->owed, m->capacity * sizeof *owed);
    if (!owed) {
        fs_warn("out of memory for a worker's queue");
        if (fresh) s->n_peers--;
        return;
    }
    p->owed = owed;
    p->capacity = m->capacity;
    p->last_seq = m->seq;
    p->last_seen = now;
    snprintf(p->name, sizeof p->name, "%s", m->text);
    /* the acknowledgement: requests the worker gets after it are for this
     * registration, anything before it is stale */
    fs_msg *ack = malloc(sizeof *ack);
    if (ack) {
        ack->type = FS_MSG_HEARTBEAT;
        ack->has_ref = 1;
        ack->ref = m->seq;
        send_to(s, p, ack, now);
        free(ack);
    }
    char lb[400];
    fs_info("%s %s with capacity %zu", peer_label(p, lb, sizeof lb), fresh ? "joined" : "said hello again",
            p->capacity);
    pthread_mutex_lock(&s->mu);
    if (fresh) s->stats.peers_joined++;
    s->stats.peers = s->n_peers;
    pthread_mutex_unlock(&s->mu);
}

static void on_samples(fs_stream *s, peer *p, const fs_wire_in *in) {
    const fs_msg *m = &in->msg;
    /* every index must be one this worker was asked for */
    for (size_t k = 0; k < m->n_indices; k++) {
        size_t j = 0;
        while (j < p->n_owed && p->owed[j] != m->indices[k]) j++;
        if (j == p->n_owed) {
            char why[128];
            snprintf(why, sizeof why, "sample %llu was not requested of it", (unsigned long long)m->indices[k]);
            reject(s, in, why);
            return;
        }
    }
    pthread_mutex_lock(&s->mu);
    for (size_t k = 0; k < m->n_indices; k++) {
        size_t j = 0;
        while (p->owed[j] != m->indices[k]) j++;
        p->owed[j] = p->owed[--p->n_owed];
        s->owed_total--;
    }
    pthread_mutex_unlock(&s->mu);
    if (fs_wire_unpack_samples(in, s->tmp)) {
        reject(s, in, fs_error_msg());
        pthread_mutex_lock(&s->mu); /* they will not come from this message: ask again */
        for (size_t k = 0; k < m->n_indices; k++) {
            uint64_t i = m->indices[k];
            slot *sl = slot_of(s, i);
            if (i >= s->next && sl->index == i && sl->state == SLOT_REQUESTED) sl->state = SLOT_FREE;
        }
        update_held(s);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    pthread_mutex_lock(&s->mu);
    for (size_t k = 0; k < m->n_indices; k++) {
        uint64_t i = s->tmp[k].index;
        slot *sl = slot_of(s, i);
        if (i < s->next || sl->index != i || sl->state == SLOT_ARRIVED) {
            fs_sample_free(&s->tmp[k]);
            s->stats.duplicates++;
            continue;
        }
        sl->sample = s->tmp[k];
        sl->state = SLOT_ARRIVED;
        s->buffered++;
        s->stats.received++;
    }
    update_held(s);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void handle(fs_stream *s, const fs_wire_in *in, int64_t now) {
    const fs_msg *m = &in->msg;
    peer *p = find_peer(s, in->peer, in->peer_len);
    if (!p) {
        if (m->type == FS_MSG_HELLO) on_hello(s, NULL, in, now);
        else if (m->type != FS_MSG_BYE) {
            /* most likely a worker dropped as silent that woke up again */
            char id[80];
            fs_wire_peer_str(in->peer, in->peer_len, id, sizeof id);
            fs_info("'%s' from unknown %s: told to say hello", fs_msg_type_name(m->type), id);
            if (m->type == FS_MSG_SAMPLE) {
                pthread_mutex_lock(&s->mu);
                s->stats.duplicates += m->n_indices;
                pthread_mutex_unlock(&s->mu);
            }
            fs_msg *e = malloc(sizeof *e);
            if (!e) return;
            e->type = FS_MSG_ERROR;
            e->seq = next_seq(s);
            e->has_ref = 1;
            e->ref = m->seq;
            e->n_indices = 0;
            snprintf(e->text, sizeof e->text, "unknown peer: say hello first");
            fs_wire_send(s->sock, in->peer, in->peer_len, e);
            free(e);
        }
        return;
    }
    if (m->seq <= p->last_seq) {
        char why[128];
        snprintf(why, sizeof why, "seq %llu not after %llu", (unsigned long long)m->seq,
                 (unsigned long long)p->last_seq);
        reject(s, in, why);
        return;
    }
    p->last_seq = m->seq;
    p->last_seen = now;
    switch (m->type) {
    case FS_MSG_HELLO: on_hello(s, p, in, now); break;
    case FS_MSG_HEARTBEAT: break;
    case FS_MSG_BYE: drop_peer(s, p, "said bye"); break;
    case FS_MSG_SAMPLE: on_samples(s, p, in); break;
    case FS_MSG_ERROR: {
        char lb[400], msg[512];
        peer_label(p, lb, sizeof lb);
        if (m->n_indices) {
            snprintf(msg, sizeof msg, "%s cannot make sample %llu: %s", lb, (unsigned long long)m->indices[0], m->text);
            fs_warn("%s", msg);
            stream_fail(s, msg);
        } else {
            fs_warn("%s reports: %s", lb, m->text);
        }
        break;
    }
    default: {
        char why[64];
        snprintf(why, sizeof why, "unexpected '%s' from a worker", fs_msg_type_name(m->type));
        reject(s, in, why);
    }
    }
}

/* Grants credit: the lowest free indices of the window, to the workers with
 * the most room, while requested + buffered stays within the credit. */
static void grant(fs_stream *s, int64_t now) {
    if (!s->n_peers) return;
    pthread_mutex_lock(&s->mu);
    for (size_t k = 0; k < s->n_peers; k++) s->peers[k].grant_from = s->peers[k].n_owed;
    uint64_t end = s->set.end_index;
    for (uint64_t i = s->next; i < end && i - s->next < s->set.credit; i++) {
        if (s->owed_total + s->buffered >= s->set.credit) break;
        slot *sl = slot_of(s, i);
        if (sl->state != SLOT_FREE) continue;
        peer *best = NULL;
        for (size_t k = 0; k < s->n_peers; k++) {
            peer *p = &s->peers[k];
            if (p->n_owed < p->capacity && (!best || p->capacity - p->n_owed > best->capacity - best->n_owed)) best = p;
        }
        if (!best) break;
        sl->index = i;
        sl->state = SLOT_REQUESTED;
        sl->owner = best->uid;
        best->owed[best->n_owed++] = i;
        s->owed_total++;
    }
    update_held(s);
    pthread_mutex_unlock(&s->mu);
    fs_msg *m = NULL;
    for (size_t k = 0; k < s->n_peers; k++) {
        peer *p = &s->peers[k];
        while (p->grant_from < p->n_owed) {
            if (!m && !(m = malloc(sizeof *m))) return;
            m->type = FS_MSG_REQUEST;
            m->n_indices = p->n_owed - p->grant_from;
            if (m->n_indices > FS_WIRE_MAX_INDICES) m->n_indices = FS_WIRE_MAX_INDICES;
            memcpy(m->indices, &p->owed[p->grant_from], m->n_indices * sizeof *m->indices);
            int rc = send_to(s, p, m, now);
            if (rc != FS_OK) {
                /* not sent: the indices are free again (their slots still
                 * name this peer, requeue only takes back the unsent tail) */
                int gone = rc == FS_ERR && errno == EHOSTUNREACH;
                pthread_mutex_lock(&s->mu);
                for (size_t j = p->grant_from; j < p->n_owed; j++) slot_of(s, p->owed[j])->state = SLOT_FREE;
                s->owed_total -= p->n_owed - p->grant_from;
                p->n_owed = p->grant_from;
                update_held(s);
                pthread_mutex_unlock(&s->mu);
                if (gone) {
                    drop_peer(s, p, "disconnected");
                    k--;
                }
                break;
            }
            p->grant_from += m->n_indices;
        }
    }
    free(m);
}

static void heartbeat_and_reap(fs_stream *s, int64_t now) {
    fs_msg *m = NULL;
    for (size_t k = 0; k < s->n_peers; k++) {
        peer *p = &s->peers[k];
        if (now - p->last_seen > s->set.timeout_ms) {
            char why[64];
            snprintf(why, sizeof why, "silent for %lld ms", (long long)(now - p->last_seen));
            drop_peer(s, p, why);
            k--;
            continue;
        }
        if (now - p->last_sent < s->set.heartbeat_ms) continue;
        if (!m && !(m = malloc(sizeof *m))) return;
        m->type = FS_MSG_HEARTBEAT;
        m->has_ref = 0;
        if (send_to(s, p, m, now) == FS_ERR && errno == EHOSTUNREACH) {
            drop_peer(s, p, "disconnected");
            k--;
        }
    }
    free(m);
}

static void *io_main(void *arg) {
    fs_stream *s = arg;
    int poll_ms = s->set.heartbeat_ms / 4 > 5 ? s->set.heartbeat_ms / 4 : 5;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;
        zmq_pollitem_t items[2] = {{s->sock, 0, ZMQ_POLLIN, 0}, {NULL, s->wake_fd, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, poll_ms) < 0 && errno != EINTR) {
            fs_error_errno("cannot poll the trainer socket");
            stream_fail(s, fs_error_msg());
            break;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            uint64_t v;
            if (read(s->wake_fd, &v, sizeof v) < 0) { /* nothing pending */
            }
        }
        for (int k = 0; k < 256; k++) {
            int fatal = 0;
            int rc = fs_wire_recv(s->sock, 1, s->set.max_message_bytes, s->in, &fatal);
            if (rc == FS_WIRE_NONE) break;
            if (rc == FS_ERR) {
                if (fatal) {
                    stream_fail(s, fs_error_msg());
                    goto out;
                }
                reject(s, s->in, fs_error_msg());
                continue;
            }
            handle(s, s->in, now_ms());
        }
        int64_t now = now_ms();
        heartbeat_and_reap(s, now);
        grant(s, now);
    }
out:
    for (size_t k = 0; k < s->n_peers; k++) {
        static fs_msg m; /* large: not on the thread's stack */
        m.type = FS_MSG_BYE;
        send_to(s, &s->peers[k], &m, now_ms());
        free(s->peers[k].owed);
    }
    s->n_peers = 0;
    drain(s->sock, 50);
    return NULL;
}

const char *fs_stream_endpoint(const fs_stream *s) { return s->endpoint; }

static void stream_free(fs_stream *s) {
    if (s->sock) zmq_close(s->sock);
    if (s->ctx) zmq_ctx_term(s->ctx);
    if (s->wake_fd >= 0) close(s->wake_fd);
    if (s->ring)
        for (size_t k = 0; k < s->set.credit; k++) fs_sample_free(&s->ring[k].sample);
    free(s->ring);
    free(s->tmp);
    free(s->peers);
    fs_wire_in_free(s->in);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int fs_stream_open(fs_stream **out, const char *endpoint, const fs_stream_settings *set) {
    *out = NULL;
    if (set->credit < 1 || set->credit > 65536) return fs_error("credit %zu outside [1, 65536]", set->credit);
    if (set->heartbeat_ms < 10 || set->timeout_ms <= set->heartbeat_ms)
        return fs_error("heartbeat %d ms and timeout %d ms: need heartbeat >= 10 and timeout > heartbeat",
                        set->heartbeat_ms, set->timeout_ms);
    if (set->max_message_bytes < 1024) return fs_error("message cap of %zu bytes is too small", set->max_message_bytes);
    if (set->first_index >= FS_WIRE_MAX_INDEX) return fs_error("first index out of range");
    fs_stream *s = calloc(1, sizeof *s);
    if (!s) return fs_error("out of memory for a stream");
    s->set = *set;
    if (s->set.end_index > FS_WIRE_MAX_INDEX) s->set.end_index = FS_WIRE_MAX_INDEX;
    s->wake_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca; /* deadlines are on the monotonic clock */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (set->curve_secret_key) {
        if (fs_wire_key_load(set->curve_secret_key, s->curve_key)) {
            stream_free(s);
            return FS_ERR;
        }
        s->set.curve_secret_key = s->curve_key;
    }
    s->ring = calloc(set->credit, sizeof *s->ring);
    s->tmp = calloc(FS_WIRE_MAX_SAMPLES, sizeof *s->tmp);
    s->peers = calloc(MAX_PEERS, sizeof *s->peers);
    s->in = fs_wire_in_new();
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!s->ring || !s->tmp || !s->peers || !s->in || s->wake_fd < 0) {
        stream_free(s);
        return fs_error("out of memory (or descriptors) for a stream");
    }
    s->next = set->first_index;
    for (size_t k = 0; k < set->credit; k++) slot_of(s, set->first_index + k)->index = set->first_index + k;
    s->seq = seq_start();
    s->ctx = zmq_ctx_new();
    s->sock = s->ctx ? zmq_socket(s->ctx, ZMQ_ROUTER) : NULL;
    if (!s->sock) {
        fs_error_errno("cannot create a ZeroMQ socket");
        stream_free(s);
        return FS_ERR;
    }
    int64_t maxmsg = (int64_t)set->max_message_bytes;
    /* MANDATORY: a send to a vanished worker fails (EHOSTUNREACH) instead of
     * vanishing silently. MAXMSGSIZE: libzmq drops the connection of a peer
     * announcing a larger frame before allocating it. */
    if (set_int(s->sock, ZMQ_ROUTER_MANDATORY, 1) || set_int(s->sock, ZMQ_LINGER, 500) ||
        zmq_setsockopt(s->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg)) {
        fs_error_errno("cannot set the trainer socket's options");
        stream_free(s);
        return FS_ERR;
    }
    if (s->set.curve_secret_key) {
        if (!zmq_has("curve")) {
            stream_free(s);
            return fs_error("CURVE asked for, but this libzmq has no CURVE support");
        }
        if (set_int(s->sock, ZMQ_CURVE_SERVER, 1) || zmq_setsockopt(s->sock, ZMQ_CURVE_SECRETKEY, s->curve_key, 40)) {
            fs_error_errno("cannot set the CURVE secret key");
            stream_free(s);
            return FS_ERR;
        }
    }
    if (zmq_bind(s->sock, endpoint)) {
        fs_error_errno("cannot bind '%s'", endpoint);
        stream_free(s);
        return FS_ERR;
    }
    size_t len = sizeof s->endpoint;
    if (zmq_getsockopt(s->sock, ZMQ_LAST_ENDPOINT, s->endpoint, &len)) snprintf(s->endpoint, sizeof s->endpoint, "%s", endpoint);
    if (pthread_create(&s->thread, NULL, io_main, s)) {
        stream_free(s);
        return fs_error("cannot start the stream's I/O thread");
    }
    s->thread_started = 1;
    *out = s;
    return FS_OK;
}

static void timed_deadline(struct timespec *ts, int ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Takes slot `index` out of the window (under mu). */
static void advance(fs_stream *s) {
    slot *sl = slot_of(s, s->next);
    if (sl->state == SLOT_ARRIVED) {
        fs_sample_free(&sl->sample);
        s->buffered--;
    }
    memset(&sl->sample, 0, sizeof sl->sample);
    sl->state = SLOT_FREE;
    sl->index = s->next + s->set.credit;
    s->next++;
}

int fs_stream_get(fs_stream *s, uint64_t index, fs_sample *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->mu);
    int rc = FS_OK;
    if (index < s->next) {
        rc = fs_error("sample %llu was already consumed (the stream is at %llu)", (unsigned long long)index,
                      (unsigned long long)s->next);
        goto done;
    }
    if (index >= s->set.end_index) {
        rc = fs_error("sample %llu is beyond the stream's end %llu", (unsigned long long)index,
                      (unsigned long long)s->set.end_index);
        goto done;
    }
    while (s->next < index) advance(s);
    wake(s);
    struct timespec deadline;
    if (s->set.get_timeout_ms > 0) timed_deadline(&deadline, s->set.get_timeout_ms);
    slot *sl = slot_of(s, index);
    while (sl->state != SLOT_ARRIVED && !s->failed) {
        if (s->set.get_timeout_ms <= 0) {
            pthread_cond_wait(&s->cv, &s->mu);
        } else if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT) {
            rc = fs_error("sample %llu did not arrive within %d ms (%zu workers connected)", (unsigned long long)index,
                          s->set.get_timeout_ms, s->stats.peers);
            goto done;
        }
    }
    if (sl->state != SLOT_ARRIVED) {
        rc = fs_error("%s", s->fail_msg);
        goto done;
    }
    *out = sl->sample;
    sl->state = SLOT_FREE;
    memset(&sl->sample, 0, sizeof sl->sample);
    s->buffered--;
    advance(s);
    update_held(s);
    wake(s);
done:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void fs_stream_get_stats(fs_stream *s, fs_stream_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}

void fs_stream_close(fs_stream *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    wake(s);
    if (s->thread_started) pthread_join(s->thread, NULL);
    stream_free(s);
}

/* ======================= synthesizer side ======================= */

static volatile sig_atomic_t worker_stop;
static void on_signal(int sig) {
    (void)sig;
    worker_stop = 1;
}

void fs_worker_settings_default(fs_worker_settings *s) {
    memset(s, 0, sizeof *s);
    s->capacity = 8;
    s->batch = 1;
    s->heartbeat_ms = 250;
    s->timeout_ms = 2000;
    s->give_up_ms = 120000;
}

typedef struct {
    void *sock;
    uint64_t seq;
    int64_t last_sent;
} wlink;

static int wsend(wlink *l, fs_msg *m) {
    m->seq = ++l->seq;
    int rc = fs_wire_send(l->sock, NULL, 0, m);
    if (rc == FS_OK) l->last_sent = now_ms();
    return rc;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int fs_worker_run(const char *endpoint, fs_make_fn make, void *ctx, const fs_worker_settings *set,
                  fs_worker_stats *stats_out) {
    fs_worker_stats st = {0};
    if (stats_out) *stats_out = st;
    if (set->capacity < 1 || set->capacity > FS_WIRE_MAX_CAPACITY)
        return fs_error("capacity %zu outside [1, %d]", set->capacity, FS_WIRE_MAX_CAPACITY);
    if (set->batch < 1 || set->batch > FS_WIRE_MAX_SAMPLES)
        return fs_error("batch %zu outside [1, %d]", set->batch, FS_WIRE_MAX_SAMPLES);
    if (set->heartbeat_ms < 10 || set->timeout_ms <= set->heartbeat_ms)
        return fs_error("heartbeat %d ms and timeout %d ms: need heartbeat >= 10 and timeout > heartbeat",
                        set->heartbeat_ms, set->timeout_ms);
    char server_key[41] = {0};
    if (set->curve_server_key && fs_wire_key_load(set->curve_server_key, server_key)) return FS_ERR;
    uint64_t *queue = malloc(set->capacity * sizeof *queue);
    fs_sample *batch = calloc(set->batch, sizeof *batch);
    fs_msg *m = malloc(sizeof *m);
    fs_wire_in *in = fs_wire_in_new();
    void *zctx = zmq_ctx_new();
    void *sock = zctx ? zmq_socket(zctx, ZMQ_DEALER) : NULL;
    int rc = FS_OK;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: zmq_poll returns EINTR */
    sigemptyset(&sa.sa_mask);
    worker_stop = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    if (!queue || !batch || !m || !in || !sock) {
        rc = fs_error("cannot set up the worker (out of memory or no ZeroMQ socket)");
        goto out;
    }
    int64_t maxmsg = FS_WIRE_MAX_HEADER * 2; /* the trainer sends headers only */
    /* IMMEDIATE: nothing is queued for a trainer not (or no longer)
     * connected, so a hello is never delivered twice after the fact. */
    if (set_int(sock, ZMQ_LINGER, 1000) || set_int(sock, ZMQ_IMMEDIATE, 1) ||
        zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg)) {
        rc = fs_error_errno("cannot set the worker socket's options");
        goto out;
    }
    if (set->curve_server_key) {
        char pub[41], sec[41];
        if (!zmq_has("curve")) {
            rc = fs_error("CURVE asked for, but this libzmq has no CURVE support");
            goto out;
        }
        if (zmq_curve_keypair(pub, sec) || zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_key, 40) ||
            zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub, 40) || zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, 40)) {
            rc = fs_error_errno("cannot set the CURVE keys");
            goto out;
        }
    }
    if (zmq_connect(sock, endpoint)) {
        rc = fs_error_errno("cannot connect to '%s'", endpoint);
        goto out;
    }
    wlink l = {sock, seq_start(), 0};
    size_t n_q = 0;
    int registered = 0, hello_due = 1, have_tseq = 0;
    uint64_t tseq = 0, hello_seq = 0;
    int64_t start = now_ms(), last_heard = start, last_hello = start;
    int hellos = 0, poll_ms = set->heartbeat_ms / 4 > 5 ? set->heartbeat_ms / 4 : 5;
    for (;;) {
        if (worker_stop) {
            m->type = FS_MSG_BYE;
            wsend(&l, m);
            drain(sock, 50);
            fs_info("signal: said bye to the trainer");
            break;
        }
        int64_t now = now_ms();
        if (registered && now - last_heard > set->timeout_ms) {
            fs_warn("trainer at %s silent for %lld ms: forgetting %zu queued requests, saying hello again", endpoint,
                    (long long)(now - last_heard), n_q);
            n_q = 0;
            registered = 0;
            hello_due = 1;
        }
        if (!registered && now - last_hello >= set->timeout_ms) hello_due = 1;
        if (set->give_up_ms > 0 && now - last_heard > set->give_up_ms) {
            rc = fs_error("trainer at %s silent for %d ms: giving up", endpoint, set->give_up_ms);
            break;
        }
        if (hello_due) {
            m->type = FS_MSG_HELLO;
            m->capacity = (uint32_t)set->capacity;
            if (set->name) snprintf(m->text, sizeof m->text, "%s", set->name);
            else snprintf(m->text, sizeof m->text, "pid %d", (int)getpid());
            if (wsend(&l, m) == FS_OK) {
                hello_due = 0;
                hello_seq = l.seq;
                last_hello = now;
                have_tseq = 0; /* a new trainer numbers from its own start */
                if (hellos++) st.resets++;
            }
        } else if (registered && now - l.last_sent >= set->heartbeat_ms) {
            m->type = FS_MSG_HEARTBEAT;
            wsend(&l, m);
        }
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, n_q ? 0 : poll_ms) < 0) {
            if (errno == EINTR) continue;
            rc = fs_error_errno("cannot poll the worker socket");
            break;
        }
        int done = 0;
        for (int k = 0; k < 64 && !done; k++) {
            int fatal = 0;
            int r = fs_wire_recv(sock, 0, FS_WIRE_MAX_HEADER, in, &fatal);
            if (r == FS_WIRE_NONE) break;
            if (r == FS_ERR) {
                if (fatal) {
                    rc = FS_ERR;
                    done = 2;
                    break;
                }
                fs_warn("rejected a message from the trainer: %s", fs_error_msg());
                st.rejected++;
                continue;
            }
            const fs_msg *t = &in->msg;
            if (have_tseq && t->seq <= tseq) {
                fs_warn("rejected a message from the trainer: seq %llu not after %llu", (unsigned long long)t->seq,
                        (unsigned long long)tseq);
                st.rejected++;
                continue;
            }
            if (t->type == FS_MSG_ERROR && t->has_ref && t->ref < hello_seq) continue; /* answers an old hello */
            tseq = t->seq;
            have_tseq = 1;
            last_heard = now_ms();
            switch (t->type) {
            case FS_MSG_REQUEST: {
                if (!registered) {
                    fs_debug("ignored a request sent before the trainer acknowledged our hello");
                    break;
                }
                if (t->n_indices > set->capacity - n_q) {
                    fs_warn("rejected a message from the trainer: request for %zu samples with room for %zu",
                            t->n_indices, set->capacity - n_q);
                    st.rejected++;
                    break;
                }
                int dup = 0;
                for (size_t a = 0; a < t->n_indices && !dup; a++)
                    for (size_t b = 0; b < n_q; b++)
                        if (queue[b] == t->indices[a]) dup = 1;
                if (dup) {
                    fs_warn("rejected a message from the trainer: request for an index already queued");
                    st.rejected++;
                    break;
                }
                memcpy(&queue[n_q], t->indices, t->n_indices * sizeof *queue);
                n_q += t->n_indices;
                break;
            }
            case FS_MSG_HEARTBEAT:
                if (t->has_ref && t->ref >= hello_seq) registered = 1;
                break;
            case FS_MSG_BYE: done = 1; break;
            case FS_MSG_ERROR:
                fs_warn("trainer says: %s; saying hello again", t->text);
                n_q = 0;
                registered = 0;
                hello_due = 1;
                break;
            default:
                fs_warn("rejected a message from the trainer: unexpected '%s'", fs_msg_type_name(t->type));
                st.rejected++;
            }
        }
        if (done == 2) break;
        if (done == 1) {
            fs_info("the trainer said bye");
            break;
        }
        if (n_q && registered) {
            size_t b = n_q < set->batch ? n_q : set->batch;
            qsort(queue, b, sizeof *queue, cmp_u64);
            for (size_t k = 0; k < b; k++) {
                memset(&batch[k], 0, sizeof batch[k]);
                if (make(ctx, queue[k], &batch[k])) {
                    char reason[FS_WIRE_MAX_TEXT];
                    snprintf(reason, sizeof reason, "%s", fs_error_msg());
                    m->type = FS_MSG_ERROR;
                    m->has_ref = 0;
                    m->n_indices = 1;
                    m->indices[0] = queue[k];
                    snprintf(m->text, sizeof m->text, "%s", reason);
                    wsend(&l, m);
                    for (size_t j = 0; j <= k; j++) fs_sample_free(&batch[j]);
                    rc = fs_error("cannot make sample %llu: %s", (unsigned long long)queue[k], reason);
                    goto out;
                }
                batch[k].index = queue[k];
            }
            int r = fs_wire_send_samples(sock, ++l.seq, batch, b, 0);
            if (r == FS_OK) {
                l.last_sent = now_ms();
                st.samples += b;
                st.messages++;
            } else {
                fs_warn("%zu samples not sent: %s", b, r == FS_WIRE_NONE ? "the trainer is not reachable" : fs_error_msg());
            }
            memmove(queue, queue + b, (n_q - b) * sizeof *queue);
            n_q -= b;
        }
    }
out:
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (sock) zmq_close(sock);
    if (zctx) zmq_ctx_term(zctx);
    fs_wire_in_free(in);
    free(m);
    free(batch);
    free(queue);
    if (stats_out) *stats_out = st;
    return rc;
}
