/* The restricted unpickler (see pickle.h). Every read is checked against the
 * bytes left, the stack and mark stack are capped, memo indices are bounded
 * by the pickle's length, and every value is registered with the machine so
 * one pass frees them all on any exit. */
#include "io/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define PK_MAX_STACK (1u << 20)
#define PK_MAX_MARKS 4096u
#define PK_MAX_MEMO (1u << 24)
#define PK_MAX_LINE 256u
#define PK_MAX_NUMEL ((uint64_t)1 << 48)
#define PK_MAX_VALUES (1u << 21) /* a ViT-H state dict makes ~10^4 */

enum { G_ORDERED_DICT = 1, G_REBUILD_V2, G_REBUILD, G_REBUILD_PARAM, G_REBUILD_PARAM_STATE, G_STORAGE };

struct fs_pickle {
    fs_pk_value **all;
    size_t n_all, cap_all;
    fs_pk_value **stack;
    size_t sp, cap_stack;
    size_t *marks;
    size_t n_marks, cap_marks;
    fs_pk_value **memo;
    size_t cap_memo, n_memo;
    const unsigned char *d;
    size_t n, pos, at; /* at: offset of the current opcode */
    const char *what;
    fs_pk_value *none, *yes, *no; /* shared: a pickle of many Nones costs no memory per item */
};

static int pk_fail(fs_pickle *pk, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pk_fail(fs_pickle *pk, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fs_error("%s: %s at offset %zu", pk->what, msg, pk->at);
}

void fs_pickle_free(fs_pickle *pk) {
    if (!pk) return;
    for (size_t i = 0; i < pk->n_all; i++) {
        fs_pk_value *v = pk->all[i];
        free(v->s);
        free(v->items);
        free(v->tensor);
        free(v);
    }
    free(pk->all);
    free(pk->stack);
    free(pk->marks);
    free(pk->memo);
    free(pk);
}

/* Grows *arr (of *cap elements of size es) to hold at least need. */
static int grow(void *arr, size_t *cap, size_t need, size_t es) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *p = realloc(*(void **)arr, c * es);
    if (!p) return -1;
    *(void **)arr = p;
    *cap = c;
    return 0;
}

static fs_pk_value *new_value(fs_pickle *pk, fs_pk_kind kind) {
    if (pk->n_all >= PK_MAX_VALUES) return NULL;
    if (grow(&pk->all, &pk->cap_all, pk->n_all + 1, sizeof *pk->all)) return NULL;
    fs_pk_value *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->kind = kind;
    pk->all[pk->n_all++] = v;
    return v;
}

static int oom(fs_pickle *pk) {
    if (pk->n_all >= PK_MAX_VALUES) return pk_fail(pk, "more than %u objects in the pickle", PK_MAX_VALUES);
    return pk_fail(pk, "out of memory");
}

static fs_pk_value *shared(fs_pickle *pk, fs_pk_value **slot, fs_pk_kind kind, int64_t i) {
    if (!*slot && (*slot = new_value(pk, kind))) (*slot)->i = i;
    return *slot;
}

static int append(fs_pickle *pk, fs_pk_value *c, fs_pk_value *item) {
    if (grow(&c->items, &c->cap, c->n + 1, sizeof *c->items)) return oom(pk);
    c->items[c->n++] = item;
    return FS_OK;
}

static int push(fs_pickle *pk, fs_pk_value *v) {
    if (!v) return oom(pk);
    if (pk->sp >= PK_MAX_STACK) return pk_fail(pk, "pickle stack deeper than %u", PK_MAX_STACK);
    if (grow(&pk->stack, &pk->cap_stack, pk->sp + 1, sizeof *pk->stack)) return oom(pk);
    pk->stack[pk->sp++] = v;
    return FS_OK;
}

static size_t floor_sp(const fs_pickle *pk) { return pk->n_marks ? pk->marks[pk->n_marks - 1] : 0; }

static int pop(fs_pickle *pk, fs_pk_value **v) {
    if (pk->sp <= floor_sp(pk)) return pk_fail(pk, "pickle stack underflow");
    *v = pk->stack[--pk->sp];
    return FS_OK;
}

static int top(fs_pickle *pk, fs_pk_value **v) {
    if (pk->sp <= floor_sp(pk)) return pk_fail(pk, "pickle stack underflow");
    *v = pk->stack[pk->sp - 1];
    return FS_OK;
}

/* Items since the last MARK: stack[*start .. sp); they are popped with it. */
static int pop_mark(fs_pickle *pk, size_t *start) {
    if (!pk->n_marks) return pk_fail(pk, "no MARK on the pickle stack");
    *start = pk->marks[--pk->n_marks];
    return FS_OK;
}

static int need(fs_pickle *pk, uint64_t k) {
    if (k > pk->n - pk->pos) return pk_fail(pk, "truncated pickle (operand runs past the end of the data)");
    return FS_OK;
}

static uint64_t rd_le(const unsigned char *p, int k) {
    uint64_t v = 0;
    for (int i = k - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static fs_pk_value *new_str(fs_pickle *pk, fs_pk_kind kind, const unsigned char *p, size_t len) {
    fs_pk_value *v = new_value(pk, kind);
    if (!v || !(v->s = malloc(len + 1))) return NULL;
    memcpy(v->s, p, len);
    v->s[len] = 0;
    v->len = len;
    return v;
}

static fs_pk_value *new_int(fs_pickle *pk, fs_pk_kind kind, int64_t i) {
    fs_pk_value *v = new_value(pk, kind);
    if (v) v->i = i;
    return v;
}

/* A newline-terminated operand (GLOBAL, UNICODE): [*p, *p + *len). */
static int read_line(fs_pickle *pk, const unsigned char **p, size_t *len, size_t max) {
    const unsigned char *s = pk->d + pk->pos;
    size_t left = pk->n - pk->pos;
    const unsigned char *nl = memchr(s, '\n', left < max + 1 ? left : max + 1);
    if (!nl) return pk_fail(pk, left <= max ? "truncated pickle (unterminated line operand)" : "line operand too long");
    *p = s;
    *len = (size_t)(nl - s);
    pk->pos += *len + 1;
    return FS_OK;
}

static const struct { const char *name; fs_dtype d; } storage_types[] = {
    {"FloatStorage", FS_F32}, {"DoubleStorage", FS_F64}, {"HalfStorage", FS_F16}, {"BFloat16Storage", FS_BF16},
    {"LongStorage", FS_I64},  {"IntStorage", FS_I32},    {"ShortStorage", FS_I16}, {"CharStorage", FS_I8},
    {"ByteStorage", FS_U8},   {"BoolStorage", FS_U8},
};

/* module.name against the whitelist; anything else is refused by name. */
static int resolve_global(fs_pickle *pk, const char *module, size_t mlen, const char *name, size_t nlen) {
    char full[2 * PK_MAX_LINE + 2];
    if (mlen > PK_MAX_LINE || nlen > PK_MAX_LINE) return pk_fail(pk, "global name too long");
    memcpy(full, module, mlen);
    full[mlen] = '.';
    memcpy(full + mlen + 1, name, nlen);
    full[mlen + 1 + nlen] = 0;
    for (size_t i = 0; i < mlen + 1 + nlen; i++)
        if ((unsigned char)full[i] < 0x20 || (unsigned char)full[i] > 0x7e) full[i] = '?';
    static const struct { const char *name; int g; } allowed[] = {
        {"collections.OrderedDict", G_ORDERED_DICT},
        {"torch._utils._rebuild_tensor_v2", G_REBUILD_V2},
        {"torch._utils._rebuild_tensor", G_REBUILD},
        {"torch._utils._rebuild_parameter", G_REBUILD_PARAM},
        {"torch._utils._rebuild_parameter_with_state", G_REBUILD_PARAM_STATE},
    };
    int g = 0;
    fs_dtype dt = FS_F32;
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++)
        if (!strcmp(full, allowed[i].name)) g = allowed[i].g;
    if (!g && !strncmp(full, "torch.", 6))
        for (size_t i = 0; i < sizeof storage_types / sizeof *storage_types; i++)
            if (!strcmp(full + 6, storage_types[i].name)) {
                g = G_STORAGE;
                dt = storage_types[i].d;
            }
    if (!g) return pk_fail(pk, "global '%s' is not allowed in a checkpoint", full);
    fs_pk_value *v = new_str(pk, FS_PK_GLOBAL, (const unsigned char *)full, strlen(full));
    if (!v) return oom(pk);
    v->global = g;
    v->dtype = dt;
    return push(pk, v);
}

static int get_uint(fs_pickle *pk, const fs_pk_value *v, const char *what, uint64_t max, uint64_t *out) {
    if (v->kind != FS_PK_INT || v->i < 0 || (uint64_t)v->i > max)
        return pk_fail(pk, "%s is not an integer in [0, %llu]", what, (unsigned long long)max);
    *out = (uint64_t)v->i;
    return FS_OK;
}

/* _rebuild_tensor[_v2](storage, storage_offset, size, stride, ...): a view,
 * checked to stay inside the storage's declared element count. */
static int rebuild_tensor(fs_pickle *pk, const fs_pk_value *args, fs_pk_value **out) {
    if (args->n < 4) return pk_fail(pk, "tensor rebuild with %zu arguments", args->n);
    const fs_pk_value *st = args->items[0], *size = args->items[2], *stride = args->items[3];
    if (st->kind != FS_PK_STORAGE) return pk_fail(pk, "tensor rebuild without a storage");
    if (size->kind != FS_PK_TUPLE || stride->kind != FS_PK_TUPLE || size->n != stride->n)
        return pk_fail(pk, "tensor size and stride are not tuples of one length");
    if (size->n > FS_MAX_DIMS) return pk_fail(pk, "tensor with %zu dimensions (at most %d)", size->n, FS_MAX_DIMS);
    fs_pk_tensor t = {.storage = st, .ndim = (int)size->n};
    if (get_uint(pk, args->items[1], "storage offset", PK_MAX_NUMEL, &t.offset)) return FS_ERR;
    uint64_t numel = 1, last = t.offset;
    for (int d = 0; d < t.ndim; d++) {
        if (get_uint(pk, size->items[d], "tensor size", PK_MAX_NUMEL, &t.shape[d]) ||
            get_uint(pk, stride->items[d], "tensor stride", PK_MAX_NUMEL, &t.stride[d]))
            return FS_ERR;
        if (t.shape[d] && numel > PK_MAX_NUMEL / t.shape[d]) return pk_fail(pk, "tensor size overflows");
        numel *= t.shape[d];
    }
    if (numel) {
        for (int d = 0; d < t.ndim; d++) {
            /* storages hold < 2^48 elements, so any reach past that is out of bounds anyway */
            if (t.stride[d] && t.shape[d] - 1 > PK_MAX_NUMEL / t.stride[d])
                return pk_fail(pk, "tensor view reaches beyond any storage");
            last += (t.shape[d] - 1) * t.stride[d]; /* at most 9 * 2^48: no overflow */
        }
        if (last >= (uint64_t)st->i)
            return pk_fail(pk, "tensor view reaches element %llu of storage '%s' which holds %lld elements",
                           (unsigned long long)last, st->s, (long long)st->i);
    }
    fs_pk_value *v = new_value(pk, FS_PK_TENSOR);
    if (!v || !(v->tensor = malloc(sizeof *v->tensor))) return oom(pk);
    *v->tensor = t;
    *out = v;
    return FS_OK;
}

/* REDUCE / NEWOBJ: only the whitelisted callables, with checked arguments. */
static int call(fs_pickle *pk, const fs_pk_value *fn, const fs_pk_value *args, int newobj) {
    if (fn->kind != FS_PK_GLOBAL) return pk_fail(pk, "call of a non-callable value");
    if (args->kind != FS_PK_TUPLE) return pk_fail(pk, "call of '%s' with arguments that are not a tuple", fn->s);
    fs_pk_value *r = NULL;
    if (fn->global == G_ORDERED_DICT) {
        if (args->n) return pk_fail(pk, "OrderedDict called with arguments");
        r = new_value(pk, FS_PK_DICT);
        if (!r) return oom(pk);
    } else if (newobj) {
        return pk_fail(pk, "NEWOBJ of '%s' is not allowed", fn->s);
    } else if (fn->global == G_REBUILD_V2 || fn->global == G_REBUILD) {
        if (rebuild_tensor(pk, args, &r)) return FS_ERR;
    } else if (fn->global == G_REBUILD_PARAM || fn->global == G_REBUILD_PARAM_STATE) {
        if (!args->n || args->items[0]->kind != FS_PK_TENSOR) return pk_fail(pk, "parameter rebuilt from a non-tensor");
        r = args->items[0];
    } else {
        return pk_fail(pk, "call of '%s' is not allowed", fn->s);
    }
    return push(pk, r);
}

/* ('storage', StorageType, key, location, numel) */
static int persistent_load(fs_pickle *pk, const fs_pk_value *pid) {
    if (pid->kind != FS_PK_TUPLE || pid->n != 5 || pid->items[0]->kind != FS_PK_STR ||
        strcmp(pid->items[0]->s, "storage"))
        return pk_fail(pk, "persistent id is not a ('storage', type, key, location, numel) tuple");
    const fs_pk_value *ty = pid->items[1], *key = pid->items[2];
    if (ty->kind != FS_PK_GLOBAL || ty->global != G_STORAGE) return pk_fail(pk, "persistent id with an unknown storage type");
    if (key->kind != FS_PK_STR || !key->len || strlen(key->s) != key->len || key->len > PK_MAX_LINE)
        return pk_fail(pk, "persistent id with a bad storage key");
    uint64_t numel = 0;
    if (get_uint(pk, pid->items[4], "storage size", PK_MAX_NUMEL, &numel)) return FS_ERR;
    fs_pk_value *v = new_str(pk, FS_PK_STORAGE, (const unsigned char *)key->s, key->len);
    if (!v) return oom(pk);
    v->dtype = ty->dtype;
    v->i = (int64_t)numel;
    return push(pk, v);
}

static int memo_put(fs_pickle *pk, uint64_t idx) {
    fs_pk_value *v;
    if (top(pk, &v)) return FS_ERR;
    /* the pickler numbers memo entries 0, 1, 2...: each costs at least one byte */
    if (idx >= pk->n || idx >= PK_MAX_MEMO) return pk_fail(pk, "memo index %llu out of range", (unsigned long long)idx);
    size_t old = pk->cap_memo;
    if (grow(&pk->memo, &pk->cap_memo, (size_t)idx + 1, sizeof *pk->memo)) return oom(pk);
    if (pk->cap_memo > old) memset(pk->memo + old, 0, (pk->cap_memo - old) * sizeof *pk->memo);
    if (!pk->memo[idx]) pk->n_memo++;
    pk->memo[idx] = v;
    return FS_OK;
}

static int memo_get(fs_pickle *pk, uint64_t idx) {
    if (idx >= pk->cap_memo || !pk->memo[idx]) return pk_fail(pk, "memo index %llu was never stored", (unsigned long long)idx);
    return push(pk, pk->memo[idx]);
}

/* raw-unicode-escape (protocol 0 UNICODE): latin-1 bytes plus \uXXXX and \UXXXXXXXX. */
static fs_pk_value *decode_raw_unicode(fs_pickle *pk, const unsigned char *p, size_t len) {
    fs_pk_value *v = new_value(pk, FS_PK_STR);
    if (!v || !(v->s = malloc(2 * len + 1))) return NULL;
    unsigned char *o = (unsigned char *)v->s;
    for (size_t i = 0; i < len;) {
        unsigned cp = p[i];
        int k = 0;
        if (p[i] == '\\' && i + 1 < len && (p[i + 1] == 'u' || p[i + 1] == 'U')) {
            k = p[i + 1] == 'u' ? 4 : 8;
            unsigned x = 0;
            int ok = i + 2 + (size_t)k <= len;
            for (int j = 0; ok && j < k; j++) {
                unsigned char ch = p[i + 2 + j];
                int h = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                      : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
                if (h < 0) ok = 0;
                x = x << 4 | (unsigned)(h < 0 ? 0 : h);
            }
            if (!ok || x > 0x10ffff) k = 0;
            else cp = x;
        }
        i += k ? 2 + (size_t)k : 1;
        if (cp < 0x80) *o++ = (unsigned char)cp;
        else if (cp < 0x800) { *o++ = (unsigned char)(0xc0 | cp >> 6); *o++ = (unsigned char)(0x80 | (cp & 63)); }
        else if (cp < 0x10000) {
            *o++ = (unsigned char)(0xe0 | cp >> 12); *o++ = (unsigned char)(0x80 | (cp >> 6 & 63));
            *o++ = (unsigned char)(0x80 | (cp & 63));
        } else {
            *o++ = (unsigned char)(0xf0 | cp >> 18); *o++ = (unsigned char)(0x80 | (cp >> 12 & 63));
            *o++ = (unsigned char)(0x80 | (cp >> 6 & 63)); *o++ = (unsigned char)(0x80 | (cp & 63));
        }
    }
    *o = 0;
    v->len = (size_t)(o - (unsigned char *)v->s);
    return v;
}

static fs_pk_value *make_tuple(fs_pickle *pk, fs_pk_value *const *items, size_t n) {
    fs_pk_value *t = new_value(pk, FS_PK_TUPLE);
    if (!t) return NULL;
    if (n && !(t->items = malloc(n * sizeof *t->items))) return NULL;
    if (n) memcpy(t->items, items, n * sizeof *items);
    t->n = t->cap = n;
    return t;
}

static int run(fs_pickle *pk, const fs_pk_value **root) {
    fs_pk_value *a, *b, *c;
    size_t start = 0;
    uint64_t x;
    for (;;) {
        if (pk->pos >= pk->n) {
            pk->at = pk->pos;
            return pk_fail(pk, "truncated pickle (no STOP opcode)");
        }
        pk->at = pk->pos;
        unsigned char op = pk->d[pk->pos++];
        const unsigned char *p = pk->d + pk->pos;
        switch (op) {
        case 0x80: /* PROTO */
            if (need(pk, 1)) return FS_ERR;
            if (p[0] < 2 || p[0] > 5) return pk_fail(pk, "unsupported pickle protocol %d", p[0]);
            pk->pos++;
            break;
        case 0x95: /* FRAME: a size hint only */
            if (need(pk, 8)) return FS_ERR;
            pk->pos += 8;
            break;
        case '.': /* STOP */
            if (pop(pk, &a)) return FS_ERR;
            *root = a;
            return FS_OK;
        case 'c': { /* GLOBAL */
            const unsigned char *m, *nm;
            size_t ml, nl;
            if (read_line(pk, &m, &ml, PK_MAX_LINE) || read_line(pk, &nm, &nl, PK_MAX_LINE)) return FS_ERR;
            if (resolve_global(pk, (const char *)m, ml, (const char *)nm, nl)) return FS_ERR;
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if (pop(pk, &b) || pop(pk, &a)) return FS_ERR;
            if (a->kind != FS_PK_STR || b->kind != FS_PK_STR) return pk_fail(pk, "STACK_GLOBAL of non-strings");
            if (resolve_global(pk, a->s, a->len, b->s, b->len)) return FS_ERR;
            break;
        case 0x8c: /* SHORT_BINUNICODE */
        case 'X':  /* BINUNICODE */
        case 0x8d: /* BINUNICODE8 */
        case 'C':  /* SHORT_BINBYTES */
        case 'B':  /* BINBYTES */
        case 0x8e: /* BINBYTES8 */ {
            int k = (op == 0x8c || op == 'C') ? 1 : (op == 'X' || op == 'B') ? 4 : 8;
            if (need(pk, (uint64_t)k)) return FS_ERR;
            x = rd_le(p, k);
            pk->pos += (size_t)k;
            if (need(pk, x)) return FS_ERR;
            fs_pk_kind kind = (op == 'C' || op == 'B' || op == 0x8e) ? FS_PK_BYTES : FS_PK_STR;
            if (push(pk, new_str(pk, kind, pk->d + pk->pos, (size_t)x))) return FS_ERR;
            pk->pos += (size_t)x;
            break;
        }
        case 'V': { /* UNICODE */
            const unsigned char *s;
            size_t len;
            if (read_line(pk, &s, &len, 1u << 20) || push(pk, decode_raw_unicode(pk, s, len))) return FS_ERR;
            break;
        }
        case '(': /* MARK */
            if (pk->n_marks >= PK_MAX_MARKS) return pk_fail(pk, "MARKs nested deeper than %u", PK_MAX_MARKS);
            if (grow(&pk->marks, &pk->cap_marks, pk->n_marks + 1, sizeof *pk->marks)) return oom(pk);
            pk->marks[pk->n_marks++] = pk->sp;
            break;
        case '}': if (push(pk, new_value(pk, FS_PK_DICT))) return FS_ERR; break;
        case ']': if (push(pk, new_value(pk, FS_PK_LIST))) return FS_ERR; break;
        case ')': if (push(pk, make_tuple(pk, NULL, 0))) return FS_ERR; break;
        case 't': /* TUPLE */
            if (pop_mark(pk, &start)) return FS_ERR;
            a = make_tuple(pk, pk->stack + start, pk->sp - start);
            pk->sp = start;
            if (push(pk, a)) return FS_ERR;
            break;
        case 0x85: case 0x86: case 0x87: { /* TUPLE1, TUPLE2, TUPLE3 */
            size_t k = (size_t)(op - 0x84);
            if (pk->sp < floor_sp(pk) + k) return pk_fail(pk, "pickle stack underflow");
            a = make_tuple(pk, pk->stack + pk->sp - k, k);
            pk->sp -= k;
            if (push(pk, a)) return FS_ERR;
            break;
        }
        case 'J': /* BININT */
            if (need(pk, 4)) return FS_ERR;
            if (push(pk, new_int(pk, FS_PK_INT, (int32_t)(uint32_t)rd_le(p, 4)))) return FS_ERR;
            pk->pos += 4;
            break;
        case 'K': /* BININT1 */
            if (need(pk, 1) || push(pk, new_int(pk, FS_PK_INT, p[0]))) return FS_ERR;
            pk->pos += 1;
            break;
        case 'M': /* BININT2 */
            if (need(pk, 2) || push(pk, new_int(pk, FS_PK_INT, (int64_t)rd_le(p, 2)))) return FS_ERR;
            pk->pos += 2;
            break;
        case 0x8a: /* LONG1 */
        case 0x8b: /* LONG4 */ {
            int k = op == 0x8a ? 1 : 4;
            if (need(pk, (uint64_t)k)) return FS_ERR;
            x = rd_le(p, k);
            pk->pos += (size_t)k;
            if (x > 8) return pk_fail(pk, "integer of %llu bytes is too large", (unsigned long long)x);
            if (need(pk, x)) return FS_ERR;
            uint64_t u = rd_le(pk->d + pk->pos, (int)x);
            if (x && x < 8 && (pk->d[pk->pos + x - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * x); /* sign-extend */
            pk->pos += (size_t)x;
            if (push(pk, new_int(pk, FS_PK_INT, (int64_t)u))) return FS_ERR;
            break;
        }
        case 'G': { /* BINFLOAT, big-endian */
            if (need(pk, 8)) return FS_ERR;
            uint64_t u = 0;
            for (int i = 0; i < 8; i++) u = u << 8 | p[i];
            a = new_value(pk, FS_PK_FLOAT);
            if (a) memcpy(&a->f, &u, 8);
            if (push(pk, a)) return FS_ERR;
            pk->pos += 8;
            break;
        }
        case 0x88: if (push(pk, shared(pk, &pk->yes, FS_PK_BOOL, 1))) return FS_ERR; break; /* NEWTRUE */
        case 0x89: if (push(pk, shared(pk, &pk->no, FS_PK_BOOL, 0))) return FS_ERR; break;  /* NEWFALSE */
        case 'N': if (push(pk, shared(pk, &pk->none, FS_PK_NONE, 0))) return FS_ERR; break;
        case 'q': /* BINPUT */
            if (need(pk, 1) || memo_put(pk, p[0])) return FS_ERR;
            pk->pos += 1;
            break;
        case 'r': /* LONG_BINPUT */
            if (need(pk, 4) || memo_put(pk, rd_le(p, 4))) return FS_ERR;
            pk->pos += 4;
            break;
        case 0x94: /* MEMOIZE */
            if (memo_put(pk, pk->n_memo)) return FS_ERR;
            break;
        case 'h': /* BINGET */
            if (need(pk, 1) || memo_get(pk, p[0])) return FS_ERR;
            pk->pos += 1;
            break;
        case 'j': /* LONG_BINGET */
            if (need(pk, 4) || memo_get(pk, rd_le(p, 4))) return FS_ERR;
            pk->pos += 4;
            break;
        case 's': /* SETITEM */
            if (pop(pk, &b) || pop(pk, &a) || top(pk, &c)) return FS_ERR;
            if (c->kind != FS_PK_DICT) return pk_fail(pk, "SETITEM on a non-dict");
            if (append(pk, c, a) || append(pk, c, b)) return FS_ERR;
            break;
        case 'u': /* SETITEMS */
            if (pop_mark(pk, &start)) return FS_ERR;
            if ((pk->sp - start) % 2) return pk_fail(pk, "SETITEMS with an odd number of items");
            if (start <= floor_sp(pk) || (c = pk->stack[start - 1])->kind != FS_PK_DICT)
                return pk_fail(pk, "SETITEMS on a non-dict");
            for (size_t i = start; i < pk->sp; i++)
                if (append(pk, c, pk->stack[i])) return FS_ERR;
            pk->sp = start;
            break;
        case 'a': /* APPEND */
            if (pop(pk, &a) || top(pk, &c)) return FS_ERR;
            if (c->kind != FS_PK_LIST) return pk_fail(pk, "APPEND to a non-list");
            if (append(pk, c, a)) return FS_ERR;
            break;
        case 'e': /* APPENDS */
            if (pop_mark(pk, &start)) return FS_ERR;
            if (start <= floor_sp(pk) || (c = pk->stack[start - 1])->kind != FS_PK_LIST)
                return pk_fail(pk, "APPENDS to a non-list");
            for (size_t i = start; i < pk->sp; i++)
                if (append(pk, c, pk->stack[i])) return FS_ERR;
            pk->sp = start;
            break;
        case 'R':  /* REDUCE */
        case 0x81: /* NEWOBJ */
            if (pop(pk, &b) || pop(pk, &a) || call(pk, a, b, op == 0x81)) return FS_ERR;
            break;
        case 'b': /* BUILD: state for dicts (OrderedDict._metadata) and tensors is not needed */
            if (pop(pk, &b) || top(pk, &a)) return FS_ERR;
            if (a->kind != FS_PK_DICT && a->kind != FS_PK_TENSOR && a->kind != FS_PK_OBJECT)
                return pk_fail(pk, "BUILD on an object that takes no state");
            break;
        case 'Q': /* BINPERSID */
            if (pop(pk, &a) || persistent_load(pk, a)) return FS_ERR;
            break;
        case '0': /* POP (of an item, or of a MARK with nothing above it) */
            if (pk->sp > floor_sp(pk)) pk->sp--;
            else if (pop_mark(pk, &start)) return FS_ERR;
            break;
        case '1': /* POP_MARK */
            if (pop_mark(pk, &start)) return FS_ERR;
            pk->sp = start;
            break;
        case '2': /* DUP */
            if (top(pk, &a) || push(pk, a)) return FS_ERR;
            break;
        default:
            return pk_fail(pk, "unsupported pickle opcode 0x%02x", op);
        }
    }
}

int fs_pickle_load(fs_pickle **out, const fs_pk_value **root, const unsigned char *data, size_t n, const char *what) {
    *out = NULL;
    *root = NULL;
    fs_pickle *pk = calloc(1, sizeof *pk);
    if (!pk) return fs_error("%s: out of memory", what);
    pk->d = data;
    pk->n = n;
    pk->what = what;
    if (run(pk, root)) {
        fs_pickle_free(pk);
        *root = NULL;
        return FS_ERR;
    }
    *out = pk;
    return FS_OK;
}

const fs_pk_value *fs_pk_dict_get(const fs_pk_value *dict, const char *key) {
    if (!dict || dict->kind != FS_PK_DICT) return NULL;
    const fs_pk_value *hit = NULL;
    for (size_t i = 0; i + 1 < dict->n; i += 2) {
        const fs_pk_value *k = dict->items[i];
        if (k->kind == FS_PK_STR && k->len == strlen(key) && !memcmp(k->s, key, k->len)) hit = dict->items[i + 1];
    }
    return hit; /* the last assignment wins, as in Python */
}
