/* Zip reader (PKWARE APPNOTE 6.3): end of central directory (zip64 too),
 * central directory, local headers, stored and deflated data. Multi-disk
 * archives and encryption are refused. */
#include "io/zip.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/error.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u
#define EOCD_LEN 22
#define CENTRAL_LEN 46
#define LOCAL_LEN 30
/* Deflate cannot expand more than about 1032:1; a larger declared size is a
 * lie, refused before allocating. */
#define DEFLATE_MAX_RATIO 1100
#define ZIP_MAX_ENTRY ((uint64_t)64 << 30)
#define UNKNOWN UINT64_MAX

struct fs_zip {
    char path[4096];
    int fd;                   /* -1 for memory archives */
    const unsigned char *mem;
    uint64_t size;
    size_t n;
    fs_zip_entry *e;
    uint64_t *data_off;       /* cached per entry, UNKNOWN until read */
};

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

const char *fs_zip_path(const fs_zip *z) { return z ? z->path : "?"; }

static int corrupt(const fs_zip *z, const char *why) {
    return fs_error("'%s': corrupt or truncated zip archive: %s", z->path, why);
}

/* Bytes [off, off+n) of the archive, bounds-checked. */
static int zread(fs_zip *z, uint64_t off, void *dst, size_t n, const char *what) {
    if (off > z->size || n > z->size - off) return corrupt(z, what);
    if (z->mem) {
        memcpy(dst, z->mem + off, n);
        return FS_OK;
    }
    unsigned char *p = dst;
    while (n) {
        ssize_t k = pread(z->fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return fs_error_errno("cannot read '%s'", z->path);
        if (k == 0) return corrupt(z, "file shrank while reading");
        p += k;
        off += (uint64_t)k;
        n -= (size_t)k;
    }
    return FS_OK;
}

void fs_zip_close(fs_zip *z) {
    if (!z) return;
    if (z->fd >= 0) close(z->fd);
    for (size_t i = 0; i < z->n; i++) free(z->e[i].name);
    free(z->e);
    free(z->data_off);
    free(z);
}

/* Replaces 0xFFFF.. placeholders from a zip64 extended information field
 * (id 1): present values appear in the order usize, csize, offset, disk. */
static int apply_zip64_extra(fs_zip *z, const unsigned char *x, size_t xlen, fs_zip_entry *e, uint32_t usize32,
                             uint32_t csize32, uint32_t off32) {
    size_t p = 0;
    while (p + 4 <= xlen) {
        uint16_t id = rd16(x + p), len = rd16(x + p + 2);
        if (len > xlen - p - 4) return corrupt(z, "extra field runs past its entry");
        if (id == 1) {
            const unsigned char *d = x + p + 4;
            size_t q = 0;
            if (usize32 == 0xFFFFFFFFu) {
                if (q + 8 > len) return corrupt(z, "short zip64 extra field");
                e->usize = rd64(d + q);
                q += 8;
            }
            if (csize32 == 0xFFFFFFFFu) {
                if (q + 8 > len) return corrupt(z, "short zip64 extra field");
                e->csize = rd64(d + q);
                q += 8;
            }
            if (off32 == 0xFFFFFFFFu) {
                if (q + 8 > len) return corrupt(z, "short zip64 extra field");
                e->header_offset = rd64(d + q);
                q += 8;
            }
            return FS_OK;
        }
        p += 4 + (size_t)len;
    }
    if (usize32 == 0xFFFFFFFFu || csize32 == 0xFFFFFFFFu || off32 == 0xFFFFFFFFu)
        return corrupt(z, "zip64 sizes without a zip64 extra field");
    return FS_OK;
}

static int parse_central(fs_zip *z, const unsigned char *cd, uint64_t cd_size, uint64_t count,
                         uint64_t cd_offset) {
    /* Each record takes at least 46 bytes: a count beyond that is a lie. */
    if (count > cd_size / CENTRAL_LEN) return corrupt(z, "more entries than the central directory can hold");
    z->e = calloc(count ? count : 1, sizeof *z->e);
    z->data_off = malloc((count ? count : 1) * sizeof *z->data_off);
    if (!z->e || !z->data_off) return fs_error("out of memory reading '%s'", z->path);
    uint64_t p = 0;
    for (uint64_t i = 0; i < count; i++) {
        if (cd_size - p < CENTRAL_LEN || rd32(cd + p) != SIG_CENTRAL)
            return corrupt(z, "bad central directory record");
        const unsigned char *r = cd + p;
        fs_zip_entry *e = &z->e[i];
        e->flags = rd16(r + 8);
        e->method = rd16(r + 10);
        e->crc32 = rd32(r + 16);
        uint32_t csize32 = rd32(r + 20), usize32 = rd32(r + 24), off32 = rd32(r + 42);
        uint16_t nlen = rd16(r + 28), xlen = rd16(r + 30), clen = rd16(r + 32), disk = rd16(r + 34);
        uint64_t rec = (uint64_t)CENTRAL_LEN + nlen + xlen + clen;
        if (rec > cd_size - p) return corrupt(z, "central directory record runs past its end");
        e->csize = csize32;
        e->usize = usize32;
        e->header_offset = off32;
        e->name = malloc((size_t)nlen + 1);
        z->n = i + 1; /* so fs_zip_close frees the names so far */
        if (!e->name) return fs_error("out of memory reading '%s'", z->path);
        memcpy(e->name, r + CENTRAL_LEN, nlen);
        e->name[nlen] = 0;
        if (apply_zip64_extra(z, r + CENTRAL_LEN + nlen, xlen, e, usize32, csize32, off32)) return FS_ERR;
        if (disk != 0 && disk != 0xFFFF) return fs_error("'%s': multi-disk zip archives are not supported", z->path);
        if (e->header_offset > cd_offset || cd_offset - e->header_offset < LOCAL_LEN)
            return corrupt(z, "an entry's local header lies outside the archive data");
        z->data_off[i] = UNKNOWN;
        p += rec;
    }
    z->n = count;
    return FS_OK;
}

static int zip_init(fs_zip *z) {
    if (z->size < EOCD_LEN) return fs_error("'%s': not a zip archive (too short)", z->path);
    /* The EOCD record sits at the end, followed by a comment of up to 64 KiB. */
    size_t tail = z->size < EOCD_LEN + 0xFFFF ? (size_t)z->size : EOCD_LEN + 0xFFFF;
    unsigned char *buf = malloc(tail);
    if (!buf) return fs_error("out of memory reading '%s'", z->path);
    uint64_t base = z->size - tail;
    if (zread(z, base, buf, tail, "end of file")) { free(buf); return FS_ERR; }
    size_t pos = tail - EOCD_LEN + 1;
    int found = 0;
    while (pos-- > 0) {
        if (rd32(buf + pos) == SIG_EOCD && pos + EOCD_LEN + rd16(buf + pos + 20) <= tail) {
            found = 1;
            break;
        }
    }
    if (!found) {
        free(buf);
        return fs_error("'%s': not a zip archive (no end of central directory record)", z->path);
    }
    const unsigned char *r = buf + pos;
    uint64_t eocd = base + pos;
    uint16_t disk = rd16(r + 4), cd_disk = rd16(r + 6);
    uint64_t count = rd16(r + 10), cd_size = rd32(r + 12), cd_off = rd32(r + 16);
    free(buf);
    uint64_t cd_limit = eocd; /* the central directory ends before its end record */
    unsigned char loc[20], z64[56];
    if (eocd >= 20 && zread(z, eocd - 20, loc, 20, "zip64 locator") == FS_OK && rd32(loc) == SIG_LOC64) {
        uint64_t z64_off = rd64(loc + 8);
        if (rd32(loc + 4) != 0 || rd32(loc + 16) > 1)
            return fs_error("'%s': multi-disk zip archives are not supported", z->path);
        if (z64_off > eocd - 20 || eocd - 20 - z64_off < 56) return corrupt(z, "zip64 end record out of range");
        if (zread(z, z64_off, z64, 56, "zip64 end record")) return FS_ERR;
        if (rd32(z64) != SIG_EOCD64) return corrupt(z, "bad zip64 end record");
        disk = rd32(z64 + 16) ? 1 : 0;
        cd_disk = rd32(z64 + 20) ? 1 : 0;
        count = rd64(z64 + 32);
        cd_size = rd64(z64 + 40);
        cd_off = rd64(z64 + 48);
        cd_limit = z64_off;
    } else if (disk != 0 || cd_disk != 0) {
        return fs_error("'%s': multi-disk zip archives are not supported", z->path);
    }
    if (disk != 0 || cd_disk != 0) return fs_error("'%s': multi-disk zip archives are not supported", z->path);
    if (cd_off > cd_limit || cd_size > cd_limit - cd_off)
        return corrupt(z, "central directory points past the end of the file");
    unsigned char *cd = malloc(cd_size ? (size_t)cd_size : 1);
    if (!cd) return fs_error("out of memory reading '%s'", z->path);
    int rc = zread(z, cd_off, cd, (size_t)cd_size, "central directory");
    if (!rc) rc = parse_central(z, cd, cd_size, count, cd_off);
    free(cd);
    return rc;
}

static fs_zip *zip_new(const char *path) {
    fs_zip *z = calloc(1, sizeof *z);
    if (!z) {
        fs_error("out of memory");
        return NULL;
    }
    snprintf(z->path, sizeof z->path, "%s", path);
    z->fd = -1;
    return z;
}

int fs_zip_open(fs_zip **out, const char *path) {
    *out = NULL;
    fs_zip *z = zip_new(path);
    if (!z) return FS_ERR;
    z->fd = open(path, O_RDONLY);
    if (z->fd < 0) {
        fs_error_errno("cannot open '%s'", path);
        fs_zip_close(z);
        return FS_ERR;
    }
    struct stat st;
    if (fstat(z->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fs_error("cannot open '%s': not a regular file", path);
        fs_zip_close(z);
        return FS_ERR;
    }
    z->size = (uint64_t)st.st_size;
    if (zip_init(z)) {
        fs_zip_close(z);
        return FS_ERR;
    }
    *out = z;
    return FS_OK;
}

int fs_zip_open_mem(fs_zip **out, const void *buf, size_t n, const char *what) {
    *out = NULL;
    fs_zip *z = zip_new(what ? what : "(memory)");
    if (!z) return FS_ERR;
    z->mem = buf;
    z->size = n;
    if (zip_init(z)) {
        fs_zip_close(z);
        return FS_ERR;
    }
    *out = z;
    return FS_OK;
}

size_t fs_zip_count(const fs_zip *z) { return z->n; }
const char *fs_zip_name(const fs_zip *z, size_t i) { return i < z->n ? z->e[i].name : NULL; }
const fs_zip_entry *fs_zip_entry_at(const fs_zip *z, size_t i) { return i < z->n ? &z->e[i] : NULL; }

int fs_zip_find(const fs_zip *z, const char *name, size_t *index) {
    for (size_t i = 0; i < z->n; i++)
        if (!strcmp(z->e[i].name, name)) {
            *index = i;
            return FS_OK;
        }
    return fs_error("'%s': no entry '%s' in the archive", z->path, name);
}

int fs_zip_data_offset(fs_zip *z, size_t i, uint64_t *offset) {
    if (i >= z->n) return fs_error("'%s': entry %zu out of range", z->path, i);
    if (z->data_off[i] == UNKNOWN) {
        const fs_zip_entry *e = &z->e[i];
        unsigned char h[LOCAL_LEN];
        if (zread(z, e->header_offset, h, LOCAL_LEN, "local header past the end")) return FS_ERR;
        if (rd32(h) != SIG_LOCAL) return corrupt(z, "bad local header signature");
        uint64_t off = e->header_offset + LOCAL_LEN + rd16(h + 26) + rd16(h + 28);
        if (off > z->size || e->csize > z->size - off)
            return fs_error("'%s': corrupt or truncated zip archive: entry '%s' runs past the end of the file",
                            z->path, e->name);
        z->data_off[i] = off;
    }
    *offset = z->data_off[i];
    return FS_OK;
}

static int entry_fail(const fs_zip *z, const fs_zip_entry *e, const char *why) {
    return fs_error("'%s': entry '%s': %s", z->path, e->name, why);
}

static uint32_t crc_of(const unsigned char *p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

static int inflate_entry(fs_zip *z, const fs_zip_entry *e, uint64_t off, unsigned char *dst, size_t size) {
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, -MAX_WBITS) != Z_OK) return fs_error("zlib initialisation failed");
    size_t bufsize = 1 << 20;
    unsigned char *inbuf = z->mem ? NULL : malloc(bufsize);
    if (!z->mem && !inbuf) {
        inflateEnd(&s);
        return fs_error("out of memory");
    }
    uint64_t in_left = e->csize;
    size_t done = 0;
    unsigned char spare;
    int ret = Z_OK, rc = FS_OK;
    while (ret != Z_STREAM_END) {
        if (s.avail_in == 0) {
            if (in_left == 0) { rc = entry_fail(z, e, "deflate data end early (truncated)"); break; }
            if (z->mem) {
                size_t k = in_left > UINT_MAX ? UINT_MAX : (size_t)in_left;
                s.next_in = (unsigned char *)z->mem + off;
                s.avail_in = (uInt)k;
                off += k;
                in_left -= k;
            } else {
                size_t k = in_left > bufsize ? bufsize : (size_t)in_left;
                if ((rc = zread(z, off, inbuf, k, "deflate data past the end"))) break;
                s.next_in = inbuf;
                s.avail_in = (uInt)k;
                off += k;
                in_left -= k;
            }
        }
        /* Once the declared size is reached, one spare byte catches data
         * that would inflate to more. */
        size_t room = size - done;
        if (room) {
            s.next_out = dst + done;
            s.avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
        } else {
            s.next_out = &spare;
            s.avail_out = 1;
        }
        uInt before = s.avail_out;
        ret = inflate(&s, Z_NO_FLUSH);
        if (ret == Z_NEED_DICT || ret == Z_DATA_ERROR || ret == Z_STREAM_ERROR) {
            rc = entry_fail(z, e, "corrupt deflate data");
            break;
        }
        if (ret == Z_MEM_ERROR) { rc = fs_error("out of memory inflating '%s'", z->path); break; }
        size_t produced = before - s.avail_out;
        if (!room && produced) { rc = entry_fail(z, e, "inflates to more than its declared size"); break; }
        done += produced;
    }
    inflateEnd(&s);
    free(inbuf);
    if (!rc && done != size) rc = entry_fail(z, e, "inflates to less than its declared size");
    return rc;
}

int fs_zip_read_into(fs_zip *z, size_t i, void *dst, size_t size) {
    if (i >= z->n) return fs_error("'%s': entry %zu out of range", z->path, i);
    const fs_zip_entry *e = &z->e[i];
    if (e->usize != size)
        return fs_error("'%s': entry '%s' holds %llu bytes, not %zu", z->path, e->name,
                        (unsigned long long)e->usize, size);
    if (e->flags & 1) return entry_fail(z, e, "encrypted entries are not supported");
    uint64_t off;
    if (fs_zip_data_offset(z, i, &off)) return FS_ERR;
    int rc;
    if (e->method == 0) {
        if (e->csize != e->usize) return entry_fail(z, e, "stored entry with differing sizes");
        rc = zread(z, off, dst, size, "stored data past the end");
    } else if (e->method == 8) {
        rc = inflate_entry(z, e, off, dst, size);
    } else {
        return fs_error("'%s': entry '%s' uses compression method %d (only stored and deflate are supported)",
                        z->path, e->name, e->method);
    }
    if (rc) return FS_ERR;
    if (crc_of(dst, size) != e->crc32) return entry_fail(z, e, "CRC-32 mismatch (corrupt archive)");
    return FS_OK;
}

int fs_zip_read(fs_zip *z, size_t i, unsigned char **data, size_t *size) {
    *data = NULL;
    *size = 0;
    if (i >= z->n) return fs_error("'%s': entry %zu out of range", z->path, i);
    const fs_zip_entry *e = &z->e[i];
    uint64_t limit = e->method == 0 ? e->csize
                     : e->csize > ZIP_MAX_ENTRY ? UINT64_MAX : e->csize * DEFLATE_MAX_RATIO + 1024;
    if (e->usize > limit || e->usize > ZIP_MAX_ENTRY || e->usize >= SIZE_MAX)
        return entry_fail(z, e, "declared size is absurd for its compressed size");
    if (e->method == 0 && e->csize > z->size) return entry_fail(z, e, "larger than the archive");
    unsigned char *buf = malloc((size_t)e->usize + 1);
    if (!buf) return fs_error("out of memory extracting '%s' from '%s'", e->name, z->path);
    if (fs_zip_read_into(z, i, buf, (size_t)e->usize)) {
        free(buf);
        return FS_ERR;
    }
    buf[e->usize] = 0;
    *data = buf;
    *size = (size_t)e->usize;
    return FS_OK;
}
