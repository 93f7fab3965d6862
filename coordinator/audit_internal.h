#ifndef FACERI_AUDIT_INTERNAL_H
#define FACERI_AUDIT_INTERNAL_H
/* Parts of the audit (coordinator/ only). */
#include <stdint.h>

#include "eval_internal.h"
#include "faceri/audit.h"

typedef struct audit_dups {
  int64_t n, cap, max; /* recorded pairs (global indices a < b), capacity, recording limit */
  int64_t total;       /* pairs found, recorded or not */
  int truncated;
  int64_t *a, *b;
  float *cos;
} audit_dups;

/* flags: per used item; FR_AUDIT_DUPLICATE is or-ed in. */
int audit_find_duplicates(fr_results_reader *r, const eval_items *it, fr_dup_scope scope, double thr,
                          uint8_t *flags, audit_dups *d, fr_error *err);
void audit_dups_free(audit_dups *d);

#endif
