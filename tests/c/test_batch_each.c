/* smtpx_client_send_batch_each: each message's outcome reaches the callback as soon as
 * it is known, while later messages are still under way. The server (smtpx_server_start
 * with a data_end callback) holds the third message it receives until the client's
 * callback has seen the second outcome (bounded: it gives up after 10 s, and the test then
 * fails). A message over the server's SIZE limit gets its own error in place, and the
 * arrays hold what the callback was given. Run under ASan+UBSan and valgrind. */
#define _POSIX_C_SOURCE 200809L
#include "smtpx.h"
#include "check.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define N 5

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int data_ends;     /* data_end calls so far */
static int second_seen;   /* the client's callback has seen message 1's outcome */
static int held_released; /* the held message was let go because of it */
static int held_gave_up;  /* ... or because the wait ran out */

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static int locked_get(int *value) {
    int v;
    pthread_mutex_lock(&lock);
    v = *value;
    pthread_mutex_unlock(&lock);
    return v;
}

static void locked_add(int *value, int delta) {
    pthread_mutex_lock(&lock);
    *value += delta;
    pthread_mutex_unlock(&lock);
}

static int on_data_end(void *userdata, uint64_t conn_id, const char *arg, smtpx_decision *out) {
    int n, i;
    (void)userdata, (void)conn_id, (void)arg, (void)out;
    locked_add(&data_ends, 1);
    n = locked_get(&data_ends);
    if (n == 3) {
        for (i = 0; i < 1000 && !locked_get(&second_seen); i++)
            sleep_ms(10);
        locked_add(locked_get(&second_seen) ? &held_released : &held_gave_up, 1);
    }
    return SMTPX_ACCEPT;
}

/* What the callback was given, in the order it was called. */
struct seen {
    size_t calls;
    size_t index[N];
    smtpx_result code[N];
    const smtpx_send_result *result[N];
};

static void on_result(void *userdata, size_t index, smtpx_result code,
                      const smtpx_send_result *result) {
    struct seen *seen = userdata;
    if (seen->calls < N) {
        seen->index[seen->calls] = index;
        seen->code[seen->calls] = code;
        seen->result[seen->calls] = result;
    }
    seen->calls++;
    if (index == 1)
        locked_add(&second_seen, 1);
}

int main(void) {
    static const char message[] = "Subject: batch\r\n\r\nHello.\r\n";
    static char big[3000];
    const char *to[] = {"bob@example.org"};
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_client_options *o = smtpx_client_options_new();
    smtpx_server *server = NULL;
    smtpx_client *client = NULL;
    smtpx_handler h;
    smtpx_message batch[N];
    smtpx_send_result *results[N];
    smtpx_result codes[N];
    struct seen seen;
    size_t done = 99, i;

    memset(&h, 0, sizeof h);
    memset(&seen, 0, sizeof seen);
    memset(big, 'x', sizeof big);
    h.data_end = on_data_end;
    for (i = 0; i < N; i++) {
        batch[i].from = "alice@example.com";
        batch[i].to = to;
        batch[i].n_to = 1;
        batch[i].data = (const uint8_t *)message;
        batch[i].len = strlen(message);
    }
    /* Message 3 is over the limit: refused by the client before it is sent, so the third
     * message the server receives is message 2. */
    batch[3].data = (const uint8_t *)big;
    batch[3].len = sizeof big;

    CHECK_RESULT(smtpx_server_config_set_hostname(config, "mx.test"), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_config_set_max_size(config, 2000), SMTPX_RESULT_OK);
    CHECK_RESULT(smtpx_server_start(config, &h, &server), SMTPX_RESULT_OK);
    smtpx_server_config_free(config);
    CHECK_RESULT(smtpx_client_options_set_tls_mode(o, SMTPX_TLS_MODE_NONE), SMTPX_RESULT_OK);
    if (server != NULL) {
        CHECK_RESULT(smtpx_client_connect("127.0.0.1", smtpx_server_local_port(server), NULL, o,
                                          &client),
                     SMTPX_RESULT_OK);
    }
    if (client != NULL) {
        CHECK_RESULT(smtpx_client_send_batch_each(client, batch, N, results, codes, &done,
                                                  on_result, &seen),
                     SMTPX_RESULT_OK);
        CHECK(done == N);
        CHECK(seen.calls == N);
        CHECK(locked_get(&held_released) == 1);
        CHECK(locked_get(&held_gave_up) == 0);
        for (i = 0; i < N && i < seen.calls; i++) {
            CHECK(seen.index[i] == i);
            CHECK(seen.code[i] == codes[i]);
            CHECK(seen.result[i] == results[i]);
            if (i == 3) {
                CHECK(codes[i] == SMTPX_RESULT_MESSAGE_TOO_LARGE && results[i] == NULL);
            } else {
                CHECK(codes[i] == SMTPX_RESULT_OK && smtpx_send_result_success(results[i]));
            }
        }
        for (i = 0; i < N; i++)
            smtpx_send_result_free(results[i]);

        /* A NULL callback is smtpx_client_send_batch. */
        CHECK_RESULT(smtpx_client_send_batch_each(client, batch, 2, results, codes, &done, NULL,
                                                  NULL),
                     SMTPX_RESULT_OK);
        CHECK(done == 2 && codes[0] == SMTPX_RESULT_OK && codes[1] == SMTPX_RESULT_OK);
        smtpx_send_result_free(results[0]);
        smtpx_send_result_free(results[1]);
        CHECK_RESULT(smtpx_client_quit(client), SMTPX_RESULT_OK);
        smtpx_client_free(client);
    }
    if (server != NULL) {
        CHECK_RESULT(smtpx_server_stop(server, 5000, NULL), SMTPX_RESULT_OK);
        smtpx_server_free(server);
    }
    smtpx_client_options_free(o);
    if (failures != 0) {
        fprintf(stderr, "test_batch_each: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_batch_each: all checks passed\n");
    return 0;
}
