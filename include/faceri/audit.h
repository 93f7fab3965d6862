#ifndef FACERI_AUDIT_H
#define FACERI_AUDIT_H
/* faceri audit: a labelled dataset's health from its results file
 * (coordinator/audit*.c; the /audit group is documented in docs/FORMAT.md).
 *
 * - Identity prototypes: the normalised mean of the identity's embeddings
 *   (used items: status 0 and a label). For an item's own identity the item is
 *   left out (leave-one-out), so a mislabelled item cannot pull its own
 *   prototype towards itself; an identity of one item has no own prototype
 *   (d_P, xi NaN).
 * - Per item, as in Eq. 1-3 (include/faceri/ri.h conventions, cosines clamped):
 *   d_P = 1 - cos(v, w_y), d_N = 1 - max_{j != y} cos(v, w_j) with the nearest
 *   other identity, d_UI = /quality/ers when present (1 - cos(v, UI centre)),
 *   else from the model file's UI centre (the results' model_path, or --model;
 *   the SHA-256 must match), else taken as 1 (documented in the d_ui_source
 *   attribute); xi = d_UI d_N / (d_P + 1e-7).
 * - Flags: suspected mislabel when d_P - d_N > margin (closer to another
 *   identity's prototype than to its own by the margin); near-duplicate when
 *   another item's cosine exceeds the threshold (blocked products over all
 *   pairs, or within each identity for large sets); unrecognizable when the
 *   chosen quality column is below a threshold. */
#include <stdint.h>
#include <stdio.h>

#include "faceri/error.h"
#include "faceri/results_reader.h"

#define FR_AUDIT_MISLABEL 1
#define FR_AUDIT_DUPLICATE 2
#define FR_AUDIT_UNRECOGNIZABLE 4

typedef enum fr_dup_scope { FR_DUP_AUTO = 0, FR_DUP_ALL, FR_DUP_LABEL, FR_DUP_OFF } fr_dup_scope;
/* Where the all-pairs duplicate search runs; the pairs found are the same. AUTO:
 * the Vulkan device for 1e8 pairs and more when one is usable, else the CPU. */
typedef enum fr_audit_path { FR_AUDIT_AUTO = 0, FR_AUDIT_CPU, FR_AUDIT_DEVICE } fr_audit_path;

typedef struct fr_audit_options {
  double margin;              /* < 0: default 0.05 */
  double dup_threshold;       /* 0: default 0.95 */
  fr_dup_scope dup_scope;     /* AUTO: all pairs up to dup_all_limit items, else within identities */
  int64_t dup_all_limit;      /* 0: 200,000 */
  int64_t max_dup_pairs;      /* pairs recorded; 0: 1,000,000 (all are counted) */
  const char *unrec_column;   /* NULL: quality/ers when it has values (threshold 0.6), else no flag */
  double unrec_threshold;     /* NaN: the default above */
  const char *model_path;     /* NULL: the results' model_path attribute */
  fr_audit_path dup_device;   /* all-pairs duplicate search on the device or the CPU */
  const char *device;         /* device selector (fr_vk_options.device) or NULL */
  int quiet;
} fr_audit_options;

typedef struct fr_audit_summary {
  int64_t items, used, identities;
  int64_t mislabel, duplicate_pairs, duplicate_items, unrecognizable, singletons;
  int duplicates_truncated;
  char d_ui_source[160], dup_scope[16], unrec_column[64];
  char dup_path[256];         /* "cpu" or the device that searched the duplicates */
  double margin, dup_threshold, unrec_threshold;
  double seconds;
} fr_audit_summary;

/* Computes the audit and writes /audit into the results file (opened read-write;
 * an existing /audit is replaced). */
int fr_audit_run(fr_results_reader *r, const fr_audit_options *opts, fr_audit_summary *out, fr_error *err);

void fr_audit_print_text(const fr_audit_summary *s, FILE *out);
void fr_audit_print_json(const fr_audit_summary *s, FILE *out);

/* argv[0] is "audit"; returns an FR_EXIT_* code. */
int fr_cmd_audit(int argc, char **argv);

#endif
