/*
 * The client and server C API against each other over loopback: STARTTLS with a
 * certificate made at test time, AUTH, per-recipient results, streaming, the Maildir
 * server, and the error paths of every function (NULL, bad UTF-8, CR/LF injection).
 *
 * Usage: test_client_server CERT.pem KEY.pem
 * (the Makefile makes a self-signed certificate for "localhost" with openssl).
 * Linked against libsmtpx.a; run under ASan+UBSan and under valgrind.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *cert_file;
static const char *key_file;

/* A string that is not UTF-8, and strings with line breaks. */
static const char bad_utf8[] = {'a', (char)0xff, 'b', 0};
static const char *with_cr = "bob@example.org\rRCPT TO:<eve@example.org>";
static const char *with_lf = "bob@example.org\nRCPT TO:<eve@example.org>";

/* ---- the handler: counts what it sees; shared by the connection threads ---- */

struct counters {
    pthread_mutex_t lock;
    int connects, hellos, auths, mails, rcpts, data_starts, data_ends, resets, closes;
    size_t bytes;
    char last_from[256];
    int freed;
};

static void locked_add(struct counters *c, int *field) {
    pthread_mutex_lock(&c->lock);
    (*field)++;
    pthread_mutex_unlock(&c->lock);
}

static int on_connect(void *ud, uint64_t conn_id, const char *peer, smtpx_decision *out) {
    struct counters *c = ud;
    (void)out;
    CHECK(conn_id > 0);
    CHECK(peer != NULL && strncmp(peer, "127.0.0.1:", 10) == 0);
    locked_add(c, &c->connects);
    return SMTPX_ACCEPT;
}

static int on_hello(void *ud, uint64_t conn_id, const char *domain, smtpx_decision *out) {
    struct counters *c = ud;
    (void)conn_id;
    (void)out;
    CHECK(domain != NULL && strcmp(domain, "client.test") == 0);
    locked_add(c, &c->hellos);
    return SMTPX_ACCEPT;
}

static int on_auth(void *ud, uint64_t conn_id, const char *user, const char *pass,
                   smtpx_decision *out) {
    struct counters *c = ud;
    (void)conn_id;
    locked_add(c, &c->auths);
    if (strcmp(user, "alice") == 0 && strcmp(pass, "s3cret") == 0)
        return SMTPX_ACCEPT;
    out->code = 535;
    out->has_enhanced = true;
    out->enhanced.status_class = 5;
    out->enhanced.subject = 7;
    out->enhanced.detail = 8;
    strcpy(out->text, "no such luck");
    return SMTPX_REPLY;
}

static int on_mail(void *ud, uint64_t conn_id, const char *from, smtpx_decision *out) {
    struct counters *c = ud;
    (void)conn_id;
    (void)out;
    pthread_mutex_lock(&c->lock);
    c->mails++;
    snprintf(c->last_from, sizeof c->last_from, "%s", from);
    pthread_mutex_unlock(&c->lock);
    return SMTPX_ACCEPT;
}

static int on_rcpt(void *ud, uint64_t conn_id, const char *to, smtpx_decision *out) {
    struct counters *c = ud;
    (void)conn_id;
    locked_add(c, &c->rcpts);
    if (strncmp(to, "nobody@", 7) == 0) {
        out->code = 550;
        out->has_enhanced = true;
        out->enhanced.status_class = 5;
        out->enhanced.subject = 1;
        out->enhanced.detail = 1;
        strcpy(out->text, "no such user\r\n250 injected");
        return SMTPX_REPLY;
    }
    return SMTPX_ACCEPT;
}

static int on_data_start(void *ud, uint64_t conn_id, const char *arg, smtpx_decision *out) {
    struct counters *c = ud;
    (void)conn_id;
    (void)out;
    CHECK(arg == NULL);
    locked_add(c, &c->data_starts);
    return SMTPX_ACCEPT;
}

static int on_data_chunk(void *ud, uint64_t conn_id, const uint8_t *chunk, size_t len,
                         smtpx_decision *out) {
    struct counters *c = ud;
    (void)conn_id;
    (void)out;
    CHECK(chunk != NULL || len == 0);
    pthread_mutex_lock(&c->lock);
    c->bytes += len;
    pthread_mutex_unlock(&c->lock);
    return SMTPX_ACCEPT;
}

static int on_data_end(void *ud, uint64_t conn_id, const char *arg, smtpx_decision *out) {
    struct counters *c = ud;
    (void)conn_id;
    (void)arg;
    locked_add(c, &c->data_ends);
    out->code = 250;
    strcpy(out->text, "Ok: queued as C0FFEE");
    return SMTPX_REPLY;
}

static void on_reset(void *ud, uint64_t conn_id) {
    struct counters *c = ud;
    (void)conn_id;
    locked_add(c, &c->resets);
}

static void on_close(void *ud, uint64_t conn_id) {
    struct counters *c = ud;
    (void)conn_id;
    locked_add(c, &c->closes);
}

static void on_free(void *ud) {
    struct counters *c = ud;
    c->freed++;
}

/* ---- helpers ---- */

static const char message[] = "From: a@example.com\r\nSubject: hi\r\n\r\nHello.\n.dot line\r\n";

struct stream_state {
    const char *data;
    size_t len, pos;
    int fail_after; /* fail once pos reaches this (or -1) */
};

static int read_message(void *ud, uint8_t *buf, size_t len, size_t *out_n) {
    struct stream_state *s = ud;
    size_t n = s->len - s->pos;
    if (s->fail_after >= 0 && s->pos >= (size_t)s->fail_after)
        return EIO;
    if (n > len)
        n = len;
    if (n > 7)
        n = 7; /* small pieces, to exercise the chunking */
    memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    *out_n = n;
    return 0;
}

static smtpx_client_options *tls_options(void) {
    smtpx_client_options *o = smtpx_client_options_new();
    CHECK(o != NULL);
    CHECK_RESULT(smtpx_client_options_set_helo_name(o, "client.test"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_STARTTLS_REQUIRED),
                 SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_ca_file(o, cert_file), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_connect_timeout_ms(o, 5000), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_command_timeout_ms(o, 10000), SMTPX_RESULT_OK);
    return o;
}

/* ---- the tests ---- */

static void test_options_errors(void) {
    smtpx_client_options *o = smtpx_client_options_new();
    char buf[64];
    size_t n = 12345;

    CHECK(o != NULL);
    smtpx_client_options_free(NULL);
    CHECK_RESULT(smtpx_client_options_set_helo_name(NULL, "x"), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_set_helo_name(o, NULL), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_set_helo_name(o, bad_utf8), SMTPX_RESULT_INVALID_UTF8);
    CHECK_RESULT(smtpx_client_options_set_helo_name(o, "a\r\nRSET"), SMTPX_RESULT_INJECTION);
    CHECK_RESULT(smtpx_client_options_set_tls_mode(NULL, SMTPX_TLS_MODE_NONE),
                 SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, (smtpx_tls_mode)77),
                 SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_IMPLICIT), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_STARTTLS_OPPORTUNISTIC),
                 SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_ca_file(NULL, "x"), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_set_ca_file(o, bad_utf8), SMTPX_RESULT_INVALID_UTF8);
    CHECK_RESULT(smtpx_client_options_set_ca_file(o, NULL), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_insecure(NULL, true), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_set_insecure(o, false), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_credentials(NULL, "u", "p"),
                 SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_set_credentials(o, "u", NULL), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_set_credentials(o, bad_utf8, "p"), SMTPX_RESULT_INVALID_UTF8);
    CHECK_RESULT(smtpx_client_options_set_credentials(o, "u", "p\n"), SMTPX_RESULT_INJECTION);
    CHECK_RESULT(smtpx_client_options_set_credentials(o, "u", "p"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_credentials(o, NULL, NULL), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_connect_timeout_ms(NULL, 1), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_set_connect_timeout_ms(o, 0), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_client_options_set_command_timeout_ms(NULL, 1), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_set_command_timeout_ms(o, 0), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_client_options_set_lmtp(NULL, true), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_set_lmtp(o, false), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_pipelining(NULL, true), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_set_pipelining(o, true), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_chunking(NULL, true), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_set_chunking(o, true), SMTPX_RESULT_OK);

    /* No error yet: an empty message. */
    CHECK_RESULT(smtpx_client_options_last_error(o, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(n == 0 && buf[0] == '\0');
    CHECK_RESULT(smtpx_client_options_last_error(NULL, buf, sizeof buf, &n),
                 SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_last_error(o, NULL, sizeof buf, &n),
                 SMTPX_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 1); /* the size needed: "" and its NUL */
    CHECK_RESULT(smtpx_client_options_last_error(o, buf, sizeof buf, NULL),
                 SMTPX_RESULT_NULL_PARAMETER);

    /* connect's argument checks. */
    {
        smtpx_client *c = (smtpx_client *)&n; /* must stay untouched */
        smtpx_client *const sentinel = c;
        CHECK_RESULT(smtpx_client_connect(NULL, 25, NULL, o, &c), SMTPX_RESULT_NULL_PARAMETER);
        CHECK_RESULT(smtpx_client_connect("127.0.0.1", 25, NULL, NULL, &c),
                     SMTPX_RESULT_NULL_PARAMETER);
        CHECK_RESULT(smtpx_client_connect("127.0.0.1", 25, NULL, o, NULL),
                     SMTPX_RESULT_NULL_PARAMETER);
        CHECK_RESULT(smtpx_client_connect(bad_utf8, 25, NULL, o, &c), SMTPX_RESULT_INVALID_UTF8);
        CHECK_RESULT(smtpx_client_connect("a\nb", 25, NULL, o, &c), SMTPX_RESULT_INJECTION);
        CHECK_RESULT(smtpx_client_connect("127.0.0.1", 25, "x\ry", o, &c), SMTPX_RESULT_INJECTION);
        CHECK(c == sentinel);
    }
    smtpx_client_options_free(o);
}

static void test_nulls_everywhere(void) {
    smtpx_reply *reply = NULL;
    smtpx_send_result *result = NULL;
    const char *to[] = {"bob@example.org"};
    char buf[8];
    size_t n;
    smtpx_enhanced_code e;

    smtpx_client_free(NULL);
    smtpx_reply_free(NULL);
    smtpx_send_result_free(NULL);
    CHECK_RESULT(smtpx_client_quit(NULL), SMTPX_RESULT_NULL_PARAMETER);
    CHECK(!smtpx_client_is_tls(NULL));
    CHECK_RESULT(smtpx_client_last_error(NULL, buf, sizeof buf, &n), SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_client_last_error_reply(NULL) == NULL);
    CHECK_RESULT(smtpx_client_send(NULL, "a@b.c", to, 1, (const uint8_t *)"x", 1, &result),
                 SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_send_stream(NULL, "a@b.c", to, 1, read_message, NULL, &result),
                 SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_login(NULL, "u", "p", &reply), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_noop(NULL, &reply), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_rset(NULL, &reply), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_vrfy(NULL, "x", &reply), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_expn(NULL, "x", &reply), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_help(NULL, NULL, &reply), SMTPX_RESULT_NULL_PARAMETER);
    CHECK(reply == NULL && result == NULL);

    CHECK(smtpx_reply_code(NULL) == 0);
    CHECK(!smtpx_reply_enhanced(NULL, &e));
    CHECK(smtpx_reply_text(NULL) == NULL);

    CHECK(!smtpx_send_result_success(NULL));
    CHECK(smtpx_send_result_recipient_count(NULL) == 0);
    CHECK(smtpx_send_result_recipient_address(NULL, 0) == NULL);
    CHECK(!smtpx_send_result_recipient_accepted(NULL, 0));
    CHECK(smtpx_send_result_recipient_reply(NULL, 0) == NULL);
    CHECK(smtpx_send_result_recipient_delivery(NULL, 0) == NULL);
    CHECK(smtpx_send_result_mail_reply(NULL) == NULL);
    CHECK(smtpx_send_result_final_reply(NULL) == NULL);
    CHECK(smtpx_send_result_queue_id(NULL) == NULL);

    smtpx_server_config_free(NULL);
    smtpx_server_free(NULL);
    CHECK(smtpx_server_local_port(NULL) == 0);
    CHECK(smtpx_server_tls_port(NULL) == 0);
    CHECK_RESULT(smtpx_server_stop(NULL, 0, NULL), SMTPX_RESULT_NULL_PARAMETER);
}

static void test_server_config_errors(void) {
    smtpx_server_config *c = smtpx_server_config_new();
    smtpx_server *s = NULL;
    smtpx_handler h;
    struct counters counters;
    char buf[256];
    size_t n = 0;

    memset(&h, 0, sizeof h);
    memset(&counters, 0, sizeof counters);
    CHECK(c != NULL);
    CHECK_RESULT(smtpx_server_config_set_hostname(NULL, "x"), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_hostname(c, NULL), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_hostname(c, bad_utf8), SMTPX_RESULT_INVALID_UTF8);
    CHECK_RESULT(smtpx_server_config_set_hostname(c, "mx\r\n250 x"), SMTPX_RESULT_INJECTION);
    CHECK_RESULT(smtpx_server_config_set_hostname(c, "two words"), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_server_config_set_hostname(c, "mx.test"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_listen(NULL, "x"), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_listen(c, bad_utf8), SMTPX_RESULT_INVALID_UTF8);
    CHECK_RESULT(smtpx_server_config_set_tls_files(NULL, "a", "b"), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_tls_files(c, "a", NULL), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_tls_files(c, NULL, NULL), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_tls_listen(NULL, NULL), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_tls_listen(c, "a\nb"), SMTPX_RESULT_INJECTION);
    CHECK_RESULT(smtpx_server_config_set_tls_listen(c, NULL), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_require_tls(NULL, true), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_require_tls(c, false), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_add_user(NULL, "u", "p"), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_add_user(c, "u", NULL), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_add_user(c, "u\r", "p"), SMTPX_RESULT_INJECTION);
    CHECK_RESULT(smtpx_server_config_set_allow_insecure_auth(NULL, true),
                 SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_allow_insecure_auth(c, false), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_max_size(NULL, 1), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_max_size(c, 0), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_server_config_set_max_size(c, 1 << 20), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_max_recipients(NULL, 1), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_max_recipients(c, 0), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_server_config_set_max_recipients(c, 10), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_timeout_secs(NULL, 1), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_timeout_secs(c, 0), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_server_config_set_timeout_secs(c, 30), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_max_connections(NULL, 1), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_max_connections(c, 0), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_server_config_set_max_connections(c, 8), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_listen_backlog(NULL, 1), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_listen_backlog(c, 0), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_server_config_set_listen_backlog(c, 0x80000000u),
                 SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_server_config_set_listen_backlog(c, 2048), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_lmtp(NULL, true), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_lmtp(c, false), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_bare_lf(NULL, SMTPX_BARE_LF_POLICY_REJECT),
                 SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_bare_lf(c, (smtpx_bare_lf_policy)9),
                 SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_server_config_set_bare_lf(c, SMTPX_BARE_LF_POLICY_NORMALIZE),
                 SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_last_error(NULL, buf, sizeof buf, &n),
                 SMTPX_RESULT_NULL_PARAMETER);

    /* Starting: argument checks, then failures with their messages. */
    CHECK_RESULT(smtpx_server_start_maildir(NULL, "x", &s), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_start_maildir(c, NULL, &s), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_start_maildir(c, "x", NULL), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_start_maildir(c, bad_utf8, &s), SMTPX_RESULT_INVALID_UTF8);
    CHECK_RESULT(smtpx_server_start(NULL, &h, &s), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_start(c, NULL, &s), SMTPX_RESULT_NULL_PARAMETER);

    /* A failed start still releases the userdata, exactly once. */
    h.userdata = &counters;
    h.userdata_free = on_free;
    CHECK_RESULT(smtpx_server_config_set_listen(c, "not an address"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_start(c, &h, &s), SMTPX_RESULT_IO);
    CHECK(counters.freed == 1);
    CHECK_RESULT(smtpx_server_config_last_error(c, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(n > 0 && strstr(buf, "not an address") != NULL);
    CHECK_RESULT(smtpx_server_config_last_error(c, buf, 2, &n), SMTPX_RESULT_BUFFER_TOO_SMALL);

    CHECK_RESULT(smtpx_server_config_set_listen(c, "127.0.0.1:0"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_tls_files(c, "/nonexistent/cert.pem", "/nonexistent/key.pem"),
                 SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_start(c, &h, &s), SMTPX_RESULT_TLS);
    CHECK(counters.freed == 2);
    CHECK_RESULT(smtpx_server_config_set_tls_files(c, NULL, NULL), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_require_tls(c, true), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_start(c, &h, &s), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK(counters.freed == 3);
    CHECK_RESULT(smtpx_server_start_maildir(c, "/proc/no/such/dir", &s), SMTPX_RESULT_IO);
    CHECK(s == NULL);
    smtpx_server_config_free(c);
}

static void check_reply(const smtpx_reply *r, uint16_t code, const char *text_part) {
    CHECK(r != NULL);
    if (r == NULL)
        return;
    CHECK(smtpx_reply_code(r) == code);
    CHECK(smtpx_reply_text(r) != NULL);
    if (text_part != NULL && smtpx_reply_text(r) != NULL &&
        strstr(smtpx_reply_text(r), text_part) == NULL) {
        fprintf(stderr, "reply text %s lacks %s\n", smtpx_reply_text(r), text_part);
        failures++;
    }
}

static void test_round_trip_starttls(void) {
    struct counters counters;
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_handler h;
    smtpx_server *server = NULL;
    smtpx_client_options *o = tls_options();
    smtpx_client *client = NULL;
    smtpx_send_result *result = NULL;
    smtpx_reply *reply = NULL;
    smtpx_enhanced_code e;
    const char *to[] = {"bob@example.org", "nobody@example.org"};
    char buf[512];
    size_t n = 0, cut = 99;
    uint16_t port;

    memset(&counters, 0, sizeof counters);
    pthread_mutex_init(&counters.lock, NULL);
    memset(&h, 0, sizeof h);
    h.userdata = &counters;
    h.userdata_free = on_free;
    h.connect = on_connect;
    h.hello = on_hello;
    h.auth = on_auth;
    h.mail = on_mail;
    h.rcpt = on_rcpt;
    h.data_start = on_data_start;
    h.data_chunk = on_data_chunk;
    h.data_end = on_data_end;
    h.reset = on_reset;
    h.close = on_close;

    CHECK_RESULT(smtpx_server_config_set_hostname(config, "mx.test"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_tls_files(config, cert_file, key_file), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_require_tls(config, true), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_start(config, &h, &server), SMTPX_RESULT_OK);
    smtpx_server_config_free(config); /* the server keeps what it needs */
    if (server == NULL) {
        smtpx_client_options_free(o);
        return;
    }
    port = smtpx_server_local_port(server);
    CHECK(port != 0);
    CHECK(smtpx_server_tls_port(server) == 0);

    CHECK_RESULT(smtpx_client_connect("127.0.0.1", port, "localhost", o, &client),
                 SMTPX_RESULT_OK);
    if (client != NULL) {
        CHECK(smtpx_client_is_tls(client));

        /* Login: a refusal first (the reply is kept), then success. */
        CHECK_RESULT(smtpx_client_login(client, "alice", "wrong", &reply), SMTPX_RESULT_AUTH_FAILED);
        CHECK(reply == NULL);
        check_reply(smtpx_client_last_error_reply(client), 535, "no such luck");
        CHECK(smtpx_reply_enhanced(smtpx_client_last_error_reply(client), &e));
        CHECK(e.status_class == 5 && e.subject == 7 && e.detail == 8);
        CHECK_RESULT(smtpx_client_last_error(client, buf, sizeof buf, &n), SMTPX_RESULT_OK);
        CHECK(n > 0 && n == strlen(buf));
        CHECK_RESULT(smtpx_client_login(client, "alice", "s3cret", &reply), SMTPX_RESULT_OK);
        check_reply(reply, 235, NULL);
        smtpx_reply_free(reply);
        reply = NULL;
        CHECK_RESULT(smtpx_client_login(client, "a\r\nQUIT", "x", &reply), SMTPX_RESULT_INJECTION);
        CHECK_RESULT(smtpx_client_login(client, "alice", bad_utf8, &reply), SMTPX_RESULT_INVALID_UTF8);
        CHECK_RESULT(smtpx_client_login(client, "alice", "x", NULL), SMTPX_RESULT_NULL_PARAMETER);

        /* A message to two recipients, one refused. */
        CHECK_RESULT(smtpx_client_send(client, "alice@example.com", to, 2,
                                       (const uint8_t *)message, strlen(message), &result),
                     SMTPX_RESULT_OK);
        CHECK(result != NULL);
        CHECK(smtpx_send_result_success(result));
        CHECK(smtpx_send_result_recipient_count(result) == 2);
        CHECK(strcmp(smtpx_send_result_recipient_address(result, 0), "bob@example.org") == 0);
        CHECK(strcmp(smtpx_send_result_recipient_address(result, 1), "nobody@example.org") == 0);
        CHECK(smtpx_send_result_recipient_address(result, 2) == NULL);
        CHECK(smtpx_send_result_recipient_accepted(result, 0));
        CHECK(!smtpx_send_result_recipient_accepted(result, 1));
        CHECK(!smtpx_send_result_recipient_accepted(result, 2));
        check_reply(smtpx_send_result_recipient_reply(result, 0), 250, NULL);
        /* The handler's LF started a second line of the same 550 reply (sent as
         * "550-no such user" and "550 250 injected"): nothing was injected. */
        check_reply(smtpx_send_result_recipient_reply(result, 1), 550, "no such user\n250 injected");
        CHECK(smtpx_reply_enhanced(smtpx_send_result_recipient_reply(result, 1), &e));
        CHECK(e.status_class == 5 && e.subject == 1 && e.detail == 1);
        CHECK(smtpx_send_result_recipient_reply(result, 2) == NULL);
        CHECK(smtpx_send_result_recipient_delivery(result, 0) == NULL);
        check_reply(smtpx_send_result_mail_reply(result), 250, NULL);
        check_reply(smtpx_send_result_final_reply(result), 250, "C0FFEE");
        CHECK(smtpx_send_result_queue_id(result) != NULL &&
              strcmp(smtpx_send_result_queue_id(result), "C0FFEE") == 0);
        smtpx_send_result_free(result);
        result = NULL;

        /* The same, streamed from a callback, with the null sender. */
        {
            struct stream_state s;
            s.data = message;
            s.len = strlen(message);
            s.pos = 0;
            s.fail_after = -1;
            CHECK_RESULT(smtpx_client_send_stream(client, "", to, 1, read_message, &s, &result),
                         SMTPX_RESULT_OK);
            CHECK(smtpx_send_result_success(result));
            CHECK(s.pos == s.len);
            smtpx_send_result_free(result);
            result = NULL;
            pthread_mutex_lock(&counters.lock);
            CHECK(counters.last_from[0] == '\0');
            pthread_mutex_unlock(&counters.lock);
        }

        /* Argument errors send nothing and keep the connection. */
        CHECK_RESULT(smtpx_client_send(client, "a@b.c", to, 1, (const uint8_t *)"x", 1, NULL),
                     SMTPX_RESULT_NULL_PARAMETER);
        CHECK_RESULT(smtpx_client_send(client, NULL, to, 1, (const uint8_t *)"x", 1, &result),
                     SMTPX_RESULT_NULL_PARAMETER);
        CHECK_RESULT(smtpx_client_send(client, "a@b.c", NULL, 1, (const uint8_t *)"x", 1, &result),
                     SMTPX_RESULT_NULL_PARAMETER);
        CHECK_RESULT(smtpx_client_send(client, "a@b.c", to, 1, NULL, 1, &result),
                     SMTPX_RESULT_NULL_PARAMETER);
        CHECK_RESULT(smtpx_client_send(client, "a@b.c", to, 0, (const uint8_t *)"x", 1, &result),
                     SMTPX_RESULT_INVALID_ARGUMENT);
        CHECK_RESULT(smtpx_client_send(client, bad_utf8, to, 1, (const uint8_t *)"x", 1, &result),
                     SMTPX_RESULT_INVALID_UTF8);
        {
            const char *injected[] = {"bob@example.org", NULL};
            injected[1] = with_cr;
            CHECK_RESULT(smtpx_client_send(client, "a@b.c", injected, 2, (const uint8_t *)"x", 1,
                                           &result),
                         SMTPX_RESULT_INJECTION);
            injected[1] = with_lf;
            CHECK_RESULT(smtpx_client_send_stream(client, "a@b.c", injected, 2, read_message,
                                                  NULL, &result),
                         SMTPX_RESULT_INJECTION);
            injected[1] = NULL;
            CHECK_RESULT(smtpx_client_send(client, "a@b.c", injected, 2, (const uint8_t *)"x", 1,
                                           &result),
                         SMTPX_RESULT_NULL_PARAMETER);
            CHECK_RESULT(smtpx_client_send(client, "not an address", to, 1,
                                           (const uint8_t *)"x", 1, &result),
                         SMTPX_RESULT_INVALID_ARGUMENT);
        }
        CHECK_RESULT(smtpx_client_send_stream(client, "a@b.c", to, 1, NULL, NULL, &result),
                     SMTPX_RESULT_NULL_PARAMETER);
        CHECK_RESULT(smtpx_client_send_stream(client, "a@b.c", to, 1, read_message, NULL, NULL),
                     SMTPX_RESULT_NULL_PARAMETER);
        CHECK(result == NULL);
        CHECK_RESULT(smtpx_client_last_error(client, buf, sizeof buf, &n), SMTPX_RESULT_OK);
        CHECK(n > 0);

        /* Commands with a reply. */
        CHECK_RESULT(smtpx_client_noop(client, &reply), SMTPX_RESULT_OK);
        check_reply(reply, 250, NULL);
        smtpx_reply_free(reply);
        CHECK_RESULT(smtpx_client_rset(client, &reply), SMTPX_RESULT_OK);
        check_reply(reply, 250, NULL);
        smtpx_reply_free(reply);
        CHECK_RESULT(smtpx_client_vrfy(client, "bob", &reply), SMTPX_RESULT_OK);
        CHECK(reply != NULL && smtpx_reply_code(reply) >= 200);
        smtpx_reply_free(reply);
        CHECK_RESULT(smtpx_client_expn(client, "staff", &reply), SMTPX_RESULT_OK);
        CHECK(reply != NULL && smtpx_reply_code(reply) >= 200);
        smtpx_reply_free(reply);
        CHECK_RESULT(smtpx_client_help(client, NULL, &reply), SMTPX_RESULT_OK);
        CHECK(reply != NULL && smtpx_reply_code(reply) >= 200);
        smtpx_reply_free(reply);
        CHECK_RESULT(smtpx_client_help(client, "MAIL", &reply), SMTPX_RESULT_OK);
        smtpx_reply_free(reply);
        reply = NULL;
        CHECK_RESULT(smtpx_client_noop(client, NULL), SMTPX_RESULT_NULL_PARAMETER);
        CHECK_RESULT(smtpx_client_vrfy(client, NULL, &reply), SMTPX_RESULT_NULL_PARAMETER);
        CHECK_RESULT(smtpx_client_vrfy(client, with_lf, &reply), SMTPX_RESULT_INJECTION);
        CHECK_RESULT(smtpx_client_expn(client, bad_utf8, &reply), SMTPX_RESULT_INVALID_UTF8);
        CHECK_RESULT(smtpx_client_expn(client, with_cr, &reply), SMTPX_RESULT_INJECTION);
        CHECK_RESULT(smtpx_client_help(client, with_cr, &reply), SMTPX_RESULT_INJECTION);
        CHECK(reply == NULL);

        /* A failing message source closes the connection: nothing truncated is delivered. */
        {
            struct stream_state s;
            s.data = message;
            s.len = strlen(message);
            s.pos = 0;
            s.fail_after = 14;
            CHECK_RESULT(smtpx_client_send_stream(client, "a@b.c", to, 1, read_message, &s, &result),
                         SMTPX_RESULT_MESSAGE_SOURCE);
            CHECK(result == NULL);
            CHECK_RESULT(smtpx_client_noop(client, &reply), SMTPX_RESULT_NOT_READY);
        }

        /* The connection is over: QUIT has nothing to say goodbye on. */
        CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_NOT_READY);
        CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_NOT_READY);
        CHECK_RESULT(smtpx_client_noop(client, &reply), SMTPX_RESULT_NOT_READY);
        CHECK(!smtpx_client_is_tls(client));
        smtpx_client_free(client);
        client = NULL;
    }

    /* A fresh connection that quits at once. */
    CHECK_RESULT(smtpx_client_connect("127.0.0.1", port, NULL, o, &client),
                 SMTPX_RESULT_TLS_NAME_MISMATCH);
    CHECK(client == NULL); /* "127.0.0.1" is not the certificate's name */
    CHECK_RESULT(smtpx_client_options_last_error(o, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(n > 0);
    CHECK_RESULT(smtpx_client_options_set_credentials(o, "alice", "s3cret"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_connect("localhost", port, NULL, o, &client), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
    smtpx_client_free(client);
    client = NULL;
    CHECK_RESULT(smtpx_client_options_set_credentials(o, "alice", "bad"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_connect("localhost", port, NULL, o, &client),
                 SMTPX_RESULT_AUTH_FAILED);
    CHECK(client == NULL);

    /* Without TLS the server refuses mail (require TLS); STARTTLS-less client: refused. */
    CHECK_RESULT(smtpx_client_options_set_credentials(o, NULL, NULL), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_NONE), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_connect("127.0.0.1", port, NULL, o, &client), SMTPX_RESULT_OK);
    if (client != NULL) {
        CHECK(!smtpx_client_is_tls(client));
        /* A refused sender fails the call, the MAIL reply kept as the last error's. */
        CHECK_RESULT(smtpx_client_send(client, "a@b.c", to, 1, (const uint8_t *)"x\r\n", 3,
                                       &result),
                     SMTPX_RESULT_SENDER_REFUSED);
        CHECK(result == NULL);
        CHECK(smtpx_client_last_error_reply(client) != NULL &&
              smtpx_reply_code(smtpx_client_last_error_reply(client)) == 530);
        smtpx_client_free(client); /* without QUIT */
        client = NULL;
    }

    CHECK_RESULT(smtpx_server_stop(server, 5000, &cut), SMTPX_RESULT_OK);
    CHECK(cut == 0);
    CHECK_RESULT(smtpx_server_stop(server, 0, NULL), SMTPX_RESULT_NOT_READY);
    smtpx_server_free(server);

    /* Nothing listens there any more. */
    CHECK_RESULT(smtpx_client_connect("127.0.0.1", port, NULL, o, &client), SMTPX_RESULT_IO);
    CHECK(client == NULL);
    smtpx_client_options_free(o);

    CHECK(counters.freed == 1);
    CHECK(counters.connects == 5);
    CHECK(counters.connects == counters.closes);
    CHECK(counters.auths == 4);
    CHECK(counters.data_starts >= 2);
    CHECK(counters.data_ends == 2);
    CHECK(counters.rcpts >= 3);
    CHECK(counters.bytes > 0);
    pthread_mutex_destroy(&counters.lock);
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *entry;
    int count = 0;
    if (d == NULL)
        return -1;
    while ((entry = readdir(d)) != NULL)
        if (entry->d_name[0] != '.')
            count++;
    closedir(d);
    return count;
}

static void remove_maildir(const char *root) {
    static const char *subs[] = {"new", "cur", "tmp"};
    char path[512];
    size_t i;
    for (i = 0; i < 3; i++) {
        DIR *d;
        struct dirent *entry;
        snprintf(path, sizeof path, "%s/%s", root, subs[i]);
        d = opendir(path);
        if (d == NULL)
            continue;
        while ((entry = readdir(d)) != NULL) {
            char file[1024];
            if (entry->d_name[0] == '.')
                continue;
            snprintf(file, sizeof file, "%s/%s", path, entry->d_name);
            unlink(file);
        }
        closedir(d);
        rmdir(path);
    }
    rmdir(root);
}

static void test_maildir_server(void) {
    char root[400];
    char newdir[600];
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_server *server = NULL;
    smtpx_client_options *o = smtpx_client_options_new();
    smtpx_client *client = NULL;
    smtpx_send_result *result = NULL;
    const char *to[] = {"bob@example.org"};

    CHECK(test_temp_dir(root, sizeof root, "smtpx-c-test") != NULL);
    CHECK_RESULT(smtpx_server_start_maildir(config, root, &server), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_NONE), SMTPX_RESULT_OK);
    if (server != NULL) {
        CHECK_RESULT(smtpx_client_connect("127.0.0.1", smtpx_server_local_port(server), NULL, o,
                                          &client),
                     SMTPX_RESULT_OK);
        CHECK_RESULT(smtpx_client_send(client, "alice@example.com", to, 1,
                                       (const uint8_t *)message, strlen(message), &result),
                     SMTPX_RESULT_OK);
        CHECK(smtpx_send_result_success(result));
        smtpx_send_result_free(result);
        CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
        smtpx_client_free(client);
        smtpx_server_free(server); /* stops it */
    }
    snprintf(newdir, sizeof newdir, "%s/new", root);
    CHECK(count_files(newdir) == 1);
    remove_maildir(root);
    smtpx_client_options_free(o);
    smtpx_server_config_free(config);
}

/* A batch into the Maildir server, the client without CHUNKING so that each message is
 * chained behind the previous one's dot: outcomes in order, a message over SIZE refused
 * in place, a bad address refusing the whole batch before anything is sent. */
static void test_send_batch(void) {
    char root[400];
    char newdir[600];
    static char big[3000];
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_server *server = NULL;
    smtpx_client_options *o = smtpx_client_options_new();
    smtpx_client *client = NULL;
    const char *to[] = {"bob@example.org"};
    const char *two[] = {"bob@example.org", "carol@example.org"};
    const char *bad[] = {"bob@example.org", with_lf};
    smtpx_message batch[5];
    smtpx_send_result *results[5];
    smtpx_result codes[5];
    size_t done = 99;
    size_t i;

    memset(big, 'x', sizeof big);
    for (i = 0; i < 5; i++) {
        batch[i].from = "alice@example.com";
        batch[i].to = i == 3 ? two : to;
        batch[i].n_to = i == 3 ? 2 : 1;
        batch[i].data = (const uint8_t *)message;
        batch[i].len = strlen(message);
    }
    batch[1].data = (const uint8_t *)big;
    batch[1].len = sizeof big;

    CHECK(test_temp_dir(root, sizeof root, "smtpx-c-test") != NULL);
    CHECK_RESULT(smtpx_server_config_set_max_size(config, 2000), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_start_maildir(config, root, &server), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_NONE), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_chunking(o, false), SMTPX_RESULT_OK);
    if (server != NULL) {
        CHECK_RESULT(smtpx_client_connect("127.0.0.1", smtpx_server_local_port(server), NULL, o,
                                          &client),
                     SMTPX_RESULT_OK);
        CHECK_RESULT(smtpx_client_send_batch(client, batch, 5, results, codes, &done),
                     SMTPX_RESULT_OK);
        CHECK(done == 5);
        for (i = 0; i < 5; i++) {
            if (i == 1) {
                CHECK(codes[i] == SMTPX_RESULT_MESSAGE_TOO_LARGE && results[i] == NULL);
            } else {
                CHECK(codes[i] == SMTPX_RESULT_OK && smtpx_send_result_success(results[i]));
            }
            smtpx_send_result_free(results[i]);
        }

        /* A bad address anywhere: nothing is sent. */
        batch[4].to = bad;
        batch[4].n_to = 2;
        CHECK_RESULT(smtpx_client_send_batch(client, batch, 5, results, codes, &done),
                     SMTPX_RESULT_INJECTION);
        CHECK(done == 0);
        CHECK_RESULT(smtpx_client_send_batch(client, NULL, 5, results, codes, &done),
                     SMTPX_RESULT_NULL_PARAMETER);
        CHECK_RESULT(smtpx_client_send_batch(client, batch, 0, NULL, NULL, &done), SMTPX_RESULT_OK);
        CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
        smtpx_client_free(client);
        smtpx_server_free(server);
    }
    snprintf(newdir, sizeof newdir, "%s/new", root);
    CHECK(count_files(newdir) == 4);
    remove_maildir(root);
    smtpx_client_options_free(o);
    smtpx_server_config_free(config);
}

/* LMTP over implicit TLS to the Maildir server, with its limits. */
static void test_lmtp_implicit_tls_limits(void) {
    char root[400];
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_server *server = NULL;
    smtpx_client_options *o = tls_options();
    smtpx_client *client = NULL;
    smtpx_send_result *result = NULL;
    const char *two[] = {"bob@example.org", "carol@example.org"};
    const char *three[] = {"bob@example.org", "carol@example.org", "dave@example.org"};
    static char big[3000];
    smtpx_result r;

    CHECK(test_temp_dir(root, sizeof root, "smtpx-c-test") != NULL);
    CHECK_RESULT(smtpx_server_config_set_lmtp(config, true), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_tls_files(config, cert_file, key_file), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_tls_listen(config, "127.0.0.1:0"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_max_size(config, 1000), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_max_recipients(config, 2), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_max_connections(config, 4), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_timeout_secs(config, 30), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_bare_lf(config, SMTPX_BARE_LF_POLICY_REJECT),
                 SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_start_maildir(config, root, &server), SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    CHECK_RESULT(smtpx_client_options_set_lmtp(o, true), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_IMPLICIT), SMTPX_RESULT_OK);
    if (server != NULL) {
        CHECK(smtpx_server_tls_port(server) != 0);
        CHECK(smtpx_server_tls_port(server) != smtpx_server_local_port(server));
        CHECK_RESULT(smtpx_client_connect("localhost", smtpx_server_tls_port(server), NULL, o,
                                          &client),
                     SMTPX_RESULT_OK);
    }
    if (client != NULL) {
        CHECK(smtpx_client_is_tls(client));
        /* One delivery reply per recipient. */
        CHECK_RESULT(smtpx_client_send(client, "alice@example.com", two, 2,
                                       (const uint8_t *)message, strlen(message), &result),
                     SMTPX_RESULT_OK);
        CHECK(smtpx_send_result_success(result));
        check_reply(smtpx_send_result_recipient_delivery(result, 0), 250, NULL);
        check_reply(smtpx_send_result_recipient_delivery(result, 1), 250, NULL);
        CHECK(smtpx_send_result_recipient_delivery(result, 2) == NULL);
        smtpx_send_result_free(result);
        result = NULL;
        /* The third recipient is over the limit. */
        CHECK_RESULT(smtpx_client_send(client, "alice@example.com", three, 3,
                                       (const uint8_t *)message, strlen(message), &result),
                     SMTPX_RESULT_OK);
        CHECK(smtpx_send_result_success(result));
        CHECK(smtpx_send_result_recipient_accepted(result, 1));
        CHECK(!smtpx_send_result_recipient_accepted(result, 2));
        CHECK(smtpx_reply_code(smtpx_send_result_recipient_reply(result, 2)) / 100 == 4);
        smtpx_send_result_free(result);
        result = NULL;
        /* Over the size limit: refused before sending (SIZE), or at the end. */
        memset(big, 'x', sizeof big - 1);
        r = smtpx_client_send(client, "alice@example.com", two, 1, (const uint8_t *)big,
                              sizeof big - 1, &result);
        CHECK(r == SMTPX_RESULT_MESSAGE_TOO_LARGE || (r == SMTPX_RESULT_OK && !smtpx_send_result_success(result)));
        smtpx_send_result_free(result);
        CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
        smtpx_client_free(client);
    }
    smtpx_server_free(server);
    smtpx_client_options_free(o);
    remove_maildir(root);
}

/* LMTP with a C handler: one decision per recipient. */
static int on_lmtp_end(void *ud, uint64_t conn_id, size_t n, smtpx_decision *out) {
    size_t i;
    (void)ud;
    (void)conn_id;
    CHECK(n == 2);
    for (i = 0; i < n; i++) {
        out[i].code = i == 1 ? 552 : 250;
        snprintf(out[i].text, sizeof out[i].text, "recipient %u", (unsigned)i);
    }
    return SMTPX_REPLY;
}

static void test_lmtp_handler(void) {
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_handler h;
    smtpx_server *server = NULL;
    smtpx_client_options *o = smtpx_client_options_new();
    smtpx_client *client = NULL;
    smtpx_send_result *result = NULL;
    const char *two[] = {"bob@example.org", "carol@example.org"};

    memset(&h, 0, sizeof h);
    h.data_end_lmtp = on_lmtp_end;
    CHECK_RESULT(smtpx_server_config_set_lmtp(config, true), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_start(config, &h, &server), SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    CHECK_RESULT(smtpx_client_options_set_lmtp(o, true), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_NONE), SMTPX_RESULT_OK);
    if (server != NULL)
        CHECK_RESULT(smtpx_client_connect("127.0.0.1", smtpx_server_local_port(server), NULL, o,
                                          &client),
                     SMTPX_RESULT_OK);
    if (client != NULL) {
        CHECK_RESULT(smtpx_client_send(client, "alice@example.com", two, 2,
                                       (const uint8_t *)message, strlen(message), &result),
                     SMTPX_RESULT_OK);
        CHECK(smtpx_send_result_success(result));
        CHECK(smtpx_send_result_recipient_accepted(result, 0));
        CHECK(!smtpx_send_result_recipient_accepted(result, 1));
        check_reply(smtpx_send_result_recipient_delivery(result, 0), 250, "recipient 0");
        check_reply(smtpx_send_result_recipient_delivery(result, 1), 552, "recipient 1");
        smtpx_send_result_free(result);
        CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
        smtpx_client_free(client);
    }
    smtpx_server_free(server);
    smtpx_client_options_free(o);
}

/* ---- VRFY, EXPN, tls_started, data_aborted; client STARTTLS and capabilities ---- */

struct hook_state {
    pthread_mutex_t lock;
    int verifies, expands, tls_starts, aborts, data_ends, closes, freed;
    uint32_t last_abort; /* an smtpx_abort_reason */
};

static int hk_verify(void *ud, uint64_t conn_id, const char *arg, smtpx_decision *out) {
    struct hook_state *st = ud;
    (void)conn_id;
    pthread_mutex_lock(&st->lock);
    st->verifies++;
    pthread_mutex_unlock(&st->lock);
    CHECK(arg != NULL);
    if (arg != NULL && strcmp(arg, "alice") == 0) {
        out->code = 250;
        snprintf(out->text, sizeof out->text, "Alice <alice@example.org>");
        return SMTPX_REPLY;
    }
    if (arg != NULL && strcmp(arg, "eve") == 0) {
        out->code = 550;
        out->has_enhanced = true;
        out->enhanced.status_class = 5;
        out->enhanced.subject = 1;
        out->enhanced.detail = 1;
        snprintf(out->text, sizeof out->text, "no such user");
        return SMTPX_REPLY;
    }
    return SMTPX_ACCEPT; /* 252 */
}

static int hk_expand(void *ud, uint64_t conn_id, const char *arg, smtpx_decision *out) {
    struct hook_state *st = ud;
    (void)conn_id;
    pthread_mutex_lock(&st->lock);
    st->expands++;
    pthread_mutex_unlock(&st->lock);
    CHECK(arg != NULL && strcmp(arg, "staff") == 0);
    out->code = 550;
    snprintf(out->text, sizeof out->text, "list not expanded");
    return SMTPX_REPLY;
}

static void hk_tls_started(void *ud, uint64_t conn_id) {
    struct hook_state *st = ud;
    CHECK(conn_id > 0);
    pthread_mutex_lock(&st->lock);
    st->tls_starts++;
    pthread_mutex_unlock(&st->lock);
}

static void hk_data_aborted(void *ud, uint64_t conn_id, smtpx_abort_reason reason) {
    struct hook_state *st = ud;
    CHECK(conn_id > 0);
    CHECK(reason != SMTPX_ABORT_REASON_NONE);
    pthread_mutex_lock(&st->lock);
    st->aborts++;
    st->last_abort = (uint32_t)reason;
    pthread_mutex_unlock(&st->lock);
}

static int hk_data_end(void *ud, uint64_t conn_id, const char *arg, smtpx_decision *out) {
    struct hook_state *st = ud;
    (void)conn_id;
    (void)arg;
    (void)out;
    pthread_mutex_lock(&st->lock);
    st->data_ends++;
    pthread_mutex_unlock(&st->lock);
    return SMTPX_ACCEPT;
}

static int hk_auth(void *ud, uint64_t conn_id, const char *user, const char *pass,
                   smtpx_decision *out) {
    (void)ud;
    (void)conn_id;
    (void)user;
    (void)pass;
    (void)out;
    return SMTPX_ACCEPT;
}

static void hk_close(void *ud, uint64_t conn_id) {
    struct hook_state *st = ud;
    (void)conn_id;
    pthread_mutex_lock(&st->lock);
    st->closes++;
    pthread_mutex_unlock(&st->lock);
}

static void hk_free(void *ud) {
    struct hook_state *st = ud;
    st->freed++;
}

/* A plain (TLS_MODE_NONE) client with the test CA, for smtpx_client_starttls. */
static smtpx_client_options *plain_options(void) {
    smtpx_client_options *o = smtpx_client_options_new();
    CHECK(o != NULL);
    CHECK_RESULT(smtpx_client_options_set_helo_name(o, "client.test"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_NONE), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_ca_file(o, cert_file), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_connect_timeout_ms(o, 5000), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_command_timeout_ms(o, 10000), SMTPX_RESULT_OK);
    return o;
}

static void check_reply_code(smtpx_result r, smtpx_reply *reply, uint16_t code) {
    CHECK(r == SMTPX_RESULT_OK);
    CHECK(reply != NULL);
    if (reply != NULL) {
        if (smtpx_reply_code(reply) != code) {
            fprintf(stderr, "reply %u, expected %u\n", (unsigned)smtpx_reply_code(reply),
                    (unsigned)code);
            failures++;
        }
        smtpx_reply_free(reply);
    }
}

static void test_hooks_starttls_capabilities(void) {
    struct hook_state st;
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_handler h = {0}; /* zero-initialised: callbacks not set stay NULL */
    smtpx_server *server = NULL;
    smtpx_client_options *o = plain_options();
    smtpx_client *client = NULL;
    smtpx_reply *reply = NULL;
    smtpx_send_result *result = NULL;
    const char *to[] = {"bob@example.org"};
    char big[3000];
    struct stream_state s;
    char buf[64], ebuf[1024];
    size_t n = 0;
    uint64_t size = 1;
    bool has = false, yes = false;
    uint16_t port;
    smtpx_result r;

    memset(&st, 0, sizeof st);
    pthread_mutex_init(&st.lock, NULL);
    h.userdata = &st;
    h.userdata_free = hk_free;
    h.auth = hk_auth;
    h.data_end = hk_data_end;
    h.close = hk_close;
    h.verify = hk_verify;
    h.expand = hk_expand;
    h.tls_started = hk_tls_started;
    h.data_aborted = hk_data_aborted;

    CHECK_RESULT(smtpx_server_config_set_hostname(config, "mx.test"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_tls_files(config, cert_file, key_file), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_max_size(config, 1000), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_start(config, &h, &server), SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (server == NULL) {
        smtpx_client_options_free(o);
        return;
    }
    port = smtpx_server_local_port(server);

    CHECK_RESULT(smtpx_client_connect("127.0.0.1", port, "localhost", o, &client), SMTPX_RESULT_OK);
    if (client != NULL) {
        CHECK(!smtpx_client_is_tls(client));

        /* Capabilities in clear: STARTTLS and SIZE, no AUTH before TLS. */
        CHECK_RESULT(smtpx_client_has_extension(client, "STARTTLS", &yes), SMTPX_RESULT_OK);
        CHECK(yes);
        CHECK_RESULT(smtpx_client_has_extension(client, "starttls", &yes), SMTPX_RESULT_OK);
        CHECK(yes);
        CHECK_RESULT(smtpx_client_has_extension(client, "X-NOT-THERE", &yes), SMTPX_RESULT_OK);
        CHECK(!yes);
        CHECK_RESULT(smtpx_client_has_extension(client, "AUTH", &yes), SMTPX_RESULT_OK);
        CHECK(!yes);
        CHECK_RESULT(smtpx_client_size_limit(client, &size, &has), SMTPX_RESULT_OK);
        CHECK(has && size == 1000);
        memset(buf, 'x', sizeof buf);
        CHECK_RESULT(smtpx_client_auth_mechanisms(client, buf, sizeof buf, &n), SMTPX_RESULT_OK);
        CHECK(n == 0 && buf[0] == '\0');

        /* Argument errors. */
        CHECK_RESULT(smtpx_client_has_extension(client, NULL, &yes), SMTPX_RESULT_NULL_PARAMETER);
        CHECK_RESULT(smtpx_client_has_extension(client, "SIZE", NULL), SMTPX_RESULT_NULL_PARAMETER);
        CHECK_RESULT(smtpx_client_has_extension(client, bad_utf8, &yes), SMTPX_RESULT_INVALID_UTF8);
        CHECK_RESULT(smtpx_client_size_limit(client, NULL, &has), SMTPX_RESULT_NULL_PARAMETER);
        CHECK_RESULT(smtpx_client_size_limit(client, &size, NULL), SMTPX_RESULT_NULL_PARAMETER);
        n = 0;
        CHECK_RESULT(smtpx_client_auth_mechanisms(client, NULL, 10, &n), SMTPX_RESULT_BUFFER_TOO_SMALL);
        CHECK(n == 1); /* "" before TLS, and its NUL */
        CHECK_RESULT(smtpx_client_auth_mechanisms(client, buf, sizeof buf, NULL),
                     SMTPX_RESULT_NULL_PARAMETER);
        CHECK_RESULT(smtpx_client_starttls(client, with_lf), SMTPX_RESULT_INJECTION);
        CHECK_RESULT(smtpx_client_starttls(client, bad_utf8), SMTPX_RESULT_INVALID_UTF8);
        CHECK(!smtpx_client_is_tls(client));

        /* VRFY and EXPN go to the handler; VRFY left to the default gives 252. */
        r = smtpx_client_vrfy(client, "alice", &reply);
        check_reply_code(r, reply, 250);
        reply = NULL;
        r = smtpx_client_vrfy(client, "eve", &reply);
        check_reply_code(r, reply, 550);
        reply = NULL;
        r = smtpx_client_vrfy(client, "bob", &reply);
        check_reply_code(r, reply, 252);
        reply = NULL;
        r = smtpx_client_expn(client, "staff", &reply);
        check_reply_code(r, reply, 550);
        reply = NULL;

        /* STARTTLS with the connect-time name and the options' CA. */
        CHECK_RESULT(smtpx_client_starttls(client, NULL), SMTPX_RESULT_OK);
        CHECK(smtpx_client_is_tls(client));
        /* The capabilities are the new EHLO reply's. */
        CHECK_RESULT(smtpx_client_has_extension(client, "STARTTLS", &yes), SMTPX_RESULT_OK);
        CHECK(!yes);
        CHECK_RESULT(smtpx_client_has_extension(client, "auth", &yes), SMTPX_RESULT_OK);
        CHECK(yes);
        CHECK_RESULT(smtpx_client_auth_mechanisms(client, buf, sizeof buf, &n), SMTPX_RESULT_OK);
        CHECK(strcmp(buf, "PLAIN LOGIN") == 0 && n == strlen("PLAIN LOGIN"));
        CHECK_RESULT(smtpx_client_auth_mechanisms(client, buf, 11, &n), SMTPX_RESULT_BUFFER_TOO_SMALL);
        CHECK_RESULT(smtpx_client_auth_mechanisms(client, buf, 12, &n), SMTPX_RESULT_OK);
        /* A second STARTTLS sends nothing. */
        CHECK_RESULT(smtpx_client_starttls(client, NULL), SMTPX_RESULT_NOT_READY);
        CHECK(smtpx_client_is_tls(client));

        /* A streamed message (no SIZE sent) past the limit: data_aborted(TOO_LARGE). */
        memset(big, 'a', sizeof big);
        for (n = 78; n < sizeof big; n += 80) {
            big[n] = '\r';
            big[n + 1] = '\n';
        }
        big[sizeof big - 2] = '\r';
        big[sizeof big - 1] = '\n';
        s.data = big;
        s.len = sizeof big;
        s.pos = 0;
        s.fail_after = -1;
        r = smtpx_client_send_stream(client, "alice@example.com", to, 1, read_message, &s, &result);
        CHECK(r == SMTPX_RESULT_OK || r == SMTPX_RESULT_MESSAGE_TOO_LARGE);
        if (r == SMTPX_RESULT_OK) {
            CHECK(result != NULL && !smtpx_send_result_success(result));
            check_reply(smtpx_send_result_final_reply(result), 552, NULL);
        }
        smtpx_send_result_free(result);
        result = NULL;

        CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
        /* After QUIT: no capabilities, no STARTTLS. */
        CHECK_RESULT(smtpx_client_has_extension(client, "SIZE", &yes), SMTPX_RESULT_NOT_READY);
        CHECK_RESULT(smtpx_client_size_limit(client, &size, &has), SMTPX_RESULT_NOT_READY);
        CHECK_RESULT(smtpx_client_auth_mechanisms(client, buf, sizeof buf, &n), SMTPX_RESULT_NOT_READY);
        CHECK_RESULT(smtpx_client_starttls(client, NULL), SMTPX_RESULT_NOT_READY);
        smtpx_client_free(client);
        client = NULL;
    }

    /* A certificate that does not match the name: the handshake fails. */
    CHECK_RESULT(smtpx_client_connect("127.0.0.1", port, "localhost", o, &client), SMTPX_RESULT_OK);
    if (client != NULL) {
        CHECK_RESULT(smtpx_client_starttls(client, "other.test"), SMTPX_RESULT_TLS_NAME_MISMATCH);
        CHECK(!smtpx_client_is_tls(client));
        CHECK_RESULT(smtpx_client_last_error(client, ebuf, sizeof ebuf, &n), SMTPX_RESULT_OK);
        CHECK(n > 0);
        smtpx_client_free(client);
        client = NULL;
    }

    /* NULL client. */
    CHECK_RESULT(smtpx_client_starttls(NULL, NULL), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_has_extension(NULL, "SIZE", &yes), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_size_limit(NULL, &size, &has), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_auth_mechanisms(NULL, buf, sizeof buf, &n), SMTPX_RESULT_NULL_PARAMETER);

    CHECK_RESULT(smtpx_server_stop(server, 5000, NULL), SMTPX_RESULT_OK);
    smtpx_server_free(server);
    CHECK(st.freed == 1);
    CHECK(st.verifies == 3);
    CHECK(st.expands == 1);
    CHECK(st.tls_starts == 1);
    CHECK(st.aborts == 1);
    CHECK(st.last_abort == (uint32_t)SMTPX_ABORT_REASON_TOO_LARGE);
    CHECK(st.data_ends == 0);
    CHECK(st.closes == 2);
    pthread_mutex_destroy(&st.lock);
    smtpx_client_options_free(o);
}

/* A server without TLS: STARTTLS is not offered, and a handler table with only
 * userdata set (zero-initialised) answers VRFY and EXPN with 252. */
static void test_starttls_unavailable(void) {
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_handler h = {0};
    smtpx_server *server = NULL;
    smtpx_client_options *o = plain_options();
    smtpx_client *client = NULL;
    smtpx_reply *reply = NULL;
    bool yes = true;
    smtpx_result r;

    CHECK_RESULT(smtpx_server_start(config, &h, &server), SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (server == NULL) {
        smtpx_client_options_free(o);
        return;
    }
    CHECK_RESULT(smtpx_client_connect("127.0.0.1", smtpx_server_local_port(server), "localhost", o,
                                      &client),
                 SMTPX_RESULT_OK);
    if (client != NULL) {
        CHECK_RESULT(smtpx_client_has_extension(client, "STARTTLS", &yes), SMTPX_RESULT_OK);
        CHECK(!yes);
        r = smtpx_client_vrfy(client, "anyone", &reply);
        check_reply_code(r, reply, 252);
        reply = NULL;
        r = smtpx_client_expn(client, "list", &reply);
        check_reply_code(r, reply, 252);
        reply = NULL;
        r = smtpx_client_starttls(client, NULL);
        /* Sent anyway (as smtplib does) and refused by the server, whose reply is kept. */
        CHECK_RESULT(r, SMTPX_RESULT_START_TLS_REFUSED);
        CHECK(smtpx_client_last_error_reply(client) != NULL);
        CHECK(!smtpx_client_is_tls(client));
        /* The connection stays usable in clear. */
        r = smtpx_client_noop(client, &reply);
        check_reply_code(r, reply, 250);
        reply = NULL;
        CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
        smtpx_client_free(client);
    }
    CHECK_RESULT(smtpx_server_stop(server, 5000, NULL), SMTPX_RESULT_OK);
    smtpx_server_free(server);
    smtpx_client_options_free(o);
}

/* What a log callback received: every line, each ending in '\n'. The server's callback
 * runs on connection threads, so everything is under the lock. */
struct log_lines {
    pthread_mutex_t lock;
    char text[16384];
    size_t len;
    int calls;
    int bad_calls;
};

static void on_log(void *user_data, smtpx_log_level level, uint64_t connection, const char *text,
                   size_t text_len) {
    struct log_lines *log = user_data;
    pthread_mutex_lock(&log->lock);
    log->calls++;
    if (level != SMTPX_LOG_LEVEL_DEBUG || connection == 0 || text == NULL ||
        strlen(text) != text_len)
        log->bad_calls++;
    else if (log->len + text_len + 2 < sizeof log->text) {
        memcpy(log->text + log->len, text, text_len);
        log->len += text_len;
        log->text[log->len++] = '\n';
        log->text[log->len] = '\0';
    }
    pthread_mutex_unlock(&log->lock);
}

/* Checks one side's trace of a STARTTLS + AUTH + message conversation. */
static void check_trace(struct log_lines *log, const char *side) {
    int failures_before = failures;
    pthread_mutex_lock(&log->lock);
    if (log->bad_calls != 0 || log->calls == 0)
        fprintf(stderr, "%s log: %d calls, %d bad\n", side, log->calls, log->bad_calls);
    CHECK(log->calls > 0);
    CHECK(log->bad_calls == 0);
    CHECK(strstr(log->text, "S: 220 ") != NULL);
    CHECK(strstr(log->text, "C: EHLO client.test\n") != NULL);
    CHECK(strstr(log->text, "C: STARTTLS\n") != NULL);
    CHECK(strstr(log->text, "S: 250") != NULL);
    CHECK(strstr(log->text, "C: AUTH PLAIN <redacted>\n") != NULL ||
          strstr(log->text, "C: AUTH LOGIN") != NULL);
    CHECK(strstr(log->text, "C: MAIL FROM:<alice@example.com>") != NULL);
    CHECK(strstr(log->text, "C: <message content, ") != NULL);
    CHECK(strstr(log->text, "C: QUIT\n") != NULL);
    /* Neither the password, nor its base64 ("alice\0s3cret-pw" and "s3cret-pw"), nor the
     * message content. */
    CHECK(strstr(log->text, "s3cret") == NULL);
    CHECK(strstr(log->text, "AGFsaWNlAHMzY3JldC1wdw") == NULL);
    CHECK(strstr(log->text, "czNjcmV0LXB3") == NULL);
    CHECK(strstr(log->text, "classified") == NULL);
    if (failures != failures_before)
        fprintf(stderr, "%s log:\n%s", side, log->text);
    pthread_mutex_unlock(&log->lock);
}

/* Log callbacks on the client options and on the server config: each sees its side of a
 * STARTTLS + AUTH conversation, without secrets or content. */
static void test_log_callbacks(void) {
    static const char secret_message[] =
        "From: a@example.com\r\nSubject: classified\r\n\r\nclassified body\r\n";
    struct log_lines client_log, server_log;
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_handler h;
    smtpx_server *server = NULL;
    smtpx_client_options *o = tls_options();
    smtpx_client *client = NULL;
    smtpx_send_result *result = NULL;
    const char *to[] = {"bob@example.org"};

    memset(&client_log, 0, sizeof client_log);
    memset(&server_log, 0, sizeof server_log);
    pthread_mutex_init(&client_log.lock, NULL);
    pthread_mutex_init(&server_log.lock, NULL);
    memset(&h, 0, sizeof h);

    CHECK_RESULT(smtpx_client_options_set_log(NULL, on_log, &client_log),
                 SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_client_options_set_log(o, on_log, &client_log), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_credentials(o, "alice", "s3cret-pw"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_hostname(config, "mx.test"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_tls_files(config, cert_file, key_file), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_add_user(config, "alice", "s3cret-pw"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_log(config, on_log, &server_log), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_start(config, &h, &server), SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (server != NULL) {
        CHECK_RESULT(smtpx_client_connect("localhost", smtpx_server_local_port(server), NULL, o,
                                          &client),
                     SMTPX_RESULT_OK);
        if (client != NULL) {
            CHECK(smtpx_client_is_tls(client));
            CHECK_RESULT(smtpx_client_send(client, "alice@example.com", to, 1,
                                           (const uint8_t *)secret_message,
                                           strlen(secret_message), &result),
                         SMTPX_RESULT_OK);
            CHECK(smtpx_send_result_success(result));
            smtpx_send_result_free(result);
            CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
            smtpx_client_free(client);
        }
        /* After stop returns no connection thread runs: the server log is complete. */
        CHECK_RESULT(smtpx_server_stop(server, 5000, NULL), SMTPX_RESULT_OK);
        smtpx_server_free(server);
    }
    check_trace(&client_log, "client");
    check_trace(&server_log, "server");

    /* NULL turns the client's log off: a new connection adds nothing. */
    {
        int before = client_log.calls;
        CHECK_RESULT(smtpx_client_options_set_log(o, NULL, NULL), SMTPX_RESULT_OK);
        CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_NONE), SMTPX_RESULT_OK);
        CHECK_RESULT(smtpx_client_options_set_credentials(o, NULL, NULL), SMTPX_RESULT_OK);
        server = NULL;
        config = smtpx_server_config_new();
        CHECK_RESULT(smtpx_server_start(config, &h, &server), SMTPX_RESULT_OK);
        smtpx_server_config_free(config);
        if (server != NULL) {
            client = NULL;
            CHECK_RESULT(smtpx_client_connect("127.0.0.1", smtpx_server_local_port(server), NULL,
                                              o, &client),
                         SMTPX_RESULT_OK);
            if (client != NULL) {
                CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
                smtpx_client_free(client);
            }
            smtpx_server_free(server);
        }
        CHECK(client_log.calls == before);
    }
    smtpx_client_options_free(o);
    pthread_mutex_destroy(&client_log.lock);
    pthread_mutex_destroy(&server_log.lock);
}

/* ---- Re-entry: a callback that stops or frees its own server ---- */

/* What the callbacks of one server saw; written on connection threads, read under lock. */
struct reentry_state {
    pthread_mutex_t lock;
    smtpx_server *server;
    smtpx_result from_mail;   /* smtpx_server_stop in the mail callback */
    smtpx_result from_log;    /* smtpx_server_stop in the log callback */
    int log_calls;
    int freed;                /* userdata_free was called */
};

static smtpx_server *reentry_server(struct reentry_state *st) {
    smtpx_server *server;
    pthread_mutex_lock(&st->lock);
    server = st->server;
    pthread_mutex_unlock(&st->lock);
    return server;
}

static int re_mail_stop(void *ud, uint64_t conn_id, const char *from, smtpx_decision *out) {
    struct reentry_state *st = ud;
    size_t cut = 99;
    smtpx_result r = smtpx_server_stop(reentry_server(st), 1000, &cut);
    (void)conn_id, (void)from, (void)out;
    pthread_mutex_lock(&st->lock);
    st->from_mail = r;
    pthread_mutex_unlock(&st->lock);
    return SMTPX_ACCEPT;
}

static void re_log_stop(void *ud, smtpx_log_level level, uint64_t conn, const char *text,
                        size_t len) {
    struct reentry_state *st = ud;
    smtpx_result r;
    (void)level, (void)conn, (void)text, (void)len;
    pthread_mutex_lock(&st->lock);
    st->log_calls++;
    if (st->log_calls != 1) {
        pthread_mutex_unlock(&st->lock);
        return;
    }
    pthread_mutex_unlock(&st->lock);
    r = smtpx_server_stop(reentry_server(st), 1000, NULL);
    pthread_mutex_lock(&st->lock);
    st->from_log = r;
    pthread_mutex_unlock(&st->lock);
}

static int re_hello_free(void *ud, uint64_t conn_id, const char *domain, smtpx_decision *out) {
    struct reentry_state *st = ud;
    smtpx_server *server;
    (void)conn_id, (void)domain, (void)out;
    pthread_mutex_lock(&st->lock);
    server = st->server;
    st->server = NULL; /* freed: nobody may use it any more */
    pthread_mutex_unlock(&st->lock);
    smtpx_server_free(server); /* returns at once; the stop finishes in the background */
    return SMTPX_ACCEPT;
}

static void re_free(void *ud) {
    struct reentry_state *st = ud;
    pthread_mutex_lock(&st->lock);
    st->freed++;
    pthread_mutex_unlock(&st->lock);
}

/* smtpx_server_stop from a handler or log callback of its own server would wait for the
 * calling connection forever: it returns SMTPX_RESULT_REENTRANT and does nothing; and
 * smtpx_server_free from a callback returns at once and finishes in the background. An
 * alarm bounds the whole test (a hang fails it). */
static void test_reentry_from_callbacks(void) {
    struct reentry_state st;
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_handler h;
    smtpx_client_options *o = smtpx_client_options_new();
    smtpx_client *client = NULL;
    smtpx_send_result *result = NULL;
    smtpx_server *server = NULL;
    const char *to[] = {"bob@example.org"};
    size_t cut = 99;
    int waited, freed = 0;

    alarm(120);
    memset(&st, 0, sizeof st);
    pthread_mutex_init(&st.lock, NULL);
    st.from_mail = st.from_log = SMTPX_RESULT_OK;
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_NONE), SMTPX_RESULT_OK);

    /* 1. stop from the mail callback and from the log callback */
    memset(&h, 0, sizeof h);
    h.userdata = &st;
    h.userdata_free = re_free;
    h.mail = re_mail_stop;
    CHECK_RESULT(smtpx_server_config_set_log(config, re_log_stop, &st), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_start(config, &h, &server), SMTPX_RESULT_OK);
    pthread_mutex_lock(&st.lock);
    st.server = server;
    pthread_mutex_unlock(&st.lock);
    if (server != NULL)
        CHECK_RESULT(smtpx_client_connect("127.0.0.1", smtpx_server_local_port(server), NULL, o,
                                          &client),
                     SMTPX_RESULT_OK);
    if (client != NULL) {
        CHECK_RESULT(smtpx_client_send(client, "alice@example.com", to, 1,
                                       (const uint8_t *)message, strlen(message), &result),
                     SMTPX_RESULT_OK);
        CHECK(result != NULL && smtpx_send_result_success(result));
        smtpx_send_result_free(result);
        CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
        smtpx_client_free(client);
        client = NULL;
    }
    pthread_mutex_lock(&st.lock);
    CHECK_RESULT(st.from_mail, SMTPX_RESULT_REENTRANT);
    CHECK_RESULT(st.from_log, SMTPX_RESULT_REENTRANT);
    CHECK(st.log_calls > 0);
    CHECK(st.freed == 0);
    pthread_mutex_unlock(&st.lock);
    /* From outside a callback the same calls work. */
    if (server != NULL) {
        CHECK_RESULT(smtpx_server_stop(server, 5000, &cut), SMTPX_RESULT_OK);
        CHECK(cut == 0);
    }
    smtpx_server_free(server);
    CHECK(st.freed == 1);

    /* 2. free from the hello callback */
    pthread_mutex_destroy(&st.lock);
    memset(&st, 0, sizeof st);
    pthread_mutex_init(&st.lock, NULL);
    smtpx_server_config_free(config);
    config = smtpx_server_config_new();
    memset(&h, 0, sizeof h);
    h.userdata = &st;
    h.userdata_free = re_free;
    h.hello = re_hello_free;
    server = NULL;
    CHECK_RESULT(smtpx_server_start(config, &h, &server), SMTPX_RESULT_OK);
    pthread_mutex_lock(&st.lock);
    st.server = server;
    pthread_mutex_unlock(&st.lock);
    if (server != NULL) {
        /* The client may be greeted and then told 421 as the server stops: either way. */
        if (smtpx_client_connect("127.0.0.1", smtpx_server_local_port(server), NULL, o,
                                 &client) == SMTPX_RESULT_OK) {
            (void)smtpx_client_quit(client);
            smtpx_client_free(client);
        }
    }
    for (waited = 0; waited < 600 && !freed; waited++) {
        pthread_mutex_lock(&st.lock);
        freed = st.freed;
        pthread_mutex_unlock(&st.lock);
        if (!freed) {
            struct timespec tenth = {0, 100 * 1000 * 1000};
            nanosleep(&tenth, NULL);
        }
    }
    CHECK(freed == 1);
    pthread_mutex_lock(&st.lock);
    CHECK(st.server == NULL);
    pthread_mutex_unlock(&st.lock);
    alarm(0);
    pthread_mutex_destroy(&st.lock);
    smtpx_server_config_free(config);
    smtpx_client_options_free(o);
}

/* Credentials never go out without TLS unless the client options allow it, even to a
 * server that would take them in clear (allow_insecure_auth on its side too). */
static void test_insecure_auth(void) {
    struct counters counters;
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_handler h;
    smtpx_server *server = NULL;
    smtpx_client_options *o = plain_options();
    smtpx_client *client = NULL;
    smtpx_reply *reply = NULL;
    char buf[512];
    size_t n = 0;
    uint16_t port;
    smtpx_result r;

    memset(&counters, 0, sizeof counters);
    pthread_mutex_init(&counters.lock, NULL);
    memset(&h, 0, sizeof h);
    h.userdata = &counters;
    h.userdata_free = on_free;
    h.connect = on_connect;
    h.auth = on_auth;
    h.close = on_close;

    CHECK_RESULT(smtpx_client_options_set_allow_insecure_auth(NULL, true),
                 SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_server_config_set_hostname(config, "mx.test"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_tls_files(config, cert_file, key_file), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_allow_insecure_auth(config, true), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_start(config, &h, &server), SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (server == NULL) {
        smtpx_client_options_free(o);
        pthread_mutex_destroy(&counters.lock);
        return;
    }
    port = smtpx_server_local_port(server);

    /* Credentials in the options, no TLS: the connect fails and says why. */
    CHECK_RESULT(smtpx_client_options_set_credentials(o, "alice", "s3cret"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_connect("127.0.0.1", port, "localhost", o, &client),
                 SMTPX_RESULT_INSECURE_AUTH);
    CHECK(client == NULL);
    CHECK_RESULT(smtpx_client_options_last_error(o, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(strstr(buf, "without TLS") != NULL);

    /* An explicit login in clear fails the same way and leaves the connection usable;
     * after STARTTLS the same credentials go through without the permission. */
    CHECK_RESULT(smtpx_client_options_set_credentials(o, NULL, NULL), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_connect("127.0.0.1", port, "localhost", o, &client),
                 SMTPX_RESULT_OK);
    if (client != NULL) {
        CHECK_RESULT(smtpx_client_login(client, "alice", "s3cret", &reply),
                     SMTPX_RESULT_INSECURE_AUTH);
        CHECK(reply == NULL);
        CHECK(smtpx_client_last_error_reply(client) == NULL);
        r = smtpx_client_noop(client, &reply);
        check_reply_code(r, reply, 250);
        reply = NULL;
        CHECK_RESULT(smtpx_client_starttls(client, NULL), SMTPX_RESULT_OK);
        CHECK(smtpx_client_is_tls(client));
        r = smtpx_client_login(client, "alice", "s3cret", &reply);
        check_reply_code(r, reply, 235);
        reply = NULL;
        CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
        smtpx_client_free(client);
        client = NULL;
    }
    pthread_mutex_lock(&counters.lock);
    CHECK(counters.auths == 1); /* only the one over TLS */
    pthread_mutex_unlock(&counters.lock);

    /* Allowed: the credentials go in clear. */
    CHECK_RESULT(smtpx_client_options_set_allow_insecure_auth(o, true), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_credentials(o, "alice", "s3cret"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_connect("127.0.0.1", port, "localhost", o, &client),
                 SMTPX_RESULT_OK);
    if (client != NULL) {
        CHECK(!smtpx_client_is_tls(client));
        CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
        smtpx_client_free(client);
        client = NULL;
    }

    CHECK_RESULT(smtpx_server_stop(server, 5000, NULL), SMTPX_RESULT_OK);
    smtpx_server_free(server);
    smtpx_client_options_free(o);
    CHECK(counters.freed == 1);
    CHECK(counters.auths == 2);
    CHECK(counters.connects == 3);
    CHECK(counters.connects == counters.closes);
    pthread_mutex_destroy(&counters.lock);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s CERT.pem KEY.pem\n", argv[0]);
        return 2;
    }
    cert_file = argv[1];
    key_file = argv[2];
    test_options_errors();
    test_nulls_everywhere();
    test_server_config_errors();
    test_round_trip_starttls();
    test_log_callbacks();
    test_maildir_server();
    test_send_batch();
    test_lmtp_implicit_tls_limits();
    test_lmtp_handler();
    test_hooks_starttls_capabilities();
    test_starttls_unavailable();
    test_reentry_from_callbacks();
    test_insecure_auth();
    if (failures != 0) {
        fprintf(stderr, "test_client_server: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_client_server: all checks passed\n");
    return 0;
}
