/*
 * loadgen.c - epoll load generator for the daemond echo benchmark.
 *
 * Single-threaded and non-blocking, so that it stays far away from being the
 * bottleneck against a Python server (it reports its own CPU time so that can
 * be checked).  Only ever connects to the address it is given.
 *
 *   loadgen echo HOST PORT CONNS SIZE DURATION [WARMUP] [-s SPIN_US] [-p PID]...
 *       Opens CONNS connections.  Each one repeatedly sends SIZE bytes, waits
 *       until SIZE bytes came back, checks them, and sends the next message.
 *       After WARMUP seconds (default 1) it counts round trips for DURATION
 *       seconds.  Prints one JSON object: rtt_per_s, latency percentiles (ns),
 *       errors, CPU seconds of itself and of the given server PIDs over the
 *       measurement window (process utime+stime; softirq time spent on their
 *       behalf may be accounted separately by the kernel), and the machine's
 *       idle and steal share over the window (from /proc/stat).  -s: busy-poll up to SPIN_US microseconds
 *       after the last event before sleeping in epoll_wait (default 0).
 *       Each connection sends its first message as soon as it is connected (the
 *       others may be echoing already), and the JSON reports every connection's
 *       time from its connect() to its first echo: ttfe_p50/p99/max_ns, and
 *       ttfe_missing, the connections that had none before the run ended.
 *
 *   loadgen idle HOST PORT N TIMEOUT [HOLD]
 *       Opens N connections and holds them.  Prints "HELD <connected>" on
 *       stdout, then waits for a line on stdin (HOLD < 0, the default) or
 *       sleeps HOLD seconds.  Then it sends one byte on every connection (all
 *       at once) and waits up to TIMEOUT seconds for the N echoes.  Prints one
 *       JSON object: time until all answered, answered count, percentiles.
 *       Runs at nice -10 if permitted (see run_idle).
 *       Connections are closed with SO_LINGER 0 (RST) so that repeated runs
 *       of 10,000 connections do not pile up TIME_WAIT ports.
 *
 *   loadgen hs HOST PORT INFLIGHT DURATION [WARMUP] [-p PID]...   (TLS build only)
 *       Keeps INFLIGHT connections being set up at once: each one connects,
 *       does a full TLS handshake (no session resumption), sends one byte,
 *       waits for its echo (so the server has finished its side of the
 *       handshake) and closes.  Prints the same JSON as echo mode, with
 *       rtt_per_s = completed connections per second and the latency of the
 *       whole connect-handshake-echo.
 *
 *   -t CAFILE (echo, idle and hs, TLS build only): speak TLS, verifying the
 *       server against CAFILE (name: localhost).  In idle mode the N
 *       connections do their handshakes before "HELD", one after another in
 *       batches of 200 just connected (connect_s includes them), and the
 *       byte and its echo are TLS records.
 *
 * Build: cc -O2 -o loadgen.bin loadgen.c
 *   TLS: cc -O2 -DLOADGEN_TLS -o loadgen_tls.bin loadgen.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#ifdef LOADGEN_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
static SSL_CTX *tls_ctx;     /* NULL: plaintext */
static char tls_params[128]; /* what the first handshake negotiated */

static void note_tls_params(SSL *ssl)
{
    if (!tls_params[0])
        snprintf(tls_params, sizeof tls_params, "%s %s", SSL_get_version(ssl),
                 SSL_get_cipher_name(ssl));
}
#endif

#define MAX_EVENTS 1024
#define MAX_CONNECTING 256      /* connects in flight at once */
#define CONNECT_TIMEOUT_S 60.0
#define PATTERN_LEN 251         /* prime, so messages differ between rounds */
#define MAX_PIDS 64

/* ------------------------------------------------------------------ time */

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* utime+stime of a process (all its threads) from /proc/PID/stat, seconds */
static double proc_cpu_s(int pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');    /* comm may contain spaces */
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* after ')': state(3) ... utime is field 14, stime 15 */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Machine-wide CPU ticks from the first line of /proc/stat:
 * [0] total, [1] idle (+iowait), [2] steal, [3] irq + softirq. */
static void machine_ticks(unsigned long long t[4])
{
    unsigned long long v[10] = {0};
    t[0] = t[1] = t[2] = t[3] = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
                   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 8)
        return;
    for (int i = 0; i < 8; i++)   /* guest time is already in user */
        t[0] += v[i];
    t[1] = v[3] + v[4];
    t[2] = v[7];
    t[3] = v[5] + v[6];
}

/* ------------------------------------------------------------- histogram */
/* Log-linear histogram of nanoseconds: 128 linear sub-buckets per power of
 * two, i.e. < 0.8 % relative error, constant memory. */

#define SUB_BITS 7
#define SUB_COUNT (1u << SUB_BITS)
#define HIST_BUCKETS (64 * SUB_COUNT)

static uint64_t hist[HIST_BUCKETS];
static uint64_t hist_n, hist_max, hist_min = UINT64_MAX;
static double hist_sum;

static inline unsigned hist_index(uint64_t v)
{
    if (v < SUB_COUNT)
        return (unsigned)v;
    unsigned msb = 63 - __builtin_clzll(v);         /* >= SUB_BITS */
    unsigned shift = msb - (SUB_BITS - 1);          /* keep SUB_BITS bits */
    return (shift << (SUB_BITS - 1)) + (unsigned)(v >> shift);
}

static inline uint64_t hist_value(unsigned idx)   /* midpoint of a bucket */
{
    if (idx < SUB_COUNT)
        return idx;
    unsigned shift = (idx >> (SUB_BITS - 1)) - 1;
    uint64_t top = idx - (shift << (SUB_BITS - 1));
    return (top << shift) + ((1ull << shift) >> 1);
}

static inline void hist_add(uint64_t v)
{
    hist[hist_index(v)]++;
    hist_n++;
    hist_sum += (double)v;
    if (v > hist_max) hist_max = v;
    if (v < hist_min) hist_min = v;
}

static uint64_t hist_pct(double q)
{
    if (!hist_n)
        return 0;
    uint64_t want = (uint64_t)(q * (double)hist_n);
    if (want >= hist_n) want = hist_n - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen > want) {
            uint64_t v = hist_value(i);
            if (v > hist_max) v = hist_max;
            if (v < hist_min) v = hist_min;
            return v;
        }
    }
    return hist_max;
}

static void print_hist_json(void)
{
    printf("\"lat_n\": %llu, \"lat_min_ns\": %llu, \"lat_mean_ns\": %.0f, "
           "\"lat_p50_ns\": %llu, \"lat_p90_ns\": %llu, \"lat_p99_ns\": %llu, "
           "\"lat_p999_ns\": %llu, \"lat_max_ns\": %llu",
           (unsigned long long)hist_n,
           (unsigned long long)(hist_n ? hist_min : 0),
           hist_n ? hist_sum / (double)hist_n : 0.0,
           (unsigned long long)hist_pct(0.50), (unsigned long long)hist_pct(0.90),
           (unsigned long long)hist_pct(0.99), (unsigned long long)hist_pct(0.999),
           (unsigned long long)hist_max);
}


/* ----------------------------------------------------------- connections */

enum { C_CONNECTING, C_ACTIVE, C_DONE, C_DEAD };

struct conn {
    int fd;
    int state;
    uint32_t id;
    uint64_t msgno;
    size_t sent, rcvd;       /* progress within the current message */
    uint64_t t_start;        /* send time of the current message */
    uint64_t t_connect;      /* when connect() was called */
    uint64_t t_first;        /* when the first echo was complete (0: not yet) */
    int want_out;            /* EPOLLOUT registered */
#ifdef LOADGEN_TLS
    SSL *ssl;
#endif
};

static int epfd;
static struct sockaddr_storage addr;
static socklen_t addrlen;
static unsigned char pattern[PATTERN_LEN * 2 + 65536 * 2];
static long n_errors, n_eof, n_mismatch, n_connect_fail;
static char first_error[256];

/* The end of a run's JSON line, the same for every mode: errors, CPU, machine, TLS. */
static void print_tail_json(double window, double cpu, int srv_ok, double srv_cpu,
                            const unsigned long long *mt0, const unsigned long long *mt1, double mtot)
{
    printf(", \"errors\": %ld, \"eof\": %ld, \"mismatch\": %ld, \"connect_fail\": %ld, "
           "\"first_error\": \"%s\", \"loadgen_cpu_s\": %.3f, \"loadgen_cpu_frac\": %.3f",
           n_errors, n_eof, n_mismatch, n_connect_fail, first_error, cpu, cpu / window);
    if (srv_ok)
        printf(", \"server_cpu_s\": %.3f, \"server_cpu_frac\": %.3f", srv_cpu, srv_cpu / window);
    if (mtot > 0)
        printf(", \"machine_idle_frac\": %.3f, \"machine_steal_frac\": %.3f, "
               "\"machine_irq_frac\": %.3f, \"nproc\": %ld",
               (mt1[1] - mt0[1]) / mtot, (mt1[2] - mt0[2]) / mtot,
               (mt1[3] - mt0[3]) / mtot, sysconf(_SC_NPROCESSORS_ONLN));
#ifdef LOADGEN_TLS
    if (tls_params[0])
        printf(", \"tls\": \"%s\"", tls_params);
#endif
    printf("}\n");
    fflush(stdout);
}


static void note_error(const char *what, int err)
{
    n_errors++;
    if (!first_error[0])
        snprintf(first_error, sizeof first_error, "%s: %s", what, strerror(err));
}

static void die(const char *msg)
{
    perror(msg);
    exit(2);
}

static void resolve(const char *host, const char *port)
{
    struct addrinfo hints = {0}, *res;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) {
        fprintf(stderr, "loadgen: bad address %s:%s: %s\n", host, port, gai_strerror(rc));
        exit(2);
    }
    /* loopback only: refuse anything else */
    int ok = 0;
    if (res->ai_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)res->ai_addr;
        ok = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else if (res->ai_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)res->ai_addr;
        ok = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    }
    if (!ok) {
        fprintf(stderr, "loadgen: refusing non-loopback address %s\n", host);
        exit(2);
    }
    memcpy(&addr, res->ai_addr, res->ai_addrlen);
    addrlen = res->ai_addrlen;
    freeaddrinfo(res);
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void ep_set(struct conn *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, op, c->fd, &ev) < 0)
        die("epoll_ctl");
}

static int start_connect(struct conn *c)
{
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        note_error("socket", errno);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->state = C_CONNECTING;
    c->t_connect = now_ns();
    if (connect(fd, (struct sockaddr *)&addr, addrlen) < 0 && errno != EINPROGRESS) {
        note_error("connect", errno);
        close(fd);
        c->fd = -1;
        c->state = C_DEAD;
        return -1;
    }
    ep_set(c, EPOLLOUT, EPOLL_CTL_ADD);
    return 0;
}

/* echo mode: connections start echoing as soon as they are connected */
static int echo_on_connect;
static void echo_new_msg(struct conn *c);
static void echo_recv(struct conn *c);
static void echo_send(struct conn *c);

/* Open n connections, at most MAX_CONNECTING in flight.  Returns the number
 * connected; failed ones are C_DEAD.  Connected ones are left registered for
 * no events (EPOLL_CTL_MOD to 0). */
static long connect_all(struct conn *conns, long n)
{
    struct epoll_event evs[MAX_EVENTS];
    long next = 0, inflight = 0, done = 0, ok = 0;
    uint64_t deadline = now_ns() + (uint64_t)(CONNECT_TIMEOUT_S * 1e9);

    while (done < n) {
        while (next < n && inflight < MAX_CONNECTING) {
            conns[next].id = (uint32_t)next;
            if (start_connect(&conns[next]) == 0)
                inflight++;
            else {
                n_connect_fail++;
                done++;
            }
            next++;
        }
        if (inflight == 0)
            continue;
        uint64_t t = now_ns();
        if (t >= deadline)
            break;
        int k = epoll_wait(epfd, evs, MAX_EVENTS, 100);
        if (k < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < k; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->state == C_ACTIVE && echo_on_connect) {
                if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                    echo_recv(c);
                if (c->state == C_ACTIVE && (evs[i].events & EPOLLOUT))
                    echo_send(c);
                continue;
            }
            if (c->state != C_CONNECTING)
                continue;
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            inflight--;
            done++;
            if (err) {
                note_error("connect", err);
                n_connect_fail++;
                epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                c->state = C_DEAD;
            } else {
                c->state = C_ACTIVE;
                ep_set(c, echo_on_connect ? EPOLLIN : 0, EPOLL_CTL_MOD);
                ok++;
#ifdef LOADGEN_TLS
                if (!tls_ctx)
#endif
                if (echo_on_connect)
                    echo_new_msg(c);
            }
        }
    }
    /* anything still connecting at the deadline counts as failed */
    for (long i = 0; i < n; i++) {
        if (i >= next) {
            conns[i].state = C_DEAD;
            conns[i].fd = -1;
            n_connect_fail++;
        } else if (conns[i].state == C_CONNECTING) {
            epoll_ctl(epfd, EPOLL_CTL_DEL, conns[i].fd, NULL);
            close(conns[i].fd);
            conns[i].fd = -1;
            conns[i].state = C_DEAD;
            n_connect_fail++;
            if (!first_error[0])
                snprintf(first_error, sizeof first_error, "connect: timed out");
        }
    }
    return ok;
}

static void kill_conn(struct conn *c)
{
#ifdef LOADGEN_TLS
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
#endif
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = C_DEAD;
}

/* send/recv, or SSL_write/SSL_read when speaking TLS (errno EAGAIN when it
 * would block; *want_write set when TLS needs the socket writable). */
static ssize_t io_send(struct conn *c, const void *buf, size_t n, int *want_write)
{
    *want_write = 1;
#ifdef LOADGEN_TLS
    if (c->ssl) {
        ERR_clear_error();
        int w = SSL_write(c->ssl, buf, (int)n);
        if (w > 0)
            return w;
        int e = SSL_get_error(c->ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            *want_write = e == SSL_ERROR_WANT_WRITE;
            errno = EAGAIN;
            return -1;
        }
        errno = e == SSL_ERROR_SYSCALL && errno ? errno : EPROTO;
        return -1;
    }
#endif
    return send(c->fd, buf, n, MSG_NOSIGNAL);
}

static ssize_t io_recv(struct conn *c, void *buf, size_t n)
{
#ifdef LOADGEN_TLS
    if (c->ssl) {
        ERR_clear_error();
        int r = SSL_read(c->ssl, buf, (int)n);
        if (r > 0)
            return r;
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            errno = EAGAIN;
            return -1;
        }
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)
            return 0;  /* EOF without close_notify */
        errno = e == SSL_ERROR_SYSCALL && errno ? errno : EPROTO;
        return -1;
    }
#endif
    return recv(c->fd, buf, n, 0);
}

#ifdef LOADGEN_TLS
static SSL *tls_new(int fd)
{
    SSL *ssl = SSL_new(tls_ctx);
    if (!ssl)
        die("SSL_new");
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    SSL_set1_host(ssl, "localhost");
    SSL_set_connect_state(ssl);
    return ssl;
}

/* Handshake every connected connection, blocking, one after another (before
 * anything is measured). */
static long tls_handshake_all(struct conn *conns, long n)
{
    long ok = 0;
    for (long i = 0; i < n; i++) {
        struct conn *c = &conns[i];
        if (c->state != C_ACTIVE)
            continue;
        int fl = fcntl(c->fd, F_GETFL);
        fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
        struct timeval tv = {.tv_sec = 30};
        setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        c->ssl = tls_new(c->fd);
        if (SSL_connect(c->ssl) != 1) {
            unsigned long e = ERR_get_error();
            n_errors++;
            if (!first_error[0])
                snprintf(first_error, sizeof first_error, "TLS handshake: %s",
                         e ? ERR_reason_error_string(e) : strerror(errno));
            SSL_free(c->ssl);
            c->ssl = NULL;
            epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->fd = -1;
            c->state = C_DEAD;
            continue;
        }
        fcntl(c->fd, F_SETFL, fl | O_NONBLOCK);
        note_tls_params(c->ssl);
        ok++;
    }
    return ok;
}
#endif

/* ------------------------------------------------------------- echo mode */

static size_t msg_size;
static uint64_t t_measure_start, t_measure_end;
static uint64_t n_rtt;

static inline const unsigned char *expected(struct conn *c)
{
    return pattern + (c->id * 7u + c->msgno) % PATTERN_LEN;
}

/* Send as much of the current message as the socket takes. */
static void echo_send(struct conn *c)
{
    const unsigned char *msg = expected(c);
    while (c->sent < msg_size) {
        int ww;
        ssize_t w = io_send(c, msg + c->sent, msg_size - c->sent, &ww);
        if (w > 0) {
            c->sent += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!ww)
                return;  /* TLS wants to read first: EPOLLIN is registered */
            if (!c->want_out) {
                c->want_out = 1;
                ep_set(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
            }
            return;
        }
        note_error("send", errno);
        kill_conn(c);
        return;
    }
    if (c->want_out) {
        c->want_out = 0;
        ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
    }
}

static void echo_new_msg(struct conn *c)
{
    c->sent = c->rcvd = 0;
    c->t_start = now_ns();
    echo_send(c);
}

static void echo_recv(struct conn *c)
{
    static unsigned char buf[65536 * 4];
    for (;;) {
        size_t want = msg_size - c->rcvd;
        if (want == 0) {
            /* the server sent more than we asked for */
            unsigned char x;
            ssize_t r = io_recv(c, &x, 1);
            if (r > 0) {
                n_mismatch++;
                if (!first_error[0])
                    snprintf(first_error, sizeof first_error, "extra bytes from server");
                kill_conn(c);
            }
            return;
        }
        if (want > sizeof buf)
            want = sizeof buf;
        ssize_t r = io_recv(c, buf, want);
        if (r > 0) {
            if (memcmp(buf, expected(c) + c->rcvd, (size_t)r) != 0) {
                n_mismatch++;
                if (!first_error[0])
                    snprintf(first_error, sizeof first_error, "echo content mismatch");
                kill_conn(c);
                return;
            }
            c->rcvd += (size_t)r;
            if (c->rcvd == msg_size && c->sent == msg_size) {
                uint64_t t = now_ns();
                if (!c->t_first)
                    c->t_first = t;
                if (t >= t_measure_start && t < t_measure_end) {
                    hist_add(t - c->t_start);
                    n_rtt++;
                }
                c->msgno++;
                if (t < t_measure_end)
                    echo_new_msg(c);
                return;
            }
            continue;
        }
        if (r == 0) {
            n_eof++;
            if (!first_error[0])
                snprintf(first_error, sizeof first_error, "server closed connection");
            kill_conn(c);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        note_error("recv", errno);
        kill_conn(c);
        return;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Time from connect() to the first echo, over the connections that connected. */
static void print_ttfe_json(struct conn *conns, long n)
{
    uint64_t *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    long k = 0, missing = 0;
    if (!v)
        die("malloc");
    for (long i = 0; i < n; i++) {
        if (!conns[i].t_connect)
            continue;
        if (conns[i].t_first)
            v[k++] = conns[i].t_first - conns[i].t_connect;
        else
            missing++;
    }
    qsort(v, (size_t)k, sizeof *v, cmp_u64);
    printf(", \"ttfe_n\": %ld, \"ttfe_missing\": %ld, \"ttfe_p50_ns\": %llu, "
           "\"ttfe_p99_ns\": %llu, \"ttfe_max_ns\": %llu", k, missing,
           (unsigned long long)(k ? v[k / 2] : 0),
           (unsigned long long)(k ? v[(long)(0.99 * (k - 1))] : 0),
           (unsigned long long)(k ? v[k - 1] : 0));
    free(v);
}

static int run_echo(long nconns, double duration, double warmup, uint64_t spin_ns,
                    int *pids, int npids)
{
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns)
        die("calloc");
    uint64_t t0 = now_ns();
    t_measure_start = t_measure_end = UINT64_MAX;  /* nothing counted while connecting */
    echo_on_connect = 1;
    long ok = connect_all(conns, nconns);
#ifdef LOADGEN_TLS
    if (tls_ctx) {
        ok = tls_handshake_all(conns, nconns);
        echo_on_connect = 0;  /* TLS connections start once all have shaken hands */
    }
#endif
    double connect_s = (now_ns() - t0) / 1e9;
    if (ok == 0) {
        printf("{\"mode\": \"echo\", \"ok\": false, \"connected\": 0, "
               "\"error\": \"%s\"}\n", first_error[0] ? first_error : "no connection");
        return 1;
    }

    uint64_t t_begin = now_ns();
    t_measure_start = t_begin + (uint64_t)(warmup * 1e9);
    t_measure_end = t_measure_start + (uint64_t)(duration * 1e9);
    for (long i = 0; i < nconns; i++) {
        if (conns[i].state != C_ACTIVE || echo_on_connect)
            continue;
        ep_set(&conns[i], EPOLLIN, EPOLL_CTL_MOD);
        echo_new_msg(&conns[i]);
    }

    struct epoll_event evs[MAX_EVENTS];
    int measuring = 0;
    uint64_t t_last_event = now_ns();
    double cpu0 = 0, srv0[MAX_PIDS];
    unsigned long long mt0[4] = {0}, mt1[4];
    for (;;) {
        uint64_t t = now_ns();
        if (!measuring && t >= t_measure_start) {
            measuring = 1;
            cpu0 = self_cpu_s();
            machine_ticks(mt0);
            for (int i = 0; i < npids; i++)
                srv0[i] = proc_cpu_s(pids[i]);
        }
        if (t >= t_measure_end)
            break;
        uint64_t until = measuring ? t_measure_end : t_measure_start;
        int timeout_ms = (int)((until - t) / 1000000) + 1;
        /* Busy-poll for up to spin_ns after the last event before sleeping:
         * with one connection the client's own wake-up latency (tens of us
         * on a VM) would otherwise be a large part of every round trip. */
        int k = epoll_wait(epfd, evs, MAX_EVENTS, spin_ns ? 0 : timeout_ms);
        if (k == 0 && spin_ns && t - t_last_event >= spin_ns)
            k = epoll_wait(epfd, evs, MAX_EVENTS, timeout_ms);
        if (k < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        if (k > 0 && spin_ns)
            t_last_event = now_ns();
        for (int i = 0; i < k; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->state != C_ACTIVE)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                echo_recv(c);
            if (c->state == C_ACTIVE && (evs[i].events & EPOLLOUT) && c->sent < msg_size)
                echo_send(c);
        }
    }
    double cpu = self_cpu_s() - cpu0;
    machine_ticks(mt1);
    double mtot = (double)(mt1[0] - mt0[0]);
    double srv_cpu = 0;
    int srv_ok = npids > 0;
    for (int i = 0; i < npids; i++) {
        double v = proc_cpu_s(pids[i]);
        if (v < 0 || srv0[i] < 0)
            srv_ok = 0;
        else
            srv_cpu += v - srv0[i];
    }
    long alive = 0;
    for (long i = 0; i < nconns; i++)
        if (conns[i].state == C_ACTIVE)
            alive++;

    double window = (t_measure_end - t_measure_start) / 1e9;
    printf("{\"mode\": \"echo\", \"ok\": %s, \"conns\": %ld, \"size\": %zu, "
           "\"connected\": %ld, \"alive_at_end\": %ld, \"connect_s\": %.3f, "
           "\"duration_s\": %.3f, \"rtt\": %llu, \"rtt_per_s\": %.1f, ",
           (alive == nconns && !n_errors && !n_mismatch && !n_eof) ? "true" : "false",
           nconns, msg_size, ok, alive, connect_s, window,
           (unsigned long long)n_rtt, n_rtt / window);
    print_hist_json();
    print_ttfe_json(conns, nconns);
    print_tail_json(window, cpu, srv_ok, srv_cpu, mt0, mt1, mtot);

    for (long i = 0; i < nconns; i++)
        if (conns[i].fd >= 0)
            close(conns[i].fd);
    free(conns);
    return 0;
}

/* ------------------------------------------------------------- idle mode */

#define IDLE_TLS_BATCH 200

static int run_idle(long n, double timeout, double hold)
{
    /* 10,000 server threads fighting over the GIL can starve a normal
     * priority client for seconds, and then we would time our own scheduling
     * delay.  The client needs little CPU, so give it priority if allowed. */
    int niced = setpriority(PRIO_PROCESS, 0, -10) == 0;

    struct conn *conns = calloc((size_t)n, sizeof *conns);
    if (!conns)
        die("calloc");
    uint64_t t0 = now_ns();
    long ok = 0;
#ifdef LOADGEN_TLS
    if (tls_ctx) {
        /* Each batch does its handshakes right after it connected: a server
         * closes a connection whose handshake has not finished in time
         * (daemond's handshake_timeout, 10 s by default), and 10,000
         * handshakes one after another take longer than that. */
        for (long i = 0; i < n; i += IDLE_TLS_BATCH) {
            long k = n - i < IDLE_TLS_BATCH ? n - i : IDLE_TLS_BATCH;
            connect_all(conns + i, k);
            ok += tls_handshake_all(conns + i, k);
        }
        for (long i = 0; i < n; i++)
            conns[i].id = (uint32_t)i;
    } else
#endif
        ok = connect_all(conns, n);
    double connect_s = (now_ns() - t0) / 1e9;

    printf("HELD %ld\n", ok);
    fflush(stdout);
    if (hold < 0) {
        char line[256];
        if (!fgets(line, sizeof line, stdin)) { /* EOF also means go */ }
    } else if (hold > 0) {
        struct timespec ts = {(time_t)hold, (long)((hold - (time_t)hold) * 1e9)};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
    }

    /* Which held connections did the server drop while we waited? */
    long dropped_while_held = 0;
    for (long i = 0; i < n; i++) {
        struct conn *c = &conns[i];
        if (c->state != C_ACTIVE)
            continue;
        unsigned char x;
        ssize_t r = recv(c->fd, &x, 1, MSG_DONTWAIT | MSG_PEEK);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            dropped_while_held++;
            kill_conn(c);
        }
    }

    /* Fire: one byte on every connection, as fast as possible. */
    double cpu0 = self_cpu_s();
    uint64_t t_fire = now_ns();
    long sent = 0;
    for (long i = 0; i < n; i++) {
        struct conn *c = &conns[i];
        if (c->state != C_ACTIVE)
            continue;
        unsigned char b = (unsigned char)('a' + i % 26);
        c->t_start = now_ns();
        int want_write;
        ssize_t w = io_send(c, &b, 1, &want_write);
        if (w != 1) {
            note_error("send", w < 0 ? errno : EIO);
            kill_conn(c);
            continue;
        }
        sent++;
        ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
    }
    uint64_t t_fired = now_ns();

    uint64_t deadline = t_fire + (uint64_t)(timeout * 1e9);
    long answered = 0, pending = sent, within1 = 0, within5 = 0;
    uint64_t t_last = t_fire;
    struct epoll_event evs[MAX_EVENTS];
    while (pending > 0) {
        uint64_t t = now_ns();
        if (t >= deadline)
            break;
        int k = epoll_wait(epfd, evs, MAX_EVENTS, (int)((deadline - t) / 1000000) + 1);
        if (k < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < k; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->state != C_ACTIVE)
                continue;
            unsigned char x;
            ssize_t r = io_recv(c, &x, 1);  /* TLS: may take a session ticket and want more */
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                continue;
            uint64_t tr = now_ns();
            if (tr > deadline)
                break;          /* too late: not counted */
            pending--;
            if (r == 1 && x == (unsigned char)('a' + c->id % 26)) {
                answered++;
                hist_add(tr - c->t_start);
                if (tr - t_fire <= 1000000000ull) within1++;
                if (tr - t_fire <= 5000000000ull) within5++;
                t_last = tr;
                /* done with this one: stop watching it, keep it open */
                ep_set(c, 0, EPOLL_CTL_MOD);
                c->state = C_DONE;
            } else {
                if (r == 0) n_eof++;
                else if (r == 1) n_mismatch++;
                else note_error("recv", errno);
                if (!first_error[0])
                    snprintf(first_error, sizeof first_error,
                             r == 0 ? "server closed connection" : "bad echo");
                kill_conn(c);
            }
        }
    }
    double cpu = self_cpu_s() - cpu0;
    int all = answered == n;

    printf("{\"mode\": \"idle\", \"ok\": %s, \"n\": %ld, \"connected\": %ld, "
           "\"connect_s\": %.3f, \"dropped_while_held\": %ld, \"sent\": %ld, "
           "\"send_loop_s\": %.4f, \"answered\": %ld, \"timeout_s\": %.1f, "
           "\"all_answered_s\": ",
           all ? "true" : "false", n, ok, connect_s, dropped_while_held, sent,
           (t_fired - t_fire) / 1e9, answered, timeout);
    if (all)
        printf("%.4f", (t_last - t_fire) / 1e9);
    else
        printf("null");
    printf(", \"last_answer_s\": %.4f, ", answered ? (t_last - t_fire) / 1e9 : 0.0);
    /* answered within 1 / 5 s of the fire (the target is all within 5 s) */
    printf("\"answered_within_1s\": %ld, \"answered_within_5s\": %ld, ", within1, within5);
    print_hist_json();
    printf(", \"errors\": %ld, \"eof\": %ld, \"mismatch\": %ld, \"connect_fail\": %ld, "
           "\"first_error\": \"%s\", \"loadgen_cpu_s\": %.3f, \"loadgen_niced\": %s}\n",
           n_errors, n_eof, n_mismatch, n_connect_fail, first_error, cpu,
           niced ? "true" : "false");
    fflush(stdout);

    /* Close with RST: no TIME_WAIT left behind for the next round. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    for (long i = 0; i < n; i++)
        if (conns[i].fd >= 0) {
            setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(conns[i].fd);
        }
    free(conns);
    return 0;
}

#ifdef LOADGEN_TLS
/* ------------------------------------------------------- handshake mode */

enum { H_CONNECT, H_HANDSHAKE, H_ECHO };

static uint64_t n_hs;

static void hs_start(struct conn *c)
{
    c->t_start = now_ns();
    c->sent = c->rcvd = 0;
    c->want_out = H_CONNECT;
    if (start_connect(c) < 0)
        c->state = C_DEAD;
}

/* Drive one connection through connect, handshake, one-byte echo, close. */
static void hs_step(struct conn *c, uint64_t t_end)
{
    for (;;) {
        if (c->want_out == H_CONNECT) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err) {
                note_error("connect", err);
                n_connect_fail++;
                kill_conn(c);
                return;
            }
            c->ssl = tls_new(c->fd);
            c->want_out = H_HANDSHAKE;
        }
        if (c->want_out == H_HANDSHAKE) {
            ERR_clear_error();
            int rc = SSL_do_handshake(c->ssl);
            if (rc != 1) {
                int e = SSL_get_error(c->ssl, rc);
                if (e == SSL_ERROR_WANT_READ) {
                    ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
                    return;
                }
                if (e == SSL_ERROR_WANT_WRITE) {
                    ep_set(c, EPOLLOUT, EPOLL_CTL_MOD);
                    return;
                }
                unsigned long ee = ERR_get_error();
                n_errors++;
                if (!first_error[0])
                    snprintf(first_error, sizeof first_error, "TLS handshake: %s",
                             ee ? ERR_reason_error_string(ee) : strerror(errno));
                kill_conn(c);
                return;
            }
            note_tls_params(c->ssl);
            int ww;
            if (io_send(c, "x", 1, &ww) != 1) {
                note_error("TLS send", errno);
                kill_conn(c);
                return;
            }
            c->want_out = H_ECHO;
            ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
        }
        /* H_ECHO */
        char x;
        ssize_t r = io_recv(c, &x, 1);
        if (r < 0 && errno == EAGAIN)
            return;
        if (r != 1 || x != 'x') {
            if (r == 0)
                n_eof++;
            else
                n_mismatch++;
            if (!first_error[0])
                snprintf(first_error, sizeof first_error, "hs: no echo (%zd)", r);
            kill_conn(c);
            return;
        }
        uint64_t t = now_ns();
        if (t >= t_measure_start && t < t_measure_end) {
            hist_add(t - c->t_start);
            n_hs++;
        }
        SSL_shutdown(c->ssl);     /* send close_notify, do not wait for the reply */
        kill_conn(c);
        if (t >= t_end)
            return;
        hs_start(c);
        if (c->state == C_DEAD)
            return;
        return;  /* wait for EPOLLOUT: connected */
    }
}

static int run_hs(long inflight, double duration, double warmup, int *pids, int npids)
{
    struct conn *conns = calloc((size_t)inflight, sizeof *conns);
    if (!conns)
        die("calloc");
    uint64_t t_begin = now_ns();
    t_measure_start = t_begin + (uint64_t)(warmup * 1e9);
    t_measure_end = t_measure_start + (uint64_t)(duration * 1e9);
    for (long i = 0; i < inflight; i++) {
        conns[i].id = (uint32_t)i;
        hs_start(&conns[i]);
    }
    struct epoll_event evs[MAX_EVENTS];
    int measuring = 0;
    double cpu0 = 0, srv0[MAX_PIDS];
    unsigned long long mt0[4] = {0}, mt1[4];
    for (;;) {
        uint64_t t = now_ns();
        if (!measuring && t >= t_measure_start) {
            measuring = 1;
            cpu0 = self_cpu_s();
            machine_ticks(mt0);
            for (int i = 0; i < npids; i++)
                srv0[i] = proc_cpu_s(pids[i]);
        }
        if (t >= t_measure_end)
            break;
        /* a connection that died is replaced, so errors do not stall the run */
        for (long i = 0; i < inflight; i++)
            if (conns[i].state == C_DEAD && n_errors + n_connect_fail + n_eof < 1000)
                hs_start(&conns[i]);
        uint64_t until = measuring ? t_measure_end : t_measure_start;
        int k = epoll_wait(epfd, evs, MAX_EVENTS, (int)((until - t) / 1000000) + 1);
        if (k < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < k; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->state != C_DEAD)
                hs_step(c, t_measure_end);
        }
    }
    double cpu = self_cpu_s() - cpu0;
    machine_ticks(mt1);
    double mtot = (double)(mt1[0] - mt0[0]);
    double srv_cpu = 0;
    int srv_ok = npids > 0;
    for (int i = 0; i < npids; i++) {
        double v = proc_cpu_s(pids[i]);
        if (v < 0 || srv0[i] < 0)
            srv_ok = 0;
        else
            srv_cpu += v - srv0[i];
    }
    double window = (t_measure_end - t_measure_start) / 1e9;
    printf("{\"mode\": \"hs\", \"ok\": %s, \"conns\": %ld, \"size\": 1, "
           "\"duration_s\": %.3f, \"rtt\": %llu, \"rtt_per_s\": %.1f, ",
           (!n_errors && !n_mismatch && !n_eof && !n_connect_fail) ? "true" : "false",
           inflight, window, (unsigned long long)n_hs, n_hs / window);
    print_hist_json();
    print_tail_json(window, cpu, srv_ok, srv_cpu, mt0, mt1, mtot);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    for (long i = 0; i < inflight; i++)
        if (conns[i].fd >= 0) {
            setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            kill_conn(&conns[i]);
        }
    free(conns);
    return 0;
}

static void tls_init(const char *cafile)
{
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (!tls_ctx || SSL_CTX_load_verify_locations(tls_ctx, cafile, NULL) != 1) {
        fprintf(stderr, "loadgen: cannot load CA file %s\n", cafile);
        exit(2);
    }
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}
#endif

/* ------------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen echo HOST PORT CONNS SIZE DURATION [WARMUP] [-s SPIN_US] [-p PID]...\n"
            "       loadgen idle HOST PORT N TIMEOUT [HOLD] [-t CAFILE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (unsigned char)((i * 2654435761u) >> 13);

    if (argc < 6)
        usage();
    resolve(argv[2], argv[3]);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");

    if (strcmp(argv[1], "echo") == 0 && argc >= 7) {
        long conns = atol(argv[4]);
        long size = atol(argv[5]);
        double duration = atof(argv[6]);
        double warmup = 1.0;
        uint64_t spin_ns = 0;
        int pids[MAX_PIDS], npids = 0;
        for (int i = 7; i < argc; i++) {
            if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
                if (npids < MAX_PIDS)
                    pids[npids++] = atoi(argv[++i]);
            } else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
                spin_ns = (uint64_t)(atof(argv[++i]) * 1000.0);
#ifdef LOADGEN_TLS
            } else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
                tls_init(argv[++i]);
#endif
            } else
                warmup = atof(argv[i]);
        }
        if (conns <= 0 || size <= 0 || size > 65536 * 2 || duration <= 0)
            usage();
        msg_size = (size_t)size;
        return run_echo(conns, duration, warmup, spin_ns, pids, npids);
    }
#ifdef LOADGEN_TLS
    if (strcmp(argv[1], "hs") == 0) {
        long inflight = atol(argv[4]);
        double duration = atof(argv[5]);
        double warmup = 1.0;
        int pids[MAX_PIDS], npids = 0;
        for (int i = 6; i < argc; i++) {
            if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
                if (npids < MAX_PIDS)
                    pids[npids++] = atoi(argv[++i]);
            } else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
                tls_init(argv[++i]);
            } else
                warmup = atof(argv[i]);
        }
        if (inflight <= 0 || duration <= 0 || !tls_ctx)
            usage();
        return run_hs(inflight, duration, warmup, pids, npids);
    }
#endif
    if (strcmp(argv[1], "idle") == 0) {
        long n = atol(argv[4]);
        double timeout = atof(argv[5]);
        double hold = -1;
        for (int i = 6; i < argc; i++) {
#ifdef LOADGEN_TLS
            if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
                tls_init(argv[++i]);
                continue;
            }
#endif
            hold = atof(argv[i]);
        }
        if (n <= 0 || timeout <= 0)
            usage();
        return run_idle(n, timeout, hold);
    }
    usage();
    return 2;
}
