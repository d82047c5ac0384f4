/*
 * smtpx_tls_session, the sans-I/O TLS connection: a client and a server session talking
 * in memory (handshake with a client certificate, data both ways, close_notify, what each
 * side learns), failures with their codes, and a real STARTTLS over loopback where a C
 * loop drives smtpx_server_connection and does TLS with smtpx_tls_session (no OpenSSL)
 * while smtpx's blocking client sends a message through it.
 *
 * Usage: test_tls_session DIR (the test CA of the Makefile's c-cert: ca.pem,
 * server.pem/server-key.pem, client.pem/client-key.pem).
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
    static char buf[6][1024];
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", dir, name);
    return buf[slot];
}

/* Client options trusting the test CA and showing the test client certificate. */
static smtpx_client_options *client_options(bool trust_ca) {
    smtpx_client_options *o = smtpx_client_options_new();
    if (trust_ca) {
        CHECK_RESULT(smtpx_client_options_set_ca_file(o, path(0, "ca.pem")), SMTPX_RESULT_OK);
    }
    CHECK_RESULT(smtpx_client_options_set_client_cert_files(o, path(1, "client.pem"),
                                                            path(2, "client-key.pem")),
                 SMTPX_RESULT_OK);
    return o;
}

static smtpx_server_config *server_config(void) {
    smtpx_server_config *c = smtpx_server_config_new();
    CHECK_RESULT(smtpx_server_config_set_tls_files(c, path(0, "server.pem"), path(1, "server-key.pem")),
                 SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_client_ca_file(c, path(2, "ca.pem"), false), SMTPX_RESULT_OK);
    return c;
}

/* Moves one side's output into the other; the first failure, or OK. */
static smtpx_result transfer(smtpx_tls_session *from, smtpx_tls_session *to, bool *moved) {
    const uint8_t *p;
    size_t n;
    CHECK_RESULT(smtpx_tls_session_output(from, &p, &n), SMTPX_RESULT_OK);
    if (n == 0) {
        return SMTPX_RESULT_OK;
    }
    *moved = true;
    /* A copy: the output stays valid only until the next call on `from`. */
    uint8_t *copy = malloc(n);
    if (copy == NULL) {
        abort();
    }
    memcpy(copy, p, n);
    CHECK_RESULT(smtpx_tls_session_consume_output(from, n), SMTPX_RESULT_OK);
    smtpx_result r = smtpx_tls_session_receive(to, copy, n);
    free(copy);
    return r;
}

/* Pumps both ways until quiet (bounded); the first failure, or OK. */
static smtpx_result pump(smtpx_tls_session *a, smtpx_tls_session *b) {
    for (int round = 0; round < 32; round++) {
        bool moved = false;
        smtpx_result r = transfer(a, b, &moved);
        if (r != SMTPX_RESULT_OK) {
            return r;
        }
        r = transfer(b, a, &moved);
        if (r != SMTPX_RESULT_OK) {
            return r;
        }
        if (!moved) {
            return SMTPX_RESULT_OK;
        }
    }
    fprintf(stderr, "pump: no quiet point in 32 rounds\n");
    failures++;
    return SMTPX_RESULT_OK;
}

static void test_in_memory(void) {
    smtpx_client_options *o = client_options(true);
    smtpx_server_config *c = server_config();
    smtpx_tls_session *client = NULL, *server = NULL;
    CHECK_RESULT(smtpx_tls_session_new_client(o, "localhost", &client), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_tls_session_new_server(c, &server), SMTPX_RESULT_OK);
    if (client == NULL || server == NULL) {
        goto out;
    }
    CHECK(smtpx_tls_session_is_handshaking(client));
    CHECK(smtpx_tls_session_protocol_version(client) == NULL);
    CHECK_RESULT(smtpx_tls_session_write(client, (const uint8_t *)"x", 1), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(pump(client, server), SMTPX_RESULT_OK);
    CHECK(!smtpx_tls_session_is_handshaking(client) && !smtpx_tls_session_is_handshaking(server));

    /* What each side knows. */
    const char *version = smtpx_tls_session_protocol_version(server);
    CHECK(version != NULL && strcmp(version, "TLSv1.3") == 0);
    char name[64];
    size_t n = 0;
    CHECK_RESULT(smtpx_tls_session_server_name(server, name, sizeof name, &n), SMTPX_RESULT_OK);
    CHECK(strcmp(name, "localhost") == 0 && n == 9);
    CHECK_RESULT(smtpx_tls_session_server_name(client, name, sizeof name, &n), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(smtpx_tls_session_cipher_suite(server, NULL, 0, &n), SMTPX_RESULT_BUFFER_TOO_SMALL);
    char *suite = malloc(n);
    if (suite == NULL) {
        abort();
    }
    CHECK_RESULT(smtpx_tls_session_cipher_suite(server, suite, n, &n), SMTPX_RESULT_OK);
    CHECK(strncmp(suite, "TLS13_", 6) == 0);
    free(suite);
    const uint8_t *der = NULL;
    size_t der_len = 0;
    /* The server sees the client's certificate (a DER SEQUENCE), the client the server's. */
    CHECK_RESULT(smtpx_tls_session_peer_certificate(server, 0, &der, &der_len), SMTPX_RESULT_OK);
    CHECK(der != NULL && der_len > 100 && der[0] == 0x30);
    CHECK_RESULT(smtpx_tls_session_peer_certificate(server, 5, &der, &der_len), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(smtpx_tls_session_peer_certificate(client, 0, &der, &der_len), SMTPX_RESULT_OK);

    /* Data both ways. */
    CHECK_RESULT(smtpx_tls_session_write(client, (const uint8_t *)"EHLO c\r\n", 8), SMTPX_RESULT_OK);
    CHECK_RESULT(pump(client, server), SMTPX_RESULT_OK);
    const uint8_t *plain;
    size_t plain_len;
    CHECK_RESULT(smtpx_tls_session_plaintext(server, &plain, &plain_len), SMTPX_RESULT_OK);
    CHECK(plain_len == 8 && memcmp(plain, "EHLO c\r\n", 8) == 0);
    CHECK_RESULT(smtpx_tls_session_consume_plaintext(server, 5), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_tls_session_plaintext(server, &plain, &plain_len), SMTPX_RESULT_OK);
    CHECK(plain_len == 3 && memcmp(plain, "c\r\n", 3) == 0);
    CHECK_RESULT(smtpx_tls_session_write(server, (const uint8_t *)"250 ok\r\n", 8), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_tls_session_close(server), SMTPX_RESULT_OK);
    CHECK_RESULT(pump(client, server), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_tls_session_plaintext(client, &plain, &plain_len), SMTPX_RESULT_OK);
    CHECK(plain_len == 8 && memcmp(plain, "250 ok\r\n", 8) == 0);
    CHECK(smtpx_tls_session_peer_closed(client));
    CHECK(!smtpx_tls_session_peer_closed(server));
out:
    smtpx_tls_session_free(client);
    smtpx_tls_session_free(server);
    smtpx_client_options_free(o);
    smtpx_server_config_free(c);
}

static void test_failures(void) {
    /* The Mozilla roots do not know the test CA: the client's receive says so. */
    smtpx_client_options *o = client_options(false);
    smtpx_server_config *c = server_config();
    smtpx_tls_session *client = NULL, *server = NULL;
    CHECK_RESULT(smtpx_tls_session_new_client(o, "localhost", &client), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_tls_session_new_server(c, &server), SMTPX_RESULT_OK);
    if (client != NULL && server != NULL) {
        CHECK_RESULT(pump(client, server), SMTPX_RESULT_TLS_UNKNOWN_ISSUER);
        char buf[256];
        size_t n = 0;
        CHECK_RESULT(smtpx_tls_session_last_error(client, buf, sizeof buf, &n), SMTPX_RESULT_OK);
        CHECK(n > 0 && strstr(buf, "handshake") != NULL);
    }
    smtpx_tls_session_free(client);
    smtpx_tls_session_free(server);
    /* Bad arguments and a configuration without TLS files. */
    CHECK_RESULT(smtpx_tls_session_new_client(o, "not a name!", &client), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_tls_session_new_client(o, "localhost", NULL), SMTPX_RESULT_NULL_PARAMETER);
    smtpx_server_config *bare = smtpx_server_config_new();
    server = NULL;
    CHECK_RESULT(smtpx_tls_session_new_server(bare, &server), SMTPX_RESULT_NOT_READY);
    CHECK(server == NULL);
    smtpx_server_config_free(bare);
    CHECK(smtpx_tls_session_is_handshaking(NULL));
    CHECK_RESULT(smtpx_tls_session_receive(NULL, NULL, 0), SMTPX_RESULT_NULL_PARAMETER);
    smtpx_client_options_free(o);
    smtpx_server_config_free(c);
}

/* ---- STARTTLS over loopback: smtpx_server_connection + smtpx_tls_session ---- */

static uint64_t clock_ms = 0; /* a test clock: deadlines are far away */

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

/* Sends everything the TLS session has to send. */
static bool flush_tls(int fd, smtpx_tls_session *tls) {
    const uint8_t *p;
    size_t n;
    if (smtpx_tls_session_output(tls, &p, &n) != SMTPX_RESULT_OK) {
        return false;
    }
    bool ok = send_all(fd, p, n);
    smtpx_tls_session_consume_output(tls, n);
    return ok;
}

/* Serves one connection on `fd` until CLOSE; counts the messages. */
static int serve(int fd, smtpx_server_config *config, char *sni, size_t sni_cap, bool *client_cert) {
    smtpx_server_connection *conn = NULL;
    smtpx_tls_session *tls = NULL;
    int messages = 0;
    CHECK_RESULT(smtpx_server_connection_new(config, clock_ms, false, &conn), SMTPX_RESULT_OK);
    for (int steps = 0; conn != NULL && steps < 10000; steps++) {
        smtpx_action a;
        CHECK_RESULT(smtpx_server_connection_next_action(conn, clock_ms, &a), SMTPX_RESULT_OK);
        if (a.kind == SMTPX_ACTION_KIND_CLOSE) {
            break;
        } else if (a.kind == SMTPX_ACTION_KIND_CONNECT) {
            smtpx_server_connection_connected(conn, NULL);
        } else if (a.kind == SMTPX_ACTION_KIND_HOOK) {
            if (a.event.kind == SMTPX_EVENT_KIND_MESSAGE_END) {
                messages++;
            }
            smtpx_server_connection_answer(conn, NULL);
        } else if (a.kind == SMTPX_ACTION_KIND_WRITE) {
            bool ok;
            if (tls != NULL) {
                ok = smtpx_tls_session_write(tls, a.bytes, a.bytes_len) == SMTPX_RESULT_OK &&
                     flush_tls(fd, tls);
            } else {
                ok = send_all(fd, a.bytes, a.bytes_len);
            }
            if (ok) {
                smtpx_server_connection_written(conn, a.bytes_len);
            } else {
                smtpx_server_connection_lost(conn);
            }
        } else if (a.kind == SMTPX_ACTION_KIND_READ) {
            const uint8_t *plain;
            size_t plain_len = 0;
            if (tls != NULL) {
                smtpx_tls_session_plaintext(tls, &plain, &plain_len);
            }
            if (plain_len > 0) { /* decrypted earlier, not given yet */
                smtpx_server_connection_receive(conn, plain, plain_len, clock_ms);
                smtpx_tls_session_consume_plaintext(tls, plain_len);
                continue;
            }
            uint8_t buf[4096];
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0) {
                smtpx_server_connection_receive_eof(conn);
            } else if (tls == NULL) {
                smtpx_server_connection_receive(conn, buf, (size_t)n, clock_ms);
            } else if (smtpx_tls_session_receive(tls, buf, (size_t)n) != SMTPX_RESULT_OK ||
                       !flush_tls(fd, tls)) {
                smtpx_server_connection_lost(conn);
            }
        } else if (a.kind == SMTPX_ACTION_KIND_START_TLS) {
            /* The input rule: from here every byte on the socket is TLS. */
            bool ok = smtpx_tls_session_new_server(config, &tls) == SMTPX_RESULT_OK;
            for (int rounds = 0; ok && smtpx_tls_session_is_handshaking(tls) && rounds < 100; rounds++) {
                uint8_t buf[4096];
                ssize_t n = read(fd, buf, sizeof buf);
                ok = n > 0 && smtpx_tls_session_receive(tls, buf, (size_t)n) == SMTPX_RESULT_OK &&
                     flush_tls(fd, tls);
            }
            if (ok && !smtpx_tls_session_is_handshaking(tls)) {
                size_t n = 0;
                smtpx_tls_session_server_name(tls, sni, sni_cap, &n);
                const uint8_t *der;
                *client_cert = smtpx_tls_session_peer_certificate(tls, 0, &der, &n) == SMTPX_RESULT_OK;
                smtpx_server_connection_tls_established(conn, clock_ms);
            } else {
                smtpx_server_connection_lost(conn);
            }
        }
    }
    if (tls != NULL) {
        smtpx_tls_session_close(tls);
        flush_tls(fd, tls);
    }
    smtpx_tls_session_free(tls);
    smtpx_server_connection_free(conn);
    return messages;
}

struct client_run {
    uint16_t port;
    smtpx_result connect, send;
};

static void *client_thread(void *arg) {
    struct client_run *run = arg;
    smtpx_client_options *o = client_options(true);
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_STARTTLS_REQUIRED), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_command_timeout_ms(o, 10000), SMTPX_RESULT_OK);
    smtpx_client *client = NULL;
    run->connect = smtpx_client_connect("127.0.0.1", run->port, "localhost", o, &client);
    if (run->connect == SMTPX_RESULT_OK) {
        const char *to[] = {"bob@example.org"};
        const char msg[] = "Subject: over TLS\r\n\r\nhello\r\n";
        smtpx_send_result *r = NULL;
        run->send = smtpx_client_send(client, "a@example.org", to, 1, (const uint8_t *)msg,
                                      strlen(msg), &r);
        CHECK(r != NULL && smtpx_send_result_success(r));
        smtpx_send_result_free(r);
        CHECK(smtpx_client_is_tls(client));
        smtpx_client_quit(client);
    }
    smtpx_client_free(client);
    smtpx_client_options_free(o);
    return NULL;
}

static void test_starttls_over_loopback(void) {
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
    struct client_run run = {ntohs(addr.sin_port), SMTPX_RESULT_PANIC, SMTPX_RESULT_PANIC};
    pthread_t t;
    if (pthread_create(&t, NULL, client_thread, &run) != 0) {
        exit(2);
    }
    int fd = accept(listener, NULL, NULL);
    CHECK(fd >= 0);
    struct timeval tv = {10, 0}; /* every read bounded */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    smtpx_server_config *c = server_config();
    char sni[64] = "";
    bool client_cert = false;
    int messages = serve(fd, c, sni, sizeof sni, &client_cert);
    close(fd);
    pthread_join(t, NULL);
    close(listener);
    CHECK_RESULT(run.connect, SMTPX_RESULT_OK);
    CHECK_RESULT(run.send, SMTPX_RESULT_OK);
    CHECK(messages == 1);
    CHECK(strcmp(sni, "localhost") == 0);
    CHECK(client_cert);
    smtpx_server_config_free(c);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR (the test CA's folder)\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    test_in_memory();
    test_failures();
    test_starttls_over_loopback();
    if (failures != 0) {
        fprintf(stderr, "test_tls_session: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_tls_session: all checks passed\n");
    return 0;
}
