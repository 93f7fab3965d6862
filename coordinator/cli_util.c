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

int fr_parse_int_pair(const char *option, const char *text, const char *what, long min, long max, long *a, long *b,
                      fr_error *err)
{
  char first[32];
  const char *colon = text ? strchr(text, ':') : NULL;
  size_t len = colon ? (size_t)(colon - text) : 0;
  if (!colon || len == 0 || len >= sizeof(first))
    return fr_error_set(err, FR_ERR_INVALID, "%s \"%s\": expected %s", option, text ? text : "", what);
  memcpy(first, text, len);
  first[len] = '\0';
  if (fr_parse_int(option, first, min, max, a, err) || fr_parse_int(option, colon + 1, min, max, b, err))
    return FR_ERR_INVALID;
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

void fr_align_cli_init(fr_align_cli *a) { *a = (fr_align_cli){.min_score = 0.9f}; }

static int parse_face_size(const char *text, int *min, int *max, fr_error *err)
{
  long lo = 0, hi = 0;
  if (fr_parse_int_pair("--face-size", text, "MIN:MAX in pixels", 0, 16384, &lo, &hi, err))
    return FR_ERR_INVALID;
  if ((lo > 0 && lo < 12) || (hi > 0 && hi < 12))
    return fr_error_set(err, FR_ERR_INVALID, "--face-size %s: each bound is 0 (default) or 12..16384 pixels", text);
  if (hi > 0 && hi < lo)
    return fr_error_set(err, FR_ERR_INVALID, "--face-size %s: MAX is below MIN", text);
  *min = (int)lo;
  *max = (int)hi;
  return FR_OK;
}

int fr_align_cli_option(fr_align_cli *a, int opt, const char *arg, fr_error *err)
{
  switch (opt) {
  case FR_OPT_ALIGN: a->align = 1; return 1;
  case FR_OPT_MTCNN: a->mtcnn_dir = arg; a->settings_given = 1; return 1;
  case FR_OPT_FACE_SIZE:
    a->settings_given = 1;
    return parse_face_size(arg, &a->min_face, &a->max_face, err) ? -1 : 1;
  case FR_OPT_ALIGN_SCORE: {
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || end == arg || *end != '\0' || !(v >= 0.0 && v <= 1.0)) {
      fr_error_set(err, FR_ERR_INVALID, "--align-min-score: \"%s\" is not a probability in 0..1", arg);
      return -1;
    }
    a->min_score = (float)v;
    a->settings_given = 1;
    return 1;
  }
  default: return 0;
  }
}

int fr_align_cli_check(const fr_align_cli *a, fr_error *err)
{
  if (a->settings_given && !a->align)
    return fr_error_set(err, FR_ERR_INVALID, "--align-min-score, --face-size and --mtcnn need --align");
  return FR_OK;
}
