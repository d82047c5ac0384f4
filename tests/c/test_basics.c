/*
 * Run-time checks of the basic C API, linked against libsmtpx.a and run under
 * ASan/UBSan and, separately, valgrind (see the Makefile). Exits non-zero on any failure.
 */
#define _POSIX_C_SOURCE 200809L

#include "smtpx.h"
#include "check.h"

#include <stdio.h>
#include <string.h>

#define STR_(x) #x
#define STR(x) STR_(x)

static void test_version(void) {
    const char *expected = "smtpx/" STR(SMTPX_VERSION_MAJOR) "." STR(
        SMTPX_VERSION_MINOR) "." STR(SMTPX_VERSION_PATCH);
    const char *version = smtpx_version();
    unsigned major = 0, minor = 0, patch = 0;

    CHECK(version != NULL);
    if (version == NULL)
        return;
    CHECK(strcmp(version, expected) == 0);
    CHECK(sscanf(version, "smtpx/%u.%u.%u", &major, &minor, &patch) == 3);
    CHECK(major == SMTPX_VERSION_MAJOR);
    CHECK(minor == SMTPX_VERSION_MINOR);
    CHECK(patch == SMTPX_VERSION_PATCH);
    CHECK(((major << 16) | (minor << 8) | patch) == (unsigned)SMTPX_VERSION_NUMBER);
    CHECK(smtpx_version() == version); /* static, not allocated per call */
}

static void test_result_str(void) {
    static const smtpx_result all[] = {
        SMTPX_RESULT_OK,
        SMTPX_RESULT_NULL_PARAMETER,
        SMTPX_RESULT_INVALID_UTF8,
        SMTPX_RESULT_INVALID_ARGUMENT,
        SMTPX_RESULT_BUFFER_TOO_SMALL,
        SMTPX_RESULT_INJECTION,
        SMTPX_RESULT_NOT_READY,
        SMTPX_RESULT_REENTRANT,
        SMTPX_RESULT_PROTOCOL,
        SMTPX_RESULT_GREETING,
        SMTPX_RESULT_HELLO,
        SMTPX_RESULT_SERVER_CLOSED,
        SMTPX_RESULT_MESSAGE_TOO_LARGE,
        SMTPX_RESULT_SMTP_UTF8_UNSUPPORTED,
        SMTPX_RESULT_SENDER_REFUSED,
        SMTPX_RESULT_IO,
        SMTPX_RESULT_TIMEOUT,
        SMTPX_RESULT_CONNECTION_CLOSED,
        SMTPX_RESULT_MESSAGE_SOURCE,
        SMTPX_RESULT_TLS,
        SMTPX_RESULT_START_TLS_UNAVAILABLE,
        SMTPX_RESULT_START_TLS_REFUSED,
        SMTPX_RESULT_TLS_UNKNOWN_ISSUER,
        SMTPX_RESULT_TLS_NAME_MISMATCH,
        SMTPX_RESULT_TLS_EXPIRED,
        SMTPX_RESULT_TLS_HANDSHAKE,
        SMTPX_RESULT_AUTH_UNSUPPORTED,
        SMTPX_RESULT_AUTH_FAILED,
        SMTPX_RESULT_INSECURE_AUTH,
        SMTPX_RESULT_PANIC,
    };
    const size_t count = sizeof all / sizeof all[0];
    const char *unknown = smtpx_result_str((smtpx_result)12345);
    size_t i, j;

    CHECK(SMTPX_RESULT_OK == 0);
    CHECK(unknown != NULL && unknown[0] != '\0');
    for (i = 0; i < count; i++) {
        const char *s = smtpx_result_str(all[i]);
        CHECK(s != NULL);
        if (s == NULL)
            continue;
        CHECK(s[0] != '\0');
        CHECK(unknown == NULL || strcmp(s, unknown) != 0);
        for (j = 0; j < i; j++) {
            const char *t = smtpx_result_str(all[j]);
            CHECK(t != NULL && strcmp(s, t) != 0);
        }
    }
}

static void test_reply_code_meaning(void) {
    const char *ok = smtpx_reply_code_meaning(250);
    CHECK(ok != NULL && ok[0] != '\0');
    CHECK(smtpx_reply_code_meaning(250) == ok); /* static, not allocated per call */
    CHECK(smtpx_reply_code_meaning(999) == NULL);
    CHECK(smtpx_reply_code_meaning(0) == NULL);
    CHECK(smtpx_reply_code_meaning(UINT16_MAX) == NULL);
}

int main(void) {
    test_version();
    test_result_str();
    test_reply_code_meaning();
    if (failures != 0) {
        fprintf(stderr, "test_basics: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_basics: all checks passed (%s)\n", smtpx_version());
    return 0;
}
