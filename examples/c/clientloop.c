/*
 * clientloop: an SMTP client in one thread, sending several messages at once over
 * several connections from a poll() loop, with smtpx_client_session (the client without
 * I/O) and, for STARTTLS, smtpx_tls_session (TLS without I/O; no OpenSSL). smtpx does the
 * protocol, the deadlines and what each reply means; this program owns the sockets, the
 * clock and poll().
 *
 *   clientloop --port PORT [--host 127.0.0.1] [--count N] [--ca CERT.pem]
 *              [--from ADDR] [--to ADDR]
 *
 * Opens N connections (default 4) to HOST:PORT; each connects (with --ca: STARTTLS
 * required, the server's certificate checked against CERT.pem for the name "localhost"),
 * sends one message and quits. Prints one line per connection and exits 0 when every
 * message was accepted.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 64

enum stage { CONNECTING, SENDING, QUITTING, FINISHED };

struct connection {
    int fd;
    smtpx_client_session *session;
    smtpx_tls_session *tls;  /* once STARTTLS began */
    bool handshaking;        /* a START_TLS action in progress */
    smtpx_client_action action;
    bool have_action;
    bool encrypted;          /* the WRITE's bytes were given to TLS already */
    size_t sent;             /* plain WRITE: bytes of it written so far */
    enum stage stage;
    bool accepted;
    char line[256];
};

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *message =
    "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: from the event loop\r\n\r\n"
    "One of several messages sent at once.\r\n";

/* Writes the TLS session's pending ciphertext as far as the socket takes it; true when
 * nothing is left; -1 on a socket error. */
static int flush_tls(struct connection *c) {
    const uint8_t *p;
    size_t n;
    smtpx_tls_session_output(c->tls, &p, &n);
    if (n == 0) {
        return 1;
    }
    ssize_t w = write(c->fd, p, n);
    if (w < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
    smtpx_tls_session_consume_output(c->tls, (size_t)w);
    return (size_t)w == n;
}

static void finish(struct connection *c, const char *line) {
    snprintf(c->line, sizeof c->line, "%s", line);
    c->stage = FINISHED;
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

/* DONE: the next operation, or the end. */
static void on_done(struct connection *c, const char *from, const char *to) {
    smtpx_result r = c->action.result;
    if (r != SMTPX_RESULT_OK && c->stage != QUITTING) {
        char text[200];
        size_t n;
        if (smtpx_client_session_last_error(c->session, text, sizeof text, &n) != SMTPX_RESULT_OK) {
            text[0] = '\0';
        }
        char line[256];
        snprintf(line, sizeof line, "failed: %s (%s)", smtpx_result_str(r), text);
        finish(c, line);
        return;
    }
    if (c->stage == CONNECTING) {
        c->stage = SENDING;
        const char *rcpt[1] = {to};
        smtpx_client_session_send(c->session, from, rcpt, 1, (const uint8_t *)message,
                                  strlen(message), now_ms());
    } else if (c->stage == SENDING) {
        smtpx_send_result *result = NULL;
        if (smtpx_client_session_take_send_result(c->session, &result) == SMTPX_RESULT_OK) {
            const smtpx_reply *final = smtpx_send_result_final_reply(result);
            c->accepted = smtpx_send_result_success(result);
            snprintf(c->line, sizeof c->line, "%u %s%s", smtpx_reply_code(final),
                     smtpx_reply_text(final), smtpx_client_session_is_tls(c->session) ? " (TLS)" : "");
            smtpx_send_result_free(result);
        }
        c->stage = QUITTING;
        smtpx_client_session_quit(c->session, now_ms());
    } else {
        c->stage = FINISHED;
        if (c->fd >= 0) {
            close(c->fd);
            c->fd = -1;
        }
    }
}

/* Gets the next action and does what needs no waiting; sets *events for poll(). */
static short step(struct connection *c, const char *from, const char *to) {
    for (;;) {
        if (c->stage == FINISHED) {
            return 0;
        }
        if (!c->have_action) {
            if (smtpx_client_session_next_action(c->session, now_ms(), &c->action) != SMTPX_RESULT_OK) {
                finish(c, "failed: no next action");
                return 0;
            }
            c->have_action = true;
            c->encrypted = false;
            c->sent = 0;
        }
        switch (c->action.kind) {
        case SMTPX_CLIENT_ACTION_KIND_WRITE:
            if (c->tls != NULL && !c->encrypted) {
                smtpx_tls_session_write(c->tls, c->action.bytes, c->action.bytes_len);
                c->encrypted = true;
            }
            return POLLOUT;
        case SMTPX_CLIENT_ACTION_KIND_READ:
            if (c->tls != NULL) { /* plaintext TLS decrypted earlier comes first */
                const uint8_t *p;
                size_t n;
                smtpx_tls_session_plaintext(c->tls, &p, &n);
                if (n > 0) {
                    smtpx_client_session_receive(c->session, p, n, now_ms());
                    smtpx_tls_session_consume_plaintext(c->tls, n);
                    c->have_action = false;
                    continue;
                }
            }
            if (now_ms() >= c->action.deadline_ms) {
                smtpx_client_session_timeout(c->session, now_ms());
                c->have_action = false;
                continue;
            }
            return POLLIN;
        case SMTPX_CLIENT_ACTION_KIND_START_TLS:
            if (!c->handshaking) {
                smtpx_client_session_take_tls(c->session, &c->tls);
                c->handshaking = true;
            }
            if (!smtpx_tls_session_is_handshaking(c->tls)) {
                c->handshaking = false;
                smtpx_client_session_tls_established(c->session, now_ms());
                c->have_action = false;
                continue;
            }
            if (now_ms() >= c->action.deadline_ms) {
                c->handshaking = false;
                smtpx_client_session_tls_failed(c->session, NULL);
                c->have_action = false;
                continue;
            }
            return POLLIN | POLLOUT;
        case SMTPX_CLIENT_ACTION_KIND_CLOSE:
            if (c->tls != NULL && c->action.graceful) {
                smtpx_tls_session_close(c->tls);
                (void)flush_tls(c); /* best effort: the connection is ending */
            }
            if (c->fd >= 0) {
                close(c->fd);
                c->fd = -1;
            }
            c->have_action = false;
            continue;
        case SMTPX_CLIENT_ACTION_KIND_DONE:
            c->have_action = false;
            on_done(c, from, to);
            continue;
        default:
            finish(c, "failed: unknown action");
            return 0;
        }
    }
}

/* The socket is ready for what the action waits for. */
static void on_ready(struct connection *c, short revents) {
    smtpx_client_action *a = &c->action;
    if (a->kind == SMTPX_CLIENT_ACTION_KIND_WRITE && (revents & (POLLOUT | POLLERR | POLLHUP))) {
        if (c->tls != NULL) {
            int done = flush_tls(c);
            if (done < 0 && !a->goodbye) {
                smtpx_client_session_lost(c->session);
            } else if (done != 0 || a->goodbye) {
                smtpx_client_session_written(c->session);
            } else {
                return;
            }
        } else {
            ssize_t w = write(c->fd, a->bytes + c->sent, a->bytes_len - c->sent);
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                return;
            }
            if (w < 0 && !a->goodbye) {
                smtpx_client_session_lost(c->session);
            } else if (w < 0 || (c->sent += (size_t)w) == a->bytes_len || a->goodbye) {
                smtpx_client_session_written(c->session);
            } else {
                return;
            }
        }
        c->have_action = false;
        return;
    }
    if (a->kind == SMTPX_CLIENT_ACTION_KIND_START_TLS) {
        if (flush_tls(c) < 0) {
            c->handshaking = false;
            smtpx_client_session_tls_failed(c->session, c->tls);
            c->have_action = false;
            return;
        }
    }
    if (!(revents & (POLLIN | POLLERR | POLLHUP))) {
        return;
    }
    uint8_t buf[16384];
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return;
    }
    if (a->kind == SMTPX_CLIENT_ACTION_KIND_START_TLS) {
        if (n <= 0 || smtpx_tls_session_receive(c->tls, buf, (size_t)n) != SMTPX_RESULT_OK) {
            (void)flush_tls(c); /* an alert, if TLS has one */
            c->handshaking = false;
            smtpx_client_session_tls_failed(c->session, c->tls);
            c->have_action = false;
        } else {
            (void)flush_tls(c);
        }
        return;
    }
    if (n == 0) {
        smtpx_client_session_receive_eof(c->session);
    } else if (n < 0) {
        smtpx_client_session_lost(c->session);
    } else if (c->tls == NULL) {
        smtpx_client_session_receive(c->session, buf, (size_t)n, now_ms());
    } else if (smtpx_tls_session_receive(c->tls, buf, (size_t)n) != SMTPX_RESULT_OK) {
        smtpx_client_session_lost(c->session);
    } else {
        (void)flush_tls(c);
        return; /* step() hands the plaintext over, if any came */
    }
    c->have_action = false;
}

static int open_socket(const char *host, uint16_t port) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *ca = NULL;
    const char *from = "alice@example.org", *to = "bob@example.net";
    long port = 0, count = 4;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0) port = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--host") == 0) host = argv[i + 1];
        else if (strcmp(argv[i], "--count") == 0) count = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--ca") == 0) ca = argv[i + 1];
        else if (strcmp(argv[i], "--from") == 0) from = argv[i + 1];
        else if (strcmp(argv[i], "--to") == 0) to = argv[i + 1];
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (port <= 0 || port > 65535 || count < 1 || count > MAX_CONNECTIONS) {
        fprintf(stderr, "usage: %s --port PORT [--host IP] [--count 1..%d] [--ca CERT.pem]\n",
                argv[0], MAX_CONNECTIONS);
        return 2;
    }
    smtpx_client_options *options = smtpx_client_options_new();
    smtpx_client_options_set_helo_name(options, "clientloop.example");
    smtpx_client_options_set_command_timeout_ms(options, 30000);
    if (ca != NULL) {
        smtpx_client_options_set_tls_mode(options, SMTPX_TLS_MODE_STARTTLS_REQUIRED);
        smtpx_client_options_set_ca_file(options, ca);
    } else {
        smtpx_client_options_set_tls_mode(options, SMTPX_TLS_MODE_NONE);
    }

    static struct connection conns[MAX_CONNECTIONS];
    for (long i = 0; i < count; i++) {
        struct connection *c = &conns[i];
        memset(c, 0, sizeof *c);
        c->fd = open_socket(host, (uint16_t)port);
        if (c->fd < 0 ||
            smtpx_client_session_new(options, "localhost", now_ms(), &c->session) != SMTPX_RESULT_OK ||
            smtpx_client_session_connect(c->session) != SMTPX_RESULT_OK) {
            finish(c, "failed: cannot connect");
        }
    }

    /* The loop: one poll() over every connection, each waiting for what its action says. */
    for (;;) {
        struct pollfd fds[MAX_CONNECTIONS];
        struct connection *which[MAX_CONNECTIONS];
        nfds_t n = 0;
        uint64_t next_deadline = UINT64_MAX;
        for (long i = 0; i < count; i++) {
            short events = step(&conns[i], from, to);
            if (events != 0 && conns[i].fd >= 0) {
                fds[n].fd = conns[i].fd;
                fds[n].events = events;
                fds[n].revents = 0;
                which[n++] = &conns[i];
                if (conns[i].action.deadline_ms != 0 && conns[i].action.deadline_ms < next_deadline) {
                    next_deadline = conns[i].action.deadline_ms;
                }
            }
        }
        if (n == 0) {
            break;
        }
        uint64_t now = now_ms();
        int timeout = next_deadline == UINT64_MAX ? -1
                      : next_deadline <= now      ? 0
                                                  : (int)(next_deadline - now);
        if (poll(fds, n, timeout) < 0 && errno != EINTR) {
            perror("poll");
            return 1;
        }
        for (nfds_t i = 0; i < n; i++) {
            if (fds[i].revents != 0) {
                on_ready(which[i], fds[i].revents);
            }
        }
    }

    int accepted = 0;
    for (long i = 0; i < count; i++) {
        printf("connection %ld: %s\n", i + 1, conns[i].line);
        accepted += conns[i].accepted;
        smtpx_tls_session_free(conns[i].tls);
        smtpx_client_session_free(conns[i].session);
    }
    smtpx_client_options_free(options);
    printf("sent %d/%ld\n", accepted, count);
    return accepted == count ? 0 : 1;
}
