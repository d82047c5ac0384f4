/*
 * Compile-only test of include/smtpx.h: it must build as C99 and as C++ with every
 * warning an error, stand alone (no other includes before it), survive being included
 * twice, and declare every function with the types the tests expect.
 */
#include "smtpx.h"
#include "smtpx.h" /* the include guard must make this a no-op */

#if !defined(SMTPX_VERSION_MAJOR) || !defined(SMTPX_VERSION_MINOR) || \
    !defined(SMTPX_VERSION_PATCH) || !defined(SMTPX_VERSION_NUMBER)
#error "smtpx.h must define SMTPX_VERSION_MAJOR/MINOR/PATCH/NUMBER"
#endif

#if SMTPX_VERSION_NUMBER != \
    ((SMTPX_VERSION_MAJOR << 16) | (SMTPX_VERSION_MINOR << 8) | SMTPX_VERSION_PATCH)
#error "SMTPX_VERSION_NUMBER must be usable in #if and combine MAJOR, MINOR and PATCH"
#endif

/* smtpx_result is 32 bits wide in every language mode. */
typedef char smtpx_result_is_32_bits[sizeof(smtpx_result) == 4 ? 1 : -1];

/* The handler's later fields, with their types (the struct is zero-initialised by
 * callers, so fields are only ever appended). */
int header_compile_handler_fields(const smtpx_handler *h);
int header_compile_handler_fields(const smtpx_handler *h) {
    smtpx_decide_callback verify = h->verify;
    smtpx_decide_callback expand = h->expand;
    smtpx_notify_callback tls_started = h->tls_started;
    smtpx_abort_callback data_aborted = h->data_aborted;
    smtpx_decide_callback noop = h->noop;
    smtpx_decide_callback rset = h->rset;
    smtpx_decide_callback quit = h->quit;
    return (verify != NULL) + (expand != NULL) + (tls_started != NULL) + (data_aborted != NULL) +
           (noop != NULL) + (rset != NULL) + (quit != NULL);
}

/* An action's fields, with their types; a HOOK carries an smtpx_server_event. */
int header_compile_action_fields(const smtpx_action *a);
int header_compile_action_fields(const smtpx_action *a) {
    smtpx_action_kind kind = a->kind;
    const uint8_t *bytes = a->bytes;
    size_t bytes_len = a->bytes_len;
    uint64_t deadline_ms = a->deadline_ms;
    smtpx_server_event event = a->event;
    return (kind == SMTPX_ACTION_KIND_HOOK) + (bytes != NULL) + (int)bytes_len +
           (int)deadline_ms + (event.kind == SMTPX_EVENT_KIND_TLS_STARTED) +
           (event.kind == SMTPX_EVENT_KIND_NOOP) + (event.kind == SMTPX_EVENT_KIND_RSET) +
           (event.kind == SMTPX_EVENT_KIND_QUIT);
}

/* Uses every function, so a missing or mistyped declaration fails to compile. */
int header_compile_uses_everything(void);
int header_compile_uses_everything(void) {
    const char *(*version)(void) = smtpx_version;
    const char *(*result_str)(smtpx_result) = smtpx_result_str;
    const char *(*meaning)(uint16_t) = smtpx_reply_code_meaning;
    smtpx_result (*starttls)(smtpx_client *, const char *) = smtpx_client_starttls;
    smtpx_result (*has_extension)(const smtpx_client *, const char *, bool *) =
        smtpx_client_has_extension;
    smtpx_result (*size_limit)(const smtpx_client *, uint64_t *, bool *) = smtpx_client_size_limit;
    smtpx_result (*auth_mechanisms)(const smtpx_client *, char *, size_t, size_t *) =
        smtpx_client_auth_mechanisms;
    smtpx_result r = SMTPX_RESULT_OK;
    size_t n = 0;
    bool b = true;

    /* The rest of the API: each name must be declared as a function. */
    (void)&smtpx_version_number;
    (void)&smtpx_client_options_new;
    (void)&smtpx_client_session_new;
    (void)&smtpx_client_session_free;
    (void)&smtpx_client_session_connect;
    (void)&smtpx_client_session_send;
    (void)&smtpx_client_session_send_envelope;
    (void)&smtpx_client_session_send_batch;
    (void)&smtpx_client_session_login;
    (void)&smtpx_client_session_starttls;
    (void)&smtpx_client_session_command;
    (void)&smtpx_client_session_quit;
    (void)&smtpx_client_session_next_action;
    (void)&smtpx_client_session_written;
    (void)&smtpx_client_session_receive;
    (void)&smtpx_client_session_receive_eof;
    (void)&smtpx_client_session_timeout;
    (void)&smtpx_client_session_lost;
    (void)&smtpx_client_session_take_tls;
    (void)&smtpx_client_session_tls_established;
    (void)&smtpx_client_session_tls_failed;
    (void)&smtpx_client_session_take_send_result;
    (void)&smtpx_client_session_take_reply;
    (void)&smtpx_client_session_take_batch;
    (void)&smtpx_client_session_is_tls;
    (void)&smtpx_client_session_is_closed;
    (void)&smtpx_client_session_last_error;
    (void)&smtpx_client_session_last_error_reply;
    (void)&smtpx_tls_session_new_client;
    (void)&smtpx_tls_session_new_server;
    (void)&smtpx_tls_session_free;
    (void)&smtpx_tls_session_receive;
    (void)&smtpx_tls_session_write;
    (void)&smtpx_tls_session_output;
    (void)&smtpx_tls_session_consume_output;
    (void)&smtpx_tls_session_plaintext;
    (void)&smtpx_tls_session_consume_plaintext;
    (void)&smtpx_tls_session_close;
    (void)&smtpx_tls_session_is_handshaking;
    (void)&smtpx_tls_session_peer_closed;
    (void)&smtpx_tls_session_protocol_version;
    (void)&smtpx_tls_session_cipher_suite;
    (void)&smtpx_tls_session_server_name;
    (void)&smtpx_tls_session_peer_certificate;
    (void)&smtpx_tls_session_last_error;
    (void)&smtpx_client_options_set_xoauth2;
    (void)&smtpx_client_login_xoauth2;
    (void)&smtpx_envelope_new;
    (void)&smtpx_envelope_free;
    (void)&smtpx_envelope_add_recipient;
    (void)&smtpx_envelope_set_ret;
    (void)&smtpx_envelope_set_envid;
    (void)&smtpx_envelope_set_body;
    (void)&smtpx_envelope_set_smtputf8;
    (void)&smtpx_client_send_envelope;
    (void)&smtpx_server_config_set_listen_fd;
    (void)&smtpx_client_options_set_system_roots;
    (void)&smtpx_client_options_set_ca_pem;
    (void)&smtpx_client_options_set_client_cert_pem;
    (void)&smtpx_client_options_set_client_cert_files;
    (void)&smtpx_client_options_set_min_tls_version;
    (void)&smtpx_client_options_set_sni;
    (void)&smtpx_server_config_set_client_ca_file;
    (void)&smtpx_server_config_set_min_tls_version;
    (void)&smtpx_client_options_free;
    (void)&smtpx_client_options_set_helo_name;
    (void)&smtpx_client_options_set_tls_mode;
    (void)&smtpx_client_options_set_ca_file;
    (void)&smtpx_client_options_set_insecure;
    (void)&smtpx_client_options_set_credentials;
    (void)&smtpx_client_options_set_connect_timeout_ms;
    (void)&smtpx_client_options_set_command_timeout_ms;
    (void)&smtpx_client_options_set_lmtp;
    (void)&smtpx_client_options_set_pipelining;
    (void)&smtpx_client_options_set_chunking;
    (void)&smtpx_client_options_last_error;
    (void)&smtpx_client_connect;
    (void)&smtpx_client_free;
    (void)&smtpx_client_quit;
    (void)&smtpx_client_is_tls;
    (void)&smtpx_client_last_error;
    (void)&smtpx_client_last_error_reply;
    (void)&smtpx_client_send;
    (void)&smtpx_client_send_stream;
    (void)&smtpx_client_login;
    (void)&smtpx_client_noop;
    (void)&smtpx_client_rset;
    (void)&smtpx_client_vrfy;
    (void)&smtpx_client_expn;
    (void)&smtpx_client_help;
    (void)&smtpx_send_result_free;
    (void)&smtpx_send_result_success;
    (void)&smtpx_send_result_recipient_count;
    (void)&smtpx_send_result_recipient_address;
    (void)&smtpx_send_result_recipient_accepted;
    (void)&smtpx_send_result_recipient_reply;
    (void)&smtpx_send_result_recipient_delivery;
    (void)&smtpx_send_result_mail_reply;
    (void)&smtpx_send_result_final_reply;
    (void)&smtpx_send_result_queue_id;
    (void)&smtpx_reply_code;
    (void)&smtpx_reply_enhanced;
    (void)&smtpx_reply_text;
    (void)&smtpx_reply_free;
    (void)&smtpx_server_config_new;
    (void)&smtpx_server_config_free;
    (void)&smtpx_server_config_set_hostname;
    (void)&smtpx_server_config_set_listen;
    (void)&smtpx_server_config_set_tls_files;
    (void)&smtpx_server_config_set_tls_listen;
    (void)&smtpx_server_config_set_require_tls;
    (void)&smtpx_server_config_add_user;
    (void)&smtpx_server_config_set_allow_insecure_auth;
    (void)&smtpx_server_config_set_max_size;
    (void)&smtpx_server_config_set_max_recipients;
    (void)&smtpx_server_config_set_timeout_secs;
    (void)&smtpx_server_config_set_max_connections;
    (void)&smtpx_server_config_set_listen_backlog;
    (void)&smtpx_server_config_set_lmtp;
    (void)&smtpx_server_config_set_bare_lf;
    (void)&smtpx_server_config_last_error;
    (void)&smtpx_server_start_maildir;
    (void)&smtpx_server_start;
    (void)&smtpx_server_local_port;
    (void)&smtpx_server_tls_port;
    (void)&smtpx_server_stop;
    (void)&smtpx_server_free;
    (void)&smtpx_server_session_new;
    (void)&smtpx_server_session_free;
    (void)&smtpx_server_session_receive;
    (void)&smtpx_server_session_receive_eof;
    (void)&smtpx_server_session_poll_event;
    (void)&smtpx_server_session_decide;
    (void)&smtpx_server_session_output;
    (void)&smtpx_server_session_consume_output;
    (void)&smtpx_server_session_next_deadline;
    (void)&smtpx_server_session_handle_timeout;
    (void)&smtpx_server_session_tls_established;
    (void)&smtpx_server_session_is_closed;
    (void)&smtpx_server_session_decide_each;
    (void)&smtpx_server_connection_new;
    (void)&smtpx_server_connection_free;
    (void)&smtpx_server_connection_next_action;
    (void)&smtpx_server_connection_connected;
    (void)&smtpx_server_connection_answer;
    (void)&smtpx_server_connection_answer_each;
    (void)&smtpx_server_connection_written;
    (void)&smtpx_server_connection_receive;
    (void)&smtpx_server_connection_receive_eof;
    (void)&smtpx_server_connection_timeout;
    (void)&smtpx_server_connection_tls_established;
    (void)&smtpx_server_connection_tls_established_with;
    (void)&smtpx_server_connection_tls_version;
    (void)&smtpx_server_connection_tls_cipher;
    (void)&smtpx_server_config_set_handler_replies;
    (void)&smtpx_server_call_set_userdata;
    (void)&smtpx_server_call_userdata;
    (void)&smtpx_server_call_peer;
    (void)&smtpx_server_call_proxy;
    (void)&smtpx_server_call_proxy_tlv;
    (void)&smtpx_server_call_tls_version;
    (void)&smtpx_server_call_tls_cipher;
    (void)&smtpx_server_call_tls_server_name;
    (void)&smtpx_server_call_tls_peer_certificate;
    (void)&smtpx_client_session_send_stream;
    (void)&smtpx_client_session_body;
    (void)&smtpx_client_session_body_end;
    (void)&smtpx_client_session_body_failed;
    (void)&smtpx_server_connection_lost;
    (void)&smtpx_server_connection_stop;
    (void)&smtpx_server_connection_is_idle;
    (void)&smtpx_server_connection_is_tls;

    switch (r) {
    case SMTPX_RESULT_OK:
    case SMTPX_RESULT_NULL_PARAMETER:
    case SMTPX_RESULT_INVALID_UTF8:
    case SMTPX_RESULT_INVALID_ARGUMENT:
    case SMTPX_RESULT_BUFFER_TOO_SMALL:
    case SMTPX_RESULT_INJECTION:
    case SMTPX_RESULT_NOT_READY:
    case SMTPX_RESULT_REENTRANT:
    case SMTPX_RESULT_PROTOCOL:
    case SMTPX_RESULT_GREETING:
    case SMTPX_RESULT_HELLO:
    case SMTPX_RESULT_SERVER_CLOSED:
    case SMTPX_RESULT_MESSAGE_TOO_LARGE:
    case SMTPX_RESULT_SMTP_UTF8_UNSUPPORTED:
    case SMTPX_RESULT_SENDER_REFUSED:
    case SMTPX_RESULT_IO:
    case SMTPX_RESULT_TIMEOUT:
    case SMTPX_RESULT_CONNECTION_CLOSED:
    case SMTPX_RESULT_MESSAGE_SOURCE:
    case SMTPX_RESULT_TLS:
    case SMTPX_RESULT_START_TLS_UNAVAILABLE:
    case SMTPX_RESULT_START_TLS_REFUSED:
    case SMTPX_RESULT_TLS_UNKNOWN_ISSUER:
    case SMTPX_RESULT_TLS_NAME_MISMATCH:
    case SMTPX_RESULT_TLS_EXPIRED:
    case SMTPX_RESULT_TLS_HANDSHAKE:
    case SMTPX_RESULT_AUTH_UNSUPPORTED:
    case SMTPX_RESULT_AUTH_FAILED:
    case SMTPX_RESULT_INSECURE_AUTH:
    case SMTPX_RESULT_PANIC:
        break;
    }
    return (version() != NULL) + (result_str(r) != NULL) + (meaning(250) != NULL) +
           (starttls != NULL) + (has_extension != NULL) + (size_limit != NULL) +
           (auth_mechanisms != NULL) + (int)n + (int)b;
}
