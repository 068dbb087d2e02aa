/* fanout.c - many watchers of one task, answered by one completion
 * (bench/webhook/run.sh).
 *
 *   fanout PORT TASK_ID LEASE_ID MODE COUNT ACKD_PID MAX_SECONDS
 *
 * MODE "poll": COUNT connections each send GET /v1/tasks/ID?wait=60 (a
 * parked long poll); "sse": COUNT connections each send
 * GET /v1/tasks/ID/events and are parked once their first event
 * (task.queued) has arrived. When all are parked (for polls: all sent and
 * 2 s without any answer), it prints ackd's VmRSS, completes the task on
 * a connection of its own (POST /v1/tasks/ID/complete with LEASE_ID) and
 * times how long until every watcher has its answer: the status document
 * with "completed" for a poll, the task.completed event for a stream.
 * Output, one "key value" a line: connected, parked_s, rss_kb_parked,
 * complete_ms (the complete call's own answer), all_ms (the last watcher
 * answered, from just before the complete was sent), p50_ms, p99_ms,
 * answered, errors. Everything on 127.0.0.1, bounded by MAX_SECONDS.
 * Raises its own RLIMIT_NOFILE to the hard limit. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    int sent;
    int parked;
    int done;
    int64_t t_done;
    char tail[64]; /* the last bytes read, to find a marker across reads */
    size_t ntail;
} w_t;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atol(line + 6);
    fclose(f);
    return kb;
}

/* Whether marker appears in tail+data (data appended to the tail window). */
static int seen(w_t *w, const char *data, size_t len, const char *marker)
{
    char win[64 + 65536];
    size_t n = w->ntail;
    memcpy(win, w->tail, n);
    size_t k = len > 65536 ? 65536 : len;
    memcpy(win + n, data + len - k, k);
    n += k;
    int hit = memmem(win, n, marker, strlen(marker)) != NULL;
    size_t keep = n < sizeof w->tail ? n : sizeof w->tail;
    memcpy(w->tail, win + n - keep, keep);
    w->ntail = keep;
    return hit;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int connect_to(int port, int nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: fanout PORT TASK_ID LEASE_ID poll|sse COUNT ACKD_PID MAX_SECONDS\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *task = argv[2], *lease = argv[3], *mode = argv[4];
    int count = atoi(argv[5]), pid = atoi(argv[6]), max_s = atoi(argv[7]);
    int sse = strcmp(mode, "sse") == 0;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((long)rl.rlim_cur < count + 16) {
        fprintf(stderr, "fanout: RLIMIT_NOFILE %ld is too low for %d\n", (long)rl.rlim_cur, count);
        return 2;
    }
    int64_t t_start = now_ns(), deadline = t_start + (int64_t)max_s * 1000000000LL;
    char req[512];
    int reqlen = sse ? snprintf(req, sizeof req,
                                "GET /v1/tasks/%s/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Accept: text/event-stream\r\n\r\n", task)
                     : snprintf(req, sizeof req,
                                "GET /v1/tasks/%s?wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                                task);
    w_t *ws = calloc((size_t)count, sizeof *ws);
    int ep = epoll_create1(0);
    int connected = 0, errors = 0;
    /* connect in slices so the listen backlog never overflows */
    for (int i = 0; i < count; i++) {
        ws[i].fd = connect_to(port, 1);
        if (ws[i].fd < 0) {
            errors++;
            ws[i].done = 1;
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, ws[i].fd, &ev);
        if (i % 500 == 499)
            usleep(20000);
    }
    static char buf[65536];
    struct epoll_event evs[512];
    int parked = 0, answered = 0, sent = 0;
    int64_t last_activity = now_ns(), t_parked = 0, t0 = 0;
    long rss_parked = -1;
    double complete_ms = -1;
    int cfd = -1;
    int phase = 0; /* 0 parking, 1 completed */
    while (now_ns() < deadline) {
        if (phase == 0) {
            int all = sse ? parked + errors >= count
                          : sent + errors >= count && now_ns() - last_activity > 2000000000LL;
            if (all) {
                t_parked = now_ns();
                rss_parked = rss_kb(pid);
                printf("connected %d\nparked_s %.2f\nrss_kb_parked %ld\n", connected,
                       (t_parked - t_start) / 1e9, rss_parked);
                fflush(stdout);
                char body[256], creq[768];
                int bl = snprintf(body, sizeof body, "{\"lease_id\":\"%s\",\"result\":{\"done\":1}}",
                                  lease);
                int cl = snprintf(creq, sizeof creq,
                                  "POST /v1/tasks/%s/complete HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  "Content-Type: application/json\r\nContent-Length: %d\r\n"
                                  "Connection: close\r\n\r\n%s",
                                  task, bl, body);
                cfd = connect_to(port, 0);
                t0 = now_ns();
                if (cfd < 0 || write(cfd, creq, (size_t)cl) != cl) {
                    fprintf(stderr, "fanout: cannot send the complete\n");
                    return 1;
                }
                char ans[4096];
                ssize_t r = read(cfd, ans, sizeof ans - 1);
                complete_ms = (now_ns() - t0) / 1e6;
                if (r <= 0 || strncmp(ans, "HTTP/1.1 200", 12) != 0) {
                    ans[r > 0 ? r : 0] = '\0';
                    fprintf(stderr, "fanout: the complete failed: %.200s\n", ans);
                    return 1;
                }
                close(cfd);
                phase = 1;
            }
        } else if (answered + errors >= count) {
            break;
        }
        int n = epoll_wait(ep, evs, 512, 50);
        for (int k = 0; k < n; k++) {
            w_t *w = &ws[evs[k].data.u32];
            if (w->done)
                continue;
            if ((evs[k].events & EPOLLOUT) && !w->sent) {
                ssize_t r = write(w->fd, req, (size_t)reqlen);
                if (r != reqlen) {
                    if (r < 0 && errno == EAGAIN)
                        continue;
                    errors++;
                    w->done = 1;
                    close(w->fd);
                    continue;
                }
                w->sent = 1;
                sent++;
                connected++;
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[k].data.u32};
                epoll_ctl(ep, EPOLL_CTL_MOD, w->fd, &ev);
            }
            if (!(evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                continue;
            for (;;) {
                ssize_t r = read(w->fd, buf, sizeof buf);
                if (r > 0) {
                    last_activity = now_ns();
                    if (sse && !w->parked && seen(w, buf, (size_t)r, "task.queued")) {
                        w->parked = 1;
                        parked++;
                    }
                    if (seen(w, buf, (size_t)r, sse ? "task.completed" : "\"completed\"")) {
                        w->done = 1;
                        w->t_done = now_ns();
                        if (phase == 0)
                            errors++; /* answered before the completion */
                        else
                            answered++;
                        epoll_ctl(ep, EPOLL_CTL_DEL, w->fd, NULL);
                        close(w->fd);
                        break;
                    }
                    continue;
                }
                if (r < 0 && errno == EAGAIN)
                    break;
                errors++; /* closed or failed before its answer */
                w->done = 1;
                epoll_ctl(ep, EPOLL_CTL_DEL, w->fd, NULL);
                close(w->fd);
                break;
            }
        }
    }
    int64_t *lat = calloc((size_t)count + 1, sizeof *lat);
    int nl = 0;
    int64_t last = 0;
    for (int i = 0; i < count; i++)
        if (ws[i].t_done && ws[i].t_done >= t0 && t0) {
            lat[nl++] = ws[i].t_done - t0;
            if (ws[i].t_done > last)
                last = ws[i].t_done;
        }
    qsort(lat, (size_t)nl, sizeof *lat, cmp64);
    printf("complete_ms %.2f\n", complete_ms);
    printf("all_ms %.2f\n", nl ? (last - t0) / 1e6 : -1.0);
    printf("p50_ms %.2f\np99_ms %.2f\n", nl ? lat[nl / 2] / 1e6 : -1.0,
           nl ? lat[(nl * 99) / 100 < nl ? (nl * 99) / 100 : nl - 1] / 1e6 : -1.0);
    printf("answered %d\nerrors %d\n", answered, errors);
    for (int i = 0; i < count; i++)
        if (!ws[i].done)
            close(ws[i].fd);
    return answered == count ? 0 : 1;
}
