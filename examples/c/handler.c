/*
 * handler: an SMTP server with a table of C callbacks (smtpx_handler) that keeps data
 * per connection and reads what the TLS handshake negotiated, the libcurl way: inside a
 * callback, the smtpx_server_call_* functions act on the connection being called for.
 * Messages are counted and thrown away; when a connection closes, one line tells its
 * story:
 *
 *   conn=3 peer=127.0.0.1:50412 messages=2 bytes=84 tls=TLSv1.3
 *     cipher=TLS13_AES_256_GCM_SHA384 sni=localhost client-cert=0
 *
 *   handler [--listen HOST:PORT] [--tls-cert PEM --tls-key PEM] [--client-ca PEM]
 *
 * --client-ca asks clients for a certificate from that CA (not required); the line
 * then shows its size in bytes (DER). Defaults: 127.0.0.1:2525. Prints
 * "listening on HOST:PORT" once ready; stops cleanly on SIGINT or SIGTERM.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the server keeps for one connection: made in connect, freed by smtpx after the
   close callback (smtpx_server_call_set_userdata's free function). */
struct connection {
    char peer[64];
    unsigned messages;
    size_t bytes;
    char tls_version[16];
    char cipher[96];
    char sni[256];
    size_t client_cert_len;
};

/* The connection of the callback running on this thread. */
static struct connection *this_connection(void) {
    void *data = NULL;
    smtpx_server_call_userdata(&data);
    return data;
}

/* Reads the TLS details of the connection into `c` (empty while in clear). */
static void read_tls(struct connection *c) {
    size_t n = 0;
    if (smtpx_server_call_tls_version(c->tls_version, sizeof c->tls_version, &n) != SMTPX_RESULT_OK)
        c->tls_version[0] = '\0';
    if (smtpx_server_call_tls_cipher(c->cipher, sizeof c->cipher, &n) != SMTPX_RESULT_OK)
        c->cipher[0] = '\0';
    if (smtpx_server_call_tls_server_name(c->sni, sizeof c->sni, &n) != SMTPX_RESULT_OK)
        c->sni[0] = '\0';
    /* A NULL buffer asks for the certificate's size (0: the client sent none). */
    c->client_cert_len = 0;
    smtpx_server_call_tls_peer_certificate(0, NULL, 0, &c->client_cert_len);
}

static int on_connect(void *userdata, uint64_t id, const char *peer, smtpx_decision *out) {
    struct connection *c = calloc(1, sizeof *c);
    (void)userdata, (void)id;
    if (c == NULL) {
        out->code = 421;
        snprintf(out->text, sizeof out->text, "out of memory");
        return SMTPX_REPLY;
    }
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    smtpx_server_call_set_userdata(c, free);
    read_tls(c); /* already encrypted on an implicit-TLS listener */
    return SMTPX_ACCEPT;
}

static void on_tls_started(void *userdata, uint64_t id) {
    (void)userdata, (void)id;
    read_tls(this_connection());
}

static int on_chunk(void *userdata, uint64_t id, const uint8_t *chunk, size_t len,
                    smtpx_decision *out) {
    (void)userdata, (void)id, (void)chunk, (void)out;
    this_connection()->bytes += len;
    return SMTPX_ACCEPT;
}

static int on_data_end(void *userdata, uint64_t id, const char *arg, smtpx_decision *out) {
    struct connection *c = this_connection();
    (void)userdata, (void)arg;
    c->messages++;
    out->code = 250;
    out->has_enhanced = true;
    out->enhanced.status_class = 2;
    out->enhanced.subject = 0;
    out->enhanced.detail = 0;
    snprintf(out->text, sizeof out->text, "queued as C%llu.%u", (unsigned long long)id, c->messages);
    return SMTPX_REPLY;
}

static void on_close(void *userdata, uint64_t id) {
    struct connection *c = this_connection();
    (void)userdata;
    printf("conn=%llu peer=%s messages=%u bytes=%zu tls=%s cipher=%s sni=%s client-cert=%zu\n",
           (unsigned long long)id, c->peer, c->messages, c->bytes,
           c->tls_version[0] ? c->tls_version : "none", c->cipher[0] ? c->cipher : "none",
           c->sni[0] ? c->sni : "none", c->client_cert_len);
    fflush(stdout);
}

static int usage(void) {
    fprintf(stderr, "usage: handler [--listen HOST:PORT] [--tls-cert PEM --tls-key PEM] "
                    "[--client-ca PEM]\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *listen = "127.0.0.1:2525", *cert = NULL, *key = NULL, *client_ca = NULL;
    smtpx_server_config *config;
    smtpx_server *server = NULL;
    smtpx_handler h;
    sigset_t signals;
    int i, signal_number = 0;
    size_t host_len, n = 0;
    char detail[1024] = "";
    smtpx_result r;

    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--listen") == 0)
            listen = argv[i + 1];
        else if (strcmp(argv[i], "--tls-cert") == 0)
            cert = argv[i + 1];
        else if (strcmp(argv[i], "--tls-key") == 0)
            key = argv[i + 1];
        else if (strcmp(argv[i], "--client-ca") == 0)
            client_ca = argv[i + 1];
        else
            return usage();
    }
    if (i != argc || (cert == NULL) != (key == NULL) || (client_ca != NULL && cert == NULL))
        return usage();

    config = smtpx_server_config_new();
    if (config == NULL)
        return 1;
    r = smtpx_server_config_set_listen(config, listen);
    if (r == SMTPX_RESULT_OK && cert != NULL)
        r = smtpx_server_config_set_tls_files(config, cert, key);
    if (r == SMTPX_RESULT_OK && client_ca != NULL)
        r = smtpx_server_config_set_client_ca_file(config, client_ca, false);

    memset(&h, 0, sizeof h); /* every callback not set keeps its default */
    h.connect = on_connect;
    h.tls_started = on_tls_started;
    h.data_chunk = on_chunk;
    h.data_end = on_data_end;
    h.close = on_close;

    /* Only sigwait below receives the signals (the server's threads inherit the mask). */
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);

    if (r == SMTPX_RESULT_OK)
        r = smtpx_server_start(config, &h, &server);
    if (r != SMTPX_RESULT_OK) {
        smtpx_server_config_last_error(config, detail, sizeof detail, &n);
        fprintf(stderr, "handler: %s%s%s\n", smtpx_result_str(r), n > 0 ? ": " : "", detail);
        smtpx_server_config_free(config);
        return 1;
    }
    smtpx_server_config_free(config);

    host_len = strrchr(listen, ':') != NULL ? (size_t)(strrchr(listen, ':') - listen) : 0;
    printf("listening on %.*s:%u\n", (int)host_len, listen, smtpx_server_local_port(server));
    fflush(stdout);

    sigwait(&signals, &signal_number);
    fprintf(stderr, "handler: signal %d: shutting down\n", signal_number);
    smtpx_server_stop(server, 10000, NULL);
    smtpx_server_free(server);
    return 0;
}
