/* receiver.c - a fast webhook receiver for bench/webhook/run.sh.
 *
 *   receiver PORT COUNT OUTFILE MAX_SECONDS [hold]
 *
 * Listens on 127.0.0.1:PORT (HTTP/1.1, keep-alive, one epoll loop) and
 * answers every request "200 OK" with an empty body. For each request it
 * notes the CLOCK_MONOTONIC time (ns) at which the whole request had been
 * read and the "task_id" found in its JSON body. With "hold", answers are
 * held back until SIGUSR1 (so ackd builds a backlog; its tries wait on
 * their connections), then every held request is answered and the rest at
 * once. After COUNT requests have been answered (or MAX_SECONDS, or
 * SIGTERM) it writes OUTFILE:
 *
 *   # count N
 *   # held H            requests that were waiting at the release
 *   # release_ns T      (0 without hold)
 *   # first_ns T / last_ns T
 *   <task_id> <arrival_ns>      one line per request
 *
 * and exits (0 when COUNT was reached, 1 otherwise). Writes "ready" to
 * stdout once listening, and "held N" lines every second while holding. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 131072
#define MAXFD 65536

typedef struct {
    char *buf;
    size_t len;
    int pending;          /* requests read but not answered (hold) */
    int open;
} conn_t;

typedef struct {
    char task[40];
    int64_t t;
} rec_t;

static volatile sig_atomic_t released_sig, stop_sig;
static conn_t conns[MAXFD];
static rec_t *recs;
static long nrecs, cap_recs, answered;

static void on_usr1(int s) { (void)s; released_sig = 1; }
static void on_term(int s) { (void)s; stop_sig = 1; }

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static const char OK[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

static void answer(int fd, int n)
{
    static char out[sizeof OK * 64];
    while (n > 0) {
        int k = n > 64 ? 64 : n;
        size_t len = 0;
        for (int i = 0; i < k; i++) {
            memcpy(out + len, OK, sizeof OK - 1);
            len += sizeof OK - 1;
        }
        size_t off = 0;
        while (off < len) {
            ssize_t w = write(fd, out + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return; /* the peer went away: its tries are ackd's business */
            off += (size_t)w;
        }
        answered += k;
        n -= k;
    }
}

static void note(const char *body, size_t len, int64_t t)
{
    if (nrecs == cap_recs) {
        cap_recs = cap_recs ? cap_recs * 2 : 65536;
        recs = realloc(recs, (size_t)cap_recs * sizeof *recs);
    }
    rec_t *r = &recs[nrecs++];
    r->t = t;
    r->task[0] = '\0';
    const char *key = "\"task_id\":\"";
    const char *p = memmem(body, len, key, strlen(key));
    if (p) {
        p += strlen(key);
        size_t i = 0;
        while (p + i < body + len && p[i] != '"' && i < sizeof r->task - 1) {
            r->task[i] = p[i];
            i++;
        }
        r->task[i] = '\0';
    }
}

/* Parses whole requests out of c->buf; returns how many. */
static int parse(conn_t *c)
{
    int n = 0;
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end)
            return n;
        size_t head = (size_t)(end - c->buf) + 4, clen = 0;
        for (char *p = c->buf; p < end; p++) {
            if ((p == c->buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
                clen = strtoul(p + 15, NULL, 10);
                break;
            }
        }
        if (c->len < head + clen)
            return n;
        note(c->buf + head, clen, now_ns());
        memmove(c->buf, c->buf + head + clen, c->len - head - clen);
        c->len -= head + clen;
        n++;
    }
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: receiver PORT COUNT OUTFILE MAX_SECONDS [hold]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    long count = atol(argv[2]);
    const char *outfile = argv[3];
    int max_s = atoi(argv[4]);
    int hold = argc > 5 && strcmp(argv[5], "hold") == 0;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGUSR1, on_usr1);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096)) {
        perror("receiver: bind/listen");
        return 2;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    printf("ready\n");
    fflush(stdout);

    int64_t start = now_ns(), release_ns = 0, last_print = start;
    long held_at_release = 0;
    int released = !hold;
    struct epoll_event evs[256];
    while (!stop_sig && answered < count && now_ns() - start < (int64_t)max_s * 1000000000LL) {
        if (!released && released_sig) {
            released = 1;
            release_ns = now_ns();
            for (int fd = 0; fd < MAXFD; fd++) {
                if (conns[fd].open && conns[fd].pending) {
                    held_at_release += conns[fd].pending;
                    answer(fd, conns[fd].pending);
                    conns[fd].pending = 0;
                }
            }
        }
        if (!released && now_ns() - last_print > 1000000000LL) {
            last_print = now_ns();
            printf("held %ld\n", nrecs);
            fflush(stdout);
        }
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                for (;;) {
                    int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (c < 0)
                        break;
                    if (c >= MAXFD) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conns[c] = (conn_t){.buf = conns[c].buf, .open = 1};
                    if (!conns[c].buf)
                        conns[c].buf = malloc(BUF);
                    struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                continue;
            }
            conn_t *c = &conns[fd];
            for (;;) {
                if (c->len == BUF)
                    c->len = 0; /* a body larger than we keep: not a webhook of ours */
                ssize_t r = read(fd, c->buf + c->len, BUF - c->len);
                if (r > 0) {
                    c->len += (size_t)r;
                    int k = parse(c);
                    if (k && released)
                        answer(fd, k);
                    else
                        c->pending += k;
                    continue;
                }
                if (r < 0 && errno == EAGAIN)
                    break;
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                c->open = 0;
                c->len = 0;
                c->pending = 0;
                break;
            }
        }
    }
    FILE *f = fopen(outfile, "w");
    if (!f) {
        perror(outfile);
        return 2;
    }
    fprintf(f, "# count %ld\n# answered %ld\n# held %ld\n# release_ns %lld\n", nrecs, answered,
            held_at_release, (long long)release_ns);
    fprintf(f, "# first_ns %lld\n# last_ns %lld\n", (long long)(nrecs ? recs[0].t : 0),
            (long long)(nrecs ? recs[nrecs - 1].t : 0));
    for (long i = 0; i < nrecs; i++)
        fprintf(f, "%s %lld\n", recs[i].task[0] ? recs[i].task : "-", (long long)recs[i].t);
    fclose(f);
    return answered >= count ? 0 : 1;
}
