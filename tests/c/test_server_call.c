/*
 * What a server callback may ask about its connection (smtpx_server_call_*), against a
 * real server over loopback: per-connection userdata set in connect, read in data_end
 * and freed exactly once after close, across concurrent connections; the TLS version,
 * cipher, SNI name and client certificate after STARTTLS, with and without a client
 * certificate; a PROXY v2 header's address and TLVs; NOT_READY outside a callback; and
 * the NOOP, RSET and QUIT callbacks (smtpx_server_config_set_handler_replies) changing
 * the replies, on the server and as events of a sans-I/O connection.
 *
 * Usage: test_server_call DIR, where DIR holds the test CA made by the Makefile (c-cert).
 * Linked against libsmtpx.a; run under ASan+UBSan and under valgrind.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"
#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static const char *dir;

static const char *path(int slot, const char *name) {
    static char buf[4][1024];
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", dir, name);
    return buf[slot];
}

/* ---- What the callbacks record ------------------------------------------------------ */

/* One connection's data, kept with smtpx_server_call_set_userdata. */
struct conn {
    int messages;        /* data_end calls */
    int closed;          /* the close callback ran */
    char peer[64];       /* smtpx_server_call_peer in connect */
    char version[32];    /* TLS details read in tls_started */
    char cipher[96];
    char sni[256];
    size_t cert_len;     /* the client certificate's DER length (0: none) */
    uint8_t cert_first;  /* its first byte (0x30, a DER SEQUENCE) */
    int same_in_data_end; /* data_end read the same details again */
    char tlv[32];        /* PROXY TLV 0x02 read in connect */
    size_t tlv_len;
    uint8_t proxy_version;
};

/* Every connection's record at its close, and the count of userdata releases. */
static struct {
    pthread_mutex_t lock;
    struct conn done[64];
    int n_done;
    int frees;
    int freed_before_close;
} rec = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0, 0, 0};

static void reset_records(void) {
    pthread_mutex_lock(&rec.lock);
    memset(rec.done, 0, sizeof rec.done);
    rec.n_done = 0;
    rec.frees = 0;
    rec.freed_before_close = 0;
    pthread_mutex_unlock(&rec.lock);
}

static void free_conn(void *p) {
    struct conn *c = p;
    pthread_mutex_lock(&rec.lock);
    rec.frees++;
    if (!c->closed)
        rec.freed_before_close++;
    pthread_mutex_unlock(&rec.lock);
    /* Outside any callback: the accessors refuse. */
    void *ud = NULL;
    CHECK_RESULT(smtpx_server_call_userdata(&ud), SMTPX_RESULT_NOT_READY);
    free(c);
}

static struct conn *current(void) {
    void *ud = NULL;
    CHECK_RESULT(smtpx_server_call_userdata(&ud), SMTPX_RESULT_OK);
    CHECK(ud != NULL);
    return ud;
}

static int on_connect(void *userdata, uint64_t id, const char *arg, smtpx_decision *out) {
    (void)userdata, (void)id, (void)out;
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        abort();
    void *ud = (void *)1;
    CHECK_RESULT(smtpx_server_call_userdata(&ud), SMTPX_RESULT_OK);
    CHECK(ud == NULL); /* nothing kept yet */
    CHECK_RESULT(smtpx_server_call_set_userdata(c, free_conn), SMTPX_RESULT_OK);
    size_t n = 0;
    /* A NULL buffer asks for the size, NUL included. */
    CHECK_RESULT(smtpx_server_call_peer(NULL, 0, &n), SMTPX_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == strlen(arg) + 1);
    CHECK_RESULT(smtpx_server_call_peer(c->peer, sizeof c->peer, &n), SMTPX_RESULT_OK);
    CHECK(strcmp(c->peer, arg) == 0);
    smtpx_proxy_info info;
    memset(&info, 0xff, sizeof info);
    CHECK_RESULT(smtpx_server_call_proxy(&info), SMTPX_RESULT_OK);
    c->proxy_version = info.version;
    CHECK_RESULT(smtpx_server_call_proxy_tlv(0x02, (uint8_t *)c->tlv, sizeof c->tlv - 1, &c->tlv_len),
                 SMTPX_RESULT_OK);
    /* Not encrypted yet (STARTTLS comes later): empty details. */
    char version[32];
    CHECK_RESULT(smtpx_server_call_tls_version(version, sizeof version, &n), SMTPX_RESULT_OK);
    CHECK(n == 0 && version[0] == '\0');
    return SMTPX_ACCEPT;
}

/* Reads the TLS details into `c`'s fields (or compares them, when `compare`). */
static void read_tls(struct conn *c, int compare) {
    char version[32], cipher[96], sni[256];
    size_t n = 0, cert_len = 0;
    CHECK_RESULT(smtpx_server_call_tls_version(version, sizeof version, &n), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_call_tls_cipher(cipher, sizeof cipher, &n), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_call_tls_server_name(sni, sizeof sni, &n), SMTPX_RESULT_OK);
    /* A NULL buffer asks for the certificate's size; 0 and OK when there is none. */
    smtpx_result r = smtpx_server_call_tls_peer_certificate(0, NULL, 0, &cert_len);
    CHECK(cert_len == 0 ? r == SMTPX_RESULT_OK : r == SMTPX_RESULT_BUFFER_TOO_SMALL);
    uint8_t first = 0;
    if (cert_len > 0) {
        uint8_t *der = malloc(cert_len);
        if (der == NULL)
            abort();
        uint8_t small[8];
        size_t m = 0;
        CHECK_RESULT(smtpx_server_call_tls_peer_certificate(0, small, sizeof small, &m),
                     SMTPX_RESULT_BUFFER_TOO_SMALL);
        CHECK(m == cert_len);
        CHECK_RESULT(smtpx_server_call_tls_peer_certificate(0, der, cert_len, &m), SMTPX_RESULT_OK);
        CHECK(m == cert_len);
        first = der[0];
        free(der);
        /* The chain has no second entry (the client sent only its own). */
        CHECK_RESULT(smtpx_server_call_tls_peer_certificate(1, NULL, 0, &m), SMTPX_RESULT_OK);
        CHECK(m == 0);
    }
    if (compare) {
        c->same_in_data_end = strcmp(version, c->version) == 0 && strcmp(cipher, c->cipher) == 0 &&
                              strcmp(sni, c->sni) == 0 && cert_len == c->cert_len;
    } else {
        snprintf(c->version, sizeof c->version, "%s", version);
        snprintf(c->cipher, sizeof c->cipher, "%s", cipher);
        snprintf(c->sni, sizeof c->sni, "%s", sni);
        c->cert_len = cert_len;
        c->cert_first = first;
    }
}

static void on_tls_started(void *userdata, uint64_t id) {
    (void)userdata, (void)id;
    read_tls(current(), 0);
}

static int on_data_end(void *userdata, uint64_t id, const char *arg, smtpx_decision *out) {
    (void)userdata, (void)id, (void)arg, (void)out;
    struct conn *c = current();
    c->messages++;
    read_tls(c, 1);
    return SMTPX_ACCEPT;
}

static void on_close(void *userdata, uint64_t id) {
    (void)userdata, (void)id;
    struct conn *c = current();
    c->closed = 1;
    pthread_mutex_lock(&rec.lock);
    if (rec.n_done < 64)
        rec.done[rec.n_done++] = *c;
    pthread_mutex_unlock(&rec.lock);
}

static smtpx_handler recording_handler(void) {
    smtpx_handler h;
    memset(&h, 0, sizeof h);
    h.connect = on_connect;
    h.tls_started = on_tls_started;
    h.data_end = on_data_end;
    h.close = on_close;
    return h;
}

static smtpx_server *start(smtpx_server_config *c, smtpx_handler *h) {
    smtpx_server *s = NULL;
    smtpx_result r = smtpx_server_start(c, h, &s);
    if (r != SMTPX_RESULT_OK) {
        char buf[512];
        size_t n;
        smtpx_server_config_last_error(c, buf, sizeof buf, &n);
        fprintf(stderr, "cannot start the server: %s\n", buf);
        exit(1);
    }
    smtpx_server_config_free(c);
    return s;
}

/* Sends `count` messages on one connection to `port`, with options `o`. */
static void send_messages(uint16_t port, smtpx_client_options *o, int count) {
    smtpx_client *client = NULL;
    CHECK_RESULT(smtpx_client_connect("127.0.0.1", port, "localhost", o, &client), SMTPX_RESULT_OK);
    if (client == NULL)
        return;
    const char *to[] = {"b@example.net"};
    const char msg[] = "Subject: call\r\n\r\nhello\r\n";
    for (int i = 0; i < count; i++) {
        smtpx_send_result *res = NULL;
        CHECK_RESULT(smtpx_client_send(client, "a@example.org", to, 1, (const uint8_t *)msg,
                                       strlen(msg), &res),
                     SMTPX_RESULT_OK);
        CHECK(res != NULL && smtpx_send_result_success(res));
        smtpx_send_result_free(res);
    }
    CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
    smtpx_client_free(client);
}

/* ---- The tests ---------------------------------------------------------------------- */

static void test_outside_a_callback(void) {
    void *ud = (void *)1;
    char buf[64];
    uint8_t bytes[8];
    size_t n = 77;
    smtpx_proxy_info info;
    int marker = 0;
    CHECK_RESULT(smtpx_server_call_set_userdata(&marker, NULL), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(smtpx_server_call_userdata(&ud), SMTPX_RESULT_NOT_READY);
    CHECK(ud == (void *)1); /* untouched */
    CHECK_RESULT(smtpx_server_call_userdata(NULL), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_call_peer(buf, sizeof buf, &n), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(smtpx_server_call_proxy(&info), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(smtpx_server_call_proxy_tlv(2, bytes, sizeof bytes, &n), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(smtpx_server_call_tls_version(buf, sizeof buf, &n), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(smtpx_server_call_tls_cipher(buf, sizeof buf, &n), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(smtpx_server_call_tls_server_name(buf, sizeof buf, &n), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(smtpx_server_call_tls_peer_certificate(0, bytes, sizeof bytes, &n),
                 SMTPX_RESULT_NOT_READY);
    CHECK(n == 77); /* nothing written */
}

/* STARTTLS with and without a client certificate: the details in tls_started, the same
 * in data_end. */
static void test_tls_details(void) {
    reset_records();
    smtpx_server_config *c = smtpx_server_config_new();
    CHECK_RESULT(smtpx_server_config_set_tls_files(c, path(0, "server.pem"), path(1, "server-key.pem")),
                 SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_client_ca_file(c, path(2, "ca.pem"), false), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_timeout_secs(c, 10), SMTPX_RESULT_OK);
    smtpx_handler h = recording_handler();
    smtpx_server *s = start(c, &h);

    smtpx_client_options *o = smtpx_client_options_new();
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_STARTTLS_REQUIRED), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_ca_file(o, path(0, "ca.pem")), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_command_timeout_ms(o, 10000), SMTPX_RESULT_OK);
    send_messages(smtpx_server_local_port(s), o, 1);
    CHECK_RESULT(smtpx_client_options_set_client_cert_files(o, path(1, "client.pem"), path(2, "client-key.pem")),
                 SMTPX_RESULT_OK);
    send_messages(smtpx_server_local_port(s), o, 1);
    smtpx_client_options_free(o);
    CHECK_RESULT(smtpx_server_stop(s, 5000, NULL), SMTPX_RESULT_OK);
    smtpx_server_free(s);

    pthread_mutex_lock(&rec.lock);
    CHECK(rec.n_done == 2 && rec.frees == 2 && rec.freed_before_close == 0);
    for (int i = 0; i < rec.n_done && i < 2; i++) {
        struct conn *d = &rec.done[i];
        CHECK(strcmp(d->version, "TLSv1.3") == 0 || strcmp(d->version, "TLSv1.2") == 0);
        CHECK(strncmp(d->cipher, "TLS", 3) == 0);
        CHECK(strcmp(d->sni, "localhost") == 0);
        CHECK(strncmp(d->peer, "127.0.0.1:", 10) == 0);
        CHECK(d->messages == 1 && d->same_in_data_end);
        CHECK(d->proxy_version == 0 && d->tlv_len == 0);
    }
    /* Connections close in order here (one after the other). */
    CHECK(rec.done[0].cert_len == 0);
    CHECK(rec.done[1].cert_len > 100 && rec.done[1].cert_first == 0x30);
    pthread_mutex_unlock(&rec.lock);
}

/* Several connections at once: each sees its own userdata, freed once, after close. */
#define CLIENTS 6
struct client_job {
    uint16_t port;
    int messages;
};

static void *client_thread(void *p) {
    struct client_job *job = p;
    smtpx_client_options *o = smtpx_client_options_new();
    CHECK_RESULT(smtpx_client_options_set_command_timeout_ms(o, 10000), SMTPX_RESULT_OK);
    send_messages(job->port, o, job->messages);
    smtpx_client_options_free(o);
    return NULL;
}

static void test_concurrent_userdata(void) {
    reset_records();
    smtpx_server_config *c = smtpx_server_config_new();
    CHECK_RESULT(smtpx_server_config_set_timeout_secs(c, 10), SMTPX_RESULT_OK);
    smtpx_handler h = recording_handler();
    smtpx_server *s = start(c, &h);
    pthread_t threads[CLIENTS];
    struct client_job jobs[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        jobs[i].port = smtpx_server_local_port(s);
        jobs[i].messages = i + 1;
        CHECK(pthread_create(&threads[i], NULL, client_thread, &jobs[i]) == 0);
    }
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(threads[i], NULL);
    CHECK_RESULT(smtpx_server_stop(s, 5000, NULL), SMTPX_RESULT_OK);
    smtpx_server_free(s);

    pthread_mutex_lock(&rec.lock);
    CHECK(rec.n_done == CLIENTS);
    CHECK(rec.frees == CLIENTS);
    CHECK(rec.freed_before_close == 0);
    /* Each connection counted only its own messages: 1..CLIENTS, each once. */
    int seen[CLIENTS + 1] = {0};
    for (int i = 0; i < rec.n_done; i++) {
        int m = rec.done[i].messages;
        CHECK(m >= 1 && m <= CLIENTS);
        if (m >= 1 && m <= CLIENTS)
            seen[m]++;
        CHECK(rec.done[i].version[0] == '\0'); /* no TLS: empty details */
    }
    for (int m = 1; m <= CLIENTS; m++)
        CHECK(seen[m] == 1);
    pthread_mutex_unlock(&rec.lock);
}

/* ---- Raw sockets ---------------------------------------------------------------------- */

static int dial(uint16_t port) {
    struct sockaddr_in addr;
    struct timeval tv = {10, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Reads one reply; its last line (NUL-terminated) goes to `line`; returns its code. */
static int reply(int fd, char *line, size_t cap) {
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, line + len, 1);
        if (n <= 0)
            return -1;
        len++;
        if (len >= 2 && line[len - 2] == '\r' && line[len - 1] == '\n') {
            line[len] = '\0';
            if (len >= 4 && line[3] == ' ')
                return atoi(line);
            len = 0;
        }
    }
    return -1;
}

static void say(int fd, const void *bytes, size_t n) {
    CHECK(write(fd, bytes, n) == (ssize_t)n);
}

/* A PROXY v2 header with an AUTHORITY TLV reaches the connect callback. */
static void test_proxy_tlvs(void) {
    reset_records();
    smtpx_server_config *c = smtpx_server_config_new();
    CHECK_RESULT(smtpx_server_config_set_proxy_protocol(c, true, 2000), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_add_proxy_trusted(c, "127.0.0.0/8"), SMTPX_RESULT_OK);
    smtpx_handler h = recording_handler();
    smtpx_server *s = start(c, &h);
    /* v2, PROXY, TCP over IPv4: 203.0.113.9:51000 -> 192.0.2.1:25, AUTHORITY "mx.example". */
    static const uint8_t header[] = {
        '\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n', 0x21, 0x11, 0, 25,
        203, 0, 113, 9, 192, 0, 2, 1, 0xc7, 0x38, 0, 25,
        0x02, 0, 10, 'm', 'x', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e'};
    char line[512];
    int fd = dial(smtpx_server_local_port(s));
    say(fd, header, sizeof header);
    CHECK(reply(fd, line, sizeof line) == 220);
    say(fd, "QUIT\r\n", 6);
    CHECK(reply(fd, line, sizeof line) == 221);
    close(fd);
    CHECK_RESULT(smtpx_server_stop(s, 5000, NULL), SMTPX_RESULT_OK);
    smtpx_server_free(s);
    pthread_mutex_lock(&rec.lock);
    CHECK(rec.n_done == 1 && rec.frees == 1);
    CHECK(rec.done[0].proxy_version == 2);
    CHECK(strcmp(rec.done[0].peer, "203.0.113.9:51000") == 0);
    CHECK(rec.done[0].tlv_len == 10 && memcmp(rec.done[0].tlv, "mx.example", 10) == 0);
    pthread_mutex_unlock(&rec.lock);
}

/* NOOP, RSET and QUIT answered by callbacks (handler_replies on), or by default. */
static int on_noop(void *ud, uint64_t id, const char *arg, smtpx_decision *out) {
    (void)ud, (void)id;
    /* NOOP's argument, "" when the client gave none (RFC 5321 4.1.1.9). */
    CHECK(arg != NULL);
    out->code = 250;
    snprintf(out->text, sizeof out->text, "noop seen [%s]", arg ? arg : "(null)");
    return SMTPX_REPLY;
}

static int on_rset(void *ud, uint64_t id, const char *arg, smtpx_decision *out) {
    (void)ud, (void)id, (void)arg;
    out->code = 250;
    snprintf(out->text, sizeof out->text, "rset seen");
    return SMTPX_REPLY;
}

static int on_quit(void *ud, uint64_t id, const char *arg, smtpx_decision *out) {
    (void)ud, (void)id, (void)arg;
    out->code = 221;
    snprintf(out->text, sizeof out->text, "see you");
    return SMTPX_REPLY;
}

static void test_noop_rset_quit(bool handler_replies) {
    smtpx_server_config *c = smtpx_server_config_new();
    CHECK_RESULT(smtpx_server_config_set_handler_replies(c, handler_replies), SMTPX_RESULT_OK);
    smtpx_handler h;
    memset(&h, 0, sizeof h);
    h.noop = on_noop;
    h.rset = on_rset;
    h.quit = on_quit;
    smtpx_server *s = start(c, &h);
    char line[512];
    int fd = dial(smtpx_server_local_port(s));
    CHECK(reply(fd, line, sizeof line) == 220);
    say(fd, "EHLO c.test\r\n", 13);
    CHECK(reply(fd, line, sizeof line) == 250);
    say(fd, "NOOP\r\n", 6);
    CHECK(reply(fd, line, sizeof line) == 250);
    CHECK((strstr(line, "noop seen []") != NULL) == handler_replies);
    say(fd, "NOOP ping\r\n", 11);
    CHECK(reply(fd, line, sizeof line) == 250);
    CHECK((strstr(line, "noop seen [ping]") != NULL) == handler_replies);
    say(fd, "RSET\r\n", 6);
    CHECK(reply(fd, line, sizeof line) == 250);
    CHECK((strstr(line, "rset seen") != NULL) == handler_replies);
    say(fd, "QUIT\r\n", 6);
    CHECK(reply(fd, line, sizeof line) == 221);
    CHECK((strstr(line, "see you") != NULL) == handler_replies);
    close(fd);
    CHECK_RESULT(smtpx_server_stop(s, 5000, NULL), SMTPX_RESULT_OK);
    smtpx_server_free(s);
    CHECK_RESULT(smtpx_server_config_set_handler_replies(NULL, true), SMTPX_RESULT_NULL_PARAMETER);
}

/* The same three as hook events of a sans-I/O connection. */
static void test_sans_io_events(void) {
    smtpx_server_config *c = smtpx_server_config_new();
    CHECK_RESULT(smtpx_server_config_set_handler_replies(c, true), SMTPX_RESULT_OK);
    smtpx_server_connection *conn = NULL;
    CHECK_RESULT(smtpx_server_connection_new(c, 0, false, &conn), SMTPX_RESULT_OK);
    smtpx_server_config_free(c);
    if (conn == NULL)
        return;
    const char *input[] = {"EHLO c.test\r\n", "NOOP\r\n", "RSET\r\n", "QUIT\r\n"};
    size_t next = 0;
    smtpx_event_kind kinds[16];
    size_t n_kinds = 0;
    char wire[4096];
    size_t wire_len = 0;
    for (int step = 0; step < 1000; step++) {
        smtpx_action a;
        memset(&a, 0, sizeof a);
        CHECK_RESULT(smtpx_server_connection_next_action(conn, 0, &a), SMTPX_RESULT_OK);
        if (a.kind == SMTPX_ACTION_KIND_CLOSE)
            break;
        switch (a.kind) {
        case SMTPX_ACTION_KIND_CONNECT:
            CHECK_RESULT(smtpx_server_connection_connected(conn, NULL), SMTPX_RESULT_OK);
            break;
        case SMTPX_ACTION_KIND_WRITE:
            if (wire_len + a.bytes_len < sizeof wire) {
                memcpy(wire + wire_len, a.bytes, a.bytes_len);
                wire_len += a.bytes_len;
            }
            CHECK_RESULT(smtpx_server_connection_written(conn, a.bytes_len), SMTPX_RESULT_OK);
            break;
        case SMTPX_ACTION_KIND_READ:
            if (next < 4) {
                CHECK_RESULT(smtpx_server_connection_receive(conn, (const uint8_t *)input[next],
                                                             strlen(input[next]), 0),
                             SMTPX_RESULT_OK);
                next++;
            } else {
                CHECK_RESULT(smtpx_server_connection_receive_eof(conn), SMTPX_RESULT_OK);
            }
            break;
        case SMTPX_ACTION_KIND_HOOK: {
            if (n_kinds < 16)
                kinds[n_kinds++] = a.event.kind;
            if (a.event.kind == SMTPX_EVENT_KIND_NOOP) {
                smtpx_decision d;
                memset(&d, 0, sizeof d);
                d.code = 250;
                snprintf(d.text, sizeof d.text, "sans-io noop");
                CHECK_RESULT(smtpx_server_connection_answer(conn, &d), SMTPX_RESULT_OK);
            } else {
                CHECK_RESULT(smtpx_server_connection_answer(conn, NULL), SMTPX_RESULT_OK);
            }
            break;
        }
        default:
            CHECK(!"unexpected action");
            break;
        }
    }
    wire[wire_len] = '\0';
    /* HELLO, NOOP, RSET, QUIT, CLOSE, in that order. */
    CHECK(n_kinds == 5);
    if (n_kinds == 5) {
        CHECK(kinds[0] == SMTPX_EVENT_KIND_HELLO);
        CHECK(kinds[1] == SMTPX_EVENT_KIND_NOOP);
        CHECK(kinds[2] == SMTPX_EVENT_KIND_RSET);
        CHECK(kinds[3] == SMTPX_EVENT_KIND_QUIT);
        CHECK(kinds[4] == SMTPX_EVENT_KIND_CLOSE);
    }
    CHECK(strstr(wire, "250 sans-io noop\r\n") != NULL);
    CHECK(strstr(wire, "221 ") != NULL);
    smtpx_server_connection_free(conn);
}

/* And as events of the lower-level sans-I/O session. */
static void test_session_events(void) {
    smtpx_server_config *c = smtpx_server_config_new();
    CHECK_RESULT(smtpx_server_config_set_handler_replies(c, true), SMTPX_RESULT_OK);
    smtpx_server_session *s = NULL;
    CHECK_RESULT(smtpx_server_session_new(c, 0, &s), SMTPX_RESULT_OK);
    smtpx_server_config_free(c);
    if (s == NULL)
        return;
    /* One command at a time, each after the reply to the one before. */
    const char *input[] = {"EHLO c.test\r\n", "NOOP\r\n", "RSET\r\n", "QUIT\r\n"};
    size_t next = 0;
    smtpx_event_kind kinds[16];
    size_t n_kinds = 0;
    char text[4096];
    size_t text_len = 0;
    for (int step = 0; step < 100; step++) {
        const uint8_t *out = NULL;
        size_t out_len = 0;
        CHECK_RESULT(smtpx_server_session_output(s, &out, &out_len), SMTPX_RESULT_OK);
        if (out_len > 0 && text_len + out_len < sizeof text) {
            memcpy(text + text_len, out, out_len);
            text_len += out_len;
        }
        CHECK_RESULT(smtpx_server_session_consume_output(s, out_len), SMTPX_RESULT_OK);
        smtpx_server_event e;
        CHECK_RESULT(smtpx_server_session_poll_event(s, &e), SMTPX_RESULT_OK);
        if (e.kind == SMTPX_EVENT_KIND_NONE && next < 4) {
            size_t taken = 0;
            CHECK_RESULT(smtpx_server_session_receive(s, (const uint8_t *)input[next],
                                                      strlen(input[next]), 0, &taken),
                         SMTPX_RESULT_OK);
            CHECK(taken == strlen(input[next]));
            next++;
            continue;
        }
        if (e.kind == SMTPX_EVENT_KIND_NONE || e.kind == SMTPX_EVENT_KIND_CLOSE) {
            if (n_kinds < 16)
                kinds[n_kinds++] = e.kind;
            break;
        }
        if (n_kinds < 16)
            kinds[n_kinds++] = e.kind;
        if (e.needs_decision) {
            smtpx_decision d;
            memset(&d, 0, sizeof d);
            if (e.kind == SMTPX_EVENT_KIND_RSET) {
                d.code = 250;
                snprintf(d.text, sizeof d.text, "session rset");
            }
            CHECK_RESULT(smtpx_server_session_decide(s, e.kind == SMTPX_EVENT_KIND_RSET ? &d : NULL),
                         SMTPX_RESULT_OK);
        }
    }
    CHECK(n_kinds == 6);
    if (n_kinds == 6) {
        CHECK(kinds[0] == SMTPX_EVENT_KIND_CONNECT && kinds[1] == SMTPX_EVENT_KIND_HELLO);
        CHECK(kinds[2] == SMTPX_EVENT_KIND_NOOP && kinds[3] == SMTPX_EVENT_KIND_RSET);
        CHECK(kinds[4] == SMTPX_EVENT_KIND_QUIT && kinds[5] == SMTPX_EVENT_KIND_CLOSE);
    }
    const uint8_t *out = NULL;
    size_t out_len = 0;
    CHECK_RESULT(smtpx_server_session_output(s, &out, &out_len), SMTPX_RESULT_OK);
    if (text_len + out_len < sizeof text) {
        memcpy(text + text_len, out, out_len);
        text_len += out_len;
    }
    text[text_len] = '\0';
    CHECK(strstr(text, "250 session rset\r\n") != NULL);
    CHECK(strstr(text, "\r\n221 ") != NULL);
    smtpx_server_session_free(s);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR (the test CA's folder)\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    test_outside_a_callback();
    test_tls_details();
    test_concurrent_userdata();
    test_proxy_tlvs();
    test_noop_rset_quit(true);
    test_noop_rset_quit(false);
    test_sans_io_events();
    test_session_events();
    if (failures != 0) {
        fprintf(stderr, "test_server_call: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_server_call: all checks passed\n");
    return 0;
}
