/*
 * TLS settings from C against a real smtpx server over loopback: trust from a CA held
 * in memory or in a file, the system store, a client certificate (mutual TLS), the
 * oldest protocol version, SNI; and the distinct result codes of failed handshakes
 * (unknown issuer, name mismatch, expired certificate, other handshake failures).
 *
 * Usage: test_tls DIR, where DIR holds the test CA made by the Makefile (c-cert):
 * ca.pem, server.pem/server-key.pem (localhost), client.pem/client-key.pem,
 * expired.pem/expired-key.pem (localhost, expired).
 * Linked against libsmtpx.a; run under ASan+UBSan and under valgrind.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *dir;

/* DIR/NAME in a static buffer per slot (a few paths live at once). */
static const char *path(int slot, const char *name) {
    static char buf[6][1024];
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", dir, name);
    return buf[slot];
}

/* A whole file in memory (NUL-terminated for convenience); *len its size. */
static char *slurp(const char *file, size_t *len) {
    FILE *f = fopen(file, "rb");
    if (f == NULL) {
        perror(file);
        exit(2);
    }
    char *data = malloc(65536);
    if (data == NULL) {
        abort();
    }
    *len = fread(data, 1, 65535, f);
    data[*len] = '\0';
    fclose(f);
    return data;
}

/* A server with STARTTLS: its certificate CERT/KEY; with CLIENT_CA, clients must show a
 * certificate from that CA (or may, when !required). */
static smtpx_server *start_server(const char *cert, const char *key, const char *client_ca,
                                  bool required, smtpx_tls_version min_version) {
    smtpx_server_config *c = smtpx_server_config_new();
    CHECK_RESULT(smtpx_server_config_set_tls_files(c, cert, key), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_client_ca_file(c, client_ca, required), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_min_tls_version(c, min_version), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_timeout_secs(c, 10), SMTPX_RESULT_OK);
    smtpx_handler h;
    memset(&h, 0, sizeof h);
    smtpx_server *s = NULL;
    smtpx_result r = smtpx_server_start(c, &h, &s);
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

/* Options that require STARTTLS and trust the test CA (from memory). */
static smtpx_client_options *ca_options(void) {
    smtpx_client_options *o = smtpx_client_options_new();
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_STARTTLS_REQUIRED), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_command_timeout_ms(o, 10000), SMTPX_RESULT_OK);
    size_t len;
    char *ca = slurp(path(0, "ca.pem"), &len);
    CHECK_RESULT(smtpx_client_options_set_ca_pem(o, (const uint8_t *)ca, len), SMTPX_RESULT_OK);
    free(ca);
    return o;
}

/* Connects to NAME on the server's port; gives the result, quits and frees a client. */
static smtpx_result try_connect(smtpx_server *s, const char *name, smtpx_client_options *o) {
    smtpx_client *client = NULL;
    smtpx_result r = smtpx_client_connect("127.0.0.1", smtpx_server_local_port(s), name, o, &client);
    if (r == SMTPX_RESULT_OK) {
        CHECK(client != NULL && smtpx_client_is_tls(client));
        smtpx_reply *reply = NULL;
        /* Over TLS 1.3 a refused client certificate shows after the handshake: the
         * first exchange is where it fails. */
        r = smtpx_client_noop(client, &reply);
        smtpx_reply_free(reply);
        if (r == SMTPX_RESULT_OK) {
            CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
        }
        smtpx_client_free(client);
    } else {
        CHECK(client == NULL);
        char buf[1024];
        size_t n = 0;
        CHECK_RESULT(smtpx_client_options_last_error(o, buf, sizeof buf, &n), SMTPX_RESULT_OK);
        CHECK(n > 0);
    }
    return r;
}

static void test_setters(void) {
    smtpx_client_options *o = smtpx_client_options_new();
    char buf[512];
    size_t n = 0;
    /* Bad PEM is refused by the setter, with the reason, and changes nothing. */
    const char junk[] = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
    CHECK_RESULT(smtpx_client_options_set_ca_pem(o, (const uint8_t *)junk, strlen(junk)),
                 SMTPX_RESULT_TLS);
    CHECK_RESULT(smtpx_client_options_last_error(o, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(n > 0);
    CHECK_RESULT(smtpx_client_options_set_ca_pem(o, NULL, 5), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_set_ca_pem(o, NULL, 0), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_client_cert_pem(o, (const uint8_t *)junk, strlen(junk),
                                                          (const uint8_t *)"x", 1),
                 SMTPX_RESULT_TLS);
    CHECK_RESULT(smtpx_client_options_set_client_cert_files(o, path(0, "client.pem"), path(1, "nope.pem")),
                 SMTPX_RESULT_TLS);
    CHECK_RESULT(smtpx_client_options_last_error(o, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(strstr(buf, "nope.pem") != NULL);
    CHECK_RESULT(smtpx_client_options_set_client_cert_files(o, NULL, NULL), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_client_cert_files(o, path(0, "client.pem"), NULL),
                 SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_set_min_tls_version(o, (smtpx_tls_version)11),
                 SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_client_options_set_min_tls_version(o, SMTPX_TLS_VERSION_TLS13), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_sni(NULL, true), SMTPX_RESULT_NULL_PARAMETER);
    /* The system store: usable when the machine has one (then the test CA is unknown to
     * it), else refused with a reason. */
    smtpx_result r = smtpx_client_options_set_system_roots(o);
    CHECK(r == SMTPX_RESULT_OK || r == SMTPX_RESULT_TLS);
    smtpx_client_options_free(o);

    smtpx_server_config *c = smtpx_server_config_new();
    CHECK_RESULT(smtpx_server_config_set_min_tls_version(c, (smtpx_tls_version)0),
                 SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_server_config_set_client_ca_file(c, NULL, false), SMTPX_RESULT_OK);
    /* A missing client CA file fails the start with SMTPX_RESULT_TLS. */
    CHECK_RESULT(smtpx_server_config_set_tls_files(c, path(0, "server.pem"), path(1, "server-key.pem")),
                 SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_client_ca_file(c, path(2, "no-ca.pem"), true), SMTPX_RESULT_OK);
    smtpx_handler h;
    memset(&h, 0, sizeof h);
    smtpx_server *s = NULL;
    CHECK_RESULT(smtpx_server_start(c, &h, &s), SMTPX_RESULT_TLS);
    CHECK(s == NULL);
    CHECK_RESULT(smtpx_server_config_last_error(c, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(strstr(buf, "no-ca.pem") != NULL);
    smtpx_server_config_free(c);
}

static void test_mutual_tls(void) {
    smtpx_server *s = start_server(path(0, "server.pem"), path(1, "server-key.pem"),
                                   path(2, "ca.pem"), true, SMTPX_TLS_VERSION_TLS12);
    smtpx_client_options *o = ca_options();
    /* Without a client certificate the server refuses the handshake. */
    CHECK_RESULT(try_connect(s, "localhost", o), SMTPX_RESULT_TLS_HANDSHAKE);
    /* With one (from files), the session works. */
    CHECK_RESULT(smtpx_client_options_set_client_cert_files(o, path(3, "client.pem"),
                                                            path(4, "client-key.pem")),
                 SMTPX_RESULT_OK);
    CHECK_RESULT(try_connect(s, "localhost", o), SMTPX_RESULT_OK);
    /* The same from memory, with TLS 1.3 only and no SNI. */
    size_t cert_len, key_len;
    char *cert = slurp(path(3, "client.pem"), &cert_len);
    char *key = slurp(path(4, "client-key.pem"), &key_len);
    CHECK_RESULT(smtpx_client_options_set_client_cert_pem(o, (const uint8_t *)cert, cert_len,
                                                          (const uint8_t *)key, key_len),
                 SMTPX_RESULT_OK);
    free(cert);
    free(key);
    CHECK_RESULT(smtpx_client_options_set_min_tls_version(o, SMTPX_TLS_VERSION_TLS13), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_sni(o, false), SMTPX_RESULT_OK);
    CHECK_RESULT(try_connect(s, "localhost", o), SMTPX_RESULT_OK);
    smtpx_client_options_free(o);
    smtpx_server_free(s);
}

static void test_failures_have_their_own_codes(void) {
    smtpx_server *s = start_server(path(0, "server.pem"), path(1, "server-key.pem"), NULL, false,
                                   SMTPX_TLS_VERSION_TLS13);
    smtpx_client_options *o = ca_options();
    CHECK_RESULT(try_connect(s, "localhost", o), SMTPX_RESULT_OK);
    /* The certificate is for localhost only. */
    CHECK_RESULT(try_connect(s, "mx.example.org", o), SMTPX_RESULT_TLS_NAME_MISMATCH);
    /* The same CA from a file. */
    CHECK_RESULT(smtpx_client_options_set_ca_file(o, path(2, "ca.pem")), SMTPX_RESULT_OK);
    CHECK_RESULT(try_connect(s, "localhost", o), SMTPX_RESULT_OK);
    /* The compiled-in Mozilla roots do not know the test CA. */
    CHECK_RESULT(smtpx_client_options_set_ca_file(o, NULL), SMTPX_RESULT_OK);
    CHECK_RESULT(try_connect(s, "localhost", o), SMTPX_RESULT_TLS_UNKNOWN_ISSUER);
    /* Nor does the system store (when there is one). */
    if (smtpx_client_options_set_system_roots(o) == SMTPX_RESULT_OK) {
        CHECK_RESULT(try_connect(s, "localhost", o), SMTPX_RESULT_TLS_UNKNOWN_ISSUER);
    }
    smtpx_client_options_free(o);
    smtpx_server_free(s);

    s = start_server(path(0, "expired.pem"), path(1, "expired-key.pem"), NULL, false,
                     SMTPX_TLS_VERSION_TLS12);
    o = ca_options();
    CHECK_RESULT(try_connect(s, "localhost", o), SMTPX_RESULT_TLS_EXPIRED);
    smtpx_client_options_free(o);
    smtpx_server_free(s);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR (the test CA's folder)\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    test_setters();
    test_mutual_tls();
    test_failures_have_their_own_codes();
    if (failures != 0) {
        fprintf(stderr, "test_tls: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_tls: all checks passed\n");
    return 0;
}
