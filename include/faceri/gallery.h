#ifndef FACERI_GALLERY_H
#define FACERI_GALLERY_H
/* faceri gallery: one template per identity from a results file, and 1:N top-k
 * search of probes against it (coordinator/gallery*.c).
 *
 * Gallery file (HDF5): root attributes format = "faceri-gallery", version 1,
 * source (the results file), weighting ("mean" | "quality"), quality_column,
 * min_quality; /templates float32 [T, D] (unit length), /labels/name string [T],
 * /count int64 [T] (items averaged).
 * Matches file: /probe/row int64 [P] (row in the probes' results file),
 * /probe/key string [P], /match/template int32 [P, K] (-1 = no candidate),
 * /match/score float32 [P, K] (cosine, best first), /labels/name (the gallery's);
 * attributes format = "faceri-matches", top_k, gallery, probes. */
#include <stdint.h>
#include <stdio.h>

#include "faceri/error.h"
#include "faceri/results_reader.h"

typedef enum fr_gallery_weighting { FR_WEIGHT_MEAN = 0, FR_WEIGHT_QUALITY } fr_gallery_weighting;

typedef struct fr_gallery_build_options {
  fr_gallery_weighting weighting;
  const char *quality_column; /* NULL: quality/ers if present, else quality/norm */
  double min_quality;         /* items below are left out; NaN: none */
} fr_gallery_build_options;

typedef struct fr_gallery {
  int64_t n;
  int dim;
  float *templates; /* [n, dim] */
  char **names;     /* [n] */
  int64_t *count;   /* [n] */
} fr_gallery;

void fr_gallery_free(fr_gallery *g);
int fr_gallery_build(fr_results_reader *r, const fr_gallery_build_options *o, fr_gallery *out, int64_t *left_out,
                     fr_error *err);
int fr_gallery_save(const fr_gallery *g, const char *path, const char *source, const fr_gallery_build_options *o,
                    fr_error *err);
int fr_gallery_load(const char *path, fr_gallery *out, fr_error *err);

typedef struct fr_gallery_search_stats {
  int64_t probes, comparisons;
  double seconds;
} fr_gallery_search_stats;

/* Top-k of every status-ok probe of the results file, streamed in row blocks;
 * writes the matches file and, when csv is not NULL, one CSV line per
 * (probe, rank): key,rank,label,score. */
int fr_gallery_search(const fr_gallery *g, fr_results_reader *probes, int k, const char *out_path, FILE *csv,
                      fr_gallery_search_stats *stats, fr_error *err);

/* argv[0] is "gallery"; subcommands build, search, bench. */
int fr_cmd_gallery(int argc, char **argv);

#endif
