/* curve-keygen: a CURVE keypair for encrypting the trainer's stream between
 * nodes. The trainer binds with the secret key (NAME.key, readable by its
 * owner only); synthesizers connect with the public key (NAME.pub). Both
 * are Z85 text, one line, as fs_wire_key_load reads them. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "core/cli.h"
#include "core/error.h"
#include "core/fsutil.h"

static const char usage[] =
    "usage: curve-keygen --out DIR [--name NAME]\n"
    "\n"
    "Writes a new CURVE keypair for the trainer's ZeroMQ stream: DIR/NAME.key\n"
    "(the secret key, mode 0600: trainer --curve-secret-key) and DIR/NAME.pub\n"
    "(the public key: synthesizer --curve-server-key). An existing pair is\n"
    "replaced.\n"
    "\n"
    "  --out DIR            output folder (created)\n"
    "  --name NAME          file name stem (default: curve)\n"
    "  -h, --help           this help\n";

/* Writes one key line to path (mode: 0600 or 0644) through a temporary name. */
static int write_key(const char *path, const char *key, mode_t mode) {
    fs_atomic_file af;
    if (fs_atomic_open(&af, path)) return FS_ERR;
    if (fchmod(fileno(af.f), mode) != 0) {
        fs_error_errno("cannot set the mode of '%s'", af.tmp);
        fs_atomic_close(&af, 0);
        return FS_ERR;
    }
    fprintf(af.f, "%s\n", key);
    return fs_atomic_close(&af, 1);
}

int main(int argc, char **argv) {
    fs_cli_init(argc, argv);
    static const struct option longs[] = {
        {"out", required_argument, 0, 'o'}, {"name", required_argument, 0, 'n'},
        {"help", no_argument, 0, 'h'},      {0, 0, 0, 0}};
    const char *out = NULL, *name = "curve";
    int c;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'n': name = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fs_cli_bad_option(argc, argv);
        }
    }
    if (optind < argc) fs_cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!out) fs_cli_usage_error("--out DIR is required");
    if (!*name || strchr(name, '/')) fs_cli_usage_error("--name '%s': a file name stem, without '/'", name);
    if (!zmq_has("curve")) {
        fs_error("this libzmq has no CURVE support");
        fs_cli_die();
    }

    char pub[41], sec[41], pub_path[4096], sec_path[4096];
    if (zmq_curve_keypair(pub, sec) != 0) {
        fs_error_errno("cannot make a CURVE keypair");
        fs_cli_die();
    }
    int n1 = snprintf(sec_path, sizeof sec_path, "%s/%s.key", out, name);
    int n2 = snprintf(pub_path, sizeof pub_path, "%s/%s.pub", out, name);
    if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof sec_path || (size_t)n2 >= sizeof pub_path) {
        fs_error("path too long: '%s'", out);
        fs_cli_die();
    }
    if (fs_mkdirs(out) || write_key(sec_path, sec, 0600) || write_key(pub_path, pub, 0644)) fs_cli_die();
    memset(sec, 0, sizeof sec);
    printf("%s\n%s\n", sec_path, pub_path);
    return 0;
}
