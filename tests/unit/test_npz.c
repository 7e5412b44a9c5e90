/* io/zip and io/npy: numpy-written .npy/.npz files read back exactly,
 * zip64 records, torch checkpoints' zip layout, and hostile archives. */
#include "test.h"

#include <stdint.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "io/npy.h"
#include "io/zip.h"

static char dir[512];
static int have_numpy;

static const char *path_in(const char *name) {
    static char buf[8][600];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static const char *NUMPY_SCRIPT =
    "import sys, os, numpy as np\n"
    "d = sys.argv[1]\n"
    "im = (np.arange(192, dtype=np.float32) / 192).reshape(16, 12)\n"
    "lb = (np.arange(192) % 9).astype(np.uint8).reshape(16, 12)\n"
    "np.savez(os.path.join(d, 'case0005_slice010.npz'), image=im, label=lb)\n"
    "np.savez_compressed(os.path.join(d, 'compressed.npz'), image=im, label=lb)\n"
    "np.savez(os.path.join(d, 'odd.npz'), be=np.arange(6, dtype='>f8').reshape(2, 3),\n"
    "         bei=np.arange(-3, 3, dtype='>i4'), fort=np.asfortranarray(np.arange(24, dtype=np.int16).reshape(2, 3, 4)),\n"
    "         flag=np.array([True, False, True]), scalar=np.float64(2.5), half=np.array([1.0, -2.0], np.float16),\n"
    "         u16=np.array([1, 65535], np.uint16), i64=np.array([-1, 1 << 40]), empty=np.zeros((0, 5), np.float32),\n"
    "         obj=np.array([{}, 1], dtype=object), rec=np.zeros(2, dtype=[('a', '<i4'), ('b', '<f4')]))\n"
    "with open(os.path.join(d, 'v2.npy'), 'wb') as f:\n"
    "    np.lib.format.write_array(f, np.arange(5, dtype='<i8'), version=(2, 0))\n";

static void reads_savez_and_savez_compressed(void) {
    if (!have_numpy) SKIP("python3 numpy not installed");
    const char *names[2] = {"case0005_slice010.npz", "compressed.npz"};
    for (int k = 0; k < 2; k++) {
        const char *p = path_in(names[k]);
        fs_tensor im, lb;
        CHECKF(fs_npz_read(p, "image", &im) == FS_OK, "%s", fs_error_msg());
        CHECK(im.dtype == FS_F32 && im.ndim == 2 && im.shape[0] == 16 && im.shape[1] == 12);
        for (size_t i = 0; i < 192; i++) CHECK(((float *)im.data)[i] == (float)i / 192);
        CHECK(fs_npz_read(p, "label", &lb) == FS_OK);
        CHECK(lb.dtype == FS_U8 && lb.ndim == 2 && lb.shape[0] == 16 && lb.shape[1] == 12);
        for (size_t i = 0; i < 192; i++) CHECK(((uint8_t *)lb.data)[i] == i % 9);
        fs_tensor_free(&im);
        fs_tensor_free(&lb);
        CHECK(fs_npz_read(p, "mask", &im) == FS_ERR);
        CHECKF(strstr(fs_error_msg(), "no array 'mask'") && strstr(fs_error_msg(), "image.npy"), "%s",
               fs_error_msg());
    }
    /* The archive's listing and methods. */
    fs_zip *z;
    CHECK(fs_zip_open(&z, path_in("compressed.npz")) == FS_OK);
    CHECK(fs_zip_count(z) == 2);
    size_t i;
    CHECK(fs_zip_find(z, "label.npy", &i) == FS_OK);
    CHECK(!strcmp(fs_zip_name(z, i), "label.npy") && fs_zip_entry_at(z, i)->method == 8);
    CHECK(fs_zip_name(z, 5) == NULL);
    fs_zip_close(z);
}

static void reads_every_npy_flavour(void) {
    if (!have_numpy) SKIP("python3 numpy not installed");
    const char *p = path_in("odd.npz");
    fs_tensor t;
    CHECK(fs_npz_read(p, "be", &t) == FS_OK);
    CHECK(t.dtype == FS_F64 && t.ndim == 2 && t.shape[1] == 3);
    for (int i = 0; i < 6; i++) CHECK(((double *)t.data)[i] == i);
    fs_tensor_free(&t);
    CHECK(fs_npz_read(p, "bei", &t) == FS_OK);
    CHECK(t.dtype == FS_I32 && ((int32_t *)t.data)[0] == -3 && ((int32_t *)t.data)[5] == 2);
    fs_tensor_free(&t);
    CHECK(fs_npz_read(p, "fort", &t) == FS_OK); /* transposed into C order */
    CHECK(t.dtype == FS_I16 && t.ndim == 3 && t.shape[0] == 2 && t.shape[1] == 3 && t.shape[2] == 4);
    for (int i = 0; i < 24; i++) CHECKF(((int16_t *)t.data)[i] == i, "%d: %d", i, ((int16_t *)t.data)[i]);
    fs_tensor_free(&t);
    CHECK(fs_npz_read(p, "flag", &t) == FS_OK);
    CHECK(t.dtype == FS_U8 && t.shape[0] == 3 && !memcmp(t.data, "\1\0\1", 3));
    fs_tensor_free(&t);
    CHECK(fs_npz_read(p, "scalar", &t) == FS_OK);
    CHECK(t.ndim == 0 && *(double *)t.data == 2.5);
    fs_tensor_free(&t);
    CHECK(fs_npz_read(p, "half", &t) == FS_OK);
    CHECK(t.dtype == FS_F16 && fs_half_to_float(((uint16_t *)t.data)[1]) == -2.0f);
    fs_tensor_free(&t);
    CHECK(fs_npz_read(p, "u16", &t) == FS_OK);
    CHECK(t.dtype == FS_U16 && ((uint16_t *)t.data)[1] == 65535);
    fs_tensor_free(&t);
    CHECK(fs_npz_read(p, "i64", &t) == FS_OK);
    CHECK(t.dtype == FS_I64 && ((int64_t *)t.data)[1] == (int64_t)1 << 40);
    fs_tensor_free(&t);
    CHECK(fs_npz_read(p, "empty", &t) == FS_OK);
    CHECK(t.ndim == 2 && t.shape[0] == 0 && t.shape[1] == 5);
    fs_tensor_free(&t);
    CHECK(fs_npz_read(p, "obj", &t) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "odd.npz' member 'obj.npy'") && strstr(fs_error_msg(), "|O"), "%s",
           fs_error_msg());
    CHECK(fs_npz_read(p, "rec", &t) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "structured") != NULL);
    CHECK(fs_npy_read(path_in("v2.npy"), &t) == FS_OK);
    CHECK(t.dtype == FS_I64 && t.shape[0] == 5 && ((int64_t *)t.data)[4] == 4);
    fs_tensor_free(&t);
}

/* Hand-made .npy buffers that must be refused. */
static size_t make_npy(unsigned char *buf, const char *header, size_t data_bytes) {
    size_t hl = strlen(header);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hl & 255);
    buf[9] = (unsigned char)(hl >> 8);
    memcpy(buf + 10, header, hl);
    memset(buf + 10 + hl, 0, data_bytes);
    return 10 + hl + data_bytes;
}

static void rejects_malformed_npy(void) {
    unsigned char buf[512];
    fs_tensor t;
    size_t n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24);
    CHECK(fs_npy_parse(buf, n, "good", &t) == FS_OK);
    fs_tensor_free(&t);
    CHECK(fs_npy_parse(buf, n - 1, "short", &t) == FS_ERR); /* one byte missing */
    CHECKF(strstr(fs_error_msg(), "short: ") && strstr(fs_error_msg(), "truncated"), "%s", fs_error_msg());
    CHECK(fs_npy_parse(buf, 30, "cut", &t) == FS_ERR); /* header runs past the end */
    buf[0] = 'X';
    CHECK(fs_npy_parse(buf, n, "magic", &t) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "bad magic") != NULL);
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28);
    CHECK(fs_npy_parse(buf, n, "long", &t) == FS_ERR); /* data beyond the shape */
    /* A shape whose byte count overflows: refused before allocating. */
    n = make_npy(buf, "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 0);
    CHECK(fs_npy_parse(buf, n, "huge", &t) == FS_ERR);
    n = make_npy(buf, "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999,), }", 0);
    CHECK(fs_npy_parse(buf, n, "overflow", &t) == FS_ERR);
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000,), }", 0);
    CHECK(fs_npy_parse(buf, n, "lying", &t) == FS_ERR);
    n = make_npy(buf, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", 8);
    CHECK(fs_npy_parse(buf, n, "complex", &t) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "'<c8'") != NULL);
    n = make_npy(buf, "{'descr': '<f4', 'shape': (1,), }", 4);
    CHECK(fs_npy_parse(buf, n, "missing", &t) == FS_ERR);
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,2,3,4,5,6,7,8,9), }", 0);
    CHECK(fs_npy_parse(buf, n, "rank", &t) == FS_ERR);
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }", 4);
    CHECK(fs_npy_parse(buf, n, "bool", &t) == FS_ERR);
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", 4);
    CHECK(fs_npy_parse(buf, n, "unterminated", &t) == FS_ERR);
    buf[6] = 9;
    CHECK(fs_npy_parse(buf, n, "version", &t) == FS_ERR);
    CHECK(fs_npy_parse(buf, 5, "tiny", &t) == FS_ERR);
}

static int write_bytes(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t k = fwrite(b, 1, n, f);
    return fclose(f) == 0 && k == n ? 0 : -1;
}

static void rejects_broken_archives(void) {
    if (!have_numpy) SKIP("python3 numpy not installed");
    unsigned char *orig, *b;
    size_t n;
    fs_tensor t;
    CHECK(fs_read_file(path_in("case0005_slice010.npz"), &orig, &n) == FS_OK);
    CHECK(n > 400 && (b = malloc(n)));
    const char *p = path_in("broken.npz");

    /* Truncated: half, and missing only the last bytes. */
    CHECK(write_bytes(p, orig, n / 2) == 0);
    CHECK(fs_npz_read(p, "image", &t) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "broken.npz") && strstr(fs_error_msg(), "not a zip archive"), "%s",
           fs_error_msg());
    CHECK(write_bytes(p, orig, n - 5) == 0);
    CHECK(fs_npz_read(p, "image", &t) == FS_ERR);

    /* numpy writes no archive comment: the end record is the last 22 bytes. */
    size_t eocd = n - 22;
    CHECK(orig[eocd] == 'P' && orig[eocd + 1] == 'K' && orig[eocd + 2] == 5 && orig[eocd + 3] == 6);
    memcpy(b, orig, n);
    uint32_t past = (uint32_t)n + 100;
    memcpy(b + eocd + 16, &past, 4);
    CHECK(write_bytes(p, b, n) == 0);
    CHECK(fs_npz_read(p, "image", &t) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "central directory points past the end"), "%s", fs_error_msg());

    /* An entry count the central directory cannot hold. */
    memcpy(b, orig, n);
    b[eocd + 8] = b[eocd + 10] = 0xff;
    CHECK(write_bytes(p, b, n) == 0);
    CHECK(fs_npz_read(p, "image", &t) == FS_ERR);

    /* A corrupted data byte in a stored entry: the CRC catches it. */
    fs_zip *z;
    size_t i;
    uint64_t off;
    CHECK(fs_zip_open(&z, path_in("case0005_slice010.npz")) == FS_OK);
    CHECK(fs_zip_find(z, "image.npy", &i) == FS_OK && fs_zip_data_offset(z, i, &off) == FS_OK);
    uint32_t cd_off;
    memcpy(&cd_off, orig + eocd + 16, 4);
    fs_zip_close(z);
    memcpy(b, orig, n);
    b[off + 300] ^= 0x40;
    CHECK(write_bytes(p, b, n) == 0);
    CHECK(fs_npz_read(p, "image", &t) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "CRC-32 mismatch"), "%s", fs_error_msg());

    /* A declared size no deflate stream could produce: refused before
     * allocating (the central record's usize at +24). */
    memcpy(b, orig, n);
    CHECK(b[cd_off] == 'P' && b[cd_off + 1] == 'K');
    b[cd_off + 10] = 8;                                  /* claim deflate */
    memcpy(b + cd_off + 24, "\xf0\xff\xff\x7f", 4);     /* 2 GiB */
    CHECK(write_bytes(p, b, n) == 0);
    CHECK(fs_npz_read(p, "image", &t) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "absurd"), "%s", fs_error_msg());

    /* A local header offset beyond the data. */
    memcpy(b, orig, n);
    memcpy(b + cd_off + 42, "\xff\xff\xff\x0f", 4);
    CHECK(write_bytes(p, b, n) == 0);
    CHECK(fs_npz_read(p, "image", &t) == FS_ERR);
    free(orig);

    /* Corrupt deflate data. */
    CHECK(fs_read_file(path_in("compressed.npz"), &orig, &n) == FS_OK);
    CHECK(fs_zip_open_mem(&z, orig, n, "mem.npz") == FS_OK);
    CHECK(fs_zip_find(z, "image.npy", &i) == FS_OK && fs_zip_data_offset(z, i, &off) == FS_OK);
    fs_zip_close(z);
    orig[off + 10] ^= 0xff;
    orig[off + 11] ^= 0x55;
    CHECK(fs_zip_open_mem(&z, orig, n, "mem.npz") == FS_OK);
    unsigned char *data;
    size_t size;
    CHECK(fs_zip_read(z, i, &data, &size) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "mem.npz': entry 'image.npy'"), "%s", fs_error_msg());
    fs_zip_close(z);
    free(orig);
    free(b);

    CHECK(fs_npz_read(path_in("absent.npz"), "image", &t) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "no such file") != NULL);
}

/* Random damage to real archives: errors or correct data, never a crash
 * (run under a sanitizer to catch out-of-bounds reads). */
static void survives_random_damage(void) {
    if (!have_numpy) SKIP("python3 numpy not installed");
    const char *names[2] = {"case0005_slice010.npz", "compressed.npz"};
    uint64_t s = 12345;
    for (int k = 0; k < 2; k++) {
        unsigned char *orig, *b;
        size_t n;
        CHECK(fs_read_file(path_in(names[k]), &orig, &n) == FS_OK);
        CHECK((b = malloc(n)) != NULL);
        for (int it = 0; it < 3000; it++) {
            memcpy(b, orig, n);
            int flips = 1 + it % 4;
            for (int f = 0; f < flips; f++) {
                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                size_t pos = (size_t)(s >> 33) % n;
                /* Half the time aim at the headers near the end. */
                if (it % 2) pos = n - 1 - (size_t)(s >> 40) % (n < 200 ? n : 200);
                b[pos] = (unsigned char)(s >> 24);
            }
            size_t len = it % 7 == 0 ? (size_t)(s >> 20) % n : n;
            fs_zip *z;
            if (fs_zip_open_mem(&z, b, len, "fuzz") != FS_OK) continue;
            for (size_t e = 0; e < fs_zip_count(z); e++) {
                unsigned char *d;
                size_t sz;
                if (fs_zip_read(z, e, &d, &sz) != FS_OK) continue;
                fs_tensor t;
                if (fs_npy_parse(d, sz, "fuzz", &t) == FS_OK) fs_tensor_free(&t);
                free(d);
            }
            fs_zip_close(z);
        }
        free(b);
        free(orig);
    }
}

static void put16(unsigned char *p, unsigned v) { p[0] = v & 255; p[1] = (v >> 8) & 255; }
static void put32(unsigned char *p, uint32_t v) { put16(p, v & 0xffff); put16(p + 2, v >> 16); }
static void put64(unsigned char *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

/* A zip64 archive built by hand: sizes and offset only in the zip64 extra
 * field, counts only in the zip64 end record, as torch writes large files. */
static void reads_zip64_records(void) {
    static unsigned char z[1024];
    const char *name = "archive/data/0";
    const char *payload = "zip64 payload bytes";
    size_t nl = strlen(name), pl = strlen(payload), p = 0;
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < pl; i++) { /* bitwise CRC-32, independent of zlib */
        crc ^= (unsigned char)payload[i];
        for (int b = 0; b < 8; b++) crc = crc & 1 ? (crc >> 1) ^ 0xedb88320u : crc >> 1;
    }
    crc ^= 0xffffffffu;
    /* local header, with 64-byte alignment padding in its extra field */
    put32(z, 0x04034b50);
    put16(z + 4, 45);
    put32(z + 14, crc);
    put32(z + 18, (uint32_t)pl);
    put32(z + 22, (uint32_t)pl);
    put16(z + 26, (unsigned)nl);
    size_t pad = 64 - (30 + nl + 4) % 64;
    put16(z + 28, (unsigned)(4 + pad));
    memcpy(z + 30, name, nl);
    put16(z + 30 + nl, 0x4246); /* "FB" padding record, as torch writes */
    put16(z + 32 + nl, (unsigned)pad);
    p = 30 + nl + 4 + pad;
    CHECK(p % 64 == 0);
    size_t data_at = p;
    memcpy(z + p, payload, pl);
    p += pl;
    size_t cd = p;
    put32(z + p, 0x02014b50);
    put16(z + p + 4, 45);
    put16(z + p + 6, 45);
    put32(z + p + 16, crc);
    put32(z + p + 20, 0xffffffffu);
    put32(z + p + 24, 0xffffffffu);
    put16(z + p + 28, (unsigned)nl);
    put16(z + p + 30, 28);
    put32(z + p + 42, 0xffffffffu);
    memcpy(z + p + 46, name, nl);
    unsigned char *x = z + p + 46 + nl;
    put16(x, 1);
    put16(x + 2, 24);
    put64(x + 4, pl);  /* usize */
    put64(x + 12, pl); /* csize */
    put64(x + 20, 0);  /* local header offset */
    p += 46 + nl + 28;
    size_t cd_size = p - cd, z64 = p;
    put32(z + p, 0x06064b50);
    put64(z + p + 4, 44);
    put16(z + p + 12, 45);
    put16(z + p + 14, 45);
    put64(z + p + 24, 1);
    put64(z + p + 32, 1);
    put64(z + p + 40, cd_size);
    put64(z + p + 48, cd);
    p += 56;
    put32(z + p, 0x07064b50);
    put64(z + p + 8, z64);
    put32(z + p + 16, 1);
    p += 20;
    put32(z + p, 0x06054b50);
    put16(z + p + 8, 0xffff);
    put16(z + p + 10, 0xffff);
    put32(z + p + 12, 0xffffffffu);
    put32(z + p + 16, 0xffffffffu);
    p += 22;

    fs_zip *zip;
    CHECKF(fs_zip_open_mem(&zip, z, p, "zip64") == FS_OK, "%s", fs_error_msg());
    CHECK(fs_zip_count(zip) == 1 && !strcmp(fs_zip_name(zip, 0), name));
    const fs_zip_entry *e = fs_zip_entry_at(zip, 0);
    CHECK(e->usize == pl && e->csize == pl && e->header_offset == 0 && e->method == 0);
    uint64_t off;
    CHECK(fs_zip_data_offset(zip, 0, &off) == FS_OK && off == data_at);
    unsigned char *d;
    size_t n;
    CHECK(fs_zip_read(zip, 0, &d, &n) == FS_OK);
    CHECK(n == pl && !memcmp(d, payload, pl) && d[n] == 0);
    free(d);
    char small[4];
    CHECK(fs_zip_read_into(zip, 0, small, sizeof small) == FS_ERR);
    fs_zip_close(zip);
    /* The same archive with its zip64 extra field cut short. */
    put16(x + 2, 8);
    put16(x + 4 + 8, 0x7777);
    CHECK(fs_zip_open_mem(&zip, z, p, "zip64") == FS_ERR);
}

/* torch.save writes a zip (zip64 records when large, 64-byte aligned data). */
static void reads_torch_checkpoint_layout(void) {
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) SKIP("python3 torch not installed");
    const char *p = path_in("tiny.pth");
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import sys, torch\n"
             "torch.save({'w': torch.arange(10, dtype=torch.float32) / 4}, sys.argv[1])\" '%s'",
             p);
    CHECK(system(cmd) == 0);
    fs_zip *z;
    CHECK(fs_zip_open(&z, p) == FS_OK);
    int found_pkl = 0, found_data = 0;
    for (size_t i = 0; i < fs_zip_count(z); i++) {
        const char *name = fs_zip_name(z, i);
        size_t l = strlen(name);
        if (l >= 9 && !strcmp(name + l - 9, "/data.pkl")) {
            unsigned char *d;
            size_t n;
            CHECK(fs_zip_read(z, i, &d, &n) == FS_OK);
            CHECK(n > 2 && d[0] == 0x80); /* pickle protocol marker */
            free(d);
            found_pkl = 1;
        }
        if (l >= 7 && !strcmp(name + l - 7, "/data/0")) {
            float w[10];
            uint64_t off;
            CHECK(fs_zip_read_into(z, i, w, sizeof w) == FS_OK);
            for (int k = 0; k < 10; k++) CHECK(w[k] == k / 4.0f);
            CHECK(fs_zip_data_offset(z, i, &off) == FS_OK && off % 64 == 0);
            found_data = 1;
        }
    }
    fs_zip_close(z);
    CHECK(found_pkl && found_data);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", test_tmp_dir("npz"));
    have_numpy = system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
    if (have_numpy) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c \"%s\" '%s'", NUMPY_SCRIPT, dir);
        if (system(cmd) != 0) {
            printf("FAIL setup: numpy script failed\n");
            return 1;
        }
    }
    RUN(reads_savez_and_savez_compressed);
    RUN(reads_every_npy_flavour);
    RUN(rejects_malformed_npy);
    RUN(rejects_broken_archives);
    RUN(survives_random_damage);
    RUN(reads_zip64_records);
    RUN(reads_torch_checkpoint_layout);
    TEST_EXIT();
}
