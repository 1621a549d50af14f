/*
 * flatnet CNI forwarder: the /opt/cni/bin/flatnet executable that runtimes exec.
 *
 * It hands the CNI_* environment and the network config on stdin to the node agent over
 * its unix socket (src/flatnet/agent/protocol.py: one JSON request, write side shut,
 * one JSON answer {"exit": N, "stdout": "..."}) and prints the agent's stdout byte for
 * byte. VERSION is answered here. Every failure prints one CNI error JSON:
 *   stdin not UTF-8 / not JSON -> 6, unsupported cniVersion -> 1, bad CNI_* env -> 4,
 *   no agent listening / agent gone or silent -> 11, agent answer malformed -> 106.
 * With no agent and an in-process entry point named (config "inProcess", else
 * $FLATNET_INPROCESS, else the record the entry point left at this container's ADD in
 * /run/flatnet/inprocess/<CNI_CONTAINERID>.<CNI_IFNAME>), it execs that program with the
 * same env and stdin instead. The record is why the no-agent mode cannot leak: podman's
 * exit cleanup (conmon -> `podman container cleanup`) runs DEL without the environment
 * `podman run` had, so a mode turned on by $FLATNET_INPROCESS alone must still be found.
 *
 * Why C (static, musl) and not Go: nodes have no Python, so this must be one file that
 * needs only the kernel. musl-gcc -static -Os gives a ~60 KB binary that starts in well
 * under a millisecond, from Debian's musl-tools (a few MB) instead of a Go toolchain
 * (hundreds of MB) on every build machine, and the job (read stdin, validate JSON,
 * one socket round trip with deadlines) is small enough that C's lack of a JSON
 * library costs ~150 lines. Bounded everywhere: sizes, nesting, time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "versions.h" /* generated from src/flatnet/__init__.py: FLATNET_VERSION, VERSIONS */

/* DEFAULT_SOCKET, CONNECT_TIMEOUT_MS, DEFAULT_TIMEOUT_S: build/versions.h, from defaults.py */
#define INPROCESS_RECORDS "/run/flatnet/inprocess" /* src/flatnet/defaults.py INPROCESS_DIR */
#define MAX_STDIN (1 << 20)       /* the agent refuses requests above 1 MiB anyway */
#define MAX_ANSWER (16 << 20)
#define MAX_DEPTH 512
#define STDIN_TIMEOUT_MS 30000

static const char *versions[] = {VERSIONS};
static const int n_versions = sizeof(versions) / sizeof(versions[0]);

/* ---- a growable buffer; out of memory ends the process with an error JSON ---- */
typedef struct { char *p; size_t n, cap; } buf;
static void fail(const char *ver, int code, const char *msg);
static void put(buf *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 4096);
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) fail(versions[n_versions - 1], 100, "out of memory");
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* ---- UTF-8: length of the valid sequence at s (1-4), 0 if invalid (as Python decodes) ---- */
static int utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (!len || c > 0xF4 || (size_t)len > n) return 0;
    for (int i = 1; i < len; i++) if ((s[i] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0;  /* overlong */
    if (c == 0xED && s[1] > 0x9F) return 0;  /* surrogates */
    if (c == 0xF0 && s[1] < 0x90) return 0;  /* overlong */
    if (c == 0xF4 && s[1] > 0x8F) return 0;  /* > U+10FFFF */
    return len;
}
static int utf8_ok(const char *s, size_t n) {
    for (size_t i = 0; i < n;) { int k = utf8_seq((const unsigned char *)s + i, n - i); if (!k) return 0; i += k; }
    return 1;
}

/* JSON string of s; invalid UTF-8 becomes U+FFFD so the output is always valid JSON */
static void put_jstr(buf *b, const char *s, size_t n) {
    put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        int k = utf8_seq((const unsigned char *)s + i, n - i);
        if (c == '"' || c == '\\') { put(b, "\\", 1); put(b, s + i, 1); i++; }
        else if (c < 0x20) { char e[8]; snprintf(e, sizeof e, "\\u%04x", c); puts_(b, e); i++; }
        else if (!k) { puts_(b, "\\ufffd"); i++; }
        else { put(b, s + i, k); i += k; }
    }
    put(b, "\"", 1);
}

/* ---- the error answer and the exit ---- */
static void write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w, n -= w;
    }
}
static void fail(const char *ver, int code, const char *msg) {
    static buf b; /* static: fail() may be called when malloc has just failed */
    char head[96];
    snprintf(head, sizeof head, "{\"cniVersion\": \"%s\", \"code\": %d, \"msg\": ", ver, code);
    b.n = 0;
    puts_(&b, head);
    put_jstr(&b, msg, strlen(msg));
    puts_(&b, "}\n");
    write_all(1, b.p, b.n);
    exit(1);
}
static void failf(const char *ver, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void failf(const char *ver, int code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fail(ver, code, msg);
}

/* ---- a minimal strict JSON reader (RFC 8259), depth- and size-bounded ---- */
typedef struct { const char *s, *e; const char *err; } jr;
static void ws(jr *r) { while (r->s < r->e && strchr(" \t\n\r", *r->s) && *r->s) r->s++; }
static int jerr(jr *r, const char *why) { if (!r->err) r->err = why; return 0; }
static int hex4(const char *p, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i]; unsigned d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 16;
        if (d > 15) return 0;
        *v = *v * 16 + d;
    }
    return 1;
}
static void put_cp(buf *b, unsigned cp) {
    char u[4]; int n;
    if (cp < 0x80) u[0] = cp, n = 1;
    else if (cp < 0x800) u[0] = 0xC0 | cp >> 6, u[1] = 0x80 | (cp & 63), n = 2;
    else if (cp < 0x10000) u[0] = 0xE0 | cp >> 12, u[1] = 0x80 | (cp >> 6 & 63), u[2] = 0x80 | (cp & 63), n = 3;
    else u[0] = 0xF0 | cp >> 18, u[1] = 0x80 | (cp >> 12 & 63), u[2] = 0x80 | (cp >> 6 & 63), u[3] = 0x80 | (cp & 63), n = 4;
    put(b, u, n);
}
/* a string at r->s (after the quote is checked); decoded into out if out != NULL */
static int jstring(jr *r, buf *out) {
    r->s++;
    while (r->s < r->e) {
        unsigned char c = *r->s;
        if (c == '"') { r->s++; if (out) put(out, "", 0); return 1; }
        if (c < 0x20) return jerr(r, "control character in a string");
        if (c != '\\') { if (out) put(out, r->s, 1); r->s++; continue; }
        if (r->e - r->s < 2) break;
        char k = r->s[1];
        const char *simple = strchr("\"\\/bfnrt", k);
        if (simple && k) { if (out) put(out, &"\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"], 1); r->s += 2; continue; }
        unsigned cp, lo;
        if (k != 'u' || r->e - r->s < 6 || !hex4(r->s + 2, &cp)) return jerr(r, "invalid escape in a string");
        r->s += 6;
        if (cp >= 0xD800 && cp < 0xDC00 && r->e - r->s >= 6 && r->s[0] == '\\' && r->s[1] == 'u'
            && hex4(r->s + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            r->s += 6;
        } else if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD; /* lone surrogate: not printable */
        if (out) put_cp(out, cp);
    }
    return jerr(r, "unterminated string");
}
static int digits(jr *r) { const char *b = r->s; while (r->s < r->e && *r->s >= '0' && *r->s <= '9') r->s++; return r->s > b; }
static int jvalue(jr *r, int depth);
static int jcompound(jr *r, int depth, char close) {
    if (depth >= MAX_DEPTH) return jerr(r, "nested deeper than 512 levels");
    r->s++; ws(r);
    if (r->s < r->e && *r->s == close) { r->s++; return 1; }
    for (;;) {
        if (close == '}') {
            if (r->s >= r->e || *r->s != '"') return jerr(r, "expecting a property name in double quotes");
            if (!jstring(r, NULL)) return 0;
            ws(r);
            if (r->s >= r->e || *r->s != ':') return jerr(r, "expecting ':'");
            r->s++;
        }
        if (!jvalue(r, depth + 1)) return 0;
        ws(r);
        if (r->s < r->e && *r->s == ',') { r->s++; ws(r); continue; }
        if (r->s < r->e && *r->s == close) { r->s++; return 1; }
        return jerr(r, close == '}' ? "expecting ',' or '}'" : "expecting ',' or ']'");
    }
}
static int jvalue(jr *r, int depth) {
    ws(r);
    if (r->s >= r->e) return jerr(r, "expecting a value");
    char c = *r->s;
    if (c == '{' || c == '[') return jcompound(r, depth, c == '{' ? '}' : ']');
    if (c == '"') return jstring(r, NULL);
    for (const char *const *w = (const char *const[]){"true", "false", "null", NULL}; *w; w++)
        if ((size_t)(r->e - r->s) >= strlen(*w) && !memcmp(r->s, *w, strlen(*w))) { r->s += strlen(*w); return 1; }
    if (c == '-') r->s++;
    if (r->s < r->e && *r->s == '0') r->s++;
    else if (!(r->s < r->e && *r->s >= '1' && *r->s <= '9' && digits(r))) return jerr(r, "expecting a value");
    if (r->s < r->e && *r->s == '.') { r->s++; if (!digits(r)) return jerr(r, "digits expected after '.'"); }
    if (r->s < r->e && (*r->s == 'e' || *r->s == 'E')) {
        r->s++;
        if (r->s < r->e && (*r->s == '+' || *r->s == '-')) r->s++;
        if (!digits(r)) return jerr(r, "digits expected in the exponent");
    }
    return 1;
}
/* Edit distance of two short keys, ignoring case (0 for "inprocess" vs "inProcess"). */
static size_t key_distance(const char *a, size_t na, const char *b) {
    size_t nb = strlen(b), row[64];
    if (na >= 63 || nb >= 63) return 99;
    for (size_t j = 0; j <= nb; j++) row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j], cost = (a[i - 1] | 32) != (b[j - 1] | 32);
            size_t best = diag + cost < up + 1 ? diag + cost : up + 1;
            row[j] = best < row[j - 1] + 1 ? best : row[j - 1] + 1;
            diag = up;
        }
    }
    return row[nb];
}
/* A top-level key of the config that is almost one the forwarder reads ("inprocess",
 * "agentsocket"): without an agent no parser would ever see the typo, so say it here. */
static char near_key[64];
static const char *near_want;

/* Validate one whole document; for a top-level object, record where the values of the
 * wanted keys start (last occurrence wins, like Python's json) and, with ``near``, a key
 * that is a typo of one of them. Returns 1 if valid. */
static int jdoc(const char *s, size_t n, const char **keys, const char **vals, int nkeys, const char **err,
                long *pos, int near) {
    jr r = {s, s + n, NULL};
    ws(&r);
    if (r.s < r.e && *r.s == '{') {
        buf key = {0};
        r.s++; ws(&r);
        int first = 1;
        while (!(r.s < r.e && *r.s == '}' && first)) {
            if (r.s >= r.e || *r.s != '"') { jerr(&r, "expecting a property name in double quotes"); break; }
            key.n = 0;
            if (!jstring(&r, &key)) break;
            ws(&r);
            if (r.s >= r.e || *r.s != ':') { jerr(&r, "expecting ':'"); break; }
            r.s++; ws(&r);
            int exact = 0;
            for (int i = 0; i < nkeys; i++) if (key.n == strlen(keys[i]) && !memcmp(key.p, keys[i], key.n)) vals[i] = r.s, exact = 1;
            for (int i = 1; near && !exact && !near_want && i < nkeys; i++) /* keys[0] is cniVersion */
                if (key.n < sizeof near_key && key_distance(key.p, key.n, keys[i]) <= 2)
                    memcpy(near_key, key.p, key.n), near_key[key.n] = 0, near_want = keys[i];
            if (!jvalue(&r, 1)) break;
            ws(&r);
            first = 0;
            if (r.s < r.e && *r.s == ',') { r.s++; ws(&r); continue; }
            if (r.s < r.e && *r.s == '}') break;
            jerr(&r, "expecting ',' or '}'");
            break;
        }
        free(key.p);
        if (!r.err) r.s++;
    } else jvalue(&r, 0);
    if (!r.err) { ws(&r); if (r.s != r.e) jerr(&r, "extra data after the document"); }
    *err = r.err;
    *pos = (long)(r.s - s);
    return !r.err;
}
/* the string at v (a recorded value start), decoded; NULL if v is not a string */
static char *jstr_at(const char *v, const char *end) {
    if (!v || *v != '"') return NULL;
    jr r = {v, end, NULL};
    buf out = {0};
    put(&out, "", 0);
    return jstring(&r, &out) ? out.p : NULL;
}

/* ---- I/O with deadlines ---- */
static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}
static int wait_fd(int fd, short ev, long long deadline) {
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) return 0;
        struct pollfd p = {fd, ev, 0};
        int k = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
        if (k > 0) return 1;
        if (k < 0 && errno != EINTR) return 1; /* let the read/write report it */
    }
}
/* read fd to EOF into b; 1 ok, 0 timeout, -1 too large, -2 error (errno) */
static int read_all(int fd, buf *b, size_t max, long long deadline) {
    char chunk[65536];
    for (;;) {
        if (!wait_fd(fd, POLLIN, deadline)) return 0;
        ssize_t k = read(fd, chunk, sizeof chunk);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k < 0) return errno == EBADF ? 1 : -2; /* no stdin at all: an empty one */
        if (k == 0) return 1;
        if (b->n + k > max) return -1;
        put(b, chunk, k);
    }
}

static int supported(const char *v) {
    for (int i = 0; v && i < n_versions; i++) if (!strcmp(v, versions[i])) return 1;
    return 0;
}

/* Where the no-agent mode was turned on for this call (messages name the config key first). */
enum entry_from { FROM_CONF, FROM_ENV, FROM_RECORD };

/* No agent here: exec the in-process entry point with our env and the same stdin. */
static void exec_inprocess(const char *ver, const char *entry, enum entry_from from, const char *record,
                           const buf *in) {
    int fd = memfd_create("flatnet-stdin", MFD_CLOEXEC);
    if (fd < 0) failf(ver, 100, "cannot hand stdin to the in-process entry point: %s", strerror(errno));
    write_all(fd, in->p ? in->p : "", in->n);
    if (lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) != 0)
        failf(ver, 100, "cannot hand stdin to the in-process entry point: %s", strerror(errno));
    signal(SIGPIPE, SIG_DFL);
    execl(entry, entry, (char *)NULL);
    if (from == FROM_CONF)
        failf(ver, 7, "cannot run the in-process entry point %s (network config key \"inProcess\"): %s", entry,
              strerror(errno));
    if (from == FROM_ENV)
        failf(ver, 4, "cannot run the in-process entry point %s (environment variable FLATNET_INPROCESS): %s", entry,
              strerror(errno));
    failf(ver, 11, "cannot run the in-process entry point %s that served this container's ADD (recorded in %s): %s; "
          "reinstall it there or set \"inProcess\" in the network config", entry, record, strerror(errno));
}

/* The entry point recorded at this container's ADD (first line of the record), or NULL.
 * Only a regular file owned by us and writable by nobody else is believed: we exec what
 * it names. The id and ifname are the spec's charset; anything else is never a path. */
static char *recorded_entry(char *path, size_t size) {
    const char *cid = getenv("CNI_CONTAINERID"), *ifn = getenv("CNI_IFNAME");
    if (!cid || !*cid || !ifn || !*ifn || *cid == '.' || *ifn == '.') return NULL;
    for (const char *const *s = (const char *const[]){cid, ifn, NULL}; *s; s++)
        for (const char *c = *s; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || strchr("_.-", *c)))
                return NULL;
    if ((size_t)snprintf(path, size, "%s/%s.%s", INPROCESS_RECORDS, cid, ifn) >= size) return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return NULL;
    struct stat st;
    char line[4096];
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && !(st.st_mode & 022))
        n = read(fd, line, sizeof line - 1);
    close(fd);
    if (n <= 0) return NULL;
    line[n] = 0;
    line[strcspn(line, "\n")] = 0;
    return line[0] == '/' ? strdup(line) : NULL;
}

extern char **environ;
int main(void) {
    signal(SIGPIPE, SIG_IGN);
    for (int fd = 0; fd < 3; fd++) /* a closed stdio fd must not become the agent socket */
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd) return 1;
    const char *latest = versions[n_versions - 1], *ver = latest;
    const char *cmd = getenv("CNI_COMMAND");
    if (!cmd || !*cmd) {
        fprintf(stderr, "CNI flatnet plugin v%s\nCNI protocol versions supported:", FLATNET_VERSION);
        for (int i = 0; i < n_versions; i++) fprintf(stderr, "%s %s", i ? "," : "", versions[i]);
        fprintf(stderr, "\n");
        return 0;
    }
    buf in = {0};
    put(&in, "", 0);
    int rc = read_all(0, &in, MAX_STDIN, now_ms() + STDIN_TIMEOUT_MS);
    const char *keys[] = {"cniVersion", "agentSocket", "inProcess"}, *vals[3] = {0}, *jerr_ = NULL;
    int utf8 = utf8_ok(in.p, in.n);
    long pos = 0;
    int json = utf8 && rc == 1 && jdoc(in.p, in.n, keys, vals, 3, &jerr_, &pos, 1);
    const char *end = in.p + in.n;
    char *cni_version = jstr_at(vals[0], end);
    if (supported(cni_version)) ver = cni_version;
    if (!strcmp(cmd, "VERSION")) {
        printf("{\"cniVersion\":\"%s\",\"supportedVersions\":[", ver);
        for (int i = 0; i < n_versions; i++) printf("%s\"%s\"", i ? "," : "", versions[i]);
        printf("]}\n");
        return fflush(stdout) ? 1 : 0;
    }
    if (rc == 0) fail(ver, 5, "network configuration on stdin did not end within 30s (the runtime must close stdin)");
    if (rc == -1) failf(ver, 6, "network configuration on stdin is larger than %d bytes", MAX_STDIN);
    if (rc == -2) failf(ver, 5, "cannot read the network configuration on stdin: %s", strerror(errno));
    if (!utf8) fail(ver, 6, "network configuration on stdin is not valid UTF-8");
    if (!in.n) fail(ver, 6, "network configuration is empty: the runtime must pass it as JSON on stdin");
    if (!json) failf(ver, 6, "network configuration is not valid JSON: %s at byte %ld", jerr_, pos);
    if (in.p[strspn(in.p, " \t\r\n")] != '{') fail(ver, 6, "network configuration must be a JSON object");
    if (vals[0] && strncmp(vals[0], "null", 4) && strncmp(vals[0], "\"\"", 2) && !supported(cni_version))
        failf(ver, 1, "cniVersion %s is not supported: this plugin speaks %s to %s",
              cni_version ? cni_version : "(not a string)", versions[0], latest);

    /* the request: {"v": 1, "env": {CNI_* only}, "stdin": "<config>"} */
    buf req = {0};
    puts_(&req, "{\"v\": 1, \"env\": {");
    int first = 1;
    for (char **e = environ; *e; e++) {
        char *eq = strchr(*e, '=');
        if (strncmp(*e, "CNI_", 4) || !eq) continue;
        if (!utf8_ok(*e, strlen(*e))) failf(ver, 4, "environment variable %.*s is not valid UTF-8", (int)(eq - *e), *e);
        if (!first) puts_(&req, ", ");
        first = 0;
        put_jstr(&req, *e, eq - *e);
        puts_(&req, ": ");
        put_jstr(&req, eq + 1, strlen(eq + 1));
    }
    puts_(&req, "}, \"stdin\": ");
    put_jstr(&req, in.p, in.n);
    puts_(&req, "}");

    /* where the agent listens: config agentSocket > $FLATNET_AGENT_SOCKET > default */
    char *conf_sock = jstr_at(vals[1], end);
    const char *path = conf_sock && *conf_sock ? conf_sock : getenv("FLATNET_AGENT_SOCKET");
    if (!path || !*path) path = DEFAULT_SOCKET;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        failf(ver, 7, "agent socket path %s is longer than %zu bytes", path, sizeof sa.sun_path - 1);
    strcpy(sa.sun_path, path);
    double timeout = DEFAULT_TIMEOUT_S;
    const char *t = getenv("FLATNET_AGENT_TIMEOUT");
    if (t && *t) { char *x; double v = strtod(t, &x); if (!*x && v > 0 && v < 86400) timeout = v; }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) failf(ver, 11, "cannot create a unix socket: %s", strerror(errno));
    long long cdeadline = now_ms() + CONNECT_TIMEOUT_MS;
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int err = errno;
        if ((err == EAGAIN || err == EINTR) && now_ms() < cdeadline) { usleep(2000); continue; }
        if (err == ENOENT || err == ECONNREFUSED || err == ENOTSOCK || err == ENOTDIR || err == EACCES) {
            char *conf_entry = jstr_at(vals[2], end), record[512];
            const char *env_entry = getenv("FLATNET_INPROCESS");
            if (near_want)
                failf(ver, 7, "no flatnet agent is listening on %s, and the network config has key \"%s\", "
                      "which flatnet does not read: did you mean \"%s\"?", path, near_key, near_want);
            if (conf_entry && *conf_entry) exec_inprocess(ver, conf_entry, FROM_CONF, NULL, &in);
            if (env_entry && *env_entry) exec_inprocess(ver, env_entry, FROM_ENV, NULL, &in);
            char *rec_entry = recorded_entry(record, sizeof record);
            if (rec_entry) exec_inprocess(ver, rec_entry, FROM_RECORD, record, &in);
            failf(ver, 11, "no flatnet agent is listening on %s (%s): start it with "
                  "'flatnet agent --socket %s' (on Kubernetes the flatnet DaemonSet runs it), or run "
                  "without an agent: set \"inProcess\" in the network config to the flatnet-inprocess "
                  "program (docs/PODMAN.md; the environment variable FLATNET_INPROCESS also works)",
                  path, strerror(err), path);
        }
        failf(ver, 11, err == EAGAIN ? "the flatnet agent at %s is too busy to accept (%s); try again"
                                    : "cannot connect to the flatnet agent at %s: %s", path, strerror(err));
    }
    long long deadline = now_ms() + (long long)(timeout * 1000);
    for (size_t off = 0; off < req.n;) { /* EPIPE: the agent answered early (an error): read it */
        if (!wait_fd(fd, POLLOUT, deadline)) failf(ver, 11, "the flatnet agent at %s did not take the request within %.0fs; try again", path, timeout);
        ssize_t w = send(fd, req.p + off, req.n - off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (w <= 0) break;
        off += w;
    }
    shutdown(fd, SHUT_WR);
    buf ans = {0};
    put(&ans, "", 0);
    rc = read_all(fd, &ans, MAX_ANSWER, deadline);
    if (rc == 0) failf(ver, 11, "the flatnet agent at %s did not answer within %.0fs; try again", path, timeout);
    if (ans.n == 0) failf(ver, 11, "the flatnet agent at %s closed the connection without answering "
                          "(restarting?); try again", path);
    const char *akeys[] = {"exit", "stdout"}, *avals[2] = {0}, *aerr;
    if (rc == 1 && utf8_ok(ans.p, ans.n) && jdoc(ans.p, ans.n, akeys, avals, 2, &aerr, &pos, 0) && ans.p[strspn(ans.p, " \t\r\n")] == '{' && avals[0]) {
        char *x;
        long code = strtol(avals[0], &x, 10);
        if (x > avals[0] && !strchr(".eE", *x)) {
            /* decode stdout into a buffer that may hold NULs (\u0000): print by length */
            jr r = {avals[1], ans.p + ans.n, NULL};
            buf o = {0};
            put(&o, "", 0);
            if (avals[1] && *avals[1] == '"' && jstring(&r, &o)) {
                write_all(1, o.p, o.n);
                return code == 0 ? 0 : 1;
            }
        }
    }
    failf(ver, 106, "the flatnet agent at %s sent a malformed answer (plugin and agent versions differ?)", path);
}
