/*
 * chat_loadgen.c - epoll load generator for the chat fan-out benchmark.
 *
 * Single-threaded and non-blocking, so that the client is not what limits the
 * figures of a Python server (it reports its own CPU time to show it).  Only
 * connects to the address it is given; bench/chat_bench.py runs it on loopback.
 *
 *   chat_loadgen HOST PORT MODE [-n CLIENTS] [-s SENDERS] [-m MESSAGES] [-r RATE]
 *                [-p PAD] [-i INTERVAL] [-t TIMEOUT] [-R ROOMS] [-I IRCPORT] [-w] [-T CAFILE]
 *
 * Opens CLIENTS connections and logs each one in with "/nick uNNNNN" (the
 * protocol of tests/plugins/fakelogin.py and of bench/baseline_chat_asyncio.py:
 * a "+OK" greeting, then "/nick NAME" answered by "+OK logged in as NAME").
 * With -R ROOMS, each client then sends "/join #rNNN" with NNN its index modulo
 * ROOMS (three digits) and counts as logged in at that command's "+OK": its
 * plain lines go to that room, and the messages it receives are
 * "MSG #rNNN <name> <text>" from the other members of that room only.
 * With -I IRCPORT, every odd-numbered client is an IRC client of the irc
 * plugin (guests allowed) on IRCPORT instead: it registers with
 * "NICK uNNNNN" and "USER", waits for the end of the MOTD (376 or 422), sends
 * "JOIN #lobby" (chat's default room) and is logged in at its 366; it sends
 * "PRIVMSG #lobby :<text>" and receives ":<name>!... PRIVMSG #lobby :<text>".
 * Waits until no byte has arrived for a second (the JOIN lines are drained),
 * prints "READY <connected> <login seconds>" and, with -w, waits for a line on
 * stdin (the runner reads the server's memory meanwhile).  Then, by MODE:
 *
 *   steady     MESSAGES messages at RATE per second in total, from SENDERS
 *              senders in turn (a timerfd paces them);
 *   blast      every sender writes its share of MESSAGES at once;
 *   broadcast  sender 0 sends MESSAGES messages, one every INTERVAL seconds.
 *
 * A message is "<seq> <send time ns> <PAD bytes>".  Every other client (with
 * -R: every other member of the sender's room) must receive it as
 * "MSG <name> <text>" (with -R: "MSG #rNNN <name> <text>"; a line tagged with
 * another room than the receiver's is a bad line); each delivery's latency is the receive
 * time minus the send time (one CLOCK_MONOTONIC, one process).  It stops when
 * every delivery arrived or TIMEOUT seconds after the last send, and prints
 * one JSON object: deliveries, lost, deliveries per second (first send to last
 * delivery), latency percentiles per delivery and per message (the time until
 * its last receiver had it), disconnects, and its own CPU seconds.
 * Connections close with SO_LINGER 0 (RST): repeated runs of 10,000 clients
 * must not pile up TIME_WAIT ports.
 *
 * -T CAFILE (TLS build only): every client speaks TLS, verifying the server
 * against CAFILE (name: localhost), with a full handshake each (no session
 * resumption), before the greeting; the handshakes count in the login time.
 * With -N NEW, NEW newcomers connect and log in once half of the messages are
 * sent (while the room is busy); for each, the time from its connect() to its
 * login's "+OK" and to the first MSG line it receives is reported
 * (newcomer_login_ms, newcomer_first_msg_ms; their deliveries are not counted
 * with the others').
 *
 * Build: cc -O2 -o chat_loadgen.bin chat_loadgen.c
 *   TLS: cc -O2 -DLOADGEN_TLS -o chat_loadgen_tls.bin chat_loadgen.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#ifdef LOADGEN_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
static SSL_CTX *tls_ctx; /* NULL: plaintext */
#endif

#define MAX_EVENTS 1024
#define MAX_CONNECTING 256
#define INBUF 65536
#define SETTLE_NS 1000000000ULL
#define SETTLE_MAX_NS 300000000000ULL

enum state { CONNECTING, HANDSHAKE, GREETING, LOGIN, JOINING, READY, CLOSED };

struct conn {
    int fd;
#ifdef LOADGEN_TLS
    SSL *ssl;
#endif
    enum state state;
    char in[INBUF];
    size_t in_len;
    char *out;
    size_t out_len, out_cap;
    int want_out;
    int irc; /* -I: an IRC client */
    uint64_t t_connect, t_login, t_first;  /* newcomers (-N): connect(), "+OK logged in", first MSG */
};

static struct conn *conns;
static int nconns, epfd;
static uint64_t *latency;         /* per delivery, ns */
static size_t nlat, lat_cap;
static uint64_t *msg_max;         /* per message: the latest delivery, ns */
static uint32_t *msg_count;
static uint32_t *msg_need;        /* per message: the deliveries it must get */
static int nrooms;                /* -R: 0 is the single room */
static uint32_t *room_members;    /* -R: clients per room */
static uint64_t deliveries, other_lines, err_lines, disconnects, bad_lines;
static uint64_t last_delivery_ns, last_rx_ns;
static int ready_count, connected_count;
static int irc_port; /* -I: odd-numbered clients speak IRC on this port */
static int first_newcomer = 1 << 30;  /* index of the first -N newcomer */

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static void close_conn(struct conn *c)
{
    if (c->state == CLOSED)
        return;
    struct linger lg = {1, 0};
#ifdef LOADGEN_TLS
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
#endif
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c->fd);
    if (c->state == READY)
        ready_count--;
    c->state = CLOSED;
    disconnects++;
}

static void watch(struct conn *c, int out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
    c->want_out = out;
}

/* send/recv, or SSL_write/SSL_read with TLS: -1 with errno EAGAIN when it would block */
static ssize_t io_send(struct conn *c, const void *buf, size_t n)
{
#ifdef LOADGEN_TLS
    if (c->ssl) {
        ERR_clear_error();
        int w = SSL_write(c->ssl, buf, (int)n);
        if (w > 0)
            return w;
        int e = SSL_get_error(c->ssl, w);
        errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EPROTO;
        return -1;
    }
#endif
    return send(c->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
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
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
            return 0;
        errno = EPROTO;
        return -1;
    }
#endif
    return recv(c->fd, buf, n, MSG_DONTWAIT);
}

static void flush_out(struct conn *c)
{
    while (c->out_len) {
        ssize_t n = io_send(c, c->out, c->out_len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            close_conn(c);
            return;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    if (!!c->out_len != c->want_out)
        watch(c, c->out_len > 0);
}

static void queue_out(struct conn *c, const char *data, size_t len)
{
    if (c->state == CLOSED)
        return;
    if (c->out_len + len > c->out_cap) {
        c->out_cap = (c->out_len + len) * 2;
        c->out = realloc(c->out, c->out_cap);
        if (!c->out)
            die("realloc");
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    flush_out(c);
}

static void record(uint64_t seq, uint64_t sent, uint64_t at, uint64_t nmessages)
{
    uint64_t lat = at > sent ? at - sent : 0;
    if (nlat == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 1 << 20;
        latency = realloc(latency, lat_cap * sizeof *latency);
        if (!latency)
            die("realloc");
    }
    latency[nlat++] = lat;
    deliveries++;
    last_delivery_ns = at;
    if (seq < nmessages) {
        msg_count[seq]++;
        if (lat > msg_max[seq])
            msg_max[seq] = lat;
    } else {
        bad_lines++;
    }
}

static void on_irc_line(struct conn *c, int idx, char *line, uint64_t at, uint64_t nmessages)
{
    if (c->state == LOGIN) {
        if (strstr(line, " 376 ") || strstr(line, " 422 ")) {
            c->state = JOINING;
            queue_out(c, "JOIN #lobby\r\n", 13);
        } else if (!strncmp(line, "ERROR", 5) || strstr(line, " 433 ") || strstr(line, " 464 ")) {
            fprintf(stderr, "client %d: registration refused: %.80s\n", idx, line);
            close_conn(c);
        }
        return;
    }
    if (c->state == JOINING) {
        if (strstr(line, " 366 ")) {
            c->state = READY;
            ready_count++;
        }
        return;
    }
    char *cmd = line[0] == ':' ? strchr(line, ' ') : NULL;
    if (cmd && !strncmp(cmd, " PRIVMSG #lobby :", 17)) {
        char *end;
        uint64_t seq = strtoull(cmd + 17, &end, 10);
        uint64_t sent = strtoull(end, NULL, 10);
        record(seq, sent, at, nmessages);
    } else if (!strncmp(line, "PING ", 5)) {
        char pong[600];
        int n = snprintf(pong, sizeof pong, "PONG %s\r\n", line + 5);
        queue_out(c, pong, (size_t)n);
    } else if (!strncmp(line, "ERROR", 5) || (cmd && cmd[1] == '4')) {
        err_lines++;
        if (err_lines <= 5)
            fprintf(stderr, "client %d: %.120s\n", idx, line);
    } else {
        other_lines++;
    }
}

static void on_line(struct conn *c, int idx, char *line, size_t len, uint64_t at, uint64_t nmessages)
{
    line[len] = 0;
    if (c->irc) {
        on_irc_line(c, idx, line, at, nmessages);
        return;
    }
    if (c->state == GREETING) {
        if (strncmp(line, "+OK", 3) != 0) {
            fprintf(stderr, "client %d: unexpected greeting: %.80s\n", idx, line);
            close_conn(c);
            return;
        }
        char nick[64];
        int n = snprintf(nick, sizeof nick, "/nick u%05d\n", idx);
        c->state = LOGIN;
        queue_out(c, nick, (size_t)n);
        return;
    }
    if (c->state == LOGIN) {
        if (strncmp(line, "+OK logged in", 13) == 0) {
            if (nrooms) {
                char join[64];
                int n = snprintf(join, sizeof join, "/join #r%03d\n", idx % nrooms);
                c->state = JOINING;
                queue_out(c, join, (size_t)n);
                return;
            }
            c->state = READY;
            ready_count++;
            if (idx >= first_newcomer)
                c->t_login = at;
        } else if (line[0] == '-') {
            fprintf(stderr, "client %d: login refused: %.80s\n", idx, line);
            close_conn(c);
        }
        return;
    }
    if (c->state == JOINING) { /* the lobby's JOIN lines, the room's replay, then the reply */
        if (strncmp(line, "+OK", 3) == 0) {
            c->state = READY;
            ready_count++;
        } else if (line[0] == '-') {
            fprintf(stderr, "client %d: join refused: %.80s\n", idx, line);
            close_conn(c);
        }
        return;
    }
    if (strncmp(line, "MSG ", 4) == 0 && idx >= first_newcomer) {
        if (!c->t_first)
            c->t_first = at;
        return;
    }
    if (strncmp(line, "MSG ", 4) == 0) {
        char *name = line + 4;
        if (*name == '#') { /* a room's event: MSG #rNNN name text */
            char *end;
            long room = strtol(name + 2, &end, 10);
            if (!nrooms || name[1] != 'r' || *end != ' ' || room != idx % nrooms) {
                bad_lines++;
                return;
            }
            name = end + 1;
        }
        char *text = strchr(name, ' ');
        if (!text) {
            bad_lines++;
            return;
        }
        char *end;
        uint64_t seq = strtoull(text + 1, &end, 10);
        uint64_t sent = strtoull(end, NULL, 10);
        record(seq, sent, at, nmessages);
    } else if (line[0] == '-') {
        err_lines++;
        if (err_lines <= 5)
            fprintf(stderr, "client %d: %.120s\n", idx, line);
    } else {
        other_lines++;
    }
}

static void on_readable(struct conn *c, int idx, uint64_t nmessages)
{
    for (;;) {
        ssize_t n = io_recv(c, c->in + c->in_len, INBUF - 1 - c->in_len);
        if (n == 0) {
            close_conn(c);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            close_conn(c);
            return;
        }
        uint64_t at = now_ns();
        last_rx_ns = at;
        c->in_len += (size_t)n;
        size_t start = 0;
        for (;;) {
            char *nl = memchr(c->in + start, '\n', c->in_len - start);
            if (!nl)
                break;
            size_t len = (size_t)(nl - (c->in + start));
            if (len && c->in[start + len - 1] == '\r')
                len--;
            on_line(c, idx, c->in + start, len, at, nmessages);
            if (c->state == CLOSED)
                return;
            start = (size_t)(nl - c->in) + 1;
        }
        memmove(c->in, c->in + start, c->in_len - start);
        c->in_len -= start;
        if (c->in_len >= INBUF - 1) {
            fprintf(stderr, "client %d: line too long\n", idx);
            close_conn(c);
            return;
        }
    }
}

/* IRC: the client speaks first (with TLS, once its handshake is done) */
static void irc_register(struct conn *c, int idx)
{
    char reg[128];
    int len = snprintf(reg, sizeof reg, "NICK u%05d\r\nUSER u 0 * :u\r\n", idx);
    c->state = LOGIN;
    queue_out(c, reg, (size_t)len);
}

static int start_connect(struct conn *c, struct sockaddr_in *addr)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int r = connect(c->fd, (struct sockaddr *)addr, sizeof *addr);
    if (r < 0 && errno != EINPROGRESS)
        die("connect");
    c->state = CONNECTING;
    c->t_connect = now_ns();
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl");
    c->want_out = 1;
    return 0;
}

/* One pass of the event loop; returns the number of events handled. */
static int poll_once(int timeout_ms, uint64_t nmessages, int timer_fd, uint64_t *ticks)
{
    struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(epfd, events, MAX_EVENTS, timeout_ms);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
        if (events[i].data.ptr == NULL) { /* the pacing timer */
            uint64_t t;
            if (read(timer_fd, &t, sizeof t) == sizeof t)
                *ticks += t;
            continue;
        }
        struct conn *c = events[i].data.ptr;
        int idx = (int)(c - conns);
        if (c->state == CLOSED)
            continue;
        if (c->state == CONNECTING) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err) {
                fprintf(stderr, "client %d: connect: %s\n", idx, strerror(err));
                close_conn(c);
                continue;
            }
            c->state = GREETING;
            connected_count++;
            watch(c, 0);
#ifdef LOADGEN_TLS
            if (tls_ctx) {
                c->ssl = SSL_new(tls_ctx);
                if (!c->ssl)
                    die("SSL_new");
                SSL_set_fd(c->ssl, c->fd);
                SSL_set_tlsext_host_name(c->ssl, "localhost");
                SSL_set1_host(c->ssl, "localhost");
                SSL_set_connect_state(c->ssl);
                c->state = HANDSHAKE;
            } else
#endif
            if (c->irc)
                irc_register(c, idx);
        }
#ifdef LOADGEN_TLS
        if (c->state == HANDSHAKE) {
            ERR_clear_error();
            int r = SSL_do_handshake(c->ssl);
            if (r != 1) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    if ((e == SSL_ERROR_WANT_WRITE) != c->want_out)
                        watch(c, e == SSL_ERROR_WANT_WRITE);
                    continue;
                }
                unsigned long err = ERR_get_error();
                fprintf(stderr, "client %d: TLS handshake: %s\n", idx,
                        err ? ERR_reason_error_string(err) : "failed");
                close_conn(c);
                continue;
            }
            c->state = GREETING;
            if (c->want_out)
                watch(c, 0);
            if (c->irc)
                irc_register(c, idx);
            on_readable(c, idx, nmessages); /* the greeting may have come with the handshake */
            continue;
        }
#endif
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
            on_readable(c, idx, nmessages);
        if (c->state != CLOSED && (events[i].events & EPOLLOUT) && c->out_len)
            flush_out(c);
    }
    return n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, size_t n, double p)
{
    if (!n)
        return -1;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return (double)v[i] / 1e6;
}

/* newcomers (-N) that have not had a message yet */
static int newcomers_waiting(int from, int n)
{
    int waiting = 0;
    for (int i = from; i < from + n; i++)
        waiting += conns[i].state != CLOSED && !conns[i].t_first;
    return waiting;
}

/* p50, p99 and max (ms) of `what` - t_connect over newcomers [from, to); *n: how many had it */
static void newcomer_pcts(int from, int to, int first_msg, double *out, int *n)
{
    uint64_t *v = malloc((size_t)(to - from + 1) * sizeof *v);
    int k = 0;
    for (int i = from; i < to; i++) {
        uint64_t t = first_msg ? conns[i].t_first : conns[i].t_login;
        if (t)
            v[k++] = t - conns[i].t_connect;
    }
    qsort(v, (size_t)k, sizeof *v, cmp_u64);
    out[0] = pct(v, (size_t)k, 50);
    out[1] = pct(v, (size_t)k, 99);
    out[2] = pct(v, (size_t)k, 100);
    *n = k;
    free(v);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static int sender_index(int k, int senders)
{
    return k % senders; /* clients 0..senders-1 send */
}

static void send_message(int sender, uint64_t seq, int pad)
{
    static char buf[70000];
    int n = snprintf(buf, sizeof buf, "%s%llu %llu ", conns[sender].irc ? "PRIVMSG #lobby :" : "",
                     (unsigned long long)seq, (unsigned long long)now_ns());
    memset(buf + n, 'x', (size_t)pad);
    n += pad;
    buf[n++] = '\n';
    queue_out(&conns[sender], buf, (size_t)n);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST PORT steady|blast|broadcast [-n N] [-s S] [-m M] [-r R] [-p PAD] "
                        "[-i INTERVAL] [-t TIMEOUT] [-R ROOMS] [-w] [-T CAFILE]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    const char *mode = argv[3];
    int clients = 1000, senders = 10, pad = 16, wait_stdin = 0, newcomers = 0;
    uint64_t messages = 1000;
    double rate = 100, interval = 1.0, timeout = 30;
    for (int i = 4; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : "0";
        if (!strcmp(a, "-n")) clients = atoi(v), i++;
        else if (!strcmp(a, "-s")) senders = atoi(v), i++;
        else if (!strcmp(a, "-m")) messages = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "-r")) rate = atof(v), i++;
        else if (!strcmp(a, "-p")) pad = atoi(v), i++;
        else if (!strcmp(a, "-i")) interval = atof(v), i++;
        else if (!strcmp(a, "-t")) timeout = atof(v), i++;
        else if (!strcmp(a, "-R")) nrooms = atoi(v), i++;
        else if (!strcmp(a, "-I")) irc_port = atoi(v), i++;
        else if (!strcmp(a, "-N")) newcomers = atoi(v), i++;
        else if (!strcmp(a, "-w")) wait_stdin = 1;
#ifdef LOADGEN_TLS
        else if (!strcmp(a, "-T")) {
            tls_ctx = SSL_CTX_new(TLS_client_method());
            if (!tls_ctx || SSL_CTX_load_verify_locations(tls_ctx, v, NULL) != 1) {
                fprintf(stderr, "cannot load CA file %s\n", v);
                return 2;
            }
            SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
            SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
            SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
            i++;
        }
#endif
        else { fprintf(stderr, "unknown option %s\n", a); return 2; }
    }
    if (strcmp(host, "127.0.0.1") != 0) {
        fprintf(stderr, "refusing non-loopback host %s\n", host);
        return 2;
    }
    if (newcomers < 0 || newcomers > MAX_CONNECTING || (newcomers && nrooms)) {
        fprintf(stderr, "bad arguments: -N takes 0 to %d, without -R\n", MAX_CONNECTING);
        return 2;
    }
    if (senders > clients || pad < 0 || pad > 65000 || clients < 2 || nrooms < 0 || nrooms > 1000
        || (nrooms && clients / nrooms < 2) || (nrooms && irc_port) || (irc_port && pad > 400)) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)(clients + newcomers), sizeof *conns);
    msg_max = calloc(messages + 1, sizeof *msg_max);
    msg_count = calloc(messages + 1, sizeof *msg_count);
    msg_need = calloc(messages + 1, sizeof *msg_need);
    room_members = calloc((size_t)nrooms + 1, sizeof *room_members);
    if (!conns || !msg_max || !msg_count || !msg_need || !room_members)
        die("calloc");
    nconns = clients;
    struct sockaddr_in irc_addr = addr;
    irc_addr.sin_port = htons((uint16_t)irc_port);
    for (int i = 0; irc_port && i < clients; i++)
        conns[i].irc = i % 2;
    for (int i = 0; nrooms && i < clients; i++)
        room_members[i % nrooms]++;

    /* connect and log in, at most MAX_CONNECTING handshakes at once */
    uint64_t t_login = now_ns();
    int next = 0;
    uint64_t dummy = 0;
    while (ready_count + (int)disconnects < clients) {
        int pending = 0;
        for (int i = 0; i < next; i++)
            pending += conns[i].state == CONNECTING || conns[i].state == HANDSHAKE || conns[i].state == GREETING || conns[i].state == LOGIN
                       || conns[i].state == JOINING;
        while (next < clients && pending < MAX_CONNECTING) {
            start_connect(&conns[next], conns[next].irc ? &irc_addr : &addr);
            next++;
            pending++;
        }
        poll_once(100, messages, -1, &dummy);
        if (now_ns() - t_login > SETTLE_MAX_NS) {
            fprintf(stderr, "login did not finish: %d of %d ready\n", ready_count, clients);
            return 1;
        }
    }
    double login_s = (double)(now_ns() - t_login) / 1e9;
    /* drain JOIN lines until the line is quiet */
    uint64_t settle_start = now_ns();
    last_rx_ns = now_ns();
    while (now_ns() - last_rx_ns < SETTLE_NS && now_ns() - settle_start < SETTLE_MAX_NS)
        poll_once(100, messages, -1, &dummy);
    uint64_t join_lines = other_lines;
    other_lines = 0;
    printf("READY %d %.3f\n", ready_count, login_s);
    fflush(stdout);
    if (wait_stdin) {
        char line[64];
        if (!fgets(line, sizeof line, stdin))
            return 1;
    }

    int tfd = -1;
    if (!strcmp(mode, "steady") || !strcmp(mode, "broadcast")) {
        double period = !strcmp(mode, "steady") ? 1.0 / rate : interval;
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        struct itimerspec its = {0};
        its.it_interval.tv_sec = (time_t)period;
        its.it_interval.tv_nsec = (long)((period - (double)(time_t)period) * 1e9);
        its.it_value.tv_nsec = 1000; /* the first message at once */
        timerfd_settime(tfd, 0, &its, NULL);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
    } else if (strcmp(mode, "blast") != 0) {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }

    double cpu0 = cpu_seconds();
    uint64_t t0 = now_ns(), last_send = t0;
    uint64_t sent = 0, ticks = 0;
    int broadcast = !strcmp(mode, "broadcast");
    if (!strcmp(mode, "blast")) {
        for (; sent < messages; sent++)
            send_message(sender_index((int)sent, senders), sent, pad);
        last_send = now_ns();
    }
    uint64_t expected = 0;
    for (uint64_t s = 0; s < messages; s++) {
        int from = broadcast ? 0 : sender_index((int)s, senders);
        msg_need[s] = nrooms ? room_members[from % nrooms] - 1 : (uint32_t)(clients - 1);
        expected += msg_need[s];
    }
    for (;;) {
        if (newcomers && first_newcomer > clients && sent >= messages / 2) {
            first_newcomer = clients;  /* half-way: the newcomers arrive */
            for (int i = clients; i < clients + newcomers; i++)
                start_connect(&conns[i], &addr);
            nconns = clients + newcomers;
        }
        while (sent < messages && sent < ticks) {
            send_message(broadcast ? 0 : sender_index((int)sent, senders), sent, pad);
            sent++;
            last_send = now_ns();
        }
        if (sent == messages && deliveries >= expected && newcomers_waiting(clients, newcomers) == 0)
            break;
        if (sent == messages && now_ns() - last_send > (uint64_t)(timeout * 1e9))
            break;
        poll_once(50, messages, tfd, &ticks);
    }
    uint64_t t_end = deliveries ? last_delivery_ns : now_ns();
    double cpu = cpu_seconds() - cpu0;
    double elapsed = (double)(t_end - t0) / 1e9;

    qsort(latency, nlat, sizeof *latency, cmp_u64);
    size_t full = 0;
    uint64_t *fan = malloc((messages + 1) * sizeof *fan);
    for (uint64_t s = 0; s < messages; s++)
        if (msg_count[s] == msg_need[s])
            fan[full++] = msg_max[s];
    qsort(fan, full, sizeof *fan, cmp_u64);

    printf("{\"mode\": \"%s\", \"clients\": %d, \"ready\": %d, \"senders\": %d, \"messages\": %llu, "
           "\"rate\": %.1f, \"pad\": %d, \"rooms\": %d, \"login_s\": %.3f, \"join_lines\": %llu, "
           "\"expected\": %llu, \"deliveries\": %llu, \"lost\": %lld, \"disconnects\": %llu, "
           "\"err_lines\": %llu, \"other_lines\": %llu, \"bad_lines\": %llu, "
           "\"elapsed_s\": %.3f, \"deliveries_per_s\": %.1f, "
           "\"latency_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f}, "
           "\"fanout_ms\": {\"complete\": %zu, \"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f}, "
           "\"loadgen_cpu_s\": %.3f",
           mode, clients, ready_count, senders, (unsigned long long)messages, rate, pad, nrooms, login_s,
           (unsigned long long)join_lines, (unsigned long long)expected, (unsigned long long)deliveries,
           (long long)expected - (long long)deliveries, (unsigned long long)disconnects,
           (unsigned long long)err_lines, (unsigned long long)other_lines, (unsigned long long)bad_lines,
           elapsed, elapsed > 0 ? (double)deliveries / elapsed : 0.0,
           pct(latency, nlat, 50), pct(latency, nlat, 90), pct(latency, nlat, 99), pct(latency, nlat, 99.9),
           pct(latency, nlat, 100), full, pct(fan, full, 50), pct(fan, full, 99), pct(fan, full, 100), cpu);
    if (newcomers) {
        double lg[3], fm[3];
        int nl, nf;
        newcomer_pcts(clients, clients + newcomers, 0, lg, &nl);
        newcomer_pcts(clients, clients + newcomers, 1, fm, &nf);
        printf(", \"newcomers\": %d, \"newcomers_logged_in\": %d, \"newcomers_got_msg\": %d, "
               "\"newcomer_login_ms\": {\"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f}, "
               "\"newcomer_first_msg_ms\": {\"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f}",
               newcomers, nl, nf, lg[0], lg[1], lg[2], fm[0], fm[1], fm[2]);
    }
    printf("}\n");
    for (int i = 0; i < nconns; i++)
        close_conn(&conns[i]);
    return 0;
}
