/* Running the faceri binary from a test (test_process.h). */
#define _POSIX_C_SOURCE 200809L
#include "test_process.h"

#include <stdio.h>
#include <sys/wait.h>

int test_run_command(const char *cmd, char *out, size_t cap)
{
  FILE *p = popen(cmd, "r");
  if (!p)
    return -1;
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
