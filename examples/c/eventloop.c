/*
 * eventloop: an SMTP server in one thread, driving smtpx_server_session from a poll()
 * loop over a listening socket and its connections. smtpx does the protocol; this
 * program owns the sockets, the clock and the decisions. Messages are counted and
 * thrown away; recipients starting with "nobody@" are refused.
 *
 *   eventloop [--port PORT] [--max-connections N]
 *
 * Listens on 127.0.0.1 (port 0, the default, picks a free one) and prints
 * "listening on 127.0.0.1:PORT". Stops on SIGINT or SIGTERM, closing open connections.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 64

struct connection {
    int fd;                       /* -1 when the slot is free */
    smtpx_server_session *session;
    size_t bytes;                 /* content of the message in progress */
    size_t recipients;
    unsigned long id;
    int closing;                  /* CLOSE seen: close once the output is written */
    uint8_t pending[16384];       /* read, not yet taken by the session */
    size_t pending_len;
};

static volatile sig_atomic_t stop = 0;
static unsigned long messages = 0;

static void on_signal(int signal_number) {
    (void)signal_number;
    stop = 1;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void set_nonblocking(int fd) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
}

static void drop(struct connection *c) {
    smtpx_server_session_free(c->session);
    close(c->fd);
    c->fd = -1;
    c->session = NULL;
}

/* Answers every event the session has, then writes what it wants to say. Returns -1 when
   the connection must be dropped now, 1 when something happened (an event or a write),
   0 when nothing did. */
static int run(struct connection *c) {
    int progress = 0;
    smtpx_server_event e;
    smtpx_decision d;
    const uint8_t *out;
    size_t out_len;

    for (;;) {
        if (smtpx_server_session_poll_event(c->session, &e) != SMTPX_RESULT_OK)
            return -1;
        if (e.kind == SMTPX_EVENT_KIND_NONE)
            break;
        progress = 1;
        switch (e.kind) {
        case SMTPX_EVENT_KIND_RCPT:
            if (strncmp(e.arg, "nobody@", 7) == 0) {
                memset(&d, 0, sizeof d);
                d.code = 550;
                d.has_enhanced = true;
                d.enhanced.status_class = 5;
                d.enhanced.subject = 1;
                d.enhanced.detail = 1;
                snprintf(d.text, sizeof d.text, "no mailbox here by that name");
                smtpx_server_session_decide(c->session, &d);
                continue;
            }
            c->recipients++;
            break;
        case SMTPX_EVENT_KIND_MESSAGE_DATA:
            c->bytes += e.data_len;
            break;
        case SMTPX_EVENT_KIND_MESSAGE_END:
            messages++;
            memset(&d, 0, sizeof d);
            d.code = 250;
            snprintf(d.text, sizeof d.text, "Ok: queued as EL%lu", messages);
            printf("connection %lu: message %lu, %zu bytes, %zu recipient(s)\n", c->id, messages,
                   c->bytes, c->recipients);
            fflush(stdout);
            c->bytes = 0;
            c->recipients = 0;
            smtpx_server_session_decide(c->session, &d);
            continue;
        case SMTPX_EVENT_KIND_MESSAGE_ABORTED:
        case SMTPX_EVENT_KIND_RESET:
            c->bytes = 0;
            c->recipients = 0;
            break;
        case SMTPX_EVENT_KIND_CLOSE:
            c->closing = 1;
            break;
        default:
            break;
        }
        if (e.needs_decision)
            smtpx_server_session_decide(c->session, NULL); /* accept */
    }
    /* Write the output (small replies: the socket buffer takes them at once; a busy
       socket keeps the rest for the next round, when poll reports POLLOUT). */
    if (smtpx_server_session_output(c->session, &out, &out_len) != SMTPX_RESULT_OK)
        return -1;
    if (out_len > 0) {
        ssize_t n = write(c->fd, out, out_len);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (n > 0) {
            smtpx_server_session_consume_output(c->session, (size_t)n);
            progress = 1;
        }
        smtpx_server_session_output(c->session, &out, &out_len);
    }
    if (c->closing && out_len == 0)
        return -1;
    return progress;
}

/* Offers the pending input to the session and runs it, until neither moves: the session
   takes input only while it has room for its replies, so a client that pipelines
   without reading gets its replies as the socket takes them, and its input waits in
   `pending` (POLLIN is not asked for meanwhile). Returns -1 to drop the connection. */
static int feed(struct connection *c, uint64_t now) {
    for (;;) {
        size_t taken = 0;
        int progress;
        if (c->pending_len > 0) {
            smtpx_server_session_receive(c->session, c->pending, c->pending_len, now, &taken);
            memmove(c->pending, c->pending + taken, c->pending_len - taken);
            c->pending_len -= taken;
        }
        progress = run(c);
        if (progress < 0)
            return -1;
        if (taken == 0 && progress == 0)
            return 0;
    }
}

int main(int argc, char **argv) {
    static struct connection conns[MAX_CONNECTIONS]; /* static: 16 KiB of input each */
    struct pollfd fds[MAX_CONNECTIONS + 1];
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;
    smtpx_server_config *config;
    struct sigaction sa;
    unsigned long next_id = 1;
    int listener, i, max_connections = MAX_CONNECTIONS, port = 0, one = 1;

    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--max-connections") == 0)
            max_connections = atoi(argv[i + 1]);
        else
            break;
    }
    if (i != argc || port < 0 || port > 65535 || max_connections < 1 ||
        max_connections > MAX_CONNECTIONS) {
        fprintf(stderr, "usage: eventloop [--port PORT] [--max-connections 1..%d]\n",
                MAX_CONNECTIONS);
        return 2;
    }

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    listener = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)port);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(listener, 64) != 0 ||
        getsockname(listener, (struct sockaddr *)&addr, &addr_len) != 0) {
        perror("eventloop: listen");
        return 1;
    }
    set_nonblocking(listener);

    config = smtpx_server_config_new();
    smtpx_server_config_set_hostname(config, "eventloop.test");
    smtpx_server_config_set_timeout_secs(config, 60);
    for (i = 0; i < MAX_CONNECTIONS; i++)
        conns[i].fd = -1;
    printf("listening on 127.0.0.1:%u\n", ntohs(addr.sin_port));
    fflush(stdout);

    while (!stop) {
        uint64_t now = now_ms(), soonest = 0;
        int timeout = -1, nfds = 1, ready;
        int slot_of[MAX_CONNECTIONS + 1];

        fds[0].fd = listener;
        fds[0].events = POLLIN;
        for (i = 0; i < MAX_CONNECTIONS; i++) {
            const uint8_t *out;
            size_t out_len = 0;
            uint64_t deadline;
            bool has = false;
            if (conns[i].fd < 0)
                continue;
            smtpx_server_session_output(conns[i].session, &out, &out_len);
            fds[nfds].fd = conns[i].fd;
            fds[nfds].events =
                (short)((conns[i].pending_len == 0 ? POLLIN : 0) | (out_len > 0 ? POLLOUT : 0));
            slot_of[nfds++] = i;
            smtpx_server_session_next_deadline(conns[i].session, &deadline, &has);
            if (has && (soonest == 0 || deadline < soonest))
                soonest = deadline;
        }
        if (soonest != 0)
            timeout = soonest <= now ? 0 : (int)(soonest - now);
        ready = poll(fds, (nfds_t)nfds, timeout);
        if (ready < 0 && errno != EINTR) {
            perror("eventloop: poll");
            break;
        }
        now = now_ms();

        /* New connections: a free slot gets a session, none left gets a 421. */
        if (ready > 0 && (fds[0].revents & POLLIN)) {
            int fd;
            while ((fd = accept(listener, NULL, NULL)) >= 0) {
                int active = 0, slot = -1;
                for (i = 0; i < MAX_CONNECTIONS; i++) {
                    if (conns[i].fd >= 0)
                        active++;
                    else if (slot < 0)
                        slot = i;
                }
                if (slot < 0 || active >= max_connections) {
                    static const char busy[] = "421 4.3.2 too many connections, try later\r\n";
                    if (write(fd, busy, sizeof busy - 1) < 0) { /* nothing more to do */
                    }
                    close(fd);
                    continue;
                }
                set_nonblocking(fd);
                memset(&conns[slot], 0, sizeof conns[slot]);
                conns[slot].fd = fd;
                conns[slot].id = next_id++;
                if (smtpx_server_session_new(config, now, &conns[slot].session) != SMTPX_RESULT_OK ||
                    run(&conns[slot]) < 0)
                    drop(&conns[slot]);
            }
        }

        for (i = 1; i < nfds; i++) {
            struct connection *c = &conns[slot_of[i]];
            if (c->fd < 0)
                continue;
            if (c->pending_len == 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                ssize_t n = read(c->fd, c->pending, sizeof c->pending);
                if (n > 0)
                    c->pending_len = (size_t)n;
                else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                    smtpx_server_session_receive_eof(c->session);
            }
            smtpx_server_session_handle_timeout(c->session, now);
            if (feed(c, now) < 0)
                drop(c);
        }
    }

    fprintf(stderr, "eventloop: stopping after %lu message(s)\n", messages);
    for (i = 0; i < MAX_CONNECTIONS; i++)
        if (conns[i].fd >= 0)
            drop(&conns[i]);
    close(listener);
    smtpx_server_config_free(config);
    return 0;
}
