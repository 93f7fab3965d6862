#include "faceri/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int fr_error_set(fr_error *err, fr_status code, const char *fmt, ...)
{
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return (int)code;
}

void fr_error_prefix(fr_error *err, const char *fmt, ...)
{
  if (!err)
    return;
  char prefix[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof(prefix), fmt, ap);
  va_end(ap);
  /* Build "prefix: old" by hand: the old text may be cut at the end, never the context. */
  char old[sizeof(err->message)];
  memcpy(old, err->message, sizeof(old));
  size_t n = strlen(prefix);
  if (n > sizeof(err->message) - 3)
    n = sizeof(err->message) - 3;
  memcpy(err->message, prefix, n);
  memcpy(err->message + n, ": ", 2);
  n += 2;
  size_t rest = sizeof(err->message) - 1 - n;
  size_t old_len = strnlen(old, sizeof(old) - 1);
  if (old_len > rest)
    old_len = rest;
  memcpy(err->message + n, old, old_len);
  err->message[n + old_len] = '\0';
}

void fr_error_clear(fr_error *err)
{
  if (err) {
    err->code = FR_OK;
    err->message[0] = '\0';
  }
}

const char *fr_status_name(fr_status code)
{
  switch (code) {
  case FR_OK: return "ok";
  case FR_ERR_INVALID: return "invalid argument";
  case FR_ERR_IO: return "I/O error";
  case FR_ERR_FORMAT: return "format error";
  case FR_ERR_NOMEM: return "out of memory";
  case FR_ERR_VULKAN: return "Vulkan error";
  case FR_ERR_DEVICE_LOST: return "device lost";
  case FR_ERR_TIMEOUT: return "timeout";
  case FR_ERR_UNSUPPORTED: return "unsupported";
  case FR_ERR_HDF5: return "HDF5 error";
  case FR_ERR_NOT_FOUND: return "not found";
  case FR_ERR_INTERNAL: return "internal error";
  }
  return "unknown error";
}
