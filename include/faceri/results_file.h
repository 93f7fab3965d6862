#ifndef FACERI_RESULTS_FILE_H
#define FACERI_RESULTS_FILE_H
/* The HDF5 results file of `faceri embed` (docs/FORMAT.md): one row per input
 * item, appended in batches to chunked, extensible datasets and flushed after
 * each batch, so a crash loses at most the batch in flight. */
#include <stdint.h>

#include "faceri/error.h"

#define FR_RESULTS_SCHEMA_VERSION 1

typedef enum fr_item_status {
  FR_ITEM_OK = 0,
  FR_ITEM_FAILED = 1,  /* could not be decoded, cropped or embedded: see /error */
  FR_ITEM_SKIPPED = 2, /* not an image (README, .info, ...) */
} fr_item_status;

typedef struct fr_results_file fr_results_file;

typedef struct fr_results_meta {
  const char *command_line;
  const char *model_path;
  const char *model_sha256;   /* SHA-256 of the model file */
  const char *architecture;
  const char *device;         /* Vulkan device name */
  int embedding_size;
} fr_results_meta;

/* Creates (truncates) path; sets state = "running". */
int fr_results_create(const char *path, const fr_results_meta *meta, fr_results_file **out, fr_error *err);

typedef struct fr_result_row {
  const char *key;
  const char *label;
  fr_item_status status;
  const char *error;      /* "" when none */
  int width, height;      /* original image size, 0 when unknown */
  const float *embedding; /* embedding_size floats, NULL: written as NaN */
  float norm;             /* NaN when not computed */
} fr_result_row;

int fr_results_append(fr_results_file *rf, const fr_result_row *rows, int n, fr_error *err);
/* Writes end time and counts, sets state = "complete" (or leaves "running" when
 * complete is 0, e.g. after a fatal error), and closes. rf is freed either way. */
int fr_results_close(fr_results_file *rf, int complete, fr_error *err);
int64_t fr_results_count(const fr_results_file *rf);

#endif
