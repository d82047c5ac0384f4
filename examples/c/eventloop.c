/*
 * eventloop: an SMTP server in one thread, driving smtpx_server_connection from a poll()
 * loop over a listening socket and its connections. smtpx does the protocol and the
 * connection's bookkeeping (input held while replies wait, deadlines, shutdown) and says
 * what to do next; this program owns the sockets, the clock and the hooks. Messages are
 * counted and thrown away; recipients starting with "nobody@" are refused. With a
 * certificate and key it offers STARTTLS, done by smtpx_tls_session (TLS without I/O,
 * no OpenSSL): the socket's bytes go through the TLS session, its plaintext to the
 * connection.
 *
 *   eventloop [--port PORT] [--max-connections N] [--tls-cert PEM --tls-key PEM]
 *
 * Listens on 127.0.0.1 (port 0, the default, picks a free one) and prints
 * "listening on 127.0.0.1:PORT". Stops on SIGINT or SIGTERM: idle connections are told
 * 421 at once, transactions in progress get STOP_GRACE_MS to finish, then are cut.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"

#include <arpa/inet.h>
#include <stdbool.h>
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
#define WRITE_TIMEOUT_MS 60000 /* a client that reads nothing for this long is cut */
#define STOP_GRACE_MS 10000

struct connection {
    int fd; /* -1 when the slot is free */
    smtpx_server_connection *conn;
    unsigned long id;
    size_t bytes; /* content of the message in progress */
    size_t recipients;
    short events;      /* what it waits for: POLLIN (a READ) or POLLOUT (a WRITE) */
    uint64_t deadline; /* until when */
    smtpx_tls_session *tls; /* once STARTTLS began: every byte goes through it */
    bool handshaking;       /* the STARTTLS handshake is under way */
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
    smtpx_server_connection_free(c->conn);
    smtpx_tls_session_free(c->tls);
    close(c->fd);
    c->fd = -1;
    c->conn = NULL;
    c->tls = NULL;
}

/* Writes the TLS session's pending ciphertext: 1 all written, 0 the socket is full,
   -1 the socket is broken. */
static int flush_tls(struct connection *c) {
    for (;;) {
        const uint8_t *p;
        size_t n;
        ssize_t w;
        smtpx_tls_session_output(c->tls, &p, &n);
        if (n == 0)
            return 1;
        w = write(c->fd, p, n);
        if (w < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        smtpx_tls_session_consume_output(c->tls, (size_t)w);
    }
}

/* Hands the TLS session's decrypted bytes to the connection. */
static void pass_plaintext(struct connection *c, uint64_t now) {
    const uint8_t *p;
    size_t n;
    smtpx_tls_session_plaintext(c->tls, &p, &n);
    if (n > 0) {
        smtpx_server_connection_receive(c->conn, p, n, now);
        smtpx_tls_session_consume_plaintext(c->tls, n);
    }
}

/* The handler: a hook's answer (NULL accepts, or takes the content). */
static void answer_hook(struct connection *c, const smtpx_server_event *e) {
    smtpx_decision d;
    const smtpx_decision *answer = NULL;

    memset(&d, 0, sizeof d);
    switch (e->kind) {
    case SMTPX_EVENT_KIND_RCPT:
        if (strncmp(e->arg, "nobody@", 7) != 0) {
            c->recipients++;
            break;
        }
        d.code = 550;
        d.has_enhanced = true;
        d.enhanced.status_class = 5;
        d.enhanced.subject = 1;
        d.enhanced.detail = 1;
        snprintf(d.text, sizeof d.text, "no mailbox here by that name");
        answer = &d;
        break;
    case SMTPX_EVENT_KIND_MESSAGE_DATA:
        c->bytes += e->data_len;
        break;
    case SMTPX_EVENT_KIND_MESSAGE_END:
        messages++;
        d.code = 250;
        snprintf(d.text, sizeof d.text, "Ok: queued as EL%lu", messages);
        answer = &d;
        printf("connection %lu: message %lu, %zu bytes, %zu recipient(s)\n", c->id, messages,
               c->bytes, c->recipients);
        fflush(stdout);
        c->bytes = 0;
        c->recipients = 0;
        break;
    case SMTPX_EVENT_KIND_MESSAGE_ABORTED:
    case SMTPX_EVENT_KIND_RESET:
        c->bytes = 0;
        c->recipients = 0;
        break;
    default:
        break;
    }
    smtpx_server_connection_answer(c->conn, answer);
}

/* Does the connection's actions until it must wait for its socket or its clock (returns
   0, with events and deadline set) or is over (returns -1: close and free it). */
static int advance(struct connection *c, uint64_t now, smtpx_server_config *config) {
    for (;;) {
        smtpx_action a;
        ssize_t n;
        if (c->tls != NULL && !c->handshaking) {
            int flushed = flush_tls(c); /* replies written to TLS go out first */
            if (flushed < 0) {
                smtpx_server_connection_lost(c->conn);
            } else if (flushed == 0) {
                c->events = POLLOUT;
                c->deadline = now + WRITE_TIMEOUT_MS;
                return 0;
            }
        }
        if (smtpx_server_connection_next_action(c->conn, now, &a) != SMTPX_RESULT_OK)
            return -1;
        switch (a.kind) {
        case SMTPX_ACTION_KIND_CONNECT:
            smtpx_server_connection_connected(c->conn, NULL); /* everyone is welcome */
            break;
        case SMTPX_ACTION_KIND_HOOK:
            answer_hook(c, &a.event);
            break;
        case SMTPX_ACTION_KIND_WRITE:
            if (c->tls != NULL) { /* encrypted: flushed at the top of the loop */
                if (smtpx_tls_session_write(c->tls, a.bytes, a.bytes_len) == SMTPX_RESULT_OK)
                    smtpx_server_connection_written(c->conn, a.bytes_len);
                else
                    smtpx_server_connection_lost(c->conn);
                break;
            }
            n = write(c->fd, a.bytes, a.bytes_len);
            if (n >= 0) {
                smtpx_server_connection_written(c->conn, (size_t)n); /* all or some */
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->events = POLLOUT; /* the socket is full: the client is not reading */
                c->deadline = now + WRITE_TIMEOUT_MS;
                return 0;
            } else if (errno != EINTR) {
                smtpx_server_connection_lost(c->conn); /* the remaining hooks still come */
            }
            break;
        case SMTPX_ACTION_KIND_READ:
            c->events = POLLIN;
            c->deadline = a.deadline_ms;
            return 0;
        case SMTPX_ACTION_KIND_START_TLS:
            /* Offered only with TLS files: the 220 is out, the ClientHello comes next. */
            if (c->tls == NULL && smtpx_tls_session_new_server(config, &c->tls) != SMTPX_RESULT_OK) {
                smtpx_server_connection_lost(c->conn);
                break;
            }
            c->handshaking = true;
            c->events = POLLIN;
            c->deadline = a.deadline_ms;
            return 0;
        case SMTPX_ACTION_KIND_CLOSE:
        default:
            if (c->tls != NULL && !c->handshaking) {
                smtpx_tls_session_close(c->tls); /* close_notify, best effort */
                (void)flush_tls(c);
            }
            return -1;
        }
    }
}

/* Ciphertext read from the socket: through the TLS session (the handshake's flights
   answered, its end told to the connection), then its plaintext to the connection. */
static void receive_tls(struct connection *c, const uint8_t *bytes, size_t len, uint64_t now) {
    if (smtpx_tls_session_receive(c->tls, bytes, len) != SMTPX_RESULT_OK) {
        (void)flush_tls(c); /* the alert that says why */
        if (c->handshaking) {
            c->handshaking = false;
            smtpx_server_connection_lost(c->conn);
        } else {
            smtpx_server_connection_lost(c->conn);
        }
        return;
    }
    if (c->handshaking) {
        if (flush_tls(c) < 0) {
            c->handshaking = false;
            smtpx_server_connection_lost(c->conn);
            return;
        }
        if (smtpx_tls_session_is_handshaking(c->tls))
            return;
        c->handshaking = false;
        /* The connection learns what was negotiated: its hooks can read it. */
        smtpx_server_connection_tls_established_with(c->conn, now, c->tls);
    }
    pass_plaintext(c, now);
}

/* Tells the connection what poll() saw (or that its deadline passed), then advances it. */
static int on_ready(struct connection *c, short revents, uint64_t now,
                    smtpx_server_config *config) {
    static uint8_t buf[16384];
    if (c->events == POLLIN && (revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n > 0 && c->tls != NULL)
            receive_tls(c, buf, (size_t)n, now);
        else if (n > 0)
            smtpx_server_connection_receive(c->conn, buf, (size_t)n, now);
        else if (n == 0 && c->handshaking) {
            c->handshaking = false;
            smtpx_server_connection_lost(c->conn);
        } else if (n == 0)
            smtpx_server_connection_receive_eof(c->conn);
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            smtpx_server_connection_lost(c->conn);
    } else if (c->events == POLLOUT && (revents & (POLLOUT | POLLHUP | POLLERR))) {
        /* writable (or broken): advance() writes again and sees which */
    } else if (now >= c->deadline) {
        if (c->handshaking) {
            c->handshaking = false;
            smtpx_server_connection_lost(c->conn); /* late */
        } else if (c->events == POLLIN) {
            smtpx_server_connection_timeout(c->conn, now); /* 421, then close */
        } else {
            smtpx_server_connection_lost(c->conn);
        }
    } else {
        return 0;
    }
    if (c->handshaking) /* the handshake goes on: wait for the client's next flight */
        return 0;
    return advance(c, now, config);
}

int main(int argc, char **argv) {
    static struct connection conns[MAX_CONNECTIONS];
    struct pollfd fds[MAX_CONNECTIONS + 1];
    int slot_of[MAX_CONNECTIONS + 1];
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;
    smtpx_server_config *config;
    struct sigaction sa;
    unsigned long next_id = 1;
    uint64_t stop_deadline = 0;
    const char *tls_cert = NULL, *tls_key = NULL;
    int listener, i, max_connections = MAX_CONNECTIONS, port = 0, one = 1, stopping = 0;

    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--max-connections") == 0)
            max_connections = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--tls-cert") == 0)
            tls_cert = argv[i + 1];
        else if (strcmp(argv[i], "--tls-key") == 0)
            tls_key = argv[i + 1];
        else
            break;
    }
    if (i != argc || port < 0 || port > 65535 || max_connections < 1 ||
        max_connections > MAX_CONNECTIONS || (tls_cert == NULL) != (tls_key == NULL)) {
        fprintf(stderr,
                "usage: eventloop [--port PORT] [--max-connections 1..%d]"
                " [--tls-cert PEM --tls-key PEM]\n",
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
    /* TLS files: the connections offer STARTTLS, and each handshake gets a TLS session. */
    if (tls_cert != NULL &&
        smtpx_server_config_set_tls_files(config, tls_cert, tls_key) != SMTPX_RESULT_OK) {
        char why[256];
        size_t why_len;
        if (smtpx_server_config_last_error(config, why, sizeof why, &why_len) != SMTPX_RESULT_OK)
            snprintf(why, sizeof why, "cannot use the TLS files");
        fprintf(stderr, "eventloop: %s\n", why);
        return 1;
    }
    for (i = 0; i < MAX_CONNECTIONS; i++)
        conns[i].fd = -1;
    printf("listening on 127.0.0.1:%u\n", ntohs(addr.sin_port));
    fflush(stdout);

    for (;;) {
        uint64_t now = now_ms(), soonest = UINT64_MAX;
        int nfds = 0, ready, begin_stop, grace_over;

        /* Stopping: idle connections say 421 and close at once, transactions may finish;
           once the grace period is over the rest are cut (their last hooks still run). */
        begin_stop = stop && !stopping;
        grace_over = stopping && now >= stop_deadline;
        if (begin_stop) {
            stopping = 1;
            stop_deadline = now + STOP_GRACE_MS;
        }
        for (i = 0; (begin_stop || grace_over) && i < MAX_CONNECTIONS; i++) {
            if (conns[i].fd < 0)
                continue;
            if (grace_over)
                smtpx_server_connection_lost(conns[i].conn);
            else
                smtpx_server_connection_stop(conns[i].conn);
            if (advance(&conns[i], now, config) < 0 || grace_over)
                drop(&conns[i]);
        }
        if (!stopping) {
            fds[nfds].fd = listener;
            fds[nfds].events = POLLIN;
            slot_of[nfds++] = -1;
        } else {
            soonest = stop_deadline;
        }
        for (i = 0; i < MAX_CONNECTIONS; i++) {
            if (conns[i].fd < 0)
                continue;
            fds[nfds].fd = conns[i].fd;
            fds[nfds].events = conns[i].events;
            slot_of[nfds++] = i;
            if (conns[i].deadline < soonest)
                soonest = conns[i].deadline;
        }
        if (stopping && nfds == 0)
            break;
        /* Deadlines are at most minutes away (the session's timeouts are 60 s). */
        ready = poll(fds, (nfds_t)nfds,
                     soonest == UINT64_MAX ? -1 : soonest <= now ? 0 : (int)(soonest - now));
        if (ready < 0 && errno != EINTR) {
            perror("eventloop: poll");
            break;
        }
        now = now_ms();

        for (i = 0; i < nfds; i++) {
            struct connection *c;
            short revents = ready > 0 ? fds[i].revents : 0;
            if (slot_of[i] >= 0) {
                c = &conns[slot_of[i]];
                if (c->fd >= 0 && on_ready(c, revents, now, config) < 0)
                    drop(c);
                continue;
            }
            /* New connections: a free slot gets a connection, none left gets a 421. */
            if (!(revents & POLLIN))
                continue;
            for (;;) {
                int fd = accept(listener, NULL, NULL), active = 0, slot = -1, j;
                if (fd < 0)
                    break;
                for (j = 0; j < MAX_CONNECTIONS; j++) {
                    if (conns[j].fd >= 0)
                        active++;
                    else if (slot < 0)
                        slot = j;
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
                if (smtpx_server_connection_new(config, now, false, &conns[slot].conn) !=
                        SMTPX_RESULT_OK ||
                    advance(&conns[slot], now, config) < 0)
                    drop(&conns[slot]);
            }
        }
    }

    fprintf(stderr, "eventloop: stopping after %lu message(s)\n", messages);
    close(listener);
    smtpx_server_config_free(config);
    return 0;
}
