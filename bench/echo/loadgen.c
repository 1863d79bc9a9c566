/* Native load generator for the echo benchmark: one thread, epoll, non-blocking.
 *
 *   loadgen rr    HOST PORT CONNS SIZE SECONDS   round trips of SIZE bytes on CONNS
 *                                                connections; prints "<round trips/s> <MB/s>"
 *   loadgen churn HOST PORT CONC SECONDS          connect, one 64-byte round trip, close,
 *                                                CONC at a time; prints "<connections/s>"
 *   loadgen idle  HOST PORT CONNS                 opens CONNS connections, one round trip
 *                                                each, prints "ready", holds them until
 *                                                stdin closes
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in target;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

typedef struct {
    int fd;
    size_t sent, received, size;
    int connecting;
} conn_t;

static int open_conn(int blocking) {
    int fd = socket(AF_INET, SOCK_STREAM | (blocking ? 0 : SOCK_NONBLOCK), 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS) die("connect");
    return fd;
}

/* Advance one connection's round trip; returns 1 when a round trip completed. */
static int step(conn_t *c, char *buf, size_t size) {
    int done = 0;
    for (;;) {
        if (c->sent < size) {
            ssize_t n = send(c->fd, buf, size - c->sent, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == ENOTCONN) return done;
                die("send");
            }
            c->sent += n;
            continue;
        }
        ssize_t n = recv(c->fd, buf, size - c->received, 0);
        if (n < 0) {
            if (errno == EAGAIN) return done;
            die("recv");
        }
        if (n == 0) { fprintf(stderr, "server closed\n"); exit(1); }
        c->received += n;
        if (c->received == size) {
            c->sent = c->received = 0;
            done++;
        }
    }
}

static int rr(int conns, size_t size, double seconds) {
    int ep = epoll_create1(0);
    conn_t *cs = calloc(conns, sizeof *cs);
    char *buf = malloc(size);
    memset(buf, 'x', size);
    for (int i = 0; i < conns; i++) {
        cs[i].fd = open_conn(0);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    struct epoll_event evs[256];
    long trips = 0;
    double start = now(), end = start + seconds;
    while (now() < end) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) trips += step(evs[i].data.ptr, buf, size);
    }
    double dt = now() - start;
    printf("%.1f %.1f\n", trips / dt, trips * size * 2 / dt / 1e6);
    return 0;
}

static int churn(int conc, double seconds) {
    int ep = epoll_create1(0);
    conn_t *cs = calloc(conc, sizeof *cs);
    char buf[64];
    memset(buf, 'c', sizeof buf);
    for (int i = 0; i < conc; i++) {
        cs[i].fd = open_conn(0);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    struct epoll_event evs[256];
    long done = 0;
    double start = now(), end = start + seconds;
    while (now() < end) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (step(c, buf, sizeof buf)) {
                close(c->fd);  /* one round trip, then a fresh connection */
                done++;
                c->fd = open_conn(0);
                c->sent = c->received = 0;
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
            }
        }
    }
    printf("%.1f\n", done / (now() - start));
    return 0;
}

static int idle(int conns) {
    char buf[16];
    for (int i = 0; i < conns; i++) {
        int fd = open_conn(1);
        if (send(fd, "ping", 4, 0) != 4) die("send");
        size_t got = 0;
        while (got < 4) {
            ssize_t n = recv(fd, buf, 4 - got, 0);
            if (n <= 0) die("recv");
            got += n;
        }
    }
    printf("ready\n");
    fflush(stdout);
    while (read(0, buf, sizeof buf) > 0) {}
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: see the comment at the top of loadgen.c\n"); return 2; }
    target.sin_family = AF_INET;
    target.sin_port = htons(atoi(argv[3]));
    inet_pton(AF_INET, argv[2], &target.sin_addr);
    if (!strcmp(argv[1], "rr") && argc == 7) return rr(atoi(argv[4]), atoi(argv[5]), atof(argv[6]));
    if (!strcmp(argv[1], "churn") && argc == 6) return churn(atoi(argv[4]), atof(argv[5]));
    if (!strcmp(argv[1], "idle") && argc == 5) return idle(atoi(argv[4]));
    fprintf(stderr, "bad arguments\n");
    return 2;
}
