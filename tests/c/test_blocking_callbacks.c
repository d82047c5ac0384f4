/* smtpx_server_start serves on an event loop with a few threads; a callback that blocks
 * must stall only its own connection. Eight clients greet with "slow.test", whose hello
 * callback sleeps 3 s (more blocked callbacks than the server has worker threads); a
 * ninth client must meanwhile get through a whole conversation (within 2.5 s, generous for
 * valgrind). Then the eight must all have been answered. Run under ASan+UBSan and valgrind,
 * and once more pinned to one CPU (make c-asan), where one of the server's two workers
 * waits in reserve until a callback blocks. */
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
#include <time.h>
#include <unistd.h>

#define SLOW 8

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int blocked_now, blocked_most;

static int blocked(int delta) {
    int n;
    pthread_mutex_lock(&lock);
    blocked_now += delta;
    if (blocked_now > blocked_most)
        blocked_most = blocked_now;
    n = blocked_now;
    pthread_mutex_unlock(&lock);
    return n;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int on_hello(void *userdata, uint64_t conn_id, const char *arg, smtpx_decision *out) {
    (void)userdata, (void)conn_id, (void)out;
    if (arg != NULL && strcmp(arg, "slow.test") == 0) {
        blocked(1);
        sleep_ms(3000); /* a slow lookup, a database, a disk */
        blocked(-1);
    }
    return SMTPX_ACCEPT;
}

static int dial(uint16_t port) {
    struct sockaddr_in addr;
    struct timeval tv = {20, 0};
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

/* The code of the next whole reply, -1 on a closed or silent connection. */
static int reply_code(int fd) {
    char line[1024];
    size_t len = 0;
    while (len + 1 < sizeof line) {
        if (read(fd, line + len, 1) != 1)
            return -1;
        len++;
        if (len >= 2 && line[len - 2] == '\r' && line[len - 1] == '\n') {
            if (len >= 4 && line[3] == ' ')
                return atoi(line);
            len = 0;
        }
    }
    return -1;
}

static int say(int fd, const char *text) {
    return write(fd, text, strlen(text)) == (ssize_t)strlen(text) ? reply_code(fd) : -1;
}

int main(void) {
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_handler h;
    smtpx_server *server = NULL;
    int slow[SLOW], fast, i;
    uint16_t port;
    double started, fast_took;

    memset(&h, 0, sizeof h);
    h.hello = on_hello;
    CHECK(smtpx_server_config_set_hostname(config, "mx.test") == SMTPX_RESULT_OK);
    CHECK(smtpx_server_start(config, &h, &server) == SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    if (server == NULL)
        return 1;
    port = smtpx_server_local_port(server);
    /* Time for a worker to reach the reserve where there is one (pinned to one CPU). */
    sleep_ms(50);

    for (i = 0; i < SLOW; i++) {
        slow[i] = dial(port);
        CHECK(reply_code(slow[i]) == 220);
        CHECK(write(slow[i], "EHLO slow.test\r\n", 16) == 16);
    }
    /* Until every slow callback is running (bounded). */
    for (i = 0; i < 200 && blocked(0) < SLOW; i++)
        sleep_ms(10);
    CHECK(blocked(0) == SLOW);

    started = now_s();
    fast = dial(port);
    CHECK(reply_code(fast) == 220);
    CHECK(say(fast, "EHLO fast.test\r\n") == 250);
    CHECK(say(fast, "MAIL FROM:<a@example.org>\r\n") == 250);
    CHECK(say(fast, "QUIT\r\n") == 221);
    fast_took = now_s() - started;
    close(fast);
    CHECK(blocked(0) > 0); /* the slow ones were still blocked meanwhile */
    if (fast_took >= 2.5)
        fprintf(stderr, "the fast client took %.3f s beside %d blocked callbacks\n", fast_took, SLOW);
    CHECK(fast_took < 2.5);

    for (i = 0; i < SLOW; i++) {
        CHECK(reply_code(slow[i]) == 250);
        CHECK(say(slow[i], "QUIT\r\n") == 221);
        close(slow[i]);
    }
    CHECK(smtpx_server_stop(server, 5000, NULL) == SMTPX_RESULT_OK);
    smtpx_server_free(server);
    if (failures != 0) {
        fprintf(stderr, "test_blocking_callbacks: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_blocking_callbacks: all checks passed\n");
    return 0;
}
