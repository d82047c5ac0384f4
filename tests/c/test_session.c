/*
 * The sans-I/O server session, driven in memory: events, decisions, output, deadlines,
 * STARTTLS, and the error paths of every smtpx_server_session_* function.
 * Linked against libsmtpx.a; run under ASan+UBSan and under valgrind.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"
#include "check.h"

#include <stdio.h>
#include <string.h>

/* What the session said since the last call, as a C string. */
static char said[4096];

static void drain_output(smtpx_server_session *s) {
    const uint8_t *p = NULL;
    size_t n = 0;
    CHECK(smtpx_server_session_output(s, &p, &n) == SMTPX_RESULT_OK);
    if (n >= sizeof said)
        n = sizeof said - 1;
    if (n > 0)
        memcpy(said, p, n);
    said[n] = '\0';
    CHECK(smtpx_server_session_consume_output(s, n) == SMTPX_RESULT_OK);
}

static void feed(smtpx_server_session *s, const char *text, uint64_t now) {
    size_t taken = 0;
    CHECK(smtpx_server_session_receive(s, (const uint8_t *)text, strlen(text), now, &taken) ==
          SMTPX_RESULT_OK);
    CHECK(taken == strlen(text));
}

static smtpx_server_event next(smtpx_server_session *s) {
    smtpx_server_event e;
    memset(&e, 0, sizeof e);
    CHECK(smtpx_server_session_poll_event(s, &e) == SMTPX_RESULT_OK);
    return e;
}

/* Polls until an event that is not MESSAGE_DATA, collecting content into body. */
static smtpx_server_event next_collecting(smtpx_server_session *s, char *body, size_t cap) {
    for (;;) {
        smtpx_server_event e = next(s);
        if (e.kind != SMTPX_EVENT_KIND_MESSAGE_DATA)
            return e;
        CHECK(e.data != NULL);
        if (strlen(body) + e.data_len < cap)
            strncat(body, (const char *)e.data, e.data_len);
    }
}

static void test_conversation(void) {
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_server_session *s = NULL;
    smtpx_server_event e;
    smtpx_decision refuse;
    char body[256] = "";
    uint64_t deadline = 0;
    bool has = false;

    CHECK(smtpx_server_config_set_hostname(config, "mx.test") == SMTPX_RESULT_OK);
    CHECK(smtpx_server_session_new(config, 1000, &s) == SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (s == NULL)
        return;

    e = next(s);
    CHECK(e.kind == SMTPX_EVENT_KIND_CONNECT && e.needs_decision);
    CHECK(next(s).kind == SMTPX_EVENT_KIND_NONE); /* waiting for the decision */
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_NOT_READY);
    CHECK(next(s).kind == SMTPX_EVENT_KIND_NONE);
    drain_output(s);
    CHECK(strncmp(said, "220 mx.test", 11) == 0);

    /* EHLO ends a group (RFC 2920): its reply comes before the next. */
    feed(s, "EHLO client.test\r\n", 2000);
    e = next(s);
    CHECK(e.kind == SMTPX_EVENT_KIND_HELLO && e.needs_decision);
    CHECK(e.arg != NULL && strcmp(e.arg, "client.test") == 0 && e.arg_len == 11);
    CHECK(e.password == NULL && e.data == NULL);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    CHECK(next(s).kind == SMTPX_EVENT_KIND_NONE);
    drain_output(s);
    CHECK(strstr(said, "250-mx.test") != NULL);

    /* Pipelined commands, fed in one piece. */
    feed(s, "MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\n"
            "RCPT TO:<nobody@example.org>\r\nDATA\r\n", 2000);
    e = next(s);
    CHECK(e.kind == SMTPX_EVENT_KIND_MAIL && strcmp(e.arg, "alice@example.com") == 0);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    e = next(s);
    CHECK(e.kind == SMTPX_EVENT_KIND_RCPT && strcmp(e.arg, "bob@example.org") == 0);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    e = next(s);
    CHECK(e.kind == SMTPX_EVENT_KIND_RCPT && strcmp(e.arg, "nobody@example.org") == 0);
    memset(&refuse, 0, sizeof refuse);
    refuse.code = 550;
    refuse.has_enhanced = true;
    refuse.enhanced.status_class = 5;
    refuse.enhanced.subject = 1;
    refuse.enhanced.detail = 1;
    strcpy(refuse.text, "no such user");
    CHECK(smtpx_server_session_decide(s, &refuse) == SMTPX_RESULT_OK);
    e = next(s);
    CHECK(e.kind == SMTPX_EVENT_KIND_MESSAGE_START && e.needs_decision);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    drain_output(s);
    CHECK(strstr(said, "550 5.1.1 no such user\r\n") != NULL);
    CHECK(strstr(said, "354 ") != NULL);

    /* A deadline is set while the content comes. */
    CHECK(smtpx_server_session_next_deadline(s, &deadline, &has) == SMTPX_RESULT_OK);
    CHECK(has && deadline > 2000);

    feed(s, "Subject: hi\r\n\r\nHello.\r\n..dot\r\n.\r\n", 3000);
    e = next_collecting(s, body, sizeof body);
    CHECK(e.kind == SMTPX_EVENT_KIND_MESSAGE_END && e.needs_decision);
    CHECK(strcmp(body, "Subject: hi\r\n\r\nHello.\r\n.dot\r\n") == 0);
    memset(&refuse, 0, sizeof refuse);
    refuse.code = 250;
    strcpy(refuse.text, "Ok: queued as 42");
    CHECK(smtpx_server_session_decide(s, &refuse) == SMTPX_RESULT_OK);
    drain_output(s);
    CHECK(strstr(said, "250 2.0.0 Ok: queued as 42\r\n") != NULL || strstr(said, "250 Ok: queued as 42\r\n") != NULL);

    /* VRFY, EXPN (each ends a group), then RSET and QUIT pipelined. */
    feed(s, "VRFY bob\r\n", 4000);
    e = next(s);
    CHECK(e.kind == SMTPX_EVENT_KIND_VERIFY && strcmp(e.arg, "bob") == 0);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    CHECK(next(s).kind == SMTPX_EVENT_KIND_NONE);
    feed(s, "EXPN staff\r\n", 4000);
    e = next(s);
    CHECK(e.kind == SMTPX_EVENT_KIND_EXPAND && strcmp(e.arg, "staff") == 0);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    CHECK(next(s).kind == SMTPX_EVENT_KIND_NONE);
    feed(s, "RSET\r\nQUIT\r\n", 4000);
    e = next(s);
    while (e.kind == SMTPX_EVENT_KIND_RESET)
        e = next(s);
    CHECK(e.kind == SMTPX_EVENT_KIND_CLOSE);
    CHECK(smtpx_server_session_is_closed(s));
    drain_output(s);
    CHECK(strstr(said, "221 ") != NULL);
    smtpx_server_session_free(s);
}

static void test_timeout_and_eof(void) {
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_server_session *s = NULL;
    smtpx_server_event e;
    uint64_t deadline = 0;
    bool has = true;

    CHECK(smtpx_server_config_set_timeout_secs(config, 5) == SMTPX_RESULT_OK);
    CHECK(smtpx_server_session_new(config, 0, &s) == SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (s == NULL)
        return;
    CHECK(next(s).kind == SMTPX_EVENT_KIND_CONNECT);
    /* No deadline while a decision is pending. */
    CHECK(smtpx_server_session_next_deadline(s, &deadline, &has) == SMTPX_RESULT_OK);
    CHECK(!has);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    CHECK(next(s).kind == SMTPX_EVENT_KIND_NONE);
    CHECK(smtpx_server_session_next_deadline(s, &deadline, &has) == SMTPX_RESULT_OK);
    CHECK(has && deadline == 5000);
    CHECK(smtpx_server_session_handle_timeout(s, 4999) == SMTPX_RESULT_OK);
    CHECK(!smtpx_server_session_is_closed(s));
    CHECK(smtpx_server_session_handle_timeout(s, 5000) == SMTPX_RESULT_OK);
    e = next(s);
    while (e.kind != SMTPX_EVENT_KIND_CLOSE && e.kind != SMTPX_EVENT_KIND_NONE)
        e = next(s);
    CHECK(e.kind == SMTPX_EVENT_KIND_CLOSE);
    drain_output(s);
    CHECK(strstr(said, "421 4.4.2") != NULL);
    smtpx_server_session_free(s);

    /* End of input in the middle of a message aborts it. */
    config = smtpx_server_config_new();
    CHECK(smtpx_server_session_new(config, 0, &s) == SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (s == NULL)
        return;
    CHECK(next(s).kind == SMTPX_EVENT_KIND_CONNECT);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    {
        /* A HELO client is not offered PIPELINING: one command at a time, each answered. */
        const char *steps[] = {"HELO c\r\n", "MAIL FROM:<>\r\n", "RCPT TO:<b@example.org>\r\n",
                               "DATA\r\n", "partial"};
        size_t i;
        for (i = 0; i < sizeof steps / sizeof steps[0]; i++) {
            feed(s, steps[i], 1);
            for (;;) {
                e = next(s);
                if (e.needs_decision) {
                    CHECK(e.kind != SMTPX_EVENT_KIND_MAIL || (e.arg != NULL && e.arg[0] == '\0'));
                    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
                    continue;
                }
                if (e.kind == SMTPX_EVENT_KIND_NONE)
                    break;
            }
            CHECK(!smtpx_server_session_is_closed(s));
        }
    }
    CHECK(smtpx_server_session_receive_eof(s) == SMTPX_RESULT_OK);
    {
        bool aborted = false, closed = false;
        int guard = 0;
        while (guard++ < 20) {
            e = next(s);
            if (e.kind == SMTPX_EVENT_KIND_MESSAGE_ABORTED) {
                aborted = true;
                CHECK(e.abort_reason == SMTPX_ABORT_REASON_DISCONNECTED);
            }
            if (e.kind == SMTPX_EVENT_KIND_CLOSE)
                closed = true;
            if (e.kind == SMTPX_EVENT_KIND_NONE)
                break;
        }
        CHECK(aborted);
        CHECK(closed);
    }
    smtpx_server_session_free(s);
}

static void test_starttls_and_auth(const char *cert, const char *key) {
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_server_session *s = NULL;
    smtpx_server_event e;

    CHECK(smtpx_server_config_set_tls_files(config, cert, key) == SMTPX_RESULT_OK);
    CHECK(smtpx_server_config_add_user(config, "alice", "pw") == SMTPX_RESULT_OK);
    /* The sync check would end the session at the smuggled command (test_pipelining_sync):
     * off here, to see the session itself throw it away. */
    CHECK(smtpx_server_config_set_pipelining_sync(config, false) == SMTPX_RESULT_OK);
    CHECK(smtpx_server_session_new(config, 0, &s) == SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (s == NULL)
        return;
    CHECK(next(s).kind == SMTPX_EVENT_KIND_CONNECT);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    feed(s, "EHLO c\r\n", 1);
    CHECK(next(s).kind == SMTPX_EVENT_KIND_HELLO);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    CHECK(next(s).kind == SMTPX_EVENT_KIND_NONE);
    drain_output(s);
    CHECK(strstr(said, "STARTTLS") != NULL);
    CHECK(strstr(said, "AUTH") == NULL); /* not offered in clear */
    /* A command smuggled behind STARTTLS is thrown away. */
    feed(s, "STARTTLS\r\nMAIL FROM:<evil@example.com>\r\n", 2);
    e = next(s);
    while (e.kind == SMTPX_EVENT_KIND_RESET)
        e = next(s);
    CHECK(e.kind == SMTPX_EVENT_KIND_START_TLS);
    drain_output(s);
    CHECK(strncmp(said, "220 ", 4) == 0);
    CHECK(smtpx_server_session_tls_established(s, 3) == SMTPX_RESULT_OK);
    CHECK(next(s).kind == SMTPX_EVENT_KIND_NONE);
    feed(s, "EHLO c\r\nAUTH PLAIN AGFsaWNlAHB3\r\n", 4);
    CHECK(next(s).kind == SMTPX_EVENT_KIND_HELLO);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    e = next(s);
    CHECK(e.kind == SMTPX_EVENT_KIND_AUTH && e.needs_decision);
    CHECK(e.arg != NULL && strcmp(e.arg, "alice") == 0);
    CHECK(e.password != NULL && strcmp(e.password, "pw") == 0 && e.password_len == 2);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    drain_output(s);
    CHECK(strstr(said, "AUTH PLAIN LOGIN") != NULL);
    CHECK(strstr(said, "235 ") != NULL);
    smtpx_server_session_free(s);
}

static void test_errors(void) {
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_server_session *s = NULL;
    smtpx_server_event e;
    const uint8_t *p;
    size_t n;
    uint64_t ms;
    bool has;

    CHECK(smtpx_server_session_new(NULL, 0, &s) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_session_new(config, 0, NULL) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(s == NULL);
    smtpx_server_session_free(NULL);
    CHECK(smtpx_server_session_receive(NULL, (const uint8_t *)"x", 1, 0, &n) ==
          SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_session_receive_eof(NULL) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_session_poll_event(NULL, &e) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_session_decide(NULL, NULL) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_session_output(NULL, &p, &n) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_session_consume_output(NULL, 1) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_session_next_deadline(NULL, &ms, &has) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_session_handle_timeout(NULL, 0) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_session_tls_established(NULL, 0) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_session_is_closed(NULL));

    CHECK(smtpx_server_session_new(config, 0, &s) == SMTPX_RESULT_OK);
    if (s != NULL) {
        CHECK(smtpx_server_session_receive(s, NULL, 1, 0, &n) == SMTPX_RESULT_NULL_PARAMETER);
        CHECK(smtpx_server_session_receive(s, (const uint8_t *)"x", 1, 0, NULL) ==
              SMTPX_RESULT_NULL_PARAMETER);
        CHECK(smtpx_server_session_receive(s, NULL, 0, 0, &n) == SMTPX_RESULT_OK && n == 0);
        CHECK(smtpx_server_session_poll_event(s, NULL) == SMTPX_RESULT_NULL_PARAMETER);
        CHECK(smtpx_server_session_output(s, NULL, &n) == SMTPX_RESULT_NULL_PARAMETER);
        CHECK(smtpx_server_session_output(s, &p, NULL) == SMTPX_RESULT_NULL_PARAMETER);
        CHECK(smtpx_server_session_next_deadline(s, NULL, &has) == SMTPX_RESULT_NULL_PARAMETER);
        CHECK(smtpx_server_session_next_deadline(s, &ms, NULL) == SMTPX_RESULT_NULL_PARAMETER);
        /* A decision with an invalid code becomes 451 4.3.0. */
        CHECK(next(s).kind == SMTPX_EVENT_KIND_CONNECT);
        {
            smtpx_decision d;
            memset(&d, 0, sizeof d);
            d.code = 999;
            CHECK(smtpx_server_session_decide(s, &d) == SMTPX_RESULT_OK);
            drain_output(s);
            CHECK(strncmp(said, "451 4.3.0", 9) == 0);
        }
        smtpx_server_session_free(s);
    }
    smtpx_server_config_free(config);
}

static void test_lmtp_per_recipient(void) {
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_server_session *s = NULL;
    smtpx_server_event e;
    smtpx_decision each[2];
    char body[64] = "";

    CHECK(smtpx_server_config_set_lmtp(config, true) == SMTPX_RESULT_OK);
    CHECK(smtpx_server_session_new(config, 0, &s) == SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (s == NULL)
        return;
    CHECK(next(s).kind == SMTPX_EVENT_KIND_CONNECT);
    CHECK(smtpx_server_session_decide_each(s, NULL, 0) == SMTPX_RESULT_OK); /* accepts */
    CHECK(next(s).kind == SMTPX_EVENT_KIND_NONE);
    /* LHLO, then the envelope up to DATA's 354, then the content: each waited for. */
    feed(s, "LHLO c\r\n", 1);
    CHECK(next(s).kind == SMTPX_EVENT_KIND_HELLO);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    CHECK(next(s).kind == SMTPX_EVENT_KIND_NONE);
    feed(s, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
            "RCPT TO:<c@example.org>\r\nDATA\r\n", 1);
    for (;;) {
        e = next(s);
        if (e.kind == SMTPX_EVENT_KIND_NONE)
            break;
        if (e.needs_decision)
            CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    }
    drain_output(s);
    CHECK(strstr(said, "354 ") != NULL);
    feed(s, "hi\r\n.\r\n", 1);
    for (;;) {
        e = next_collecting(s, body, sizeof body);
        if (e.kind == SMTPX_EVENT_KIND_MESSAGE_END || e.kind == SMTPX_EVENT_KIND_NONE)
            break;
        if (e.needs_decision)
            CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    }
    CHECK(e.kind == SMTPX_EVENT_KIND_MESSAGE_END);
    CHECK(strcmp(body, "hi\r\n") == 0);
    memset(each, 0, sizeof each);
    each[0].code = 250;
    strcpy(each[0].text, "delivered to b");
    each[1].code = 452;
    each[1].has_enhanced = true;
    each[1].enhanced.status_class = 4;
    each[1].enhanced.subject = 2;
    each[1].enhanced.detail = 2;
    strcpy(each[1].text, "mailbox full");
    CHECK(smtpx_server_session_decide_each(s, NULL, 2) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_session_decide_each(NULL, each, 2) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_session_decide_each(s, each, 2) == SMTPX_RESULT_OK);
    CHECK(smtpx_server_session_decide_each(s, each, 2) == SMTPX_RESULT_NOT_READY);
    drain_output(s);
    CHECK(strstr(said, "delivered to b\r\n") != NULL);
    CHECK(strstr(said, "452 4.2.2 mailbox full\r\n") != NULL);
    smtpx_server_session_free(s);
}

/* Input waiting behind a command that ends a group (here STARTTLS) is a synchronisation
 * error by default: 554 5.5.0 and the session closes; nothing smuggled is run. */
static void test_pipelining_sync(const char *cert, const char *key) {
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_server_session *s = NULL;
    smtpx_server_event e;

    CHECK(smtpx_server_config_set_tls_files(config, cert, key) == SMTPX_RESULT_OK);
    CHECK(smtpx_server_config_set_pipelining_sync(NULL, true) == SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_session_new(config, 0, &s) == SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (s == NULL)
        return;
    CHECK(next(s).kind == SMTPX_EVENT_KIND_CONNECT);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    feed(s, "EHLO c\r\n", 1);
    CHECK(next(s).kind == SMTPX_EVENT_KIND_HELLO);
    CHECK(smtpx_server_session_decide(s, NULL) == SMTPX_RESULT_OK);
    CHECK(next(s).kind == SMTPX_EVENT_KIND_NONE);
    drain_output(s);
    feed(s, "STARTTLS\r\nMAIL FROM:<evil@example.com>\r\n", 2);
    e = next(s);
    while (e.kind == SMTPX_EVENT_KIND_RESET)
        e = next(s);
    CHECK(e.kind == SMTPX_EVENT_KIND_CLOSE);
    CHECK(smtpx_server_session_is_closed(s));
    drain_output(s);
    CHECK(strcmp(said, "554 5.5.0 Error: SMTP protocol synchronization\r\n") == 0);
    smtpx_server_session_free(s);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s CERT.pem KEY.pem\n", argv[0]);
        return 2;
    }
    test_conversation();
    test_timeout_and_eof();
    test_starttls_and_auth(argv[1], argv[2]);
    test_errors();
    test_lmtp_per_recipient();
    test_pipelining_sync(argv[1], argv[2]);
    if (failures != 0) {
        fprintf(stderr, "test_session: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_session: all checks passed\n");
    return 0;
}
