#include "faceri/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int current_level = -1;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static fr_log_level level_from_env(void)
{
  const char *v = getenv("FACERI_LOG");
  if (!v)
    return FR_LOG_INFO;
  if (!strcmp(v, "debug"))
    return FR_LOG_DEBUG;
  if (!strcmp(v, "warn"))
    return FR_LOG_WARN;
  if (!strcmp(v, "error"))
    return FR_LOG_ERROR;
  if (!strcmp(v, "quiet"))
    return FR_LOG_QUIET;
  return FR_LOG_INFO;
}

void fr_log_set_level(fr_log_level level) { current_level = (int)level; }

fr_log_level fr_log_get_level(void)
{
  if (current_level < 0)
    current_level = (int)level_from_env();
  return (fr_log_level)current_level;
}

void fr_log(fr_log_level level, const char *fmt, ...)
{
  if (level < fr_log_get_level())
    return;
  static const char *names[] = {"debug", "info", "warning", "error", ""};
  va_list ap;
  va_start(ap, fmt);
  /* One lock so lines from worker threads never interleave mid-line. */
  pthread_mutex_lock(&log_lock);
  fprintf(stderr, "faceri: %s: ", names[level]);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  pthread_mutex_unlock(&log_lock);
  va_end(ap);
}
