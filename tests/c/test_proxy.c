/* The PROXY protocol from C: the sans-I/O connection (a v1 and a v2 header read within
 * the READ action's byte limit, the client's address and the header's facts and TLVs, an
 * untrusted or unset peer, a malformed header), and a real server started with
 * smtpx_server_start behind a header sent on a loopback socket, whose connect callback
 * must see the client's address, not the socket's. Run under ASan+UBSan and valgrind. */
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

static smtpx_server_config *proxy_config(const char *trusted) {
    smtpx_server_config *config = smtpx_server_config_new();
    CHECK(config != NULL);
    CHECK(smtpx_server_config_set_hostname(config, "mx.test") == SMTPX_RESULT_OK);
    CHECK(smtpx_server_config_set_proxy_protocol(config, true, 2000) == SMTPX_RESULT_OK);
    CHECK(smtpx_server_config_add_proxy_trusted(config, trusted) == SMTPX_RESULT_OK);
    return config;
}

/* Feeds `input` (of `len` bytes) honouring each READ's byte limit, answering CONNECT,
   until an action other than READ comes while nothing is left, or CLOSE. Returns the
   kind of that action; `*used` is how much of the input was read. Bounded. */
static smtpx_action_kind feed(smtpx_server_connection *conn, const uint8_t *input, size_t len,
                              size_t *used) {
    size_t at = 0;
    int steps;
    for (steps = 0; steps < 10000; steps++) {
        smtpx_action a;
        memset(&a, 0, sizeof a);
        CHECK(smtpx_server_connection_next_action(conn, 0, &a) == SMTPX_RESULT_OK);
        if (a.kind == SMTPX_ACTION_KIND_READ && at < len) {
            size_t n = len - at;
            if (a.bytes_len != 0 && n > a.bytes_len)
                n = a.bytes_len;
            CHECK(smtpx_server_connection_receive(conn, input + at, n, 0) == SMTPX_RESULT_OK);
            at += n;
            continue;
        }
        *used = at;
        return a.kind;
    }
    CHECK(!"did not settle");
    return SMTPX_ACTION_KIND_CLOSE;
}

static void test_connection_v1(void) {
    smtpx_server_config *config = proxy_config("127.0.0.0/8");
    smtpx_server_connection *conn = NULL;
    const char *wire = "PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nEHLO early\r\n";
    smtpx_proxy_info info;
    char peer[64];
    size_t n = 0, used = 0;
    uint8_t tlv[16];

    CHECK(smtpx_server_connection_new(config, 0, false, &conn) == SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (conn == NULL)
        return;
    CHECK(smtpx_server_connection_set_peer(conn, "not an address") ==
          SMTPX_RESULT_INVALID_ARGUMENT);
    CHECK(smtpx_server_connection_set_peer(conn, "127.0.0.1:5000") == SMTPX_RESULT_OK);
    CHECK(smtpx_server_connection_proxy(conn, &info) == SMTPX_RESULT_NOT_READY);
    CHECK(feed(conn, (const uint8_t *)wire, strlen(wire), &used) == SMTPX_ACTION_KIND_CONNECT);
    CHECK(used == strlen("PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n"));
    CHECK(smtpx_server_connection_peer(conn, peer, sizeof peer, &n) == SMTPX_RESULT_OK);
    CHECK(strcmp(peer, "192.0.2.7:40000") == 0);
    CHECK(smtpx_server_connection_proxy(conn, &info) == SMTPX_RESULT_OK);
    CHECK(info.version == 1 && !info.local);
    CHECK(strcmp(info.source, "192.0.2.7:40000") == 0);
    CHECK(strcmp(info.destination, "198.51.100.1:25") == 0);
    CHECK(smtpx_server_connection_proxy_tlv(conn, 0x02, tlv, sizeof tlv, &n) ==
          SMTPX_RESULT_NOT_READY);
    /* Then the conversation as usual: the greeting. */
    CHECK(smtpx_server_connection_connected(conn, NULL) == SMTPX_RESULT_OK);
    {
        smtpx_action a;
        CHECK(smtpx_server_connection_next_action(conn, 0, &a) == SMTPX_RESULT_OK);
        CHECK(a.kind == SMTPX_ACTION_KIND_WRITE && a.bytes_len > 4 &&
              memcmp(a.bytes, "220 ", 4) == 0);
    }
    smtpx_server_connection_lost(conn);
    for (n = 0; n < 100; n++) { /* run the remaining hooks to CLOSE */
        smtpx_action a;
        CHECK(smtpx_server_connection_next_action(conn, 0, &a) == SMTPX_RESULT_OK);
        if (a.kind == SMTPX_ACTION_KIND_CLOSE)
            break;
        if (a.kind == SMTPX_ACTION_KIND_HOOK)
            CHECK(smtpx_server_connection_answer(conn, NULL) == SMTPX_RESULT_OK);
    }
    smtpx_server_connection_free(conn);
}

static void test_connection_v2_with_a_tlv(void) {
    smtpx_server_config *config = proxy_config("::1");
    smtpx_server_connection *conn = NULL;
    /* v2, PROXY, TCP over IPv4: 203.0.113.9:51000 -> 192.0.2.1:25, then AUTHORITY
       "mx.example" (type 0x02, length 10), then a TLS ClientHello's first bytes. */
    static const uint8_t wire[] = {
        '\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n', 0x21, 0x11, 0, 25,
        203, 0, 113, 9, 192, 0, 2, 1, 0xc7, 0x38, 0, 25,
        0x02, 0, 10, 'm', 'x', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e',
        0x16, 0x03, 0x01};
    smtpx_proxy_info info;
    uint8_t tlv[16];
    uint8_t small[4];
    size_t n = 0, used = 0;

    CHECK(smtpx_server_connection_new(config, 0, true, &conn) == SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (conn == NULL)
        return;
    CHECK(smtpx_server_connection_set_peer(conn, "[::1]:5000") == SMTPX_RESULT_OK);
    /* Implicit TLS: the handshake comes next, with the ClientHello left unread. */
    CHECK(feed(conn, wire, sizeof wire, &used) == SMTPX_ACTION_KIND_START_TLS);
    CHECK(used == sizeof wire - 3);
    CHECK(smtpx_server_connection_proxy(conn, &info) == SMTPX_RESULT_OK);
    CHECK(info.version == 2 && strcmp(info.source, "203.0.113.9:51000") == 0);
    CHECK(smtpx_server_connection_proxy_tlv(conn, 0x02, tlv, sizeof tlv, &n) == SMTPX_RESULT_OK);
    CHECK(n == 10 && memcmp(tlv, "mx.example", 10) == 0);
    CHECK(smtpx_server_connection_proxy_tlv(conn, 0x02, small, sizeof small, &n) ==
          SMTPX_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 10);
    /* A NULL buffer asks for the length, as every getter's does. */
    n = 0;
    CHECK(smtpx_server_connection_proxy_tlv(conn, 0x02, NULL, 0, &n) ==
          SMTPX_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 10);
    CHECK(smtpx_server_connection_proxy_tlv(conn, 0x02, tlv, sizeof tlv, NULL) ==
          SMTPX_RESULT_NULL_PARAMETER);
    smtpx_server_connection_lost(conn);
    {
        smtpx_action a;
        CHECK(smtpx_server_connection_next_action(conn, 0, &a) == SMTPX_RESULT_OK);
        CHECK(a.kind == SMTPX_ACTION_KIND_CLOSE);
    }
    smtpx_server_connection_free(conn);
}

static void test_connection_refusals(void) {
    const char *cases[] = {"EHLO client\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", NULL};
    const char **c;
    size_t used = 0;
    /* A malformed header, or none: closed without a word. */
    for (c = cases; *c != NULL; c++) {
        smtpx_server_config *config = proxy_config("127.0.0.1");
        smtpx_server_connection *conn = NULL;
        CHECK(smtpx_server_connection_new(config, 0, false, &conn) == SMTPX_RESULT_OK);
        smtpx_server_config_free(config);
        if (conn == NULL)
            continue;
        CHECK(smtpx_server_connection_set_peer(conn, "127.0.0.1:1") == SMTPX_RESULT_OK);
        CHECK(feed(conn, (const uint8_t *)*c, strlen(*c), &used) == SMTPX_ACTION_KIND_CLOSE);
        smtpx_server_connection_free(conn);
    }
    /* An untrusted peer, and a peer never set. */
    {
        const char *peers[] = {"192.0.2.1:1000", NULL};
        int i;
        for (i = 0; i < 2; i++) {
            smtpx_server_config *config = proxy_config("127.0.0.1");
            smtpx_server_connection *conn = NULL;
            smtpx_action a;
            CHECK(smtpx_server_connection_new(config, 0, false, &conn) == SMTPX_RESULT_OK);
            smtpx_server_config_free(config);
            if (conn == NULL)
                continue;
            if (peers[i] != NULL)
                CHECK(smtpx_server_connection_set_peer(conn, peers[i]) == SMTPX_RESULT_OK);
            CHECK(smtpx_server_connection_next_action(conn, 0, &a) == SMTPX_RESULT_OK);
            CHECK(a.kind == SMTPX_ACTION_KIND_CLOSE);
            smtpx_server_connection_free(conn);
        }
    }
    /* Bad arguments. */
    {
        smtpx_server_config *config = smtpx_server_config_new();
        CHECK(smtpx_server_config_add_proxy_trusted(config, "10.0.0.0/40") ==
              SMTPX_RESULT_INVALID_ARGUMENT);
        CHECK(smtpx_server_config_add_proxy_trusted(config, NULL) == SMTPX_RESULT_NULL_PARAMETER);
        CHECK(smtpx_server_config_set_proxy_protocol(NULL, true, 0) ==
              SMTPX_RESULT_NULL_PARAMETER);
        smtpx_server_config_free(config);
    }
}

/* The real server: the connect callback records the address it is given. */
struct seen {
    pthread_mutex_t lock;
    char peer[64];
};

static int on_connect(void *userdata, uint64_t conn_id, const char *arg, smtpx_decision *out) {
    struct seen *s = userdata;
    (void)conn_id;
    (void)out;
    pthread_mutex_lock(&s->lock);
    snprintf(s->peer, sizeof s->peer, "%s", arg != NULL ? arg : "");
    pthread_mutex_unlock(&s->lock);
    return SMTPX_ACCEPT;
}

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

/* Reads until a line ending in CRLF whose 4th byte is a space; returns its code. */
static int reply_code(int fd) {
    char line[512];
    size_t len = 0;
    while (len + 1 < sizeof line) {
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

static void say(int fd, const char *text) {
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
}

static void test_server(void) {
    struct seen seen;
    smtpx_server_config *config = proxy_config("127.0.0.0/8");
    smtpx_handler h;
    smtpx_server *server = NULL;
    int fd;
    char byte;

    memset(&seen, 0, sizeof seen);
    pthread_mutex_init(&seen.lock, NULL);
    memset(&h, 0, sizeof h);
    h.userdata = &seen;
    h.connect = on_connect;
    CHECK(smtpx_server_start(config, &h, &server) == SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (server == NULL)
        return;

    fd = dial(smtpx_server_local_port(server));
    say(fd, "PROXY TCP6 2001:db8::7 2001:db8::1 40000 25\r\n");
    CHECK(reply_code(fd) == 220);
    say(fd, "EHLO client.test\r\n");
    CHECK(reply_code(fd) == 250);
    say(fd, "QUIT\r\n");
    CHECK(reply_code(fd) == 221);
    close(fd);
    pthread_mutex_lock(&seen.lock);
    CHECK(strcmp(seen.peer, "[2001:db8::7]:40000") == 0);
    pthread_mutex_unlock(&seen.lock);

    /* No header: closed without a greeting. */
    fd = dial(smtpx_server_local_port(server));
    say(fd, "EHLO client.test\r\n");
    CHECK(read(fd, &byte, 1) <= 0);
    close(fd);

    CHECK(smtpx_server_stop(server, 5000, NULL) == SMTPX_RESULT_OK);
    smtpx_server_free(server);
    pthread_mutex_destroy(&seen.lock);
}

int main(void) {
    test_connection_v1();
    test_connection_v2_with_a_tlv();
    test_connection_refusals();
    test_server();
    if (failures != 0) {
        fprintf(stderr, "test_proxy: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_proxy: all checks passed\n");
    return 0;
}
