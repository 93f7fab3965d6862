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
  int device; /* the device path ran */
} fr_gallery_search_stats;

/* Where the scores are computed: AUTO takes the device for jobs of at least
 * FR_GALLERY_DEVICE_MIN comparisons when one is usable, else the CPU. */
typedef enum fr_gallery_path { FR_PATH_AUTO = 0, FR_PATH_CPU, FR_PATH_DEVICE } fr_gallery_path;
#define FR_GALLERY_DEVICE_MIN 1e8

typedef struct fr_vk_context fr_vk_context;
typedef struct fr_similarity_device fr_similarity_device;
/* Opens the device path as `path` asks for a job of `comparisons` and top k
 * (device: a selector as fr_vk_options.device, or NULL). *dev stays NULL for the
 * CPU path; AUTO falls back to it (with a log line) when no device works or k is
 * above FR_SIMILARITY_DEVICE_MAX_K, DEVICE fails.
 * Release with fr_similarity_device_destroy, then fr_vk_context_destroy. */
int fr_gallery_open_device(fr_gallery_path path, const char *device, double comparisons, int k, fr_vk_context **ctx,
                           fr_similarity_device **dev, fr_error *err);

/* Top-k of every status-ok probe of the results file, streamed in row blocks, on
 * dev when not NULL (its templates are replaced by the gallery's), else on the
 * CPU, with identical results; writes the matches file and, when csv is not
 * NULL, one CSV line per (probe, rank): key,rank,label,score. */
int fr_gallery_search(const fr_gallery *g, fr_results_reader *probes, int k, const char *out_path, FILE *csv,
                      fr_similarity_device *dev, fr_gallery_search_stats *stats, fr_error *err);

/* argv[0] is "gallery"; subcommands build, search, bench. */
int fr_cmd_gallery(int argc, char **argv);

#endif
