#ifndef FACERI_RESULTS_READER_H
#define FACERI_RESULTS_READER_H
/* Chunked reader of a results file (docs/FORMAT.md, schemas 2 and 3) for the commands
 * that turn results into answers (eval, audit, gallery, report). Nothing is read
 * whole except the label names: every per-item dataset is read as a row block
 * [first, first + n) through an HDF5 hyperslab, so memory stays bounded by the
 * block size whatever the number of items.
 *
 * Optional per-item float columns are named by their dataset path: "quality/norm",
 * "quality/ers", "quality/ri", "audit/ri", "items/align_score", "items/aligned" (int8,
 * converted), ... A column that is absent reads as NaN. */
#include <stdint.h>

#include "faceri/error.h"

/* Rows per block the commands use: 65536 x 192 floats = 48 MiB of embeddings. */
#define FR_RESULTS_BLOCK_ROWS 65536

typedef struct fr_results_reader fr_results_reader;

/* Opens read-only (read_write: for commands that add groups such as /audit).
 * Checks the format attribute, the schema version and that every per-item
 * dataset has the same number of rows; the error names the file and what is wrong. */
int fr_results_reader_open(const char *path, int read_write, fr_results_reader **out, fr_error *err);
void fr_results_reader_close(fr_results_reader *r);

const char *fr_results_reader_path(const fr_results_reader *r);
int64_t fr_results_reader_items(const fr_results_reader *r);
int fr_results_reader_dim(const fr_results_reader *r);
int fr_results_reader_n_labels(const fr_results_reader *r);
/* Label name of id (0 <= id < n_labels), else "". */
const char *fr_results_reader_label_name(const fr_results_reader *r, int id);

/* A string root attribute ("" when absent or not a string). */
void fr_results_reader_attr(const fr_results_reader *r, const char *name, char *out, size_t size);
/* An integer root attribute; def when absent. */
int64_t fr_results_reader_int_attr(const fr_results_reader *r, const char *name, int64_t def);
/* 1 if the float column exists with one value per item. */
int fr_results_reader_has_column(const fr_results_reader *r, const char *column);

/* Row blocks. Indices outside [0, items) are an error naming the file. */
int fr_results_read_embedding(fr_results_reader *r, int64_t first, int64_t n, float *out, fr_error *err);
int fr_results_read_labels(fr_results_reader *r, int64_t first, int64_t n, int32_t *out, fr_error *err);
int fr_results_read_status(fr_results_reader *r, int64_t first, int64_t n, int8_t *out, fr_error *err);
/* A float column (see above); NaN-filled when the column does not exist. */
int fr_results_read_column(fr_results_reader *r, const char *column, int64_t first, int64_t n, float *out,
                           fr_error *err);
/* Keys as malloc'd NUL-terminated strings (bytes as stored); free each, or use
 * fr_results_free_keys. */
int fr_results_read_keys(fr_results_reader *r, int64_t first, int64_t n, char **out, fr_error *err);
void fr_results_free_keys(char **keys, int64_t n);

/* The HDF5 file id, for commands that write their own groups (read_write opens). */
int64_t fr_results_reader_hid(const fr_results_reader *r);

#endif
