/*
 * Server parity with Rust, from C: serving an already listening socket (socket
 * activation) and multi-line replies from handler callbacks, against the smtpx client
 * over loopback.
 *
 * Usage: test_server_parity (no arguments). Linked against libsmtpx.a; run under
 * ASan+UBSan and under valgrind.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"
#include "check.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A TCP socket bound to a free loopback port; listening when asked. */
static int bound_socket(bool listening, uint16_t *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        (listening && listen(fd, 16) != 0) ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        perror("socket");
        exit(2);
    }
    *port = ntohs(addr.sin_port);
    return fd;
}

/* rcpt: refuse "multi@..." with a three-line reply, accept the others. */
static int on_rcpt(void *userdata, uint64_t conn_id, const char *arg, smtpx_decision *out) {
    (void)userdata;
    (void)conn_id;
    if (strncmp(arg, "multi@", 6) != 0) {
        return SMTPX_ACCEPT;
    }
    out->code = 550;
    out->has_enhanced = true;
    out->enhanced.status_class = 5;
    out->enhanced.subject = 1;
    out->enhanced.detail = 1;
    snprintf(out->text, sizeof out->text, "no such user\r\nsee the list\nof our users\n");
    return SMTPX_REPLY;
}

static void test_listen_fd_and_multiline_replies(void) {
    uint16_t port;
    int fd = bound_socket(true, &port);
    smtpx_server_config *c = smtpx_server_config_new();
    CHECK_RESULT(smtpx_server_config_set_listen_fd(c, -7), SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(smtpx_server_config_set_listen_fd(c, fd), SMTPX_RESULT_OK);
    smtpx_handler h;
    memset(&h, 0, sizeof h);
    h.rcpt = on_rcpt;
    smtpx_server *s = NULL;
    CHECK_RESULT(smtpx_server_start(c, &h, &s), SMTPX_RESULT_OK);
    if (s == NULL) {
        smtpx_server_config_free(c);
        close(fd);
        return;
    }
    /* The server serves our socket: same port. */
    CHECK(smtpx_server_local_port(s) == port);

    smtpx_client_options *o = smtpx_client_options_new();
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_NONE), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_client_options_set_command_timeout_ms(o, 10000), SMTPX_RESULT_OK);
    smtpx_client *client = NULL;
    CHECK_RESULT(smtpx_client_connect("127.0.0.1", port, NULL, o, &client), SMTPX_RESULT_OK);
    if (client != NULL) {
        const char *to[] = {"multi@example.org", "bob@example.org"};
        const char msg[] = "Subject: x\r\n\r\nbody\r\n";
        smtpx_send_result *r = NULL;
        CHECK_RESULT(smtpx_client_send(client, "a@example.org", to, 2, (const uint8_t *)msg,
                                       strlen(msg), &r),
                     SMTPX_RESULT_OK);
        if (r != NULL) {
            CHECK(!smtpx_send_result_recipient_accepted(r, 0));
            CHECK(smtpx_send_result_recipient_accepted(r, 1));
            const smtpx_reply *reply = smtpx_send_result_recipient_reply(r, 0);
            CHECK(smtpx_reply_code(reply) == 550);
            smtpx_enhanced_code e;
            CHECK(smtpx_reply_enhanced(reply, &e) && e.subject == 1 && e.detail == 1);
            /* Three lines, in order; the CR was dropped, nothing injected. */
            CHECK(strcmp(smtpx_reply_text(reply), "no such user\nsee the list\nof our users") == 0);
            smtpx_send_result_free(r);
        }
        CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
        smtpx_client_free(client);
    }
    smtpx_client_options_free(o);
    smtpx_server_free(s);
    /* The server owned the descriptor and closed it. */
    CHECK(fcntl(fd, F_GETFD) == -1);
    smtpx_server_config_free(c);
}

static void test_a_socket_that_is_not_listening_is_refused(void) {
    uint16_t port;
    int fd = bound_socket(false, &port);
    smtpx_server_config *c = smtpx_server_config_new();
    CHECK_RESULT(smtpx_server_config_set_listen_fd(c, fd), SMTPX_RESULT_OK);
    smtpx_handler h;
    memset(&h, 0, sizeof h);
    smtpx_server *s = NULL;
    CHECK_RESULT(smtpx_server_start(c, &h, &s), SMTPX_RESULT_IO);
    CHECK(s == NULL);
    char buf[256];
    size_t n = 0;
    CHECK_RESULT(smtpx_server_config_last_error(c, buf, sizeof buf, &n), SMTPX_RESULT_OK);
    CHECK(strstr(buf, "not listening") != NULL);
    /* Still the caller's, still open. */
    CHECK(fcntl(fd, F_GETFD) != -1);
    close(fd);
    smtpx_server_config_free(c);
}

int main(void) {
    test_listen_fd_and_multiline_replies();
    test_a_socket_that_is_not_listening_is_refused();
    if (failures != 0) {
        fprintf(stderr, "test_server_parity: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_server_parity: all checks passed\n");
    return 0;
}
