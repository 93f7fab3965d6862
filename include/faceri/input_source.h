#ifndef FACERI_INPUT_SOURCE_H
#define FACERI_INPUT_SOURCE_H
/* What `faceri embed INPUT...` reads: a list of paths, each an image file, a
 * folder (walked recursively, entries in strcmp order of their names, so two
 * runs see the same items in the same order) or an archive (anything
 * libarchive reads: tar, tar.gz, tar.zst, zip, ...; also when found inside a
 * folder), delivered one file or member at a time. Archives are streamed:
 * only the current member is in memory, up to a per-member cap.
 *
 * Items are everything that is a regular file: the `is_image` flag (from the
 * magic bytes) lets the caller record README, .txt and .info members as
 * skipped rather than silently dropping them. */
#include <stddef.h>
#include <stdint.h>

#include "faceri/error.h"

#define FR_INPUT_DEFAULT_MAX_MEMBER_BYTES ((size_t)64 << 20)

typedef struct fr_input_source fr_input_source;

typedef struct fr_input_item {
  /* "<archive path>:<member path>" for archive members; for plain files the
   * path as given, or "<folder as given>/<relative path>" under a folder. */
  const char *key;
  /* Name of the folder holding the file or member ("s1" for "orl/s1/1.pgm"),
   * "" when there is none. */
  const char *label;
  int input_index;      /* which of the paths given to open() it came from */
  const uint8_t *bytes; /* the file's contents; NULL when status != FR_OK */
  size_t size;
  int is_image; /* fr_image_is_probably_image(bytes, size) */
  /* FR_OK, or why this one item has no bytes (over the size cap, unreadable,
   * a symlink loop): the caller records it as failed and goes on. */
  fr_status status;
  const char *error; /* "" when status == FR_OK; names the item and the reason */
  /* 1 when this item reports that its input failed part-way or as a whole: a
   * truncated or corrupt archive (key: the member being read, or the archive
   * path when it broke between members), an input path that vanished or cannot
   * be read (key: the path). status != FR_OK; the rest of that input is
   * skipped and the next call goes on with the following input path. */
  int input_failed;
} fr_input_item;

/* Checks that every path exists (else FR_ERR_NOT_FOUND naming it) and
 * prepares to walk them in order. The paths are copied. */
int fr_input_source_open(const char *const *paths, int n, fr_input_source **out, fr_error *err);

/* Members larger than this are delivered as items with status
 * FR_ERR_UNSUPPORTED and no bytes. Default FR_INPUT_DEFAULT_MAX_MEMBER_BYTES. */
void fr_input_source_set_max_member_bytes(fr_input_source *src, size_t max_bytes);

/* Returns 1 and fills *item (valid until the next call or close), 0 at the
 * end, or -1 with err set when memory runs out. A damaged input is not an
 * error of the whole walk: it comes as one item with input_failed = 1 (see
 * above; the message names the archive, the member being read and the cause),
 * after the items read before the damage, which stay valid. */
int fr_input_source_next(fr_input_source *src, fr_input_item *item, fr_error *err);

void fr_input_source_close(fr_input_source *src);

#endif
