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

/* Uses every function, so a missing or mistyped declaration fails to compile. */
int header_compile_uses_everything(void);
int header_compile_uses_everything(void) {
    const char *(*version)(void) = smtpx_version;
    const char *(*result_str)(smtpx_result) = smtpx_result_str;
    const char *(*meaning)(uint16_t) = smtpx_reply_code_meaning;
    smtpx_result r = SMTPX_RESULT_OK;
    size_t n = 0;
    bool b = true;

    switch (r) {
    case SMTPX_RESULT_OK:
    case SMTPX_RESULT_NULL_PARAMETER:
    case SMTPX_RESULT_INVALID_UTF8:
    case SMTPX_RESULT_INVALID_ARGUMENT:
    case SMTPX_RESULT_BUFFER_TOO_SMALL:
    case SMTPX_RESULT_PANIC:
        break;
    }
    return (version() != NULL) + (result_str(r) != NULL) + (meaning(250) != NULL) +
           (int)n + (int)b;
}
