#ifndef FACERI_AUDIT_INTERNAL_H
#define FACERI_AUDIT_INTERNAL_H
/* Parts of the audit (coordinator/ only). */
#include <stdint.h>

#include "eval_internal.h"
#include "faceri/audit.h"
#include "faceri/similarity.h"

typedef struct audit_dups {
  int64_t n, cap, max; /* recorded pairs (global indices a < b), capacity, recording limit */
  int64_t total;       /* pairs found, recorded or not */
  int truncated;
  int64_t *a, *b;
  float *cos;
} audit_dups;

/* flags: per used item; FR_AUDIT_DUPLICATE is or-ed in. dev: all pairs on the
 * device (NULL: CPU); the results are the same. */
int audit_find_duplicates(fr_results_reader *r, const eval_items *it, fr_dup_scope scope, double thr,
                          uint8_t *flags, audit_dups *d, fr_similarity_device *dev, fr_error *err);
void audit_dups_free(audit_dups *d);
/* All-pairs jobs from this many pairs go to the device in AUTO mode. */
#define AUDIT_DEVICE_MIN_PAIRS 1e8
/* The device for the duplicate search as o->dup_device asks (*dev NULL: CPU). */
int audit_open_device(const fr_audit_options *o, fr_dup_scope scope, int64_t used, fr_vk_context **ctx,
                      fr_similarity_device **dev, fr_error *err);

#endif
