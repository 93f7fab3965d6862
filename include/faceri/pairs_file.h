#ifndef FACERI_PAIRS_FILE_H
#define FACERI_PAIRS_FILE_H
/* Verification pair lists in the LFW `pairs.txt` format:
 *
 *   10 300                  header: "N_folds N" or just "N" (one fold)
 *   Abel_Pacheco 1 4        matched pair: name, two image numbers (1-based)
 *   Abdel_Madi_Shabneh 1 Dean_Barker 1     mismatched pair: name1 i name2 j
 *
 * Each fold holds 2N pair lines (LFW puts the N matched ones first; that order
 * is not required). Fields are separated by spaces or tabs; CRLF line ends and
 * blank lines are accepted. Any other deviation (a wrong field count, a
 * non-numeric or non-positive image number, more or fewer pairs than the
 * header announces) is an FR_ERR_FORMAT error naming the source and line.
 *
 * The parser does not know where images live: the caller maps (name, image
 * number) to an item index with a lookup callback (for results files: the
 * label name plus the image's position within that label, or the LFW file
 * name Name_Surname_0004.jpg). */
#include <stddef.h>
#include <stdint.h>

#include "faceri/error.h"
#include "faceri/verification.h"

typedef struct fr_pair {
  int64_t a, b;  /* item indices from the lookup */
  int genuine;   /* 1 matched, 0 mismatched */
  int fold;      /* 0-based, from the pair's position */
  int64_t line;  /* 1-based line in the source, for messages */
} fr_pair;

/* Returns FR_OK with *index set; FR_ERR_NOT_FOUND when the image is not among
 * the items (the pair is skipped and counted in n_skipped, e.g. an image that
 * failed to decode); any other code stops parsing with that error, prefixed
 * with the source and line. */
typedef int (*fr_pairs_lookup_fn)(void *ctx, const char *name, int image_number, int64_t *index, fr_error *err);

typedef struct fr_pairs {
  fr_pair *pairs;
  int64_t n, n_genuine, n_impostor;
  int64_t n_skipped; /* pairs with an image the lookup did not find */
  int n_folds;
  int64_t per_fold;  /* N of the header: matched (and mismatched) pairs per fold */
} fr_pairs;

int fr_pairs_read_file(const char *path, fr_pairs_lookup_fn lookup, void *ctx, fr_pairs *out, fr_error *err);

/* The same from memory; source_name is used in messages. */
int fr_pairs_parse(const char *text, size_t len, const char *source_name, fr_pairs_lookup_fn lookup, void *ctx,
                   fr_pairs *out, fr_error *err);

void fr_pairs_free(fr_pairs *pairs);

/* Cosine similarity (dot product, in double) of each pair's two L2-normalised
 * embeddings, rows of a [n_items, dim] matrix. */
int fr_pairs_scores(const float *embeddings, int64_t n_items, int dim, const fr_pair *pairs, int64_t n_pairs,
                    double *scores, fr_error *err);

/* Verification over the pair list (all folds together): the fr_verification
 * figures plus TPR at each of fars[0..n_far) into tpr (may be NULL if n_far is 0). */
int fr_pairs_verification(const float *embeddings, int64_t n_items, int dim, const fr_pairs *pairs,
                          const double *fars, int n_far, fr_verification *out, double *tpr, fr_error *err);

#endif
