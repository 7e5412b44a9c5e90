/* A minimal unit-test harness. Each test binary prints one line per test:
 * "ok <name>", "FAIL <name>: <where>: <what>" or "skip <name>: <why>";
 * tests/run counts them. A test is a function; CHECK records a failure and
 * returns from it. */
#ifndef FS_TEST_H
#define FS_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failed_flag, test_skipped_flag, test_fail_count;
static char test_skip_reason[256];

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            printf("FAIL %s: %s:%d: %s\n", test_current, __FILE__, __LINE__, #cond); \
            test_failed_flag = 1;                                                     \
            return;                                                                   \
        }                                                                             \
    } while (0)

#define CHECKF(cond, ...)                                                           \
    do {                                                                            \
        if (!(cond)) {                                                              \
            printf("FAIL %s: %s:%d: %s: ", test_current, __FILE__, __LINE__, #cond); \
            printf(__VA_ARGS__);                                                    \
            printf("\n");                                                           \
            test_failed_flag = 1;                                                   \
            return;                                                                 \
        }                                                                           \
    } while (0)

#define CHECK_NEAR(a, b, tol) CHECKF(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g", (double)(a), (double)(b))

#define SKIP(...)                                                                  \
    do {                                                                           \
        snprintf(test_skip_reason, sizeof test_skip_reason, __VA_ARGS__);          \
        test_skipped_flag = 1;                                                     \
        return;                                                                    \
    } while (0)

static const char *test_current = "";

/* FEWSAM_TEST_SKIP=a,b: those tests report themselves skipped without
 * running (for runs where one is too slow, e.g. under emulation). */
static inline int test_listed_skip(const char *name) {
    const char *p = getenv("FEWSAM_TEST_SKIP");
    size_t n = strlen(name);
    while (p && *p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

#define RUN(fn)                                                                \
    do {                                                                       \
        test_current = #fn;                                                    \
        test_failed_flag = test_skipped_flag = 0;                              \
        if (test_listed_skip(#fn)) {                                           \
            printf("skip %s: listed in FEWSAM_TEST_SKIP\n", #fn);              \
            fflush(stdout);                                                    \
            break;                                                             \
        }                                                                      \
        fn();                                                                  \
        if (test_failed_flag) test_fail_count++;                               \
        else if (test_skipped_flag) printf("skip %s: %s\n", #fn, test_skip_reason); \
        else printf("ok %s\n", #fn);                                           \
        fflush(stdout);                                                        \
    } while (0)

#define TEST_EXIT() return test_fail_count ? 1 : 0

/* Where ../shared sits relative to the repository, overridable for CI layouts. */
static inline const char *test_shared_dir(void) {
    const char *d = getenv("FEWSAM_SHARED");
    return d ? d : "../shared";
}

/* A scratch directory under the build tree, unique per test binary. */
static inline const char *test_tmp_dir(const char *name) {
    static char buf[512];
    const char *b = getenv("FEWSAM_TEST_TMP");
    snprintf(buf, sizeof buf, "%s/%s", b ? b : "build/tmp", name);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", buf, buf);
    if (system(cmd) != 0) { printf("FAIL setup: cannot create %s\n", buf); exit(1); }
    return buf;
}

#endif
