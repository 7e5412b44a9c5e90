/* core: tensors, errors, counter-based RNG, atomic files. */
#include "test.h"

#include "core/hash.h"

#include <unistd.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "core/tensor.h"

static void tensor_alloc_and_convert(void) {
    fs_tensor t, u;
    size_t shape[3] = {2, 3, 4};
    CHECK(fs_tensor_alloc(&t, FS_I16, 3, shape) == FS_OK);
    CHECK(fs_tensor_numel(&t) == 24 && fs_tensor_nbytes(&t) == 48);
    for (size_t i = 0; i < 24; i++) fs_tensor_set(&t, i, (double)i * 1000 - 5000);
    CHECK(fs_tensor_get(&t, 23) == 18000);
    CHECK(fs_tensor_convert(&u, &t, FS_U8) == FS_OK);
    CHECK(fs_tensor_get(&u, 0) == 0);   /* saturates below */
    CHECK(fs_tensor_get(&u, 23) == 255); /* and above */
    CHECK(fs_shape_equal(&t, &u));
    char buf[64];
    CHECK(!strcmp(fs_shape_str(&t, buf, sizeof buf), "[2,3,4]"));
    fs_tensor_free(&t);
    fs_tensor_free(&u);
}

static void tensor_refuses_overflowing_shape(void) {
    fs_tensor t;
    size_t shape[3] = {1UL << 40, 1UL << 40, 4};
    CHECK(fs_tensor_alloc(&t, FS_F32, 3, shape) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "overflow") != NULL);
}

static void half_floats(void) {
    CHECK(fs_half_to_float(0x3c00) == 1.0f);
    CHECK(fs_half_to_float(0xc000) == -2.0f);
    CHECK(fs_half_to_float(0x0001) == ldexpf(1, -24));
    CHECK(fs_bf16_to_float(0x3f80) == 1.0f);
}

static void byteswap_elements(void) {
    uint16_t h[3] = {0x0102, 0x0304, 0x0506};
    fs_byteswap(h, 3, 2);
    CHECK(h[0] == 0x0201 && h[1] == 0x0403 && h[2] == 0x0605);
    unsigned char b[8] = {1, 2, 3, 4, 5, 6, 7, 8}, want[8] = {8, 7, 6, 5, 4, 3, 2, 1};
    fs_byteswap(b, 1, 8);
    CHECK(!memcmp(b, want, 8));
    fs_byteswap(b, 8, 1); /* single bytes have no order */
    CHECK(!memcmp(b, want, 8));
}

static void rng_is_counter_based(void) {
    fs_rng a, b;
    fs_rng_init(&a, 42, 7);
    for (int i = 0; i < 10; i++) fs_rng_u64(&a);
    CHECK(fs_rng_u64(&a) == fs_hash64(42, 7, 10));
    fs_rng_init(&b, 43, 7);
    CHECK(fs_rng_u64(&b) != fs_hash64(42, 7, 0));
    /* uniform in range and roughly unbiased */
    double sum = 0;
    fs_rng_init(&a, 1, 0);
    for (int i = 0; i < 100000; i++) {
        double u = fs_rng_uniform(&a);
        CHECK(u >= 0 && u < 1);
        sum += u;
    }
    CHECK_NEAR(sum / 100000, 0.5, 0.01);
    size_t v[100], seen[100] = {0};
    for (size_t i = 0; i < 100; i++) v[i] = i;
    fs_rng_shuffle(&a, v, 100);
    for (size_t i = 0; i < 100; i++) seen[v[i]]++;
    for (size_t i = 0; i < 100; i++) CHECK(seen[i] == 1);
}

static void atomic_file_commit_and_abort(void) {
    const char *dir = test_tmp_dir("core");
    char path[600], tmp[4200];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    fs_atomic_file af;
    CHECK(fs_atomic_open(&af, path) == FS_OK);
    fputs("hello\n", af.f);
    snprintf(tmp, sizeof tmp, "%s", af.tmp);
    CHECK(!fs_is_file(path)); /* nothing under the final name until commit */
    CHECK(fs_atomic_close(&af, 1) == FS_OK);
    CHECK(fs_is_file(path) && !fs_is_file(tmp));
    snprintf(path, sizeof path, "%s/aborted.txt", dir);
    CHECK(fs_atomic_open(&af, path) == FS_OK);
    fputs("half", af.f);
    CHECK(fs_atomic_close(&af, 0) == FS_OK);
    CHECK(!fs_is_file(path) && !fs_is_file(af.tmp));
    char **names;
    size_t n;
    CHECK(fs_list_dir(dir, &names, &n) == FS_OK);
    CHECK(n == 1 && !strcmp(names[0], "out.txt"));
    fs_free_list(names, n);
}

static void errno_messages_name_the_file(void) {
    unsigned char *d;
    size_t n;
    CHECK(fs_read_file("/nonexistent/x.nii.gz", &d, &n) == FS_ERR);
    CHECK(!strcmp(fs_error_msg(), "cannot open '/nonexistent/x.nii.gz': no such file"));
}

/* FNV-1a's published vectors; the word variant differs from it but agrees
 * on a tail shorter than a word, and any changed byte changes both. */
static void fnv_hashes(void) {
    CHECK(fs_fnv1a(FS_FNV_OFFSET, "", 0) == FS_FNV_OFFSET);
    CHECK(fs_fnv1a(FS_FNV_OFFSET, "a", 1) == 0xaf63dc4c8601ec8cULL);
    CHECK(fs_fnv1a(FS_FNV_OFFSET, "foobar", 6) == 0x85944171f73967e8ULL);
    CHECK(fs_fnv1a_words(FS_FNV_OFFSET, "foobar", 6) == 0x85944171f73967e8ULL);
    char buf[37];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (char)(i * 7);
    uint64_t h = fs_fnv1a_words(FS_FNV_OFFSET, buf, sizeof buf);
    CHECK(h != fs_fnv1a(FS_FNV_OFFSET, buf, sizeof buf));
    for (size_t i = 0; i < sizeof buf; i++) {
        buf[i] ^= 1;
        CHECKF(fs_fnv1a_words(FS_FNV_OFFSET, buf, sizeof buf) != h, "byte %zu", i);
        buf[i] ^= 1;
    }
    CHECK(fs_fnv1a_words(FS_FNV_OFFSET, buf, sizeof buf) == h);
}

int main(void) {
    RUN(tensor_alloc_and_convert);
    RUN(tensor_refuses_overflowing_shape);
    RUN(half_floats);
    RUN(byteswap_elements);
    RUN(rng_is_counter_based);
    RUN(atomic_file_commit_and_abort);
    RUN(errno_messages_name_the_file);
    RUN(fnv_hashes);
    TEST_EXIT();
}
