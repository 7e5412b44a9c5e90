#include "wire/msg.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static const char *type_names[FS_MSG_NTYPES] = {"hello", "request", "sample", "heartbeat", "bye", "error"};
static const char *dtype_names[FS_WIRE_NDTYPES] = {"u8", "i8", "u16", "i16", "u32", "i32",
                                                   "u64", "i64", "f16", "bf16", "f32", "f64"};
static const size_t dtype_sizes[FS_WIRE_NDTYPES] = {1, 1, 2, 2, 4, 4, 8, 8, 2, 2, 4, 8};

const char *fs_msg_type_name(fs_msg_type t) { return (unsigned)t < FS_MSG_NTYPES ? type_names[t] : "?"; }
const char *fs_wire_dtype_name(fs_wire_dtype d) { return (unsigned)d < FS_WIRE_NDTYPES ? dtype_names[d] : "?"; }
size_t fs_wire_dtype_size(fs_wire_dtype d) { return (unsigned)d < FS_WIRE_NDTYPES ? dtype_sizes[d] : 0; }

/* ---- header keys ---- */

enum { K_V, K_TYPE, K_SEQ, K_CAPACITY, K_NAME, K_INDICES, K_TENSORS, K_REASON, K_REF, K_N };
static const char *key_names[K_N] = {"v", "type", "seq", "capacity", "name", "indices", "tensors", "reason", "ref"};
#define BIT(k) (1u << (k))
/* Keys each type must carry and may carry, beyond v, type and seq. */
static const unsigned required_keys[FS_MSG_NTYPES] = {
    [FS_MSG_HELLO] = BIT(K_CAPACITY), [FS_MSG_REQUEST] = BIT(K_INDICES),
    [FS_MSG_SAMPLE] = BIT(K_INDICES) | BIT(K_TENSORS), [FS_MSG_ERROR] = BIT(K_REASON)};
static const unsigned optional_keys[FS_MSG_NTYPES] = {
    [FS_MSG_HELLO] = BIT(K_NAME), [FS_MSG_HEARTBEAT] = BIT(K_REF), [FS_MSG_ERROR] = BIT(K_REF) | BIT(K_INDICES)};

/* Copies up to cap-1 bytes of untrusted text, printable ASCII only, so that
 * logging it can never garble a terminal or a log line. */
static void safe_copy(char *dst, size_t cap, const char *src, size_t len) {
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++) dst[i] = isprint((unsigned char)src[i]) ? src[i] : '?';
    dst[n] = 0;
}

static int str_is(const msgpack_object *o, const char *s) {
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && !memcmp(o->via.str.ptr, s, n);
}

/* ---- structural pre-scan ---- */

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* Walks the msgpack bytes building nothing: every container's element count
 * must fit in the bytes left (an element takes at least one byte), so the
 * unpacker never allocates room for elements that are not there, and the
 * frame must hold exactly one object. */
static int prescan(const uint8_t *p, size_t len) {
    size_t pos = 0;
    uint64_t pending = 1;
    while (pending) {
        if (pos >= len) return fs_error("header is truncated msgpack (%zu bytes)", len);
        uint8_t c = p[pos++];
        pending--;
        uint64_t add = 0, skip = 0;
        int lenbytes = 0, extra = 0;
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
        } else if (c <= 0x8f) {
            add = 2u * (c & 0x0f);
        } else if (c <= 0x9f) {
            add = c & 0x0f;
        } else if (c <= 0xbf) {
            skip = c & 0x1f;
        } else {
            switch (c) {
            case 0xc4: case 0xd9: lenbytes = 1; break;           /* bin8, str8 */
            case 0xc5: case 0xda: lenbytes = 2; break;           /* bin16, str16 */
            case 0xc6: case 0xdb: lenbytes = 4; break;           /* bin32, str32 */
            case 0xc7: lenbytes = 1; extra = 1; break;           /* ext8 */
            case 0xc8: lenbytes = 2; extra = 1; break;
            case 0xc9: lenbytes = 4; extra = 1; break;
            case 0xca: skip = 4; break;
            case 0xcb: skip = 8; break;
            case 0xcc: case 0xd0: skip = 1; break;
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xce: case 0xd2: skip = 4; break;
            case 0xcf: case 0xd3: skip = 8; break;
            case 0xd4: skip = 2; break;                          /* fixext 1..16 */
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xdc: case 0xde: lenbytes = 2; break;           /* array16, map16 */
            case 0xdd: case 0xdf: lenbytes = 4; break;           /* array32, map32 */
            default: return fs_error("header is not valid msgpack (byte 0x%02x at offset %zu)", c, pos - 1);
            }
        }
        if (lenbytes) {
            if ((size_t)lenbytes > len - pos) return fs_error("header is truncated msgpack (%zu bytes)", len);
            uint64_t n = be(p + pos, lenbytes);
            pos += (size_t)lenbytes;
            if (c >= 0xdc && c <= 0xdd) add = n;
            else if (c >= 0xde) add = 2 * n;
            else skip = n + (uint64_t)extra;
        }
        if (skip > len - pos) return fs_error("header is truncated msgpack (%zu bytes)", len);
        pos += (size_t)skip;
        pending += add;
        if (pending > len - pos)
            return fs_error("header announces %llu more msgpack elements in %zu bytes",
                            (unsigned long long)pending, len - pos);
    }
    if (pos != len) return fs_error("%zu stray bytes after the header map", len - pos);
    return FS_OK;
}

/* ---- decoding ---- */

static int get_uint(const msgpack_object *o, const char *what, uint64_t *v) {
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return fs_error("'%s' is not an unsigned integer", what);
    *v = o->via.u64;
    return FS_OK;
}

static int get_text(const msgpack_object *o, const char *what, char *dst) {
    if (o->type != MSGPACK_OBJECT_STR) return fs_error("'%s' is not a string", what);
    if (o->via.str.size >= FS_WIRE_MAX_TEXT)
        return fs_error("'%s' of %u bytes is over the %d-byte cap", what, o->via.str.size, FS_WIRE_MAX_TEXT - 1);
    safe_copy(dst, FS_WIRE_MAX_TEXT, o->via.str.ptr, o->via.str.size);
    return FS_OK;
}

static int get_indices(const msgpack_object *o, size_t lo, size_t hi, fs_msg *m) {
    if (o->type != MSGPACK_OBJECT_ARRAY) return fs_error("'indices' is not an array");
    size_t n = o->via.array.size;
    if (n < lo || n > hi) return fs_error("%zu indices, outside [%zu, %zu]", n, lo, hi);
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 0;
        if (get_uint(&o->via.array.ptr[i], "indices[]", &v)) return FS_ERR;
        if (v >= FS_WIRE_MAX_INDEX) return fs_error("index %llu out of range", (unsigned long long)v);
        if (i && v <= m->indices[i - 1])
            return fs_error("indices not strictly increasing (%llu after %llu)", (unsigned long long)v,
                            (unsigned long long)m->indices[i - 1]);
        m->indices[i] = v;
    }
    m->n_indices = n;
    return FS_OK;
}

static int get_tensor(const msgpack_object *o, size_t i, size_t max_bytes, fs_wire_tensor *t) {
    if (o->type != MSGPACK_OBJECT_MAP) return fs_error("tensor %zu is not a map", i);
    const msgpack_object *name = NULL, *dtype = NULL, *shape = NULL, *bytes = NULL;
    for (uint32_t k = 0; k < o->via.map.size; k++) {
        const msgpack_object *key = &o->via.map.ptr[k].key, *val = &o->via.map.ptr[k].val;
        const msgpack_object **slot = str_is(key, "name") ? &name : str_is(key, "dtype") ? &dtype
                                    : str_is(key, "shape") ? &shape : str_is(key, "bytes") ? &bytes : NULL;
        if (!slot) {
            char kb[40] = "?";
            if (key->type == MSGPACK_OBJECT_STR) safe_copy(kb, sizeof kb, key->via.str.ptr, key->via.str.size);
            return fs_error("tensor %zu: unknown key '%s'", i, kb);
        }
        if (*slot) return fs_error("tensor %zu: duplicate key", i);
        *slot = val;
    }
    if (!name || !dtype || !shape || !bytes) return fs_error("tensor %zu: needs name, dtype, shape and bytes", i);
    if (name->type != MSGPACK_OBJECT_STR || name->via.str.size == 0 || name->via.str.size >= sizeof t->name)
        return fs_error("tensor %zu: name is not a string of 1 to %zu bytes", i, sizeof t->name - 1);
    safe_copy(t->name, sizeof t->name, name->via.str.ptr, name->via.str.size);
    if (dtype->type != MSGPACK_OBJECT_STR) return fs_error("tensor %zu: dtype is not a string", i);
    int d = -1;
    for (int k = 0; k < FS_WIRE_NDTYPES; k++)
        if (str_is(dtype, dtype_names[k])) d = k;
    if (d < 0) {
        char db[40];
        safe_copy(db, sizeof db, dtype->via.str.ptr, dtype->via.str.size);
        return fs_error("tensor %zu: unknown dtype '%s'", i, db);
    }
    t->dtype = (fs_wire_dtype)d;
    if (shape->type != MSGPACK_OBJECT_ARRAY) return fs_error("tensor %zu: shape is not an array", i);
    if (shape->via.array.size > FS_WIRE_MAX_RANK)
        return fs_error("tensor %zu: rank %u over the cap of %d", i, shape->via.array.size, FS_WIRE_MAX_RANK);
    t->ndim = (int)shape->via.array.size;
    /* dims <= 2^16 and rank <= 4 could overflow 64 bits, so the running
     * product stops as soon as it passes the cap */
    uint64_t numel = 1;
    int zero = 0;
    for (int k = 0; k < t->ndim; k++) {
        uint64_t v = 0;
        if (get_uint(&shape->via.array.ptr[k], "shape[]", &v)) return fs_error_wrap("tensor %zu", i);
        if (v > FS_WIRE_MAX_DIM) return fs_error("tensor %zu: dimension %llu over the cap of %d", i,
                                                 (unsigned long long)v, FS_WIRE_MAX_DIM);
        t->shape[k] = (uint32_t)v;
        zero |= v == 0;
        if (numel <= max_bytes) numel *= v;
    }
    if (zero) numel = 0;
    uint64_t nb = 0;
    if (get_uint(bytes, "bytes", &nb)) return fs_error_wrap("tensor %zu", i);
    if (numel > max_bytes || numel * dtype_sizes[d] > max_bytes)
        return fs_error("tensor %zu: shape is over the %zu-byte message cap", i, max_bytes);
    if (numel * dtype_sizes[d] != nb)
        return fs_error("tensor %zu '%s': shape and dtype %s make %llu bytes, the header says %llu", i, t->name,
                        dtype_names[d], (unsigned long long)(numel * dtype_sizes[d]), (unsigned long long)nb);
    t->nbytes = (size_t)nb;
    return FS_OK;
}

static int tensor_is(const fs_wire_tensor *t, const char *name, fs_wire_dtype dt, int ndim) {
    return !strcmp(t->name, name) && t->dtype == dt && t->ndim == ndim;
}

/* The sample layout: four tensors per sample, in this order. */
static int check_sample_layout(const fs_msg *m) {
    if (m->n_tensors != FS_WIRE_TENSORS_PER_SAMPLE * m->n_indices)
        return fs_error("%zu tensors for %zu samples (%d each)", m->n_tensors, m->n_indices,
                        FS_WIRE_TENSORS_PER_SAMPLE);
    for (size_t k = 0; k < m->n_indices; k++) {
        const fs_wire_tensor *t = &m->tensors[FS_WIRE_TENSORS_PER_SAMPLE * k];
        size_t at = FS_WIRE_TENSORS_PER_SAMPLE * k;
        if (!tensor_is(&t[0], "image", FS_WIRE_F32, 2) || t[0].shape[0] == 0 || t[0].shape[1] == 0)
            return fs_error("tensor %zu: expected 'image' f32 [h, w]", at);
        if (!tensor_is(&t[1], "label", FS_WIRE_U8, 2) || t[1].shape[0] != t[0].shape[0] ||
            t[1].shape[1] != t[0].shape[1])
            return fs_error("tensor %zu: expected 'label' u8 [%u, %u]", at + 1, t[0].shape[0], t[0].shape[1]);
        if (!tensor_is(&t[2], "cls", FS_WIRE_U8, 1) || t[2].shape[0] > FS_SAMPLE_MAX_OBJECTS)
            return fs_error("tensor %zu: expected 'cls' u8 [n], n <= %d", at + 2, FS_SAMPLE_MAX_OBJECTS);
        if (!tensor_is(&t[3], "prompts", FS_WIRE_F32, 2) || t[3].shape[0] != t[2].shape[0] || t[3].shape[1] != 6)
            return fs_error("tensor %zu: expected 'prompts' f32 [%u, 6]", at + 3, t[2].shape[0]);
    }
    return FS_OK;
}

static int decode_object(const msgpack_object *o, size_t max_bytes, fs_msg *m) {
    m->seq = 0;
    m->capacity = 0;
    m->has_ref = 0;
    m->ref = 0;
    m->text[0] = 0;
    m->n_indices = m->n_tensors = 0;
    if (o->type != MSGPACK_OBJECT_MAP) return fs_error("header is not a map");
    const msgpack_object *val[K_N] = {0};
    unsigned present = 0;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *key = &o->via.map.ptr[i].key;
        if (key->type != MSGPACK_OBJECT_STR) return fs_error("header key %u is not a string", i);
        int k = -1;
        for (int j = 0; j < K_N; j++)
            if (str_is(key, key_names[j])) k = j;
        if (k < 0) {
            char kb[40];
            safe_copy(kb, sizeof kb, key->via.str.ptr, key->via.str.size);
            return fs_error("unknown key '%s'", kb);
        }
        if (present & BIT(k)) return fs_error("duplicate key '%s'", key_names[k]);
        present |= BIT(k);
        val[k] = &o->via.map.ptr[i].val;
    }
    uint64_t v = 0;
    if (!val[K_V]) return fs_error("no version ('v')");
    if (get_uint(val[K_V], "v", &v)) return FS_ERR;
    if (v != FS_WIRE_VERSION)
        return fs_error("unsupported version %llu (this build speaks version %d)", (unsigned long long)v,
                        FS_WIRE_VERSION);
    if (!val[K_TYPE]) return fs_error("no message type ('type')");
    if (val[K_TYPE]->type != MSGPACK_OBJECT_STR) return fs_error("'type' is not a string");
    int t = -1;
    for (int j = 0; j < FS_MSG_NTYPES; j++)
        if (str_is(val[K_TYPE], type_names[j])) t = j;
    if (t < 0) {
        char tb[40];
        safe_copy(tb, sizeof tb, val[K_TYPE]->via.str.ptr, val[K_TYPE]->via.str.size);
        return fs_error("unknown message type '%s'", tb);
    }
    m->type = (fs_msg_type)t;
    if (!val[K_SEQ]) return fs_error("no sequence number ('seq')");
    if (get_uint(val[K_SEQ], "seq", &m->seq)) return FS_ERR;
    unsigned allowed = BIT(K_V) | BIT(K_TYPE) | BIT(K_SEQ) | required_keys[t] | optional_keys[t];
    for (int k = 0; k < K_N; k++) {
        if ((present & BIT(k)) && !(allowed & BIT(k)))
            return fs_error("key '%s' is not allowed in a '%s' message", key_names[k], type_names[t]);
        if ((required_keys[t] & BIT(k)) && !(present & BIT(k)))
            return fs_error("'%s' message without '%s'", type_names[t], key_names[k]);
    }
    if (val[K_CAPACITY]) {
        if (get_uint(val[K_CAPACITY], "capacity", &v)) return FS_ERR;
        if (v < 1 || v > FS_WIRE_MAX_CAPACITY)
            return fs_error("capacity %llu outside [1, %d]", (unsigned long long)v, FS_WIRE_MAX_CAPACITY);
        m->capacity = (uint32_t)v;
    }
    if (val[K_NAME] && get_text(val[K_NAME], "name", m->text)) return FS_ERR;
    if (val[K_REASON] && get_text(val[K_REASON], "reason", m->text)) return FS_ERR;
    if (val[K_REF]) {
        if (get_uint(val[K_REF], "ref", &m->ref)) return FS_ERR;
        m->has_ref = 1;
    }
    if (val[K_INDICES]) {
        size_t lo = t == FS_MSG_ERROR ? 0 : 1, hi = t == FS_MSG_SAMPLE ? FS_WIRE_MAX_SAMPLES : FS_WIRE_MAX_INDICES;
        if (get_indices(val[K_INDICES], lo, hi, m)) return FS_ERR;
    }
    if (val[K_TENSORS]) {
        const msgpack_object *ts = val[K_TENSORS];
        if (ts->type != MSGPACK_OBJECT_ARRAY) return fs_error("'tensors' is not an array");
        if (ts->via.array.size > FS_WIRE_MAX_TENSORS)
            return fs_error("%u tensors, over the cap of %d", ts->via.array.size, FS_WIRE_MAX_TENSORS);
        size_t total = 0;
        for (uint32_t i = 0; i < ts->via.array.size; i++) {
            if (get_tensor(&ts->via.array.ptr[i], i, max_bytes, &m->tensors[i])) return FS_ERR;
            total += m->tensors[i].nbytes;
            if (total > max_bytes) return fs_error("tensors of over %zu bytes in all, the message cap", max_bytes);
        }
        m->n_tensors = ts->via.array.size;
    }
    if (t == FS_MSG_SAMPLE) return check_sample_layout(m);
    return FS_OK;
}

int fs_msg_decode(const void *buf, size_t len, size_t max_bytes, fs_msg *m) {
    if (len == 0) return fs_error("empty header frame");
    if (len > FS_WIRE_MAX_HEADER) return fs_error("header of %zu bytes over the %d-byte cap", len, FS_WIRE_MAX_HEADER);
    if (prescan(buf, len)) return FS_ERR;
    if (max_bytes > ((size_t)1 << 40)) max_bytes = (size_t)1 << 40; /* keeps size products in 64 bits */
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int r = msgpack_unpack_next(&u, buf, len, &off);
    int rc = r == MSGPACK_UNPACK_SUCCESS ? decode_object(&u.data, max_bytes, m)
                                         : fs_error("header is not valid msgpack (unpacker said %d)", r);
    msgpack_unpacked_destroy(&u);
    return rc;
}

/* ---- encoding ---- */

static void pack_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

int fs_msg_encode(const fs_msg *m, char **buf, size_t *len) {
    if ((unsigned)m->type >= FS_MSG_NTYPES) return fs_error("cannot encode message type %d", (int)m->type);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    fs_msg_type t = m->type;
    int with_name = t == FS_MSG_HELLO && m->text[0];
    int with_ref = (t == FS_MSG_ERROR || t == FS_MSG_HEARTBEAT) && m->has_ref;
    int with_indices = t == FS_MSG_REQUEST || t == FS_MSG_SAMPLE || (t == FS_MSG_ERROR && m->n_indices);
    size_t n = 3 + (t == FS_MSG_HELLO) + with_name + with_ref + with_indices + (t == FS_MSG_SAMPLE) +
               (t == FS_MSG_ERROR);
    msgpack_pack_map(&pk, n);
    pack_str(&pk, "v");
    msgpack_pack_uint64(&pk, FS_WIRE_VERSION);
    pack_str(&pk, "type");
    pack_str(&pk, type_names[t]);
    pack_str(&pk, "seq");
    msgpack_pack_uint64(&pk, m->seq);
    if (t == FS_MSG_HELLO) {
        pack_str(&pk, "capacity");
        msgpack_pack_uint64(&pk, m->capacity);
    }
    if (with_name) {
        pack_str(&pk, "name");
        pack_str(&pk, m->text);
    }
    if (t == FS_MSG_ERROR) {
        pack_str(&pk, "reason");
        pack_str(&pk, m->text);
    }
    if (with_ref) {
        pack_str(&pk, "ref");
        msgpack_pack_uint64(&pk, m->ref);
    }
    if (with_indices) {
        pack_str(&pk, "indices");
        msgpack_pack_array(&pk, m->n_indices);
        for (size_t i = 0; i < m->n_indices; i++) msgpack_pack_uint64(&pk, m->indices[i]);
    }
    if (t == FS_MSG_SAMPLE) {
        pack_str(&pk, "tensors");
        msgpack_pack_array(&pk, m->n_tensors);
        for (size_t i = 0; i < m->n_tensors; i++) {
            const fs_wire_tensor *ts = &m->tensors[i];
            msgpack_pack_map(&pk, 4);
            pack_str(&pk, "name");
            pack_str(&pk, ts->name);
            pack_str(&pk, "dtype");
            pack_str(&pk, fs_wire_dtype_name(ts->dtype));
            pack_str(&pk, "shape");
            msgpack_pack_array(&pk, (size_t)ts->ndim);
            for (int k = 0; k < ts->ndim; k++) msgpack_pack_uint32(&pk, ts->shape[k]);
            pack_str(&pk, "bytes");
            msgpack_pack_uint64(&pk, ts->nbytes);
        }
    }
    if (!sb.data) return fs_error("out of memory encoding a message header");
    *buf = sb.data;
    *len = sb.size;
    return FS_OK;
}

/* ---- sockets ---- */

fs_wire_in *fs_wire_in_new(void) {
    fs_wire_in *in = calloc(1, sizeof *in);
    if (!in) fs_error("out of memory for a receive buffer");
    return in;
}

static void in_release(fs_wire_in *in) {
    for (int i = 0; i < in->held; i++) zmq_msg_close(&in->frames[i]);
    in->held = 0;
}

void fs_wire_in_free(fs_wire_in *in) {
    if (!in) return;
    in_release(in);
    free(in);
}

int fs_wire_recv(void *sock, int router, size_t max_bytes, fs_wire_in *in, int *fatal) {
    in_release(in);
    in->peer_len = 0;
    in->first = 0;
    if (fatal) *fatal = 0;
    zmq_msg_t *f = in->frames;
    zmq_msg_init(&f[0]);
    in->held = 1;
    if (zmq_msg_recv(&f[0], sock, ZMQ_DONTWAIT) < 0) {
        int e = errno;
        in_release(in);
        if (e == EAGAIN || e == EINTR) return FS_WIRE_NONE;
        if (fatal) *fatal = 1;
        errno = e;
        return fs_error_errno("cannot receive a message");
    }
    /* The rest of a multipart message is already here: read it all, even
     * past what we keep, so that the next read starts a new message. */
    const int cap = FS_WIRE_MAX_TENSORS + 2;
    size_t extra = 0, total = router ? 0 : zmq_msg_size(&f[0]);
    int more = zmq_msg_more(&f[0]);
    while (more) {
        zmq_msg_t scratch, *dst = in->held < cap ? &f[in->held] : &scratch;
        zmq_msg_init(dst);
        int rc;
        do rc = zmq_msg_recv(dst, sock, 0);
        while (rc < 0 && errno == EINTR);
        if (rc < 0) {
            zmq_msg_close(dst);
            in_release(in);
            if (fatal) *fatal = 1;
            return fs_error_errno("cannot receive the rest of a message");
        }
        total += zmq_msg_size(dst);
        more = zmq_msg_more(dst);
        if (dst == &scratch) {
            zmq_msg_close(dst);
            extra++;
        } else {
            in->held++;
        }
    }
    size_t hdr = 0;
    if (router) {
        in->peer_len = zmq_msg_size(&f[0]) < sizeof in->peer ? zmq_msg_size(&f[0]) : sizeof in->peer;
        memcpy(in->peer, zmq_msg_data(&f[0]), in->peer_len);
        hdr = 1;
        if (in->held < 2) return fs_error("message without a header frame");
    }
    if (total > max_bytes + FS_WIRE_MAX_HEADER)
        return fs_error("message of %zu bytes over the %zu-byte cap", total, max_bytes);
    if (fs_msg_decode(zmq_msg_data(&f[hdr]), zmq_msg_size(&f[hdr]), max_bytes, &in->msg)) return FS_ERR;
    in->first = hdr + 1;
    size_t got = (size_t)in->held - in->first + extra, want = in->msg.n_tensors;
    if (got < want)
        return fs_error("truncated message: the header announces %zu tensor frames, %zu arrived", want, got);
    if (got > want) return fs_error("%zu extra frames after the %zu announced tensor frames", got - want, want);
    for (size_t i = 0; i < want; i++) {
        size_t sz = zmq_msg_size(&f[in->first + i]);
        if (sz != in->msg.tensors[i].nbytes)
            return fs_error("tensor %zu '%s': frame of %zu bytes, the header says %zu", i, in->msg.tensors[i].name,
                            sz, in->msg.tensors[i].nbytes);
    }
    return FS_OK;
}

int fs_wire_send(void *sock, const void *peer, size_t peer_len, const fs_msg *m) {
    char *buf;
    size_t len;
    if (fs_msg_encode(m, &buf, &len)) return FS_ERR;
    int rc = 0;
    if (peer) rc = zmq_send(sock, peer, peer_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0) rc = zmq_send(sock, buf, len, ZMQ_DONTWAIT);
    int e = errno;
    free(buf);
    if (rc >= 0) return FS_OK;
    if (e == EAGAIN) return FS_WIRE_NONE;
    errno = e;
    fs_error_errno("cannot send a '%s' message", fs_msg_type_name(m->type));
    errno = e;
    return FS_ERR;
}

void fs_wire_sample_tensors(const fs_sample *s, fs_wire_tensor t[FS_WIRE_TENSORS_PER_SAMPLE]) {
    memset(t, 0, FS_WIRE_TENSORS_PER_SAMPLE * sizeof *t);
    strcpy(t[0].name, "image");
    t[0].dtype = FS_WIRE_F32;
    strcpy(t[1].name, "label");
    t[1].dtype = FS_WIRE_U8;
    for (int k = 0; k < 2; k++) {
        t[k].ndim = 2;
        t[k].shape[0] = (uint32_t)s->h;
        t[k].shape[1] = (uint32_t)s->w;
    }
    t[0].nbytes = s->h * s->w * sizeof(float);
    t[1].nbytes = s->h * s->w;
    strcpy(t[2].name, "cls");
    t[2].dtype = FS_WIRE_U8;
    t[2].ndim = 1;
    t[2].shape[0] = (uint32_t)s->n_objects;
    t[2].nbytes = s->n_objects;
    strcpy(t[3].name, "prompts");
    t[3].dtype = FS_WIRE_F32;
    t[3].ndim = 2;
    t[3].shape[0] = (uint32_t)s->n_objects;
    t[3].shape[1] = 6;
    t[3].nbytes = s->n_objects * 6 * sizeof(float);
}

/* Runs on libzmq's I/O thread once a zero-copy frame has been written. */
static void free_frame(void *data, void *hint) {
    (void)hint;
    free(data);
}

static void drop_pixels(fs_sample *s, size_t n) {
    for (size_t k = 0; k < n; k++) fs_sample_free(&s[k]);
}

int fs_wire_send_samples(void *sock, uint64_t seq, fs_sample *s, size_t n, int block) {
    if (n < 1 || n > FS_WIRE_MAX_SAMPLES) {
        drop_pixels(s, n > FS_WIRE_MAX_SAMPLES ? FS_WIRE_MAX_SAMPLES : n);
        return fs_error("cannot send %zu samples in one message (1 to %d)", n, FS_WIRE_MAX_SAMPLES);
    }
    for (size_t k = 0; k < n; k++) {
        const fs_sample *x = &s[k];
        if (!x->image || !x->label || x->h < 1 || x->w < 1 || x->h > FS_WIRE_MAX_DIM || x->w > FS_WIRE_MAX_DIM ||
            x->n_objects > FS_SAMPLE_MAX_OBJECTS || x->index >= FS_WIRE_MAX_INDEX || (k && x->index <= s[k - 1].index)) {
            drop_pixels(s, n);
            return fs_error("cannot send sample %llu: empty, out of range or out of order",
                            (unsigned long long)x->index);
        }
    }
    fs_msg *m = malloc(sizeof *m);
    if (!m) {
        drop_pixels(s, n);
        return fs_error("out of memory for a message");
    }
    m->type = FS_MSG_SAMPLE;
    m->seq = seq;
    m->n_indices = n;
    m->n_tensors = n * FS_WIRE_TENSORS_PER_SAMPLE;
    for (size_t k = 0; k < n; k++) {
        m->indices[k] = s[k].index;
        fs_wire_sample_tensors(&s[k], &m->tensors[k * FS_WIRE_TENSORS_PER_SAMPLE]);
    }
    char *buf;
    size_t len;
    int rc = fs_msg_encode(m, &buf, &len);
    free(m);
    if (rc) {
        drop_pixels(s, n);
        return FS_ERR;
    }
    rc = zmq_send(sock, buf, len, ZMQ_SNDMORE | (block ? 0 : ZMQ_DONTWAIT));
    int e = errno;
    free(buf);
    if (rc < 0) {
        drop_pixels(s, n);
        if (e == EAGAIN) return FS_WIRE_NONE;
        errno = e;
        return fs_error_errno("cannot send a 'sample' message");
    }
    /* Once the first frame is queued, ZeroMQ takes the rest of the message. */
    int failed = 0;
    for (size_t k = 0; k < n; k++) {
        fs_sample *x = &s[k];
        void *bufs[2] = {x->image, x->label};
        size_t sizes[2] = {x->h * x->w * sizeof(float), x->h * x->w};
        x->image = NULL;
        x->label = NULL;
        for (int j = 0; j < 2; j++) {
            zmq_msg_t msg;
            if (zmq_msg_init_data(&msg, bufs[j], sizes[j], free_frame, NULL)) {
                free(bufs[j]);
                failed = 1;
                continue;
            }
            if (failed || zmq_msg_send(&msg, sock, ZMQ_SNDMORE) < 0) {
                zmq_msg_close(&msg);
                failed = 1;
            }
        }
        uint8_t cls[FS_SAMPLE_MAX_OBJECTS];
        float pr[FS_SAMPLE_MAX_OBJECTS * 6];
        for (size_t j = 0; j < x->n_objects; j++) {
            cls[j] = x->objects[j].cls;
            memcpy(&pr[6 * j], x->objects[j].point, 2 * sizeof(float));
            memcpy(&pr[6 * j + 2], x->objects[j].box, 4 * sizeof(float));
        }
        if (!failed && zmq_send(sock, cls, x->n_objects, ZMQ_SNDMORE) < 0) failed = 1;
        if (!failed && zmq_send(sock, pr, x->n_objects * 6 * sizeof(float), k + 1 < n ? ZMQ_SNDMORE : 0) < 0)
            failed = 1;
    }
    if (failed) return fs_error_errno("cannot send the frames of a 'sample' message");
    return FS_OK;
}

int fs_wire_unpack_samples(const fs_wire_in *in, fs_sample *out) {
    const fs_msg *m = &in->msg;
    if (m->type != FS_MSG_SAMPLE) return fs_error("not a 'sample' message");
    /* every check first, so that a bad message allocates nothing */
    for (size_t k = 0; k < m->n_indices; k++) {
        size_t f = in->first + k * FS_WIRE_TENSORS_PER_SAMPLE;
        const uint8_t *cls = zmq_msg_data((zmq_msg_t *)&in->frames[f + 2]);
        const uint8_t *pr = zmq_msg_data((zmq_msg_t *)&in->frames[f + 3]);
        size_t n = m->tensors[k * FS_WIRE_TENSORS_PER_SAMPLE + 2].shape[0];
        for (size_t j = 0; j < n; j++) {
            if (cls[j] < 1)
                return fs_error("sample %llu: object %zu has class 0 (background)", (unsigned long long)m->indices[k], j);
            float v[6];
            memcpy(v, pr + 24 * j, sizeof v); /* frames are only 8-byte aligned: no float* casts */
            for (int q = 0; q < 6; q++)
                if (!isfinite(v[q]))
                    return fs_error("sample %llu: object %zu has a non-finite prompt", (unsigned long long)m->indices[k], j);
        }
    }
    for (size_t k = 0; k < m->n_indices; k++) {
        size_t f = in->first + k * FS_WIRE_TENSORS_PER_SAMPLE;
        const fs_wire_tensor *t = &m->tensors[k * FS_WIRE_TENSORS_PER_SAMPLE];
        fs_sample *s = &out[k];
        if (fs_sample_alloc(s, t[0].shape[0], t[0].shape[1])) {
            drop_pixels(out, k);
            return FS_ERR;
        }
        s->index = m->indices[k];
        memcpy(s->image, zmq_msg_data((zmq_msg_t *)&in->frames[f]), t[0].nbytes);
        memcpy(s->label, zmq_msg_data((zmq_msg_t *)&in->frames[f + 1]), t[1].nbytes);
        const uint8_t *cls = zmq_msg_data((zmq_msg_t *)&in->frames[f + 2]);
        const uint8_t *pr = zmq_msg_data((zmq_msg_t *)&in->frames[f + 3]);
        s->n_objects = t[2].shape[0];
        for (size_t j = 0; j < s->n_objects; j++) {
            s->objects[j].cls = cls[j];
            memcpy(s->objects[j].point, pr + 24 * j, 2 * sizeof(float));
            memcpy(s->objects[j].box, pr + 24 * j + 8, 4 * sizeof(float));
        }
    }
    return FS_OK;
}

const char *fs_wire_peer_str(const uint8_t *peer, size_t len, char *buf, size_t cap) {
    size_t o = (size_t)snprintf(buf, cap, "peer ");
    for (size_t i = 0; i < len && i < 16 && o + 3 < cap; i++) o += (size_t)snprintf(buf + o, cap - o, "%02x", peer[i]);
    return buf;
}

static int is_z85(const char *s, size_t n) {
    static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    if (n != 40) return 0;
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr(alphabet, s[i])) return 0;
    return 1;
}

int fs_wire_key_load(const char *src, char key[41]) {
    if (is_z85(src, strlen(src))) {
        memcpy(key, src, 41);
        return FS_OK;
    }
    FILE *f = fopen(src, "r");
    if (!f) return fs_error_errno("cannot open CURVE key file '%s'", src);
    char line[128] = {0};
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    while (n && isspace((unsigned char)line[n - 1])) n--;
    line[n] = 0;
    if (!is_z85(line, n)) return fs_error("'%s': not a CURVE key (40 characters of Z85)", src);
    memcpy(key, line, 41);
    return FS_OK;
}
