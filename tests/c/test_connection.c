/*
 * The sans-I/O server connection (smtpx_server_connection_*), driven in memory through
 * its actions: a whole transaction with hooks answered, a refused client, a flood of
 * pipelined input answered through partial writes, shutdown with stop, a lost connection
 * running its remaining hooks, a refused message chunk, a timeout, implicit TLS, and the
 * error paths (NULL arguments and reports out of turn).
 * Linked against libsmtpx.a; run under ASan+UBSan and under valgrind.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a test connection has said and which hooks it called. */
struct run {
    char *wire; /* everything written, NUL-terminated */
    size_t wire_len, wire_cap;
    smtpx_event_kind hooks[64];
    size_t n_hooks;
    size_t chunk_bytes;
    smtpx_abort_reason aborted;
    size_t max_write;          /* partial writes: at most this many bytes per WRITE (0: all) */
    int refuse_rcpt;           /* RCPT is refused with 550 */
    int refuse_chunk;          /* MESSAGE_DATA is refused with 552 */
    uint64_t deadline;         /* of the last READ */
};

static void run_init(struct run *r) {
    memset(r, 0, sizeof *r);
    r->wire_cap = 1024;
    r->wire = malloc(r->wire_cap);
    CHECK(r->wire != NULL);
    if (r->wire != NULL)
        r->wire[0] = '\0';
}

static void keep(struct run *r, const uint8_t *bytes, size_t n) {
    if (r->wire == NULL)
        return;
    if (r->wire_len + n + 1 > r->wire_cap) {
        char *bigger;
        while (r->wire_len + n + 1 > r->wire_cap)
            r->wire_cap *= 2;
        bigger = realloc(r->wire, r->wire_cap);
        CHECK(bigger != NULL);
        if (bigger == NULL)
            return;
        r->wire = bigger;
    }
    memcpy(r->wire + r->wire_len, bytes, n);
    r->wire_len += n;
    r->wire[r->wire_len] = '\0';
}

static smtpx_decision decision(uint16_t code, const char *text) {
    smtpx_decision d;
    memset(&d, 0, sizeof d);
    d.code = code;
    snprintf(d.text, sizeof d.text, "%s", text);
    return d;
}

static void answer_hook(smtpx_server_connection *conn, struct run *r, const smtpx_server_event *e) {
    smtpx_decision d;
    const smtpx_decision *answer = NULL;
    if (r->n_hooks < sizeof r->hooks / sizeof r->hooks[0])
        r->hooks[r->n_hooks++] = e->kind;
    switch (e->kind) {
    case SMTPX_EVENT_KIND_RCPT:
        CHECK(e->needs_decision && e->arg != NULL && e->arg_len == strlen(e->arg));
        if (r->refuse_rcpt) {
            d = decision(550, "no such user");
            answer = &d;
        }
        break;
    case SMTPX_EVENT_KIND_MESSAGE_DATA:
        CHECK(!e->needs_decision && e->data != NULL && e->data_len > 0);
        r->chunk_bytes += e->data_len;
        if (r->refuse_chunk) {
            d = decision(552, "too much for us");
            answer = &d;
        }
        break;
    case SMTPX_EVENT_KIND_MESSAGE_END:
        CHECK(e->needs_decision);
        d = decision(250, "queued as C1");
        answer = &d;
        break;
    case SMTPX_EVENT_KIND_MESSAGE_ABORTED:
        r->aborted = e->abort_reason;
        break;
    default:
        break;
    }
    CHECK(smtpx_server_connection_answer(conn, answer) == SMTPX_RESULT_OK);
}

/* Runs the connection's actions, feeding one string of `input` per READ, until it asks
   for input `input` does not have (returns 0) or closes (returns 1). Bounded. */
static int run(smtpx_server_connection *conn, struct run *r, const char **input, uint64_t now) {
    int steps;
    for (steps = 0; steps < 1000000; steps++) {
        smtpx_action a;
        size_t n;
        memset(&a, 0, sizeof a);
        CHECK(smtpx_server_connection_next_action(conn, now, &a) == SMTPX_RESULT_OK);
        switch (a.kind) {
        case SMTPX_ACTION_KIND_CONNECT:
            CHECK(smtpx_server_connection_connected(conn, NULL) == SMTPX_RESULT_OK);
            break;
        case SMTPX_ACTION_KIND_HOOK:
            answer_hook(conn, r, &a.event);
            break;
        case SMTPX_ACTION_KIND_WRITE:
            CHECK(a.bytes != NULL && a.bytes_len > 0);
            n = r->max_write != 0 && a.bytes_len > r->max_write ? r->max_write : a.bytes_len;
            keep(r, a.bytes, n);
            CHECK(smtpx_server_connection_written(conn, n) == SMTPX_RESULT_OK);
            break;
        case SMTPX_ACTION_KIND_READ:
            r->deadline = a.deadline_ms;
            if (input == NULL || *input == NULL)
                return 0;
            CHECK(smtpx_server_connection_receive(conn, (const uint8_t *)*input, strlen(*input),
                                                  now) == SMTPX_RESULT_OK);
            input++;
            break;
        case SMTPX_ACTION_KIND_START_TLS:
            CHECK(smtpx_server_connection_tls_established(conn, now) == SMTPX_RESULT_OK);
            break;
        case SMTPX_ACTION_KIND_CLOSE:
            return 1;
        default:
            CHECK(!"an unknown action kind");
            return 1;
        }
    }
    CHECK(!"the connection did not settle");
    return 1;
}

static smtpx_server_connection *open_connection(uint64_t now, bool implicit_tls) {
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_server_connection *conn = NULL;
    CHECK(config != NULL);
    CHECK(smtpx_server_config_set_hostname(config, "mx.test") == SMTPX_RESULT_OK);
    CHECK(smtpx_server_config_set_timeout_secs(config, 30) == SMTPX_RESULT_OK);
    CHECK(smtpx_server_connection_new(config, now, implicit_tls, &conn) == SMTPX_RESULT_OK);
    smtpx_server_config_free(config); /* the connection keeps its own copy */
    CHECK(conn != NULL);
    return conn;
}

static size_t count(const char *haystack, const char *needle) {
    size_t n = 0;
    const char *p = haystack;
    while (p != NULL && (p = strstr(p, needle)) != NULL) {
        n++;
        p += strlen(needle);
    }
    return n;
}

static void test_transaction(void) {
    static const smtpx_event_kind expected[] = {
        SMTPX_EVENT_KIND_HELLO,         SMTPX_EVENT_KIND_MAIL,        SMTPX_EVENT_KIND_RCPT,
        SMTPX_EVENT_KIND_MESSAGE_START, SMTPX_EVENT_KIND_MESSAGE_DATA, SMTPX_EVENT_KIND_MESSAGE_END,
        SMTPX_EVENT_KIND_CLOSE,
    };
    const char *input[] = {"EHLO client.test\r\n", "MAIL FROM:<a@b.test>\r\n",
                           "RCPT TO:<c@d.test>\r\n", "DATA\r\n", "Subject: hi\r\n\r\nhello\r\n.\r\n",
                           "QUIT\r\n", NULL};
    smtpx_server_connection *conn = open_connection(1000, false);
    struct run r;
    size_t i;
    if (conn == NULL)
        return;
    run_init(&r);
    CHECK(run(conn, &r, input, 1000) == 1);
    CHECK(strncmp(r.wire, "220 mx.test", 11) == 0);
    CHECK(strstr(r.wire, "250 2.1.5") != NULL);
    CHECK(strstr(r.wire, "354 ") != NULL);
    CHECK(strstr(r.wire, "250 queued as C1\r\n221 2.0.0 Bye\r\n") != NULL);
    CHECK(r.chunk_bytes == strlen("Subject: hi\r\n\r\nhello\r\n"));
    CHECK(r.n_hooks == sizeof expected / sizeof expected[0]);
    for (i = 0; i < r.n_hooks && i < sizeof expected / sizeof expected[0]; i++)
        CHECK(r.hooks[i] == expected[i]);
    CHECK(!smtpx_server_connection_is_tls(conn));
    /* After CLOSE it stays closed. */
    {
        smtpx_action a;
        CHECK(smtpx_server_connection_next_action(conn, 1000, &a) == SMTPX_RESULT_OK);
        CHECK(a.kind == SMTPX_ACTION_KIND_CLOSE);
    }
    smtpx_server_connection_free(conn);
    free(r.wire);
}

static void test_refused_recipient_and_chunk(void) {
    const char *input[] = {"EHLO c\r\n", "MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n", "DATA\r\n",
                           "line one\r\n.\r\n", "QUIT\r\n", NULL};
    smtpx_server_connection *conn = open_connection(0, false);
    struct run r;
    if (conn == NULL)
        return;
    run_init(&r);
    r.refuse_chunk = 1;
    CHECK(run(conn, &r, input, 0) == 1);
    /* The chunk's refusal answers the end of the message; MESSAGE_END is not called. */
    CHECK(strstr(r.wire, "552 too much for us\r\n") != NULL);
    CHECK(count(r.wire, "queued as C1") == 0);
    CHECK(r.aborted == SMTPX_ABORT_REASON_DISCONNECTED);
    smtpx_server_connection_free(conn);
    free(r.wire);

    conn = open_connection(0, false);
    if (conn == NULL)
        return;
    run_init(&r);
    r.refuse_rcpt = 1;
    {
        const char *rcpt[] = {"EHLO c\r\n", "MAIL FROM:<a@b.test>\r\n", "RCPT TO:<x@y.test>\r\n",
                              "QUIT\r\n", NULL};
        CHECK(run(conn, &r, rcpt, 0) == 1);
    }
    CHECK(strstr(r.wire, "550 no such user\r\n") != NULL);
    smtpx_server_connection_free(conn);
    free(r.wire);
}

static void test_refused_client(void) {
    const char *input[] = {"EHLO c\r\n", "MAIL FROM:<a@b.test>\r\n", "QUIT\r\n", NULL};
    smtpx_server_connection *conn = open_connection(0, false);
    smtpx_decision refusal = decision(554, "go away");
    smtpx_action a;
    struct run r;
    if (conn == NULL)
        return;
    run_init(&r);
    CHECK(smtpx_server_connection_next_action(conn, 0, &a) == SMTPX_RESULT_OK);
    CHECK(a.kind == SMTPX_ACTION_KIND_CONNECT);
    CHECK(smtpx_server_connection_connected(conn, &refusal) == SMTPX_RESULT_OK);
    /* Answered once: a second answer is out of turn. */
    CHECK(smtpx_server_connection_connected(conn, NULL) == SMTPX_RESULT_NOT_READY);
    CHECK(run(conn, &r, input, 0) == 1);
    CHECK(strncmp(r.wire, "554 go away\r\n", 13) == 0);
    CHECK(strstr(r.wire, "503 5.5.1") != NULL);
    CHECK(r.n_hooks == 0); /* a refused client's hooks are never called */
    smtpx_server_connection_free(conn);
    free(r.wire);
}

static void test_pipelined_flood_with_partial_writes(void) {
    enum { N = 5000 };
    const char *rset = "RSET\r\n";
    char *flood = malloc(N * 6 + 1);
    const char *input[4];
    smtpx_server_connection *conn = open_connection(0, false);
    struct run r;
    size_t i;
    if (conn == NULL || flood == NULL) {
        CHECK(flood != NULL);
        free(flood);
        smtpx_server_connection_free(conn);
        return;
    }
    for (i = 0; i < N; i++)
        memcpy(flood + i * 6, rset, 6);
    flood[N * 6] = '\0';
    input[0] = "EHLO c\r\n";
    input[1] = flood;
    input[2] = "QUIT\r\n";
    input[3] = NULL;
    run_init(&r);
    r.max_write = 7; /* a slow reader: every reply goes out in pieces */
    CHECK(run(conn, &r, input, 0) == 1);
    CHECK(count(r.wire, "250 2.0.0 ") == N);
    CHECK(r.wire_len > 7 && strcmp(r.wire + r.wire_len - 15, "221 2.0.0 Bye\r\n") == 0);
    smtpx_server_connection_free(conn);
    free(r.wire);
    free(flood);
}

static void test_stop(void) {
    const char *start[] = {"EHLO c\r\n", "MAIL FROM:<a@b.test>\r\n", NULL};
    const char *finish[] = {"RCPT TO:<x@y.test>\r\n", "DATA\r\n", "hi\r\n.\r\n", NULL};
    const char *idle[] = {"EHLO c\r\n", NULL};
    smtpx_server_connection *conn = open_connection(0, false);
    struct run r;
    if (conn == NULL)
        return;
    /* In a transaction: it is let finish, then 421. */
    run_init(&r);
    CHECK(run(conn, &r, start, 0) == 0);
    CHECK(!smtpx_server_connection_is_idle(conn));
    CHECK(smtpx_server_connection_stop(conn) == SMTPX_RESULT_OK);
    CHECK(run(conn, &r, finish, 0) == 1);
    CHECK(strstr(r.wire, "250 queued as C1\r\n421 4.3.2 mx.test Service shutting down") != NULL);
    smtpx_server_connection_free(conn);
    free(r.wire);

    /* Idle: 421 at once. */
    conn = open_connection(0, false);
    if (conn == NULL)
        return;
    run_init(&r);
    CHECK(run(conn, &r, idle, 0) == 0);
    CHECK(smtpx_server_connection_is_idle(conn));
    CHECK(smtpx_server_connection_stop(conn) == SMTPX_RESULT_OK);
    CHECK(run(conn, &r, NULL, 0) == 1);
    CHECK(r.wire_len > 0 && strstr(r.wire, "250 DSN\r\n421 4.3.2 ") != NULL);
    CHECK(r.n_hooks == 2 && r.hooks[1] == SMTPX_EVENT_KIND_CLOSE);
    smtpx_server_connection_free(conn);
    free(r.wire);
}

static void test_lost(void) {
    const char *input[] = {"EHLO c\r\n", "MAIL FROM:<a@b.test>\r\n", "RCPT TO:<x@y.test>\r\n",
                           "DATA\r\n", "half a mess", NULL};
    smtpx_server_connection *conn = open_connection(0, false);
    struct run r;
    size_t written;
    int steps;
    if (conn == NULL)
        return;
    run_init(&r);
    CHECK(run(conn, &r, input, 0) == 0);
    written = r.wire_len;
    r.n_hooks = 0;
    CHECK(smtpx_server_connection_lost(conn) == SMTPX_RESULT_OK);
    CHECK(smtpx_server_connection_lost(conn) == SMTPX_RESULT_OK); /* harmless twice */
    /* Only hooks, then CLOSE: nothing more is written or read. */
    for (steps = 0; steps < 100; steps++) {
        smtpx_action a;
        CHECK(smtpx_server_connection_next_action(conn, 0, &a) == SMTPX_RESULT_OK);
        if (a.kind == SMTPX_ACTION_KIND_CLOSE)
            break;
        CHECK(a.kind == SMTPX_ACTION_KIND_HOOK);
        if (a.kind != SMTPX_ACTION_KIND_HOOK)
            break;
        answer_hook(conn, &r, &a.event);
    }
    CHECK(r.wire_len == written);
    CHECK(r.n_hooks == 2 && r.hooks[0] == SMTPX_EVENT_KIND_MESSAGE_ABORTED &&
          r.hooks[1] == SMTPX_EVENT_KIND_CLOSE);
    CHECK(r.aborted == SMTPX_ABORT_REASON_DISCONNECTED);
    smtpx_server_connection_free(conn);
    free(r.wire);
}

static void test_timeout(void) {
    smtpx_server_connection *conn = open_connection(5000, false);
    struct run r;
    if (conn == NULL)
        return;
    run_init(&r);
    CHECK(run(conn, &r, NULL, 5000) == 0);
    CHECK(r.deadline == 5000 + 30000); /* the command timeout set in open_connection */
    CHECK(smtpx_server_connection_timeout(conn, r.deadline) == SMTPX_RESULT_OK);
    CHECK(run(conn, &r, NULL, r.deadline) == 1);
    CHECK(strstr(r.wire, "421 4.4.2 ") != NULL);
    CHECK(r.n_hooks == 1 && r.hooks[0] == SMTPX_EVENT_KIND_CLOSE);
    smtpx_server_connection_free(conn);
    free(r.wire);
}

static void test_implicit_tls(void) {
    const char *input[] = {"EHLO c\r\n", "QUIT\r\n", NULL};
    smtpx_server_connection *conn = open_connection(0, true);
    smtpx_action a;
    struct run r;
    if (conn == NULL)
        return;
    CHECK(smtpx_server_connection_next_action(conn, 0, &a) == SMTPX_RESULT_OK);
    CHECK(a.kind == SMTPX_ACTION_KIND_START_TLS && a.deadline_ms == 30000);
    /* Out of turn while the handshake is due. */
    CHECK(smtpx_server_connection_written(conn, 0) == SMTPX_RESULT_NOT_READY);
    CHECK(smtpx_server_connection_connected(conn, NULL) == SMTPX_RESULT_NOT_READY);
    run_init(&r);
    CHECK(run(conn, &r, input, 0) == 1);
    CHECK(smtpx_server_connection_is_tls(conn));
    CHECK(strncmp(r.wire, "220 mx.test", 11) == 0);
    CHECK(r.n_hooks == 2 && r.hooks[0] == SMTPX_EVENT_KIND_HELLO); /* no TLS_STARTED */
    smtpx_server_connection_free(conn);
    free(r.wire);
}

static void test_errors(void) {
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_server_connection *conn = NULL;
    smtpx_action a;
    smtpx_decision d = decision(250, "ok");

    CHECK(smtpx_server_connection_new(NULL, 0, false, &conn) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(conn == NULL); /* out-parameters are written only on success */
    CHECK(smtpx_server_connection_new(config, 0, false, NULL) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_connection_next_action(NULL, 0, &a) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_connection_connected(NULL, NULL) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_connection_answer(NULL, &d) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_connection_answer_each(NULL, &d, 1) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_connection_written(NULL, 1) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_connection_receive(NULL, (const uint8_t *)"x", 1, 0) ==
          SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_connection_receive_eof(NULL) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_connection_timeout(NULL, 0) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_connection_tls_established(NULL, 0) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_connection_lost(NULL) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_connection_stop(NULL) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(!smtpx_server_connection_is_idle(NULL));
    CHECK(!smtpx_server_connection_is_tls(NULL));
    smtpx_server_connection_free(NULL);

    CHECK(smtpx_server_connection_new(config, 0, false, &conn) == SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (conn == NULL)
        return;
    CHECK(smtpx_server_connection_next_action(conn, 0, NULL) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_connection_receive(conn, NULL, 3, 0) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_connection_receive(conn, NULL, 0, 0) == SMTPX_RESULT_OK);
    CHECK(smtpx_server_connection_answer_each(conn, NULL, 2) == SMTPX_RESULT_NULL_PARAMETER);
    /* Reports out of turn. */
    CHECK(smtpx_server_connection_answer(conn, NULL) == SMTPX_RESULT_NOT_READY);
    CHECK(smtpx_server_connection_written(conn, 1) == SMTPX_RESULT_NOT_READY);
    CHECK(smtpx_server_connection_tls_established(conn, 0) == SMTPX_RESULT_NOT_READY);
    CHECK(smtpx_server_connection_next_action(conn, 0, &a) == SMTPX_RESULT_OK);
    CHECK(a.kind == SMTPX_ACTION_KIND_CONNECT);
    CHECK(smtpx_server_connection_connected(conn, NULL) == SMTPX_RESULT_OK);
    CHECK(smtpx_server_connection_next_action(conn, 0, &a) == SMTPX_RESULT_OK);
    CHECK(a.kind == SMTPX_ACTION_KIND_WRITE && a.bytes_len > 4);
    /* Asking again gives the same action; more than offered is refused. */
    {
        size_t len = a.bytes_len;
        CHECK(smtpx_server_connection_next_action(conn, 0, &a) == SMTPX_RESULT_OK);
        CHECK(a.kind == SMTPX_ACTION_KIND_WRITE && a.bytes_len == len);
        CHECK(smtpx_server_connection_written(conn, len + 1) == SMTPX_RESULT_INVALID_ARGUMENT);
        CHECK(smtpx_server_connection_written(conn, 4) == SMTPX_RESULT_OK);
        CHECK(smtpx_server_connection_written(conn, 1) == SMTPX_RESULT_NOT_READY);
        CHECK(smtpx_server_connection_next_action(conn, 0, &a) == SMTPX_RESULT_OK);
        CHECK(a.kind == SMTPX_ACTION_KIND_WRITE && a.bytes_len == len - 4);
    }
    smtpx_server_connection_free(conn);
}

/* What the log callback received: every line, each ending in '\n'. */
struct log_lines {
    char text[8192];
    size_t len;
    uint64_t connection;
    int levels_ok;
};

static void on_log(void *user_data, smtpx_log_level level, uint64_t connection, const char *text,
                   size_t text_len) {
    struct log_lines *log = user_data;
    if (level != SMTPX_LOG_LEVEL_DEBUG || text == NULL || strlen(text) != text_len)
        log->levels_ok = 0;
    log->connection = connection;
    if (log->len + text_len + 2 < sizeof log->text) {
        memcpy(log->text + log->len, text, text_len);
        log->len += text_len;
        log->text[log->len++] = '\n';
        log->text[log->len] = '\0';
    }
}

static void test_log_callback(void) {
    const char *input[] = {"EHLO client.test\r\n", "AUTH PLAIN AGFsaWNlAHMzY3JldC1wdw==\r\n",
                           "MAIL FROM:<a@b.test>\r\n", "RCPT TO:<c@d.test>\r\n", "DATA\r\n",
                           "Subject: top secret content\r\n\r\nhi\r\n.\r\n", "QUIT\r\n", NULL};
    struct log_lines log;
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_server_connection *conn = NULL;
    struct run r;
    memset(&log, 0, sizeof log);
    log.levels_ok = 1;
    CHECK(config != NULL);
    if (config == NULL)
        return;
    CHECK(smtpx_server_config_set_log(NULL, on_log, &log) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_config_set_hostname(config, "mx.test") == SMTPX_RESULT_OK);
    CHECK(smtpx_server_config_add_user(config, "alice", "s3cret-pw") == SMTPX_RESULT_OK);
    CHECK(smtpx_server_config_set_allow_insecure_auth(config, true) == SMTPX_RESULT_OK);
    CHECK(smtpx_server_config_set_log(config, on_log, &log) == SMTPX_RESULT_OK);
    CHECK(smtpx_server_connection_new(config, 0, false, &conn) == SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (conn == NULL)
        return;
    run_init(&r);
    CHECK(run(conn, &r, input, 0) == 1);
    CHECK(strstr(r.wire, "235 ") != NULL);
    CHECK(log.levels_ok);
    CHECK(log.connection > 0);
    CHECK(strstr(log.text, "S: 220 mx.test ESMTP smtpx\n") != NULL);
    CHECK(strstr(log.text, "C: EHLO client.test\n") != NULL);
    CHECK(strstr(log.text, "C: AUTH PLAIN <redacted>\n") != NULL);
    CHECK(strstr(log.text, "C: MAIL FROM:<a@b.test>\n") != NULL);
    CHECK(strstr(log.text, "C: <message content, ") != NULL);
    CHECK(strstr(log.text, "S: 221 2.0.0 Bye\n") != NULL);
    /* Neither the AUTH payload, nor the password, nor the content. */
    CHECK(strstr(log.text, "AGFsaWNl") == NULL);
    CHECK(strstr(log.text, "s3cret") == NULL);
    CHECK(strstr(log.text, "top secret") == NULL);
    smtpx_server_connection_free(conn);
    free(r.wire);
}

int main(void) {
    test_transaction();
    test_log_callback();
    test_refused_recipient_and_chunk();
    test_refused_client();
    test_pipelined_flood_with_partial_writes();
    test_stop();
    test_lost();
    test_timeout();
    test_implicit_tls();
    test_errors();
    if (failures != 0) {
        fprintf(stderr, "test_connection: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_connection: all checks passed\n");
    return 0;
}
