/*
 * The exact contracts every function keeps (the header's "Contracts" section): the
 * buffer contract of string getters (a NULL or short buffer gets the size needed), the
 * one last-error rule on every object that has one, SMTPX_RESULT_NOT_READY for calls in
 * the wrong state, and the numeric run-time version.
 *
 * Usage: test_contracts (no arguments; a server on a free 127.0.0.1 port).
 * Linked against libsmtpx.a; run under ASan+UBSan and under valgrind.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The last error of options, allocated with the two-call pattern (NULL first). */
static char *options_error(const smtpx_client_options *o) {
    size_t n = 12345;
    CHECK_RESULT(smtpx_client_options_last_error(o, NULL, 0, &n), SMTPX_RESULT_BUFFER_TOO_SMALL);
    CHECK(n >= 1 && n != 12345);
    char *text = malloc(n);
    if (text == NULL) {
        abort();
    }
    size_t len = 0;
    CHECK_RESULT(smtpx_client_options_last_error(o, text, n, &len), SMTPX_RESULT_OK);
    CHECK(len == n - 1 && strlen(text) == len);
    return text;
}

static void test_version_number(void) {
    CHECK(smtpx_version_number() == (uint32_t)SMTPX_VERSION_NUMBER);
    char expected[32];
    snprintf(expected, sizeof expected, "smtpx/%u.%u.%u", smtpx_version_number() >> 16,
             (smtpx_version_number() >> 8) & 0xff, smtpx_version_number() & 0xff);
    CHECK(strcmp(smtpx_version(), expected) == 0);
}

static void test_buffer_contract(void) {
    smtpx_client_options *o = smtpx_client_options_new();
    CHECK(o != NULL);
    /* A failing setter: the message is long enough to test short buffers. */
    CHECK_RESULT(smtpx_client_options_set_connect_timeout_ms(o, 0), SMTPX_RESULT_INVALID_ARGUMENT);
    char *full = options_error(o);
    size_t len = strlen(full);
    CHECK(len > 4);

    /* Too small by one (no room for the NUL): the size needed, the buffer untouched. */
    char *buf = malloc(len + 1);
    if (buf == NULL) {
        abort();
    }
    memset(buf, 'Z', len + 1);
    size_t n = 0;
    CHECK_RESULT(smtpx_client_options_last_error(o, buf, len, &n), SMTPX_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == len + 1);
    for (size_t i = 0; i < len + 1; i++) {
        CHECK(buf[i] == 'Z');
    }
    /* A NULL buffer with a non-zero length also asks for the size. */
    n = 0;
    CHECK_RESULT(smtpx_client_options_last_error(o, NULL, 4096, &n), SMTPX_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == len + 1);
    /* Exactly the size needed: the string and its NUL. */
    CHECK_RESULT(smtpx_client_options_last_error(o, buf, len + 1, &n), SMTPX_RESULT_OK);
    CHECK(n == len && strcmp(buf, full) == 0);
    /* out_n NULL: nothing to report the size to. */
    CHECK_RESULT(smtpx_client_options_last_error(o, buf, len + 1, NULL), SMTPX_RESULT_NULL_PARAMETER);

    /* The configuration's getter keeps the same contract. */
    smtpx_server_config *c = smtpx_server_config_new();
    CHECK(c != NULL);
    CHECK_RESULT(smtpx_server_config_set_max_size(c, 0), SMTPX_RESULT_INVALID_ARGUMENT);
    n = 0;
    CHECK_RESULT(smtpx_server_config_last_error(c, NULL, 0, &n), SMTPX_RESULT_BUFFER_TOO_SMALL);
    CHECK(n > 1);
    smtpx_server_config_free(c);
    free(buf);
    free(full);
    smtpx_client_options_free(o);
}

static void test_last_error_rule_on_options_and_config(void) {
    smtpx_client_options *o = smtpx_client_options_new();
    char buf[512];
    size_t n = 0;
    /* A bad argument to a setter is recorded... */
    CHECK_RESULT(smtpx_client_options_set_helo_name(o, "a\r\nRSET"), SMTPX_RESULT_INJECTION);
    CHECK_RESULT(smtpx_client_options_last_error(o, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(n > 0 && strstr(buf, "CR or LF") != NULL);
    /* ...reading it changes nothing... */
    CHECK_RESULT(smtpx_client_options_last_error(o, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(n > 0);
    /* ...and the next successful call clears it. */
    CHECK_RESULT(smtpx_client_options_set_helo_name(o, "client.example"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_last_error(o, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(n == 0 && buf[0] == '\0');
    /* A failed connect is recorded the same way (nothing listens on port 1). */
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_NONE), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_connect_timeout_ms(o, 2000), SMTPX_RESULT_OK);
    smtpx_client *client = NULL;
    CHECK_RESULT(smtpx_client_connect("127.0.0.1", 1, NULL, o, &client), SMTPX_RESULT_IO);
    CHECK(client == NULL); /* out-parameters are written only on success */
    CHECK_RESULT(smtpx_client_options_last_error(o, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(n > 0 && strstr(buf, "127.0.0.1") != NULL);
    CHECK_RESULT(smtpx_client_options_set_lmtp(o, false), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_last_error(o, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(n == 0);
    smtpx_client_options_free(o);

    smtpx_server_config *c = smtpx_server_config_new();
    CHECK_RESULT(smtpx_server_config_set_hostname(c, "mx\n.example"), SMTPX_RESULT_INJECTION);
    CHECK_RESULT(smtpx_server_config_last_error(c, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(n > 0);
    CHECK_RESULT(smtpx_server_config_set_hostname(c, "mx.example"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_last_error(c, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(n == 0);
    smtpx_server_config_free(c);
}

/* A client whose server stops under it: calls after the lost connection are NOT_READY,
 * and the client's last error follows the same rule as the others'. */
static void test_client_rule_and_not_ready(void) {
    smtpx_server_config *c = smtpx_server_config_new();
    smtpx_handler h;
    memset(&h, 0, sizeof h);
    smtpx_server *server = NULL;
    CHECK_RESULT(smtpx_server_start(c, &h, &server), SMTPX_RESULT_OK);
    if (server == NULL) {
        smtpx_server_config_free(c);
        return;
    }
    smtpx_client_options *o = smtpx_client_options_new();
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_NONE), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_command_timeout_ms(o, 10000), SMTPX_RESULT_OK);
    smtpx_client *client = NULL;
    CHECK_RESULT(smtpx_client_connect("127.0.0.1", smtpx_server_local_port(server), NULL, o, &client),
                 SMTPX_RESULT_OK);
    if (client == NULL) {
        smtpx_client_options_free(o);
        smtpx_server_free(server);
        smtpx_server_config_free(c);
        return;
    }
    char buf[512];
    size_t n = 0;
    smtpx_reply *reply = NULL;
    /* A bad argument is recorded on the client, and the reply pointer stays NULL. */
    CHECK_RESULT(smtpx_client_vrfy(client, "bob\r\nDATA", &reply), SMTPX_RESULT_INJECTION);
    CHECK(reply == NULL);
    CHECK_RESULT(smtpx_client_last_error(client, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(n > 0);
    /* A success clears it. */
    CHECK_RESULT(smtpx_client_noop(client, &reply), SMTPX_RESULT_OK);
    smtpx_reply_free(reply);
    reply = NULL;
    CHECK_RESULT(smtpx_client_last_error(client, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(n == 0);

    /* The server stops: the idle session is told 421 and closed. */
    size_t cut = 0;
    CHECK_RESULT(smtpx_server_stop(server, 0, &cut), SMTPX_RESULT_OK);
    smtpx_result r = smtpx_client_noop(client, &reply);
    CHECK(r == SMTPX_RESULT_SERVER_CLOSED || r == SMTPX_RESULT_CONNECTION_CLOSED ||
          r == SMTPX_RESULT_IO);
    CHECK(reply == NULL);
    /* Every further call: NOT_READY, with a last error saying why. */
    CHECK_RESULT(smtpx_client_noop(client, &reply), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_NOT_READY);
    CHECK_RESULT(smtpx_client_last_error(client, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(n > 0);
    smtpx_client_free(client);
    smtpx_client_options_free(o);
    smtpx_server_free(server);
    smtpx_server_config_free(c);
}

/* tls_established without a START_TLS to answer changes nothing. */
static void test_sans_io_wrong_state(void) {
    smtpx_server_config *c = smtpx_server_config_new();
    smtpx_server_session *s = NULL;
    CHECK_RESULT(smtpx_server_session_new(c, 0, &s), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_session_tls_established(s, 1), SMTPX_RESULT_NOT_READY);
    CHECK(!smtpx_server_session_is_closed(s));
    smtpx_server_session_free(s);

    smtpx_server_connection *conn = NULL;
    CHECK_RESULT(smtpx_server_connection_new(c, 0, false, &conn), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_connection_tls_established(conn, 1), SMTPX_RESULT_NOT_READY);
    CHECK(!smtpx_server_connection_is_tls(conn));
    smtpx_server_connection_free(conn);
    smtpx_server_config_free(c);
}

int main(void) {
    test_version_number();
    test_buffer_contract();
    test_last_error_rule_on_options_and_config();
    test_client_rule_and_not_ready();
    test_sans_io_wrong_state();
    if (failures != 0) {
        fprintf(stderr, "test_contracts: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_contracts: all checks passed\n");
    return 0;
}
