/*
 * floor_sink: the least an SMTP sink can do per message on this kernel, as a yardstick
 * for bench/c_server.py (--floor). One thread, one epoll instance, nonblocking sockets,
 * a fixed reply per command and a scan for the end of data; nothing is parsed, checked,
 * stored or timed. It is not a server anyone should run: it exists to show how much of
 * S1's CPU per message is the kernel's (the reads and writes every server makes), and so
 * what is left for any server's own code to win.
 *
 *   floor_sink      (listens on 127.0.0.1, a free port; prints "listening on ADDR:PORT",
 *                    on SIGUSR1 "count=N", stops on SIGTERM)
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONN 65536

/* Per connection: in data or not, and the last bytes seen, to find CRLF.CRLF across reads. */
static struct conn {
    char data;
    char tail[4];
} conns[MAX_CONN];

static unsigned long messages;

/* Writes a reply; false when the connection is gone (a reply is small: a full socket
 * means a broken client, which is dropped). */
static int say(int fd, const char *text) {
    if (write(fd, text, strlen(text)) < 0) {
        close(fd);
        return 0;
    }
    return 1;
}

/* One command line; false when the connection is gone. */
static int on_line(int fd, struct conn *c, const char *line) {
    if (strncasecmp(line, "DATA", 4) == 0) {
        c->data = 1;
        memcpy(c->tail, "\0\0\r\n", 4); /* DATA's own CRLF: ".\r\n" at once ends it */
        return say(fd, "354 go on\r\n");
    }
    if (strncasecmp(line, "QUIT", 4) == 0) {
        say(fd, "221 bye\r\n");
        close(fd);
        return 0;
    }
    return say(fd, "250 ok\r\n");
}

/* In data: the offset just past CRLF.CRLF in p[0..n), or -1 (the last four bytes are kept
 * in c->tail, so that an end split over reads is found). */
static long end_of_data(struct conn *c, const char *p, size_t n) {
    char edge[8];
    size_t k = n < 4 ? n : 4;
    memcpy(edge, c->tail, 4);
    memcpy(edge + 4, p, k);
    for (size_t i = 0; i + 5 <= 4 + k; i++)
        if (memcmp(edge + i, "\r\n.\r\n", 5) == 0)
            return (long)(i + 5 - 4);
    const char *hit = memmem(p, n, "\r\n.\r\n", 5);
    if (hit != NULL)
        return hit + 5 - p;
    if (n >= 4)
        memcpy(c->tail, p + n - 4, 4);
    else {
        memmove(c->tail, c->tail + n, 4 - n);
        memcpy(c->tail + 4 - n, p, n);
    }
    return -1;
}

static void on_readable(int fd) {
    static char buf[65536];
    struct conn *c = &conns[fd];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            close(fd);
            return;
        }
        if (n < 0)
            return;
        buf[n] = 0;
        char *p = buf, *end = buf + n;
        while (p < end) {
            if (c->data) {
                long at = end_of_data(c, p, (size_t)(end - p));
                if (at < 0)
                    break;
                c->data = 0;
                messages++;
                p += at;
                if (!say(fd, "250 queued\r\n"))
                    return;
            } else {
                char *nl = memchr(p, '\n', (size_t)(end - p));
                if (nl == NULL)
                    break; /* a partial command line: dropped, as nothing here is kept */
                *nl = 0;
                if (!on_line(fd, c, p))
                    return;
                p = nl + 1;
            }
        }
        if ((size_t)n < sizeof buf - 1)
            return; /* drained: wait for the next edge */
    }
}

int main(void) {
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    sigset_t sigs;
    int ep = epoll_create1(0), sfd;
    struct epoll_event ev = {.events = EPOLLIN}, evs[64];

    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 1024) ||
        getsockname(lfd, (struct sockaddr *)&a, &alen))
        return perror("listen"), 1;
    printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    sfd = signalfd(-1, &sigs, SFD_NONBLOCK);
    ev.data.fd = lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.fd = sfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == sfd) {
                struct signalfd_siginfo si;
                while (read(sfd, &si, sizeof si) == sizeof si) {
                    printf("count=%lu\n", messages);
                    fflush(stdout);
                    if (si.ssi_signo == SIGTERM)
                        return 0;
                }
            } else if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLET, .data.fd = c};
                    if (c >= MAX_CONN) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    memset(&conns[c], 0, sizeof conns[c]);
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                    say(c, "220 floor ESMTP\r\n");
                }
            } else
                on_readable(fd);
        }
    }
}
