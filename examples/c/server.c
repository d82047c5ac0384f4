/*
 * server: a Maildir SMTP server with smtpx's C API; stops cleanly on SIGINT or SIGTERM.
 *
 *   server [--listen HOST:PORT] [--maildir DIR] [--hostname NAME]
 *          [--tls-cert PEM --tls-key PEM] [--auth USER:PASS] [--proxy-trusted CIDR]...
 *
 * --proxy-trusted (repeatable) puts the server behind a load balancer speaking the PROXY
 * protocol (HAProxy's send-proxy / send-proxy-v2) from that network: every connection
 * must then begin with the balancer's header, whose client address is the one the server
 * logs and stores.
 *
 * Defaults: 127.0.0.1:2525, ./maildir, localhost. Prints "listening on HOST:PORT" once
 * ready (port 0 picks a free port, and the line shows which).
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static int usage(void) {
    fprintf(stderr, "usage: server [--listen HOST:PORT] [--maildir DIR] [--hostname NAME] "
                    "[--tls-cert PEM --tls-key PEM] [--auth USER:PASS] [--proxy-trusted CIDR]...\n");
    return 2;
}

static int config_error(smtpx_server_config *config, const char *what, smtpx_result r) {
    char detail[1024] = "";
    size_t n = 0;
    smtpx_server_config_last_error(config, detail, sizeof detail, &n);
    fprintf(stderr, "server: %s: %s%s%s\n", what, smtpx_result_str(r), n > 0 ? ": " : "", detail);
    smtpx_server_config_free(config);
    return 1;
}

int main(int argc, char **argv) {
    const char *listen = "127.0.0.1:2525", *maildir = "maildir";
    const char *cert = NULL, *key = NULL;
    smtpx_server_config *config = smtpx_server_config_new();
    smtpx_server *server = NULL;
    sigset_t signals;
    int i, signal_number = 0;
    size_t cut = 0, host_len;
    smtpx_result r;

    if (config == NULL)
        return 1;
    for (i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        r = SMTPX_RESULT_OK;
        if (value == NULL) {
            smtpx_server_config_free(config);
            return usage();
        }
        if (strcmp(argv[i], "--listen") == 0)
            listen = value;
        else if (strcmp(argv[i], "--maildir") == 0)
            maildir = value;
        else if (strcmp(argv[i], "--hostname") == 0)
            r = smtpx_server_config_set_hostname(config, value);
        else if (strcmp(argv[i], "--tls-cert") == 0)
            cert = value;
        else if (strcmp(argv[i], "--tls-key") == 0)
            key = value;
        else if (strcmp(argv[i], "--auth") == 0 && strchr(value, ':') != NULL) {
            char user[256];
            size_t len = (size_t)(strchr(value, ':') - value);
            if (len >= sizeof user)
                len = sizeof user - 1;
            memcpy(user, value, len);
            user[len] = '\0';
            r = smtpx_server_config_add_user(config, user, strchr(value, ':') + 1);
        } else if (strcmp(argv[i], "--proxy-trusted") == 0) {
            r = smtpx_server_config_add_proxy_trusted(config, value);
            if (r == SMTPX_RESULT_OK)
                r = smtpx_server_config_set_proxy_protocol(config, true, 0);
        } else {
            smtpx_server_config_free(config);
            return usage();
        }
        if (r != SMTPX_RESULT_OK)
            return config_error(config, argv[i], r);
        i++;
    }
    if ((cert == NULL) != (key == NULL)) {
        smtpx_server_config_free(config);
        return usage();
    }
    if ((r = smtpx_server_config_set_listen(config, listen)) != SMTPX_RESULT_OK)
        return config_error(config, "--listen", r);
    if (cert != NULL && (r = smtpx_server_config_set_tls_files(config, cert, key)) != SMTPX_RESULT_OK)
        return config_error(config, "--tls-cert", r);

    /* Block the signals before the server starts its threads (they inherit the mask), so
       that only sigwait below receives them. */
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);

    r = smtpx_server_start_maildir(config, maildir, &server);
    if (r != SMTPX_RESULT_OK)
        return config_error(config, "start", r);
    smtpx_server_config_free(config);

    host_len = strrchr(listen, ':') != NULL ? (size_t)(strrchr(listen, ':') - listen) : 0;
    printf("listening on %.*s:%u\n", (int)host_len, listen, smtpx_server_local_port(server));
    fflush(stdout);

    sigwait(&signals, &signal_number);
    fprintf(stderr, "server: signal %d: shutting down\n", signal_number);
    smtpx_server_stop(server, 10000, &cut);
    if (cut > 0)
        fprintf(stderr, "server: %zu connection(s) cut at the end of the grace period\n", cut);
    smtpx_server_free(server);
    return 0;
}
