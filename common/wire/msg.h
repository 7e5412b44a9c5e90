/* The fewsam wire format, version 1 (schemas/wire.md): a message is one
 * ZeroMQ multipart message whose first frame (after the routing id on a
 * ROUTER) is a msgpack header map and whose following frames are raw
 * tensors, one per frame, as the header's "tensors" list describes them.
 * Every field of a received message is checked before anything uses it;
 * a message that fails a check is consumed whole and reported through
 * fs_error_msg(), so the receiver logs it and carries on. */
#ifndef FS_WIRE_MSG_H
#define FS_WIRE_MSG_H

#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

#include "data/sample.h"

#define FS_WIRE_VERSION 1
#define FS_WIRE_MAX_HEADER 65536          /* bytes of the msgpack header frame */
#define FS_WIRE_MAX_INDICES 1024          /* indices in one request */
#define FS_WIRE_MAX_SAMPLES 64            /* samples in one sample message */
#define FS_WIRE_TENSORS_PER_SAMPLE 4      /* image, label, cls, prompts */
#define FS_WIRE_MAX_TENSORS (FS_WIRE_MAX_SAMPLES * FS_WIRE_TENSORS_PER_SAMPLE)
#define FS_WIRE_MAX_RANK 4
#define FS_WIRE_MAX_DIM 65536
#define FS_WIRE_MAX_CAPACITY 4096         /* a hello's capacity */
#define FS_WIRE_MAX_TEXT 256              /* name / reason, with the NUL */
#define FS_WIRE_MAX_INDEX (UINT64_C(1) << 62)
#define FS_WIRE_DEFAULT_MAX_BYTES ((size_t)256 << 20) /* one whole message */

typedef enum {
    FS_MSG_HELLO,
    FS_MSG_REQUEST,
    FS_MSG_SAMPLE,
    FS_MSG_HEARTBEAT,
    FS_MSG_BYE,
    FS_MSG_ERROR,
    FS_MSG_NTYPES
} fs_msg_type;

typedef enum {
    FS_WIRE_U8, FS_WIRE_I8, FS_WIRE_U16, FS_WIRE_I16, FS_WIRE_U32, FS_WIRE_I32,
    FS_WIRE_U64, FS_WIRE_I64, FS_WIRE_F16, FS_WIRE_BF16, FS_WIRE_F32, FS_WIRE_F64,
    FS_WIRE_NDTYPES
} fs_wire_dtype;

typedef struct {
    char name[32];
    fs_wire_dtype dtype;
    int ndim;
    uint32_t shape[FS_WIRE_MAX_RANK];
    size_t nbytes;                     /* product(shape) * dtype size, checked */
} fs_wire_tensor;

/* A decoded header. Which fields mean something depends on the type:
 * hello: capacity, text (name, may be empty); request: indices;
 * sample: indices (one per sample) and tensors (four per sample);
 * heartbeat: ref (has_ref: the trainer acknowledging a hello);
 * error: text (reason), ref (has_ref), indices (may be none). */
typedef struct {
    fs_msg_type type;
    uint64_t seq;
    uint32_t capacity;
    int has_ref;
    uint64_t ref;                      /* the seq of the message answered */
    char text[FS_WIRE_MAX_TEXT];
    size_t n_indices;
    uint64_t indices[FS_WIRE_MAX_INDICES]; /* strictly increasing */
    size_t n_tensors;
    fs_wire_tensor tensors[FS_WIRE_MAX_TENSORS];
} fs_msg;

const char *fs_msg_type_name(fs_msg_type t);
const char *fs_wire_dtype_name(fs_wire_dtype d);
size_t fs_wire_dtype_size(fs_wire_dtype d);

/* Header encoding into a malloc'd buffer (*buf, *len; free() it). The
 * message must be valid: the encoder writes what fs_msg_decode accepts. */
int fs_msg_encode(const fs_msg *m, char **buf, size_t *len);
/* Decodes and validates a header: structure, keys, types, version, ranges,
 * sample layout. max_bytes caps the sum of the announced tensor sizes.
 * FS_ERR with the reason in fs_error_msg(). */
int fs_msg_decode(const void *buf, size_t len, size_t max_bytes, fs_msg *m);

/* One received message: the routing id (ROUTER sockets), the decoded
 * header and the tensor frames, which stay valid until the next
 * fs_wire_recv or fs_wire_in_free. */
typedef struct {
    uint8_t peer[256];
    size_t peer_len;
    fs_msg msg;
    size_t first;                      /* tensor i is frames[first + i] */
    zmq_msg_t frames[FS_WIRE_MAX_TENSORS + 2];
    int held;                          /* frames[0 .. held) are initialised */
} fs_wire_in;

enum { FS_WIRE_NONE = 1 };             /* fs_wire_recv: nothing waiting */

/* Allocates a receive buffer (it is large: keep one per socket). */
fs_wire_in *fs_wire_in_new(void);
void fs_wire_in_free(fs_wire_in *in);

/* Receives one whole multipart message without blocking and validates it:
 * header size cap, header, frame count against the announced tensors
 * (truncated or extra frames), each frame's size against its tensor, the
 * total against max_bytes. FS_OK: in->msg and the frames are valid;
 * FS_WIRE_NONE: nothing was waiting (or a signal came); FS_ERR: the message
 * was invalid and has been consumed whole (in->peer names its sender), or
 * the socket failed (errno-based message, in->peer_len == 0 and
 * *fatal set). */
int fs_wire_recv(void *sock, int router, size_t max_bytes, fs_wire_in *in, int *fatal);

/* Sends a frameless message (anything but "sample"); peer/peer_len route it
 * on a ROUTER (NULL, 0 on a DEALER). Never blocks: FS_WIRE_NONE when the
 * peer's queue is full or (ZMQ_IMMEDIATE) not connected, FS_ERR with errno
 * kept (EHOSTUNREACH: the peer is gone) on other failures. */
int fs_wire_send(void *sock, const void *peer, size_t peer_len, const fs_msg *m);

/* Sends samples[0 .. n) (indices strictly increasing, 1 <= n <=
 * FS_WIRE_MAX_SAMPLES) as one "sample" message, without copying the pixel
 * data: the image and label buffers are handed to ZeroMQ, which frees them
 * (free()) from its I/O thread once written out. Ownership passes in every
 * case, success or not: on return each sample's image and label are NULL.
 * The small object tensors are copied. block = 0: FS_WIRE_NONE when the
 * queue is full or no connection is ready (the samples are dropped). */
int fs_wire_send_samples(void *sock, uint64_t seq, fs_sample *samples, size_t n, int block);

/* Copies the samples of a received "sample" message into out[0 ..
 * in->msg.n_indices) (each allocated with fs_sample_alloc; free with
 * fs_sample_free), after checking their object data (class >= 1, finite
 * prompts). Copying is what the alignment asks: frames are only 8-byte
 * aligned and live in ZeroMQ's buffers. On FS_ERR nothing is allocated. */
int fs_wire_unpack_samples(const fs_wire_in *in, fs_sample *out);

/* The sample's tensors as the header describes them (4 per sample). */
void fs_wire_sample_tensors(const fs_sample *s, fs_wire_tensor t[FS_WIRE_TENSORS_PER_SAMPLE]);

/* "peer 00a1b2c3d4": the routing id in hex, for logs. */
const char *fs_wire_peer_str(const uint8_t *peer, size_t len, char *buf, size_t cap);

/* CURVE keys are Z85 text, 40 characters. Loads one from src: the key
 * itself, or the path of a file whose first line is the key. */
int fs_wire_key_load(const char *src, char key[41]);

#endif
