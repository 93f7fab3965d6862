#ifndef FACERI_TEST_RESULTS_FIXTURE_H
#define FACERI_TEST_RESULTS_FIXTURE_H
/* Small results files made inside a test, through the real writer
 * (results_file.h), for the eval/audit/gallery/report tests. */
#include "faceri/results_file.h"

typedef struct fixture_item {
  const char *key, *label; /* label "" = none */
  int status;              /* fr_item_status */
  const float *embedding;  /* dim floats (L2-normalised by the caller), NULL when not ok */
  float norm, ers, ri;
} fixture_item;

/* Writes n items as one committed shard and closes the file as complete. */
int fixture_write(const char *path, const fixture_item *items, int n, int dim, fr_error *err);
/* The same, recording input paths (files or folders the keys come from) in /inputs. */
int fixture_write_inputs(const char *path, const fixture_item *items, int n, int dim, const char *const *inputs,
                         int n_inputs, fr_error *err);

/* A synthetic labelled set: n_ids identities of per_id items each, interleaved
 * (item i is identity i % n_ids), cluster centres plus noise whose strength
 * varies per item; norm = a quality that falls with the noise. Keys are
 * "synth:id%03d/id%03d_%04d.jpg". seed makes it reproducible. */
int fixture_write_synthetic(const char *path, int n_ids, int per_id, int dim, unsigned seed, fr_error *err);

#endif
