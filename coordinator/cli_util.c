#include "faceri/cli_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int fr_parse_int(const char *option, const char *text, long min, long max, long *out, fr_error *err)
{
  if (!text || !*text)
    return fr_error_set(err, FR_ERR_INVALID, "%s needs a number", option);
  char *end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno || *end != '\0')
    return fr_error_set(err, FR_ERR_INVALID, "%s: \"%s\" is not a whole number", option, text);
  if (v < min || v > max)
    return fr_error_set(err, FR_ERR_INVALID, "%s: %ld is outside %ld..%ld", option, v, min, max);
  *out = v;
  return FR_OK;
}

int fr_parse_int_list(const char *option, const char *text, int n, long *out, fr_error *err)
{
  if (!text)
    return fr_error_set(err, FR_ERR_INVALID, "%s needs %d comma-separated numbers", option, n);
  const char *p = text;
  for (int i = 0; i < n; i++) {
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (errno || end == p || (i < n - 1 && *end != ',') || (i == n - 1 && *end != '\0'))
      return fr_error_set(err, FR_ERR_INVALID, "%s: \"%s\" is not %d comma-separated whole numbers", option, text, n);
    out[i] = v;
    p = end + 1;
  }
  return FR_OK;
}

double fr_now_seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void fr_progress_start(fr_progress *p, const char *what, int64_t total)
{
  memset(p, 0, sizeof(*p));
  p->what = what;
  p->total = total;
  p->out = stderr;
  p->tty = isatty(fileno(stderr));
  p->start = p->last_print = fr_now_seconds();
}

static void print_progress(fr_progress *p, int final)
{
  double now = fr_now_seconds();
  double elapsed = now - p->start;
  double rate = elapsed > 0 ? (double)p->done / elapsed : 0.0;
  char count[48];
  if (p->total > 0)
    snprintf(count, sizeof(count), "%lld/%lld", (long long)p->done, (long long)p->total);
  else
    snprintf(count, sizeof(count), "%lld", (long long)p->done); /* total unknown: no bar, no ETA */
  if (p->tty) {
    char bar[31];
    int filled = p->total > 0 ? (int)(30.0 * (double)p->done / (double)p->total) : 0;
    for (int i = 0; i < 30; i++)
      bar[i] = i < filled ? '#' : '.';
    bar[30] = '\0';
    double eta = rate > 0 && p->total > 0 ? (double)(p->total - p->done) / rate : 0.0;
    if (p->total > 0)
      fprintf(p->out, "\r%s [%s] %s  %.1f/s  ETA %.0fs   ", p->what, bar, count, rate, eta);
    else
      fprintf(p->out, "\r%s %s  %.1f/s  %.0fs   ", p->what, count, rate, elapsed);
    if (final)
      fputc('\n', p->out);
  } else {
    fprintf(p->out, "%s: %s done, %.1f/s, %.1fs elapsed\n", p->what, count, rate, elapsed);
  }
  fflush(p->out);
  p->last_print = now;
}

void fr_progress_update(fr_progress *p, int64_t done)
{
  p->done = done;
  double now = fr_now_seconds();
  /* A terminal redraws often; a log file gets a line every 10 s so it stays short. */
  if (now - p->last_print >= (p->tty ? 0.2 : 10.0))
    print_progress(p, 0);
}

void fr_progress_finish(fr_progress *p) { print_progress(p, 1); }
