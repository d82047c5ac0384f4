/*
 * The connection pool and the relay from C over loopback: a Maildir server as the next
 * hop, a relay server in front of it (smtpx_server_start_relay), and a pool of 3
 * connections to the relay shared by 6 threads, each sending 5 messages; every message
 * gets its own result and lands in the next hop's Maildir once. Then the next hop stops:
 * the relay answers 451 (never 250), and the pool reports it per message.
 *
 * Usage: test_relay_pool (no arguments). Linked against libsmtpx.a; run under
 * ASan+UBSan and under valgrind.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"
#include "check.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define THREADS 6
#define PER_THREAD 5

static const char message[] = "Subject: pooled from C\r\n\r\nlone LF\nand CRLF\r\n";

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') n++;
    }
    closedir(d);
    return n;
}

static int wait_files(const char *dir, int count) {
    int n = 0;
    for (int i = 0; i < 200; i++) { /* bounded: 10 s */
        n = count_files(dir);
        if (n >= count) break;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return n;
}

struct sender {
    smtpx_pool *pool;
    int accepted;
};

static void *send_some(void *arg) {
    struct sender *s = arg;
    const char *to[] = {"bob@example.net"};
    for (int i = 0; i < PER_THREAD; i++) {
        smtpx_send_result *result = NULL;
        smtpx_result r = smtpx_pool_send(s->pool, "alice@example.org", to, 1, (const uint8_t *)message,
                                         sizeof message - 1, &result);
        CHECK(r == SMTPX_RESULT_OK);
        if (r != SMTPX_RESULT_OK) {
            fprintf(stderr, "pool send: %s\n", smtpx_pool_last_error());
            continue;
        }
        if (smtpx_send_result_success(result)) s->accepted++;
        CHECK(smtpx_pool_open_count(s->pool) <= 3);
        smtpx_send_result_free(result);
    }
    return NULL;
}

int main(void) {
    char dir[200];
    CHECK(test_temp_dir(dir, sizeof dir, "smtpx-c-relay") != NULL);
    char new_dir[256];
    snprintf(new_dir, sizeof new_dir, "%s/new", dir);

    /* The next hop: a Maildir server. */
    smtpx_server_config *hop_config = smtpx_server_config_new();
    CHECK(smtpx_server_config_set_listen(hop_config, "127.0.0.1:0") == SMTPX_RESULT_OK);
    smtpx_server *hop = NULL;
    CHECK(smtpx_server_start_maildir(hop_config, dir, &hop) == SMTPX_RESULT_OK);
    uint16_t hop_port = smtpx_server_local_port(hop);
    CHECK(hop_port != 0);

    /* The relay in front of it. */
    smtpx_client_options *hop_options = smtpx_client_options_new();
    CHECK(smtpx_client_options_set_tls_mode(hop_options, SMTPX_TLS_MODE_NONE) == SMTPX_RESULT_OK);
    CHECK(smtpx_client_options_set_command_timeout_ms(hop_options, 5000) == SMTPX_RESULT_OK);
    smtpx_pool_config relay_pool = smtpx_pool_config_default();
    relay_pool.max_size = 4;
    smtpx_server_config *relay_config = smtpx_server_config_new();
    CHECK(smtpx_server_config_set_listen(relay_config, "127.0.0.1:0") == SMTPX_RESULT_OK);
    smtpx_server *relay = NULL;
    CHECK(smtpx_server_start_relay(relay_config, "127.0.0.1", hop_port, NULL, hop_options, &relay_pool, &relay) ==
          SMTPX_RESULT_OK);
    uint16_t relay_port = smtpx_server_local_port(relay);
    CHECK(relay_port != 0);

    /* Argument checks. */
    smtpx_server *none = NULL;
    CHECK(smtpx_server_start_relay(relay_config, NULL, hop_port, NULL, hop_options, NULL, &none) ==
          SMTPX_RESULT_NULL_PARAMETER);
    CHECK(smtpx_server_start_relay(relay_config, "127.0.0.1\r\n", hop_port, NULL, hop_options, NULL, &none) ==
          SMTPX_RESULT_INJECTION);
    CHECK(none == NULL);

    /* A pool of 3 connections to the relay, shared by THREADS threads. */
    smtpx_client_options *options = smtpx_client_options_new();
    CHECK(smtpx_client_options_set_tls_mode(options, SMTPX_TLS_MODE_NONE) == SMTPX_RESULT_OK);
    smtpx_pool_config config = smtpx_pool_config_default();
    CHECK(config.max_size == 8 && config.check_after_ms == 1000);
    config.max_size = 3;
    config.max_messages = 4;
    smtpx_pool *pool = NULL;
    CHECK(smtpx_pool_new("127.0.0.1", relay_port, NULL, options, &config, &pool) == SMTPX_RESULT_OK);
    CHECK(smtpx_pool_open_count(pool) == 0);

    pthread_t threads[THREADS];
    struct sender senders[THREADS];
    for (int i = 0; i < THREADS; i++) {
        senders[i].pool = pool;
        senders[i].accepted = 0;
        CHECK(pthread_create(&threads[i], NULL, send_some, &senders[i]) == 0);
    }
    int accepted = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        accepted += senders[i].accepted;
    }
    CHECK(accepted == THREADS * PER_THREAD);
    CHECK(wait_files(new_dir, THREADS * PER_THREAD) == THREADS * PER_THREAD);
    CHECK(smtpx_pool_open_count(pool) <= 3);

    /* Bad arguments are refused before anything is sent. */
    smtpx_send_result *result = NULL;
    const char *injected[] = {"bob@example.net\r\nRSET"};
    CHECK(smtpx_pool_send(pool, "alice@example.org", injected, 1, (const uint8_t *)"x", 1, &result) ==
          SMTPX_RESULT_INJECTION);
    CHECK(strlen(smtpx_pool_last_error()) > 0);
    CHECK(smtpx_pool_send(NULL, "a@b.example", injected, 1, (const uint8_t *)"x", 1, &result) ==
          SMTPX_RESULT_NULL_PARAMETER);
    CHECK(result == NULL);

    /* The next hop goes away: the relay says 451 4.4.x at MAIL, never 250. */
    CHECK(smtpx_server_stop(hop, 5000, NULL) == SMTPX_RESULT_OK);
    const char *to[] = {"bob@example.net"};
    CHECK(smtpx_pool_send(pool, "alice@example.org", to, 1, (const uint8_t *)message, sizeof message - 1, &result) ==
          SMTPX_RESULT_OK);
    if (result != NULL) {
        CHECK(!smtpx_send_result_success(result));
        CHECK(smtpx_reply_code(smtpx_send_result_mail_reply(result)) == 451);
        smtpx_send_result_free(result);
    }
    CHECK(count_files(new_dir) == THREADS * PER_THREAD);

    smtpx_pool_free(pool);
    smtpx_pool_free(NULL);
    smtpx_client_options_free(options);
    CHECK(smtpx_server_stop(relay, 5000, NULL) == SMTPX_RESULT_OK);
    smtpx_server_free(relay);
    smtpx_server_free(hop);
    smtpx_server_config_free(relay_config);
    smtpx_server_config_free(hop_config);
    smtpx_client_options_free(hop_options);

    char command[512];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    CHECK(system(command) == 0);
    if (failures) {
        fprintf(stderr, "test_relay_pool: %d failures\n", failures);
        return 1;
    }
    printf("test_relay_pool: ok\n");
    return 0;
}
