/* idle_conns.c - holds many idle keep-alive connections to a server, so its
 * memory per idle connection can be measured (bench/http/run.sh).
 *
 *   idle_conns HOST PORT COUNT HOLD_SECONDS
 *
 * Opens COUNT connections to HOST:PORT (an IPv4 literal), sends one
 * "GET /healthz" on each and reads its answer, so every connection is past
 * its first request and sits in the server's keep-alive phase. Then prints
 * "ready N" (N connections answered) on stdout and holds them until
 * HOLD_SECONDS pass or SIGTERM/SIGINT arrives, and exits. Every step is
 * bounded: connects and answers time out after 5 s each. Raises its own
 * RLIMIT_NOFILE to the hard limit. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static long parse_long(const char *s, long min, long max, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max) {
        fprintf(stderr, "idle_conns: %s must be %ld..%ld, got \"%s\"\n", what, min, max, s);
        exit(2);
    }
    return v;
}

/* One request and its whole answer; 0 when the answer is a 200. */
static int ask(int fd, const char *host)
{
    char req[256];
    int n = snprintf(req, sizeof req, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", host);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        return -1;
    char buf[4096];
    size_t got = 0;
    while (got < sizeof buf - 1) {
        ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
        buf[got] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        const char *cl = strcasestr(buf, "\r\nContent-Length:");
        if (end && cl && cl < end) {
            size_t body = strtoul(cl + 17, NULL, 10);
            if (got >= (size_t)(end + 4 - buf) + body)
                return strncmp(buf, "HTTP/1.1 200", 12) == 0 ? 0 : -1;
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: idle_conns HOST PORT COUNT HOLD_SECONDS\n");
        return 2;
    }
    const char *host = argv[1];
    int port = (int)parse_long(argv[2], 1, 65535, "PORT");
    long count = parse_long(argv[3], 1, 100000, "COUNT");
    long hold = parse_long(argv[4], 1, 3600, "HOLD_SECONDS");

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)count + 16) {
        fprintf(stderr, "idle_conns: RLIMIT_NOFILE is %lu, need %ld\n", (unsigned long)rl.rlim_cur,
                count + 16);
        return 1;
    }

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "idle_conns: HOST must be an IPv4 literal, got \"%s\"\n", host);
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    int *fds = calloc((size_t)count, sizeof *fds);
    if (!fds)
        return 1;
    long ok = 0;
    struct timeval tv = {.tv_sec = 5};
    for (long i = 0; i < count && !stop; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            perror("idle_conns: socket");
            break;
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); /* bounds connect too */
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || ask(fd, host) != 0) {
            fprintf(stderr, "idle_conns: connection %ld failed: %s\n", i, strerror(errno));
            close(fd);
            break;
        }
        fds[ok++] = fd;
    }
    printf("ready %ld\n", ok);
    fflush(stdout);

    time_t until = time(NULL) + hold;
    while (!stop && time(NULL) < until)
        sleep(1); /* signals cut the sleep short */

    for (long i = 0; i < ok; i++)
        close(fds[i]);
    free(fds);
    return ok == count ? 0 : 1;
}
