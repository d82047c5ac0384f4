/*
 * Sends messages through a connection pool shared by several threads, and prints how
 * each went.
 *
 *   pool HOST PORT FROM TO [COUNT [THREADS [POOL]]]
 *
 * Exits 0 when every message was accepted for its recipient, 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static const char *from;
static const char *to[1];
static int per_thread;

struct worker {
    smtpx_pool *pool;
    int failures;
};

static void *work(void *arg) {
    struct worker *w = arg;
    static const char message[] = "Subject: sent through an smtpx pool\r\n\r\nHello.\r\n";
    for (int i = 0; i < per_thread; i++) {
        smtpx_send_result *result = NULL;
        smtpx_result r = smtpx_pool_send(w->pool, from, to, 1, (const uint8_t *)message, sizeof message - 1, &result);
        if (r != SMTPX_RESULT_OK) {
            fprintf(stderr, "send failed: %s: %s\n", smtpx_result_str(r), smtpx_pool_last_error());
            w->failures++;
            continue;
        }
        if (!smtpx_send_result_success(result)) {
            const smtpx_reply *reply = smtpx_send_result_recipient_reply(result, 0);
            fprintf(stderr, "refused: %u\n", reply ? (unsigned)smtpx_reply_code(reply) : 0u);
            w->failures++;
        }
        smtpx_send_result_free(result);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: pool HOST PORT FROM TO [COUNT [THREADS [POOL]]]\n");
        return 2;
    }
    from = argv[3];
    to[0] = argv[4];
    int count = argc > 5 ? atoi(argv[5]) : 10;
    int threads = argc > 6 ? atoi(argv[6]) : 4;
    if (threads < 1 || threads > 64) threads = 4;
    per_thread = count / threads;

    smtpx_client_options *options = smtpx_client_options_new();
    smtpx_client_options_set_tls_mode(options, SMTPX_TLS_MODE_NONE);
    smtpx_pool_config config = smtpx_pool_config_default();
    if (argc > 7) config.max_size = (size_t)atoi(argv[7]);
    smtpx_pool *pool = NULL;
    smtpx_result r = smtpx_pool_new(argv[1], (uint16_t)atoi(argv[2]), NULL, options, &config, &pool);
    if (r != SMTPX_RESULT_OK) {
        char detail[256] = "";
        size_t n = 0;
        smtpx_client_options_last_error(options, detail, sizeof detail, &n);
        fprintf(stderr, "pool: %s: %s\n", smtpx_result_str(r), detail);
        smtpx_client_options_free(options);
        return 1;
    }
    pthread_t ids[64];
    struct worker workers[64];
    for (int i = 0; i < threads; i++) {
        workers[i].pool = pool;
        workers[i].failures = 0;
        pthread_create(&ids[i], NULL, work, &workers[i]);
    }
    int failures = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(ids[i], NULL);
        failures += workers[i].failures;
    }
    printf("%d sent, %d failed, %zu connections open\n", per_thread * threads - failures, failures,
           smtpx_pool_open_count(pool));
    smtpx_pool_free(pool);
    smtpx_client_options_free(options);
    return failures ? 1 : 0;
}
