#ifndef FACERI_ERROR_H
#define FACERI_ERROR_H
/* Errors are return codes plus a message that names the thing and the reason.
 * Library code never exits: it fills an fr_error and returns its code. */
#include <stddef.h>

typedef enum fr_status {
  FR_OK = 0,
  FR_ERR_INVALID = 1,     /* bad argument or option */
  FR_ERR_IO = 2,          /* file or socket I/O */
  FR_ERR_FORMAT = 3,      /* corrupt, truncated or foreign data */
  FR_ERR_NOMEM = 4,       /* host or device allocation */
  FR_ERR_VULKAN = 5,      /* a Vulkan call failed */
  FR_ERR_DEVICE_LOST = 6, /* the device was lost: results of the batch are gone */
  FR_ERR_TIMEOUT = 7,     /* a bounded wait expired */
  FR_ERR_UNSUPPORTED = 8, /* valid input this build cannot handle */
  FR_ERR_HDF5 = 9,        /* an HDF5 call failed */
  FR_ERR_NOT_FOUND = 10,  /* a file, device or entry does not exist */
  FR_ERR_INTERNAL = 11    /* a bug: an invariant did not hold */
} fr_status;

typedef struct fr_error {
  fr_status code;
  char message[1024];
} fr_error;

/* Sets code and message (printf-style) and returns code, so callers can
 * `return fr_error_set(err, FR_ERR_IO, "%s: %s", path, strerror(errno));`.
 * err may be NULL. */
int fr_error_set(fr_error *err, fr_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Puts context in front of an existing message: "loading model: <old>". */
void fr_error_prefix(fr_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void fr_error_clear(fr_error *err);
const char *fr_status_name(fr_status code);

#endif
