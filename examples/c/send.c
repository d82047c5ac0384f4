/*
 * send: send one message with smtpx's C client.
 *
 *   send [--starttls | --tls] [--ca-file PEM] [--insecure] [--auth USER:PASS]
 *        [--allow-insecure-auth] [--helo NAME] HOST:PORT FROM TO [TO...] < message
 *
 * --auth needs --starttls or --tls: without them the password would go in clear, which
 * the library refuses unless --allow-insecure-auth says so (test servers only).
 *
 * The message (headers, a blank line, the body; LF or CRLF line endings) is read from
 * standard input and streamed to the server. Prints each recipient's result and the
 * final reply. Exit status: 0 all recipients accepted, 1 some refused, 2 error.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void) {
    fprintf(stderr, "usage: send [--starttls | --tls] [--ca-file PEM] [--insecure] "
                    "[--auth USER:PASS] [--allow-insecure-auth] [--helo NAME] HOST:PORT FROM TO "
                    "[TO...] < message\n");
    return 2;
}

/* The read callback: the next piece of standard input. */
static int read_stdin(void *userdata, uint8_t *buf, size_t len, size_t *out_n) {
    FILE *in = userdata;
    size_t n = fread(buf, 1, len, in);
    if (n == 0 && ferror(in))
        return errno != 0 ? errno : EIO;
    *out_n = n;
    return 0;
}

static void print_reply(const char *what, const smtpx_reply *reply) {
    smtpx_enhanced_code e;
    if (reply == NULL) {
        printf("%s: (no reply)\n", what);
        return;
    }
    if (smtpx_reply_enhanced(reply, &e))
        printf("%s: %u %u.%u.%u %s\n", what, smtpx_reply_code(reply), e.status_class, e.subject,
               e.detail, smtpx_reply_text(reply));
    else
        printf("%s: %u %s\n", what, smtpx_reply_code(reply), smtpx_reply_text(reply));
}

/* Reports a failed call with the detail kept by the client (or the options). */
static int fail(const char *what, smtpx_result r, smtpx_client *client,
                smtpx_client_options *options) {
    char detail[1024] = "";
    size_t n = 0;
    if (client != NULL)
        smtpx_client_last_error(client, detail, sizeof detail, &n);
    else if (options != NULL)
        smtpx_client_options_last_error(options, detail, sizeof detail, &n);
    fprintf(stderr, "send: %s: %s%s%s\n", what, smtpx_result_str(r), n > 0 ? ": " : "", detail);
    return 2;
}

int main(int argc, char **argv) {
    smtpx_client_options *options = smtpx_client_options_new();
    smtpx_client *client = NULL;
    smtpx_send_result *result = NULL;
    smtpx_tls_mode mode = SMTPX_TLS_MODE_NONE;
    char host[256];
    const char *server, *colon, *from;
    unsigned long port;
    int i = 1, status = 0;
    size_t r, count;
    smtpx_result rc;

    if (options == NULL)
        return 2;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *flag = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        rc = SMTPX_RESULT_OK;
        if (strcmp(flag, "--starttls") == 0) {
            mode = SMTPX_TLS_MODE_STARTTLS_REQUIRED;
        } else if (strcmp(flag, "--tls") == 0) {
            mode = SMTPX_TLS_MODE_IMPLICIT;
        } else if (strcmp(flag, "--insecure") == 0) {
            rc = smtpx_client_options_set_insecure(options, true);
        } else if (strcmp(flag, "--allow-insecure-auth") == 0) {
            rc = smtpx_client_options_set_allow_insecure_auth(options, true);
        } else if (strcmp(flag, "--ca-file") == 0 && value != NULL) {
            rc = smtpx_client_options_set_ca_file(options, value);
            i++;
        } else if (strcmp(flag, "--helo") == 0 && value != NULL) {
            rc = smtpx_client_options_set_helo_name(options, value);
            i++;
        } else if (strcmp(flag, "--auth") == 0 && value != NULL && strchr(value, ':') != NULL) {
            char user[256];
            const char *sep = strchr(value, ':');
            size_t len = (size_t)(sep - value);
            if (len >= sizeof user)
                len = sizeof user - 1;
            memcpy(user, value, len);
            user[len] = '\0';
            rc = smtpx_client_options_set_credentials(options, user, sep + 1);
            i++;
        } else {
            smtpx_client_options_free(options);
            return usage();
        }
        if (rc != SMTPX_RESULT_OK) {
            fprintf(stderr, "send: %s: %s\n", flag, smtpx_result_str(rc));
            smtpx_client_options_free(options);
            return 2;
        }
    }
    if (argc - i < 3) {
        smtpx_client_options_free(options);
        return usage();
    }
    server = argv[i];
    from = argv[i + 1];
    colon = strrchr(server, ':');
    port = colon != NULL ? strtoul(colon + 1, NULL, 10) : 0;
    if (colon == NULL || (size_t)(colon - server) >= sizeof host || port == 0 || port > 65535) {
        fprintf(stderr, "send: %s is not HOST:PORT\n", server);
        smtpx_client_options_free(options);
        return 2;
    }
    memcpy(host, server, (size_t)(colon - server));
    host[colon - server] = '\0';
    smtpx_client_options_set_tls_mode(options, mode);

    rc = smtpx_client_connect(host, (uint16_t)port, NULL, options, &client);
    if (rc != SMTPX_RESULT_OK) {
        status = fail("connect", rc, NULL, options);
        smtpx_client_options_free(options);
        return status;
    }
    rc = smtpx_client_send_stream(client, from, (const char *const *)&argv[i + 2],
                                  (size_t)(argc - i - 2), read_stdin, stdin, &result);
    if (rc != SMTPX_RESULT_OK) {
        status = fail("send", rc, client, NULL);
    } else {
        count = smtpx_send_result_recipient_count(result);
        for (r = 0; r < count; r++) {
            print_reply(smtpx_send_result_recipient_address(result, r),
                        smtpx_send_result_recipient_reply(result, r));
            if (!smtpx_send_result_recipient_accepted(result, r))
                status = 1;
        }
        print_reply("final", smtpx_send_result_final_reply(result));
        if (!smtpx_send_result_success(result))
            status = 1;
        smtpx_send_result_free(result);
        rc = smtpx_client_quit(client);
        if (rc != SMTPX_RESULT_OK)
            status = fail("quit", rc, client, NULL);
    }
    smtpx_client_free(client);
    smtpx_client_options_free(options);
    return status;
}
