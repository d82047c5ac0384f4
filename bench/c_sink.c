/*
 * c_sink: the C server of bench/c_server.py, a trivial callback table on
 * smtpx_server_start: every message is accepted and counted (data_end), its content
 * dropped (no data_chunk callback).
 *
 *   c_sink [--max-connections N] [--inline]
 *
 * --inline: the callbacks say they never block (smtpx_server_config_set_callbacks_block
 * false), so they run on the event loop instead of in block_in_place.
 *
 * Listens on 127.0.0.1, a free port, and prints "listening on 127.0.0.1:PORT". On
 * SIGUSR1 prints "count=N" (messages accepted so far); on SIGTERM prints it and stops.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_ulong messages;

static int on_data_end(void *userdata, uint64_t conn_id, const char *arg, smtpx_decision *out) {
    (void)userdata, (void)conn_id, (void)arg, (void)out;
    atomic_fetch_add(&messages, 1);
    return SMTPX_ACCEPT;
}

int main(int argc, char **argv) {
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_server *server = NULL;
    smtpx_handler h;
    sigset_t signals;
    int sig = 0;
    smtpx_result r;

    if (config == NULL)
        return 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--max-connections") == 0 && i + 1 < argc)
            smtpx_server_config_set_max_connections(config, (size_t)strtoul(argv[++i], NULL, 10));
        else if (strcmp(argv[i], "--inline") == 0)
            smtpx_server_config_set_callbacks_block(config, false);
    }
    smtpx_server_config_set_hostname(config, "bench.test");
    smtpx_server_config_set_listen(config, "127.0.0.1:0");
    memset(&h, 0, sizeof h);
    h.data_end = on_data_end;

    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    r = smtpx_server_start(config, &h, &server);
    smtpx_server_config_free(config);
    if (r != SMTPX_RESULT_OK) {
        fprintf(stderr, "c_sink: %s\n", smtpx_result_str(r));
        return 1;
    }
    printf("listening on 127.0.0.1:%u\n", smtpx_server_local_port(server));
    fflush(stdout);
    do {
        if (sigwait(&signals, &sig) != 0)
            break;
        printf("count=%lu\n", (unsigned long)atomic_load(&messages));
        fflush(stdout);
    } while (sig != SIGTERM);
    smtpx_server_stop(server, 5000, NULL);
    smtpx_server_free(server);
    return 0;
}
