#ifndef FACERI_TEST_PROCESS_H
#define FACERI_TEST_PROCESS_H
/* Running the faceri binary from a test (tests/support/process.c). */
#include <stddef.h>

/* Runs cmd with the shell, keeps the first cap - 1 bytes of its stdout in out (NUL-
 * terminated) and gives its exit code: -1 when it could not start or did not exit. */
int test_run_command(const char *cmd, char *out, size_t cap);

#endif
