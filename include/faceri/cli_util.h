#ifndef FACERI_CLI_UTIL_H
#define FACERI_CLI_UTIL_H
/* Small helpers shared by the faceri subcommands: strict number parsing and
 * progress reporting (a bar with rate and ETA on a terminal, plain lines otherwise). */
#include <stdint.h>
#include <stdio.h>

#include "faceri/error.h"

/* Whole-string parses; the error names the option and the bad text. */
int fr_parse_int(const char *option, const char *text, long min, long max, long *out, fr_error *err);
int fr_parse_int_list(const char *option, const char *text, int n, long *out, fr_error *err); /* "a,b,c" */

typedef struct fr_progress {
  const char *what;
  int64_t total;     /* <= 0: unknown */
  int64_t done;
  double start, last_print;
  int tty;
  FILE *out;
} fr_progress;

double fr_now_seconds(void);
void fr_progress_start(fr_progress *p, const char *what, int64_t total);
void fr_progress_update(fr_progress *p, int64_t done);
void fr_progress_finish(fr_progress *p);

#endif
