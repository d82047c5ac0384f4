/*
 * smtpx_client_session, the client without I/O, driven over loopback sockets by a small
 * blocking loop here against smtpx's own server: connect with STARTTLS (through
 * smtpx_tls_session), send, a streamed send (the body given in pieces of any size, split
 * across line ends and leading dots) checked byte for byte on the server, an abandoned
 * streamed send, a batch, login, commands, a refused sender, QUIT; a silent server and
 * its deadline; reports in the wrong state.
 *
 * Usage: test_client_session CERT.pem KEY.pem (the Makefile's self-signed "localhost").
 * Linked against libsmtpx.a; run under ASan+UBSan and under valgrind.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"
#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *cert_file, *key_file;

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct conn {
    int fd;
    smtpx_client_session *s;
    smtpx_tls_session *tls;
    int closes;
    /* A streamed send's pieces, given one per BODY action; fail_body abandons it. */
    const uint8_t *const *pieces;
    const size_t *piece_lens;
    size_t n_pieces, next_piece;
    bool fail_body;
};

static int connect_to(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("connect");
        exit(2);
    }
    struct timeval tv = {10, 0}; /* every read bounded */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static bool send_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) {
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool flush_tls(struct conn *c) {
    const uint8_t *p;
    size_t n;
    smtpx_tls_session_output(c->tls, &p, &n);
    bool ok = send_all(c->fd, p, n);
    smtpx_tls_session_consume_output(c->tls, n);
    return ok;
}

/* Runs the operation in progress to DONE; gives its result. */
static smtpx_result drive(struct conn *c) {
    for (int steps = 0; steps < 10000; steps++) {
        smtpx_client_action a;
        CHECK_RESULT(smtpx_client_session_next_action(c->s, now_ms(), &a), SMTPX_RESULT_OK);
        switch (a.kind) {
        case SMTPX_CLIENT_ACTION_KIND_WRITE: {
            bool ok = c->tls != NULL
                          ? smtpx_tls_session_write(c->tls, a.bytes, a.bytes_len) == SMTPX_RESULT_OK &&
                                flush_tls(c)
                          : send_all(c->fd, a.bytes, a.bytes_len);
            if (ok || a.goodbye) {
                CHECK_RESULT(smtpx_client_session_written(c->s), SMTPX_RESULT_OK);
            } else {
                CHECK_RESULT(smtpx_client_session_lost(c->s), SMTPX_RESULT_OK);
            }
            break;
        }
        case SMTPX_CLIENT_ACTION_KIND_READ: {
            const uint8_t *p;
            size_t n = 0;
            if (c->tls != NULL) {
                smtpx_tls_session_plaintext(c->tls, &p, &n);
            }
            if (n > 0) {
                CHECK_RESULT(smtpx_client_session_receive(c->s, p, n, now_ms()), SMTPX_RESULT_OK);
                smtpx_tls_session_consume_plaintext(c->tls, n);
                break;
            }
            uint8_t buf[8192];
            ssize_t got = read(c->fd, buf, sizeof buf);
            if (got == 0) {
                CHECK_RESULT(smtpx_client_session_receive_eof(c->s), SMTPX_RESULT_OK);
            } else if (got < 0) {
                CHECK_RESULT(smtpx_client_session_lost(c->s), SMTPX_RESULT_OK);
            } else if (c->tls == NULL) {
                CHECK_RESULT(smtpx_client_session_receive(c->s, buf, (size_t)got, now_ms()), SMTPX_RESULT_OK);
            } else if (smtpx_tls_session_receive(c->tls, buf, (size_t)got) != SMTPX_RESULT_OK) {
                CHECK_RESULT(smtpx_client_session_lost(c->s), SMTPX_RESULT_OK);
            }
            break; /* with TLS, the plaintext (if any) is handed over on the next READ */
        }
        case SMTPX_CLIENT_ACTION_KIND_START_TLS: {
            CHECK(c->tls == NULL);
            CHECK_RESULT(smtpx_client_session_take_tls(c->s, &c->tls), SMTPX_RESULT_OK);
            CHECK_RESULT(smtpx_client_session_take_tls(c->s, &c->tls), SMTPX_RESULT_NOT_READY);
            bool ok = true;
            for (int rounds = 0; ok && smtpx_tls_session_is_handshaking(c->tls) && rounds < 100; rounds++) {
                uint8_t buf[8192];
                ok = flush_tls(c);
                ssize_t got = ok ? read(c->fd, buf, sizeof buf) : -1;
                ok = got > 0 && smtpx_tls_session_receive(c->tls, buf, (size_t)got) == SMTPX_RESULT_OK;
            }
            ok = ok && flush_tls(c);
            if (ok && !smtpx_tls_session_is_handshaking(c->tls)) {
                CHECK_RESULT(smtpx_client_session_tls_established(c->s, now_ms()), SMTPX_RESULT_OK);
            } else {
                CHECK_RESULT(smtpx_client_session_tls_failed(c->s, c->tls), SMTPX_RESULT_OK);
            }
            break;
        }
        case SMTPX_CLIENT_ACTION_KIND_CLOSE:
            if (c->tls != NULL && a.graceful) {
                smtpx_tls_session_close(c->tls);
                (void)flush_tls(c);
            }
            c->closes++;
            break;
        case SMTPX_CLIENT_ACTION_KIND_BODY:
            if (c->fail_body) {
                CHECK_RESULT(smtpx_client_session_body_failed(c->s), SMTPX_RESULT_OK);
            } else if (c->next_piece < c->n_pieces) {
                CHECK_RESULT(smtpx_client_session_body(c->s, c->pieces[c->next_piece],
                                                       c->piece_lens[c->next_piece]),
                             SMTPX_RESULT_OK);
                c->next_piece++;
            } else {
                CHECK_RESULT(smtpx_client_session_body_end(c->s), SMTPX_RESULT_OK);
                /* Answered: a second answer does not fit. */
                CHECK_RESULT(smtpx_client_session_body_end(c->s), SMTPX_RESULT_NOT_READY);
            }
            break;
        case SMTPX_CLIENT_ACTION_KIND_DONE:
            return a.result;
        default:
            CHECK(!"an unknown action");
            return SMTPX_RESULT_PANIC;
        }
    }
    CHECK(!"no DONE within 10000 steps");
    return SMTPX_RESULT_PANIC;
}

/* mail: refuse "spam@..." senders. */
static int on_mail(void *userdata, uint64_t conn_id, const char *arg, smtpx_decision *out) {
    (void)userdata;
    (void)conn_id;
    if (strncmp(arg, "spam@", 5) != 0) {
        return SMTPX_ACCEPT;
    }
    out->code = 550;
    snprintf(out->text, sizeof out->text, "no spam here");
    return SMTPX_REPLY;
}

/* What the server received of each message (data_chunk), for byte-for-byte checks. */
static struct {
    pthread_mutex_t lock;
    uint8_t data[1 << 20];
    size_t len;
    bool overflow;
} received = {PTHREAD_MUTEX_INITIALIZER, {0}, 0, false};

static int on_chunk(void *userdata, uint64_t conn_id, const uint8_t *chunk, size_t len,
                    smtpx_decision *out) {
    (void)userdata, (void)conn_id, (void)out;
    pthread_mutex_lock(&received.lock);
    if (received.len + len <= sizeof received.data) {
        memcpy(received.data + received.len, chunk, len);
        received.len += len;
    } else {
        received.overflow = true;
    }
    pthread_mutex_unlock(&received.lock);
    return SMTPX_ACCEPT;
}

static void forget_received(void) {
    pthread_mutex_lock(&received.lock);
    received.len = 0;
    received.overflow = false;
    pthread_mutex_unlock(&received.lock);
}

/* A streamed send: a message of ~200 KB given in uneven pieces (one larger than the
 * library's own 64 KiB feed, some cut between CR and LF or right before a leading dot)
 * arrives exactly; BODY answers outside a BODY action are refused; an abandoned one
 * drops the connection. */
static void test_streamed_send(struct conn *c) {
    static uint8_t msg[200000];
    size_t len = 0;
    len += (size_t)snprintf((char *)msg, sizeof msg, "Subject: streamed\r\n\r\n");
    for (int line = 0; len + 100 < sizeof msg; line++) {
        len += (size_t)snprintf((char *)msg + len, sizeof msg - len, "%sline %d of the streamed body\r\n",
                                line % 7 == 0 ? "." : "", line);
    }
    /* Cut points: after a CR (before its LF), before a leading dot, a big piece. */
    size_t cuts[8], n_cuts = 0, at = 0;
    const uint8_t *cr = memchr(msg + 100, '\r', len - 100);
    cuts[n_cuts++] = (size_t)(cr - msg) + 1;
    const uint8_t *dot = memchr(msg + cuts[0] + 1, '.', len - cuts[0] - 1);
    cuts[n_cuts++] = (size_t)(dot - msg);
    cuts[n_cuts++] = cuts[1] + 1;
    cuts[n_cuts++] = cuts[2] + 70000;
    cuts[n_cuts++] = cuts[3] + 3;
    cuts[n_cuts++] = len;
    const uint8_t *pieces[8];
    size_t lens[8];
    for (size_t i = 0; i < n_cuts; i++) {
        pieces[i] = msg + at;
        lens[i] = cuts[i] - at;
        at = cuts[i];
    }
    const char *to[] = {"bob@example.org"};

    CHECK_RESULT(smtpx_client_session_body(c->s, msg, 1), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(smtpx_client_session_body_end(c->s), SMTPX_RESULT_NOT_READY);
    forget_received();
    c->pieces = pieces;
    c->piece_lens = lens;
    c->n_pieces = n_cuts;
    c->next_piece = 0;
    CHECK_RESULT(smtpx_client_session_send_stream(c->s, "a@example.org", to, 1, now_ms()), SMTPX_RESULT_OK);
    CHECK_RESULT(drive(c), SMTPX_RESULT_OK);
    CHECK(c->next_piece == n_cuts);
    smtpx_send_result *result = NULL;
    CHECK_RESULT(smtpx_client_session_take_send_result(c->s, &result), SMTPX_RESULT_OK);
    CHECK(result != NULL && smtpx_send_result_success(result));
    smtpx_send_result_free(result);
    pthread_mutex_lock(&received.lock);
    CHECK(!received.overflow && received.len == len && memcmp(received.data, msg, len) == 0);
    pthread_mutex_unlock(&received.lock);

    /* No pieces at all: an empty message is still a message. */
    c->n_pieces = 0;
    c->next_piece = 0;
    CHECK_RESULT(smtpx_client_session_send_stream(c->s, "a@example.org", to, 1, now_ms()), SMTPX_RESULT_OK);
    CHECK_RESULT(drive(c), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_session_take_send_result(c->s, &result), SMTPX_RESULT_OK);
    CHECK(result != NULL && smtpx_send_result_success(result));
    smtpx_send_result_free(result);
    c->pieces = NULL;
    c->piece_lens = NULL;
}

static void test_operations(void) {
    smtpx_server_config *config = smtpx_server_config_new();
    CHECK_RESULT(smtpx_server_config_set_tls_files(config, cert_file, key_file), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_add_user(config, "alice", "s3cret"), SMTPX_RESULT_OK);
    smtpx_handler h;
    memset(&h, 0, sizeof h);
    h.mail = on_mail;
    h.data_chunk = on_chunk;
    smtpx_server *server = NULL;
    CHECK_RESULT(smtpx_server_start(config, &h, &server), SMTPX_RESULT_OK);
    if (server == NULL) {
        smtpx_server_config_free(config);
        return;
    }
    smtpx_client_options *o = smtpx_client_options_new();
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_STARTTLS_REQUIRED), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_ca_file(o, cert_file), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_command_timeout_ms(o, 10000), SMTPX_RESULT_OK);
    struct conn c = {connect_to(smtpx_server_local_port(server)), NULL, NULL, 0, NULL, NULL, 0, 0, false};
    CHECK_RESULT(smtpx_client_session_new(o, "localhost", now_ms(), &c.s), SMTPX_RESULT_OK);
    if (c.s == NULL) {
        goto out;
    }
    smtpx_client_action a;
    CHECK_RESULT(smtpx_client_session_next_action(c.s, now_ms(), &a), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(smtpx_client_session_written(c.s), SMTPX_RESULT_NOT_READY);

    /* Connect: greeting, EHLO, STARTTLS (through smtpx_tls_session), EHLO again. */
    CHECK_RESULT(smtpx_client_session_connect(c.s), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_session_connect(c.s), SMTPX_RESULT_NOT_READY); /* one at a time */
    CHECK_RESULT(drive(&c), SMTPX_RESULT_OK);
    CHECK(smtpx_client_session_is_tls(c.s));
    CHECK(c.tls != NULL && strcmp(smtpx_tls_session_protocol_version(c.tls), "TLSv1.3") == 0);

    /* Login (AUTH is offered after TLS). */
    CHECK_RESULT(smtpx_client_session_login(c.s, "alice", "s3cret", now_ms()), SMTPX_RESULT_OK);
    CHECK_RESULT(drive(&c), SMTPX_RESULT_OK);
    smtpx_reply *reply = NULL;
    CHECK_RESULT(smtpx_client_session_take_reply(c.s, &reply), SMTPX_RESULT_OK);
    CHECK(smtpx_reply_code(reply) == 235);
    smtpx_reply_free(reply);
    reply = NULL;

    /* One message. */
    const char *to[] = {"bob@example.org", "carol@example.org"};
    const char msg[] = "Subject: hi\r\n\r\nhello\r\n.leading dot\r\n";
    CHECK_RESULT(smtpx_client_session_send(c.s, "a@example.org", to, 2, (const uint8_t *)msg,
                                           strlen(msg), now_ms()),
                 SMTPX_RESULT_OK);
    CHECK_RESULT(drive(&c), SMTPX_RESULT_OK);
    smtpx_send_result *result = NULL;
    CHECK_RESULT(smtpx_client_session_take_reply(c.s, &reply), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(smtpx_client_session_take_send_result(c.s, &result), SMTPX_RESULT_OK);
    CHECK(result != NULL && smtpx_send_result_success(result) &&
          smtpx_send_result_recipient_count(result) == 2);
    smtpx_send_result_free(result);
    result = NULL;
    CHECK_RESULT(smtpx_client_session_take_send_result(c.s, &result), SMTPX_RESULT_NOT_READY);

    /* The same, streamed. */
    test_streamed_send(&c);

    /* A refused sender. */
    CHECK_RESULT(smtpx_client_session_send(c.s, "spam@example.org", to, 1, (const uint8_t *)msg,
                                           strlen(msg), now_ms()),
                 SMTPX_RESULT_OK);
    CHECK_RESULT(drive(&c), SMTPX_RESULT_SENDER_REFUSED);
    CHECK(smtpx_reply_code(smtpx_client_session_last_error_reply(c.s)) == 550);
    CHECK_RESULT(smtpx_client_session_take_send_result(c.s, &result), SMTPX_RESULT_NOT_READY);

    /* A batch of three. */
    smtpx_message batch[3];
    for (int i = 0; i < 3; i++) {
        batch[i].from = "a@example.org";
        batch[i].to = to;
        batch[i].n_to = 1;
        batch[i].data = (const uint8_t *)msg;
        batch[i].len = strlen(msg);
    }
    batch[1].from = "spam@example.org";
    CHECK_RESULT(smtpx_client_session_send_batch(c.s, batch, 3), SMTPX_RESULT_OK);
    CHECK_RESULT(drive(&c), SMTPX_RESULT_OK);
    smtpx_send_result *results[3] = {NULL, NULL, NULL};
    smtpx_result codes[3];
    size_t done = 0;
    CHECK_RESULT(smtpx_client_session_take_batch(c.s, results, codes, 2, &done), SMTPX_RESULT_BUFFER_TOO_SMALL);
    CHECK_RESULT(smtpx_client_session_take_batch(c.s, results, codes, 3, &done), SMTPX_RESULT_OK);
    CHECK(done == 3);
    CHECK(codes[0] == SMTPX_RESULT_OK && results[0] != NULL && smtpx_send_result_success(results[0]));
    CHECK(codes[1] == SMTPX_RESULT_SENDER_REFUSED && results[1] == NULL);
    CHECK(codes[2] == SMTPX_RESULT_OK && results[2] != NULL);
    for (int i = 0; i < 3; i++) {
        smtpx_send_result_free(results[i]);
    }

    /* Commands. */
    CHECK_RESULT(smtpx_client_session_command(c.s, SMTPX_CLIENT_COMMAND_NOOP, NULL, now_ms()), SMTPX_RESULT_OK);
    CHECK_RESULT(drive(&c), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_session_take_reply(c.s, &reply), SMTPX_RESULT_OK);
    CHECK(smtpx_reply_code(reply) == 250);
    smtpx_reply_free(reply);
    CHECK_RESULT(smtpx_client_session_command(c.s, SMTPX_CLIENT_COMMAND_VRFY, NULL, now_ms()),
                 SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_session_command(c.s, SMTPX_CLIENT_COMMAND_VRFY, "bob\r\nDATA", now_ms()),
                 SMTPX_RESULT_INJECTION);
    CHECK_RESULT(smtpx_client_session_command(c.s, 99, NULL, now_ms()), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_client_session_command(c.s, SMTPX_CLIENT_COMMAND_VRFY, "bob", now_ms()), SMTPX_RESULT_OK);
    CHECK_RESULT(drive(&c), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_session_take_reply(c.s, &reply), SMTPX_RESULT_OK);
    CHECK(smtpx_reply_code(reply) == 252);
    smtpx_reply_free(reply);

    /* QUIT: the reply, then CLOSE, then DONE; afterwards the session is over. */
    CHECK_RESULT(smtpx_client_session_quit(c.s, now_ms()), SMTPX_RESULT_OK);
    CHECK_RESULT(drive(&c), SMTPX_RESULT_OK);
    CHECK(c.closes == 1);
    CHECK(smtpx_client_session_is_closed(c.s));
    CHECK_RESULT(smtpx_client_session_command(c.s, SMTPX_CLIENT_COMMAND_NOOP, NULL, now_ms()), SMTPX_RESULT_OK);
    CHECK_RESULT(drive(&c), SMTPX_RESULT_NOT_READY);

    /* A streamed send the program abandons: the connection is dropped, not the message
     * ended (the server would deliver it truncated). */
    {
        struct conn d = {connect_to(smtpx_server_local_port(server)), NULL, NULL, 0, NULL, NULL, 0, 0, true};
        CHECK_RESULT(smtpx_client_session_new(o, "localhost", now_ms(), &d.s), SMTPX_RESULT_OK);
        if (d.s != NULL) {
            CHECK_RESULT(smtpx_client_session_connect(d.s), SMTPX_RESULT_OK);
            CHECK_RESULT(drive(&d), SMTPX_RESULT_OK);
            CHECK_RESULT(smtpx_client_session_send_stream(d.s, "a@example.org", to, 1, now_ms()),
                         SMTPX_RESULT_OK);
            CHECK_RESULT(drive(&d), SMTPX_RESULT_MESSAGE_SOURCE);
            CHECK(d.closes == 1);
            CHECK(smtpx_client_session_is_closed(d.s));
        }
        close(d.fd);
        smtpx_tls_session_free(d.tls);
        smtpx_client_session_free(d.s);
    }
out:
    close(c.fd);
    smtpx_tls_session_free(c.tls);
    smtpx_client_session_free(c.s);
    smtpx_client_options_free(o);
    smtpx_server_free(server);
    smtpx_server_config_free(config);
}

/* A server that accepts and says nothing: the greeting's deadline ends the connect. */
static void test_deadline(void) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(listener, 1) != 0 || getsockname(listener, (struct sockaddr *)&addr, &alen) != 0) {
        perror("listener");
        exit(2);
    }
    smtpx_client_options *o = smtpx_client_options_new();
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_NONE), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_command_timeout_ms(o, 5000), SMTPX_RESULT_OK);
    int fd = connect_to(ntohs(addr.sin_port));
    smtpx_client_session *s = NULL;
    const uint64_t t0 = 1000000; /* any clock will do */
    CHECK_RESULT(smtpx_client_session_new(o, "localhost", t0, &s), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_session_connect(s), SMTPX_RESULT_OK);
    smtpx_client_action a;
    CHECK_RESULT(smtpx_client_session_next_action(s, t0, &a), SMTPX_RESULT_OK);
    CHECK(a.kind == SMTPX_CLIENT_ACTION_KIND_READ && a.deadline_ms == t0 + 5000);
    CHECK_RESULT(smtpx_client_session_tls_established(s, t0), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(smtpx_client_session_timeout(s, a.deadline_ms), SMTPX_RESULT_OK);
    int closes = 0;
    for (int i = 0; i < 10; i++) {
        CHECK_RESULT(smtpx_client_session_next_action(s, a.deadline_ms, &a), SMTPX_RESULT_OK);
        if (a.kind == SMTPX_CLIENT_ACTION_KIND_WRITE) { /* a best-effort QUIT */
            CHECK(a.goodbye);
            CHECK_RESULT(smtpx_client_session_written(s), SMTPX_RESULT_OK);
        } else if (a.kind == SMTPX_CLIENT_ACTION_KIND_CLOSE) {
            closes++;
        } else {
            break;
        }
    }
    CHECK(a.kind == SMTPX_CLIENT_ACTION_KIND_DONE && a.result == SMTPX_RESULT_TIMEOUT);
    CHECK(closes == 1);
    char buf[256];
    size_t n = 0;
    CHECK_RESULT(smtpx_client_session_last_error(s, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(n > 0);
    CHECK(smtpx_client_session_is_closed(s));
    smtpx_client_session_free(s);
    smtpx_client_options_free(o);
    close(fd);
    close(listener);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s CERT.pem KEY.pem\n", argv[0]);
        return 2;
    }
    cert_file = argv[1];
    key_file = argv[2];
    test_operations();
    test_deadline();
    if (failures != 0) {
        fprintf(stderr, "test_client_session: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_client_session: all checks passed\n");
    return 0;
}
