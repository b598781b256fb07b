/*
 * The floor: a bare level-triggered epoll echo server, the least a
 * single-threaded readiness loop can do per message: one epoll_wait shared by
 * every ready connection, one recv and one send per message, no epoll_ctl
 * unless a send is partial.
 *
 *   cc -O2 -o epoll_echo benches/c/epoll_echo.c
 *   epoll_echo [HOST:PORT]          (port 0 picks a free port)
 *
 * The first line on stdout is `listening on HOST:PORT`, as rolecore's
 * examples/echo_server prints it.
 *
 * Correct, not a toy: output the socket does not take at once is kept per
 * descriptor and sent when EPOLLOUT says so, and reading from that connection
 * stops until it is out (back-pressure). That state is 16 bytes per descriptor
 * number, allocated as descriptors appear.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 1024
#define BUF_SIZE 8192

struct pending {
    char *data; /* NULL when nothing is queued */
    uint32_t len, off;
};

static struct pending *pending;
static size_t npending;

static struct pending *pending_for(int fd) {
    if ((size_t)fd >= npending) {
        size_t n = npending ? npending : 1024;
        while (n <= (size_t)fd) n *= 2;
        struct pending *p = realloc(pending, n * sizeof *p);
        if (!p) { perror("realloc"); exit(1); }
        memset(p + npending, 0, (n - npending) * sizeof *p);
        pending = p;
        npending = n;
    }
    return &pending[fd];
}

static void drop_conn(int fd) {
    struct pending *p = pending_for(fd);
    free(p->data);
    p->data = NULL;
    p->len = p->off = 0;
    close(fd); /* also removes it from the epoll set */
}

static int set_interest(int ep, int fd, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    return epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

int main(int argc, char **argv) {
    const char *spec = argc > 1 ? argv[1] : "127.0.0.1:8080";
    char host[64];
    const char *colon = strrchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof host) {
        fprintf(stderr, "usage: epoll_echo HOST:PORT\n");
        return 2;
    }
    memcpy(host, spec, colon - spec);
    host[colon - spec] = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "epoll_echo: bad address %s\n", spec);
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 1024) < 0) {
        perror("epoll_echo: bind/listen");
        return 1;
    }
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
    fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);

    static struct epoll_event events[MAX_EVENTS];
    static char buf[BUF_SIZE];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            uint32_t e = events[i].events;
            if (fd == lfd) {
                /* One accept per readiness report, as asyncore does. */
                int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (c < 0) continue; /* EAGAIN, ECONNABORTED, EMFILE: try next wait */
                pending_for(c);
                struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) < 0) close(c);
                continue;
            }
            struct pending *p = &pending[fd];
            if (p->data) {
                /* Writable (or hung up) with output queued: send more. */
                ssize_t w = send(fd, p->data + p->off, p->len - p->off, MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN) { drop_conn(fd); continue; }
                if (w > 0) p->off += (uint32_t)w;
                if (p->off == p->len) {
                    free(p->data);
                    p->data = NULL;
                    p->len = p->off = 0;
                    set_interest(ep, fd, EPOLLIN);
                }
                continue;
            }
            if (!(e & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r < 0 && errno == EAGAIN) continue;
            if (r <= 0) { drop_conn(fd); continue; }
            ssize_t w = send(fd, buf, (size_t)r, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno != EAGAIN) { drop_conn(fd); continue; }
                w = 0;
            }
            if (w < r) {
                /* Keep the rest, stop reading until it is out. */
                p->len = (uint32_t)(r - w);
                p->off = 0;
                p->data = malloc(p->len);
                memcpy(p->data, buf + w, p->len);
                set_interest(ep, fd, EPOLLOUT);
            }
        }
    }
}
