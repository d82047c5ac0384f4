/*
 * Envelope parity with the Rust API, from C: DSN (NOTIFY, ORCPT, RET, ENVID), BODY,
 * SMTPUTF8 and XOAUTH2 as they appear on the wire, and a refused MAIL FROM reported as
 * SMTPX_RESULT_SENDER_REFUSED. The peer is a scripted SMTP server on a loopback socket
 * (a thread here) that records every line it receives, so the test sees exactly what
 * the client sent.
 *
 * Usage: test_envelope (no arguments). Linked against libsmtpx.a; run under ASan+UBSan
 * and under valgrind.
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

/* ---- the scripted server: one connection, every received line kept ---- */

struct script {
    int listener;
    int refuse_mail;   /* answer MAIL with 550 */
    char seen[16384];  /* the lines received, each ending in \n */
    size_t seen_len;
};

static void say(int fd, const char *text) {
    size_t len = strlen(text);
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        if (n <= 0) {
            return;
        }
        text += n;
        len -= (size_t)n;
    }
}

/* Reads one line (CRLF stripped) into buf; false at EOF, error or timeout. */
static bool read_line(int fd, char *buf, size_t cap) {
    size_t n = 0;
    for (;;) {
        char c;
        if (read(fd, &c, 1) != 1) {
            return false;
        }
        if (c == '\n') {
            if (n > 0 && buf[n - 1] == '\r') {
                n--;
            }
            buf[n] = '\0';
            return true;
        }
        if (n + 1 < cap) {
            buf[n++] = c;
        }
    }
}

static void *serve(void *arg) {
    struct script *s = arg;
    int fd = accept(s->listener, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    struct timeval tv = {10, 0}; /* every read bounded */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    say(fd, "220 script.test ESMTP\r\n");
    char line[2048];
    bool in_data = false;
    while (read_line(fd, line, sizeof line)) {
        if (in_data) {
            if (strcmp(line, ".") == 0) {
                in_data = false;
                say(fd, "250 2.0.0 queued as S1\r\n");
            }
            continue;
        }
        size_t len = strlen(line);
        if (s->seen_len + len + 2 < sizeof s->seen) {
            memcpy(s->seen + s->seen_len, line, len);
            s->seen_len += len;
            s->seen[s->seen_len++] = '\n';
            s->seen[s->seen_len] = '\0';
        }
        if (strncmp(line, "EHLO", 4) == 0) {
            say(fd, "250-script.test\r\n250-DSN\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                    "250 AUTH XOAUTH2\r\n");
        } else if (strncmp(line, "AUTH XOAUTH2", 12) == 0) {
            say(fd, "235 2.7.0 accepted\r\n");
        } else if (strncmp(line, "MAIL", 4) == 0) {
            say(fd, s->refuse_mail ? "550 5.7.1 sender blocked\r\n" : "250 2.1.0 ok\r\n");
        } else if (strncmp(line, "RCPT", 4) == 0) {
            say(fd, "250 2.1.5 ok\r\n");
        } else if (strcmp(line, "DATA") == 0) {
            in_data = true;
            say(fd, "354 go on\r\n");
        } else if (strcmp(line, "QUIT") == 0) {
            say(fd, "221 2.0.0 bye\r\n");
            break;
        } else {
            say(fd, "250 2.0.0 ok\r\n"); /* RSET, NOOP */
        }
    }
    close(fd);
    return NULL;
}

/* Starts the scripted server; writes its port. */
static pthread_t start_script(struct script *s, uint16_t *port) {
    s->listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (s->listener < 0 || bind(s->listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(s->listener, 1) != 0 ||
        getsockname(s->listener, (struct sockaddr *)&addr, &alen) != 0) {
        perror("scripted server");
        exit(2);
    }
    *port = ntohs(addr.sin_port);
    pthread_t t;
    if (pthread_create(&t, NULL, serve, s) != 0) {
        exit(2);
    }
    return t;
}

static smtpx_client_options *plain_options(void) {
    smtpx_client_options *o = smtpx_client_options_new();
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_NONE), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_command_timeout_ms(o, 10000), SMTPX_RESULT_OK);
    return o;
}

static const char message[] = "Subject: hi\r\n\r\nhello\r\n";

static void test_dsn_body_smtputf8_xoauth2(void) {
    struct script s;
    memset(&s, 0, sizeof s);
    uint16_t port;
    pthread_t t = start_script(&s, &port);
    smtpx_client_options *o = plain_options();
    /* XOAUTH2 over a plain connection needs the explicit permission. */
    CHECK_RESULT(smtpx_client_options_set_xoauth2(o, "alice@example.org", "tok3n"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_allow_insecure_auth(o, true), SMTPX_RESULT_OK);
    smtpx_client *client = NULL;
    CHECK_RESULT(smtpx_client_connect("127.0.0.1", port, NULL, o, &client), SMTPX_RESULT_OK);
    if (client != NULL) {
        smtpx_envelope *e = NULL;
        CHECK_RESULT(smtpx_envelope_new("a@example.org", &e), SMTPX_RESULT_OK);
        CHECK_RESULT(smtpx_envelope_add_recipient(e, "b@example.org",
                                                  SMTPX_NOTIFY_SUCCESS | SMTPX_NOTIFY_FAILURE,
                                                  "B+orig@example.org"),
                     SMTPX_RESULT_OK);
        CHECK_RESULT(smtpx_envelope_add_recipient(e, "c@example.org", SMTPX_NOTIFY_NEVER, NULL),
                     SMTPX_RESULT_OK);
        CHECK_RESULT(smtpx_envelope_add_recipient(e, "d@example.org", 0, NULL), SMTPX_RESULT_OK);
        CHECK_RESULT(smtpx_envelope_set_ret(e, SMTPX_DSN_RET_HEADERS), SMTPX_RESULT_OK);
        CHECK_RESULT(smtpx_envelope_set_envid(e, "id 42=x"), SMTPX_RESULT_OK);
        CHECK_RESULT(smtpx_envelope_set_body(e, SMTPX_BODY_EIGHT_BIT_MIME), SMTPX_RESULT_OK);
        CHECK_RESULT(smtpx_envelope_set_smtputf8(e, true), SMTPX_RESULT_OK);
        smtpx_send_result *result = NULL;
        CHECK_RESULT(smtpx_client_send_envelope(client, e, (const uint8_t *)message,
                                                strlen(message), &result),
                     SMTPX_RESULT_OK);
        CHECK(result != NULL && smtpx_send_result_success(result));
        CHECK(result != NULL && smtpx_send_result_recipient_count(result) == 3);
        smtpx_send_result_free(result);
        smtpx_envelope_free(e);
        CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
        smtpx_client_free(client);
    }
    pthread_join(t, NULL);
    close(s.listener);
    /* What went over the wire. */
    CHECK(strstr(s.seen, "AUTH XOAUTH2 ") != NULL);
    CHECK(strstr(s.seen, "MAIL FROM:<a@example.org>") != NULL);
    CHECK(strstr(s.seen, " BODY=8BITMIME") != NULL);
    CHECK(strstr(s.seen, " SMTPUTF8") != NULL);
    CHECK(strstr(s.seen, " RET=HDRS") != NULL);
    CHECK(strstr(s.seen, " ENVID=id+2042+3Dx") != NULL);
    CHECK(strstr(s.seen, "RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B+2Borig@example.org\n") != NULL);
    CHECK(strstr(s.seen, "RCPT TO:<c@example.org> NOTIFY=NEVER\n") != NULL);
    CHECK(strstr(s.seen, "RCPT TO:<d@example.org>\n") != NULL);
    if (failures != 0) {
        fprintf(stderr, "the scripted server saw:\n%s", s.seen);
    }
    smtpx_client_options_free(o);
}

static void test_refused_sender(void) {
    struct script s;
    memset(&s, 0, sizeof s);
    s.refuse_mail = 1;
    uint16_t port;
    pthread_t t = start_script(&s, &port);
    smtpx_client_options *o = plain_options();
    smtpx_client *client = NULL;
    CHECK_RESULT(smtpx_client_connect("127.0.0.1", port, NULL, o, &client), SMTPX_RESULT_OK);
    if (client != NULL) {
        const char *to[] = {"b@example.org"};
        smtpx_send_result *result = NULL;
        CHECK_RESULT(smtpx_client_send(client, "spammer@example.org", to, 1,
                                       (const uint8_t *)message, strlen(message), &result),
                     SMTPX_RESULT_SENDER_REFUSED);
        CHECK(result == NULL);
        const smtpx_reply *reply = smtpx_client_last_error_reply(client);
        CHECK(reply != NULL && smtpx_reply_code(reply) == 550);
        char buf[256];
        size_t n = 0;
        CHECK_RESULT(smtpx_client_last_error(client, buf, sizeof buf, &n), SMTPX_RESULT_OK);
        CHECK(strstr(buf, "sender blocked") != NULL);
        /* The connection stays usable. */
        smtpx_reply *noop = NULL;
        CHECK_RESULT(smtpx_client_noop(client, &noop), SMTPX_RESULT_OK);
        smtpx_reply_free(noop);
        CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
        smtpx_client_free(client);
    }
    pthread_join(t, NULL);
    close(s.listener);
    smtpx_client_options_free(o);
}

static void test_envelope_arguments(void) {
    smtpx_envelope *e = NULL;
    CHECK_RESULT(smtpx_envelope_new("a@b\r\nRSET", &e), SMTPX_RESULT_INJECTION);
    CHECK(e == NULL);
    CHECK_RESULT(smtpx_envelope_new("not an address", &e), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_envelope_new("a@example.org", NULL), SMTPX_RESULT_NULL_PARAMETER);
    CHECK_RESULT(smtpx_envelope_new("", &e), SMTPX_RESULT_OK); /* the null sender */
    CHECK_RESULT(smtpx_envelope_add_recipient(e, "b@example.org", SMTPX_NOTIFY_NEVER | SMTPX_NOTIFY_DELAY, NULL),
                 SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_envelope_add_recipient(e, "b@example.org", 64, NULL), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_envelope_add_recipient(e, "b@example.org", 0, "x\ny"), SMTPX_RESULT_INJECTION);
    CHECK_RESULT(smtpx_envelope_set_ret(e, (smtpx_dsn_ret)7), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_envelope_set_body(e, (smtpx_body)7), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_envelope_set_envid(e, ""), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_envelope_set_envid(e, NULL), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_envelope_set_smtputf8(NULL, true), SMTPX_RESULT_NULL_PARAMETER);
    smtpx_envelope_free(e);
    smtpx_envelope_free(NULL);
}

int main(void) {
    test_envelope_arguments();
    test_dsn_body_smtputf8_xoauth2();
    test_refused_sender();
    if (failures != 0) {
        fprintf(stderr, "test_envelope: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_envelope: all checks passed\n");
    return 0;
}
