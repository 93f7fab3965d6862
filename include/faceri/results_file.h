#ifndef FACERI_RESULTS_FILE_H
#define FACERI_RESULTS_FILE_H
/* The HDF5 results file of every faceri run (docs/FORMAT.md, schema 3).
 *
 * Row i of every /items dataset, /embedding and /quality is global item i (the
 * deterministic input order), whichever shard or worker computed it and in
 * whatever order shards finish. Rows are written, then their shard is committed
 * to /shards and the file flushed: a crash loses at most uncommitted shards, and
 * --resume recomputes exactly those, writing to the same rows (never a second row). */
#include <stdint.h>

#include "faceri/error.h"
#include "faceri/item_status.h"

#define FR_RESULTS_SCHEMA_VERSION 3
/* Oldest schema the reader still reads (2: no /items/aligned, /items/align_score,
 * align attributes; they read as "not attempted"). */
#define FR_RESULTS_SCHEMA_MIN_READ 2


typedef struct fr_input_fingerprint {
  char path[1024];
  int64_t size;          /* bytes (files) or entries (folders) */
  int64_t mtime;         /* seconds */
  char digest[65];       /* hex SHA-256 of what identifies the input, see fr_fingerprint_input */
} fr_input_fingerprint;

/* Identifies an input without reading all of it: for a file its size, mtime and
 * the SHA-256 of its first and last MiB; for a folder the SHA-256 of its sorted
 * recursive listing with sizes and mtimes. */
int fr_fingerprint_input(const char *path, fr_input_fingerprint *out, fr_error *err);

typedef struct fr_results_meta {
  const char *command_line;
  const char *model_path;
  const char *model_sha256;   /* SHA-256 of the model file */
  const char *architecture;
  const char *device;         /* Vulkan device name(s) */
  int embedding_size;
  int n_inputs;
  const fr_input_fingerprint *inputs;
  /* Where labels came from (fr_labeler_csv_path/_sha256, fr_labeler_regex);
   * NULL or "" when not used. --resume refuses a different CSV content or regex. */
  const char *labels_csv, *labels_csv_sha256, *label_regex;
  /* --align and its settings (root attributes align, align_min_score, face_size);
   * --resume refuses other settings. */
  int align;
  float align_min_score;
  int align_min_face, align_max_face;
  /* --test-embedding ("v", "attn", "concat"; NULL: "v"): what /embedding holds
   * (embedding_size is its width). attn_size > 0: /embedding_attn [N, attn_size]
   * exists. --resume refuses a change of either. */
  const char *test_embedding;
  int attn_size;
} fr_results_meta;

typedef struct fr_results_file fr_results_file;

/* Creates (truncates) path with state = "running". */
int fr_results_create(const char *path, const fr_results_meta *meta, fr_results_file **out, fr_error *err);

/* Reopens an interrupted run's file for --resume. Refuses (FR_ERR_INVALID, saying
 * why) a file of another schema, model or embedding size, whose inputs'
 * fingerprints differ from meta's, or made with other label options (the CSV's
 * SHA-256, the regex). */
int fr_results_open_resume(const char *path, const fr_results_meta *meta, fr_results_file **out, fr_error *err);

/* Committed shards as sorted, non-overlapping [first, first + count) ranges. */
int fr_results_committed_count(const fr_results_file *rf);
void fr_results_committed_range(const fr_results_file *rf, int i, int64_t *first, int64_t *count);
/* 1 if global item `index` lies in a committed shard. */
int fr_results_is_committed(const fr_results_file *rf, int64_t index);

/* Gives a label its /labels/name index (the existing one, or the next). Callers that
 * register labels in input order get ids that do not depend on which shard commits
 * first; fr_results_write_items registers any label it has not seen. */
int fr_results_register_label(fr_results_file *rf, const char *label, int *id, fr_error *err);

typedef struct fr_result_row {
  const char *key;        /* bytes as found; may be non-UTF-8 */
  const char *label;      /* "" when none */
  fr_item_status status;
  const char *error;      /* "" when none */
  int width, height;      /* decoded image size, 0 when unknown */
  const float *embedding; /* embedding_size floats; NULL: NaN */
  float norm, ers, ri;    /* NaN when not computed */
  int aligned;            /* 1 aligned, 0 fallback resize, -1 not attempted */
  float align_score;      /* NaN when not attempted */
  const float *embedding_attn; /* attn_size floats (L2-normalised v_attn); NULL: NaN */
} fr_result_row;

/* Writes rows for global items first .. first + n - 1 (they need not be committed yet). */
int fr_results_write_items(fr_results_file *rf, int64_t first, const fr_result_row *rows, int n, int64_t shard_id,
                           fr_error *err);

typedef struct fr_shard_record {
  int64_t id, first, count;
  int attempts;
  int failed;             /* 1: written as failed after too many attempts */
  const char *worker, *device, *reason;
  float seconds;
} fr_shard_record;

/* Records the shard in /shards and flushes: its rows are now durable. */
int fr_results_commit_shard(fr_results_file *rf, const fr_shard_record *shard, fr_error *err);

/* Writes end time and counts; state = "complete" when complete, else stays
 * "running" (resumable). rf is freed either way. */
int fr_results_close(fr_results_file *rf, int complete, fr_error *err);
int64_t fr_results_count(const fr_results_file *rf); /* rows (= highest written index + 1) */

#endif
