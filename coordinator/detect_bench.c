/* faceri detect --bench: detection and alignment throughput on real images, with the
 * figures that say what the detector found (faces per image, their sizes) and how
 * often the aligner fell back. Images are decoded before timing; the first image
 * runs once untimed (pipeline compilation and plan creation). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "detect_bench.h"
#include "faceri/align.h"
#include "faceri/cli_util.h"
#include "faceri/image.h"
#include "faceri/input_source.h"

#define WARP_BATCH 32

/* Process CPU seconds (every lavapipe thread included): on a shared machine the
 * wall-clock rate moves with the load, this one much less. */
static double cpu_seconds(void)
{
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return 0.0;
  return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
         1e-6 * (double)ru.ru_stime.tv_usec;
}

typedef struct image_set {
  fr_image *v;
  int n, cap;
} image_set;

static void images_free(image_set *s)
{
  for (int i = 0; i < s->n; i++)
    fr_image_free(&s->v[i]);
  free(s->v);
}

static int load_images(const char *const *inputs, int n_inputs, int limit, image_set *s, int *undecodable,
                       fr_error *err)
{
  fr_input_source *src = NULL;
  int rc = fr_input_source_open(inputs, n_inputs, &src, err);
  while (!rc && (limit <= 0 || s->n < limit)) {
    fr_input_item it;
    int more = fr_input_source_next(src, &it, err);
    if (more < 0) {
      rc = more;
      break;
    }
    if (more == 0)
      break;
    if (it.status != FR_OK || !it.is_image)
      continue;
    if (s->n == s->cap) {
      int cap = s->cap ? 2 * s->cap : 256;
      fr_image *v = realloc(s->v, sizeof(fr_image) * (size_t)cap);
      if (!v) {
        rc = fr_error_set(err, FR_ERR_NOMEM, "bench: out of memory for images");
        break;
      }
      s->v = v, s->cap = cap;
    }
    fr_error item_err = {0};
    if (fr_image_decode(it.bytes, it.size, it.key, &s->v[s->n], &item_err) == FR_OK)
      s->n++;
    else
      (*undecodable)++;
  }
  fr_input_source_close(src);
  return rc;
}

static int cmp_int(const void *a, const void *b)
{
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

static int pct(const int *sorted, int n, double q) { return n ? sorted[(int)(q * (n - 1) + 0.5)] : 0; }

typedef struct detect_figures {
  double seconds, cpu;
  int images_with_face;
  int *widths; /* every face's box width, sorted */
  int n_faces;
  fr_detect_stats stats;
} detect_figures;

static int bench_detect(fr_detector *det, const image_set *s, const fr_detect_options *opt, detect_figures *f,
                        fr_error *err)
{
  fr_face *faces = NULL;
  int n = 0, cap = 0;
  int rc = fr_detector_detect(det, &s->v[0], opt, &faces, &n, err); /* warm-up */
  free(faces);
  fr_detector_reset_stats(det);
  double t0 = fr_now_seconds(), c0 = cpu_seconds();
  for (int i = 0; i < s->n && !rc; i++) {
    rc = fr_detector_detect(det, &s->v[i], opt, &faces, &n, err);
    f->images_with_face += !rc && n > 0;
    if (!rc && f->n_faces + n > cap) {
      cap = 2 * (f->n_faces + n) + 64;
      int *w = realloc(f->widths, sizeof(int) * (size_t)cap);
      if (!w)
        rc = fr_error_set(err, FR_ERR_NOMEM, "bench: out of memory");
      else
        f->widths = w;
    }
    for (int k = 0; k < n && !rc; k++)
      f->widths[f->n_faces++] = faces[k].box[2] - faces[k].box[0] + 1;
    free(faces);
  }
  f->seconds = fr_now_seconds() - t0;
  f->cpu = cpu_seconds() - c0;
  fr_detector_stats(det, &f->stats);
  if (f->n_faces)
    qsort(f->widths, (size_t)f->n_faces, sizeof(int), cmp_int);
  return rc;
}

typedef struct align_figures {
  double seconds, cpu, warp_seconds;
  int aligned, detected, fallbacks;
} align_figures;

/* The whole aligner per image, then the warp alone over the aligned images in batches. */
static int bench_align(fr_aligner *al, const image_set *s, const fr_align_options *opt, align_figures *f,
                       fr_error *err)
{
  float(*lm)[10] = malloc(sizeof(float[10]) * (size_t)s->n);
  int *which = malloc(sizeof(int) * (size_t)s->n);
  uint8_t *crops = malloc((size_t)WARP_BATCH * 112 * 112 * 3);
  fr_image *batch = malloc(sizeof(fr_image) * WARP_BATCH);
  if (!lm || !which || !crops || !batch) {
    free(lm), free(which), free(crops), free(batch);
    return fr_error_set(err, FR_ERR_NOMEM, "bench: out of memory");
  }
  fr_image out;
  fr_align_result res;
  int rc = fr_aligner_align(al, &s->v[0], opt, &out, &res, err); /* warm-up */
  if (!rc)
    fr_image_free(&out);
  double t0 = fr_now_seconds(), c0 = cpu_seconds();
  for (int i = 0; i < s->n && !rc; i++) {
    rc = fr_aligner_align(al, &s->v[i], opt, &out, &res, err);
    if (rc)
      break;
    fr_image_free(&out);
    f->detected += res.detected;
    if (res.aligned) {
      memcpy(lm[f->aligned], res.landmarks, sizeof(lm[0]));
      which[f->aligned++] = i;
    } else {
      f->fallbacks++;
    }
  }
  f->seconds = fr_now_seconds() - t0;
  f->cpu = cpu_seconds() - c0;
  t0 = fr_now_seconds();
  for (int start = 0; start < f->aligned && !rc; start += WARP_BATCH) {
    int b = f->aligned - start < WARP_BATCH ? f->aligned - start : WARP_BATCH;
    for (int k = 0; k < b; k++)
      batch[k] = s->v[which[start + k]];
    rc = fr_aligner_warp(al, batch, (const float(*)[10])(lm + start), b, crops, err);
  }
  f->warp_seconds = fr_now_seconds() - t0;
  free(lm), free(which), free(crops), free(batch);
  return rc;
}

int fr_detect_bench(fr_aligner *al, const char *const *inputs, int n_inputs, const fr_bench_config *cfg, int json,
                    fr_error *err)
{
  image_set s = {0};
  int undecodable = 0;
  int rc = load_images(inputs, n_inputs, cfg->limit, &s, &undecodable, err);
  if (!rc && s.n == 0)
    rc = fr_error_set(err, FR_ERR_INVALID, "bench: no decodable image in the inputs");
  detect_figures d = {0};
  align_figures a = {0};
  fr_detect_options dopt = fr_detect_defaults();
  dopt.min_face = cfg->min_face, dopt.max_face = cfg->max_face;
  fr_align_options aopt = fr_align_defaults();
  aopt.min_face = cfg->min_face, aopt.max_face = cfg->max_face;
  if (!rc)
    rc = bench_detect(fr_aligner_detector(al), &s, &dopt, &d, err);
  if (!rc && !cfg->detect_only)
    rc = bench_align(al, &s, &aopt, &a, err);
  if (!rc) {
    int *w = d.widths, nf = d.n_faces;
    double n = s.n, det_rate = d.seconds > 0 ? n / d.seconds : 0, al_rate = a.seconds > 0 ? n / a.seconds : 0;
    double warp_rate = a.warp_seconds > 0 ? a.aligned / a.warp_seconds : 0;
    if (!json) {
      printf("images: %d decoded (%d undecodable), first %dx%d; face size range %d..%d px (0: defaults)\n", s.n,
             undecodable, s.v[0].width, s.v[0].height, cfg->min_face, cfg->max_face);
      printf("detect: %.2f images/s (%.1f ms/image, %.1f ms CPU/image); PNet %.3f s, RNet %.3f s, ONet %.3f s\n",
             det_rate, 1000.0 / (det_rate > 0 ? det_rate : 1), 1000.0 * d.cpu / n, d.stats.seconds[0],
             d.stats.seconds[1], d.stats.seconds[2]);
      printf("        per image: %.1f pyramid levels, %.1f PNet boxes, %.1f into RNet, %.1f into ONet, %.1f "
             "submissions\n",
             d.stats.levels / n, d.stats.boxes[0] / n, d.stats.boxes[1] / n, d.stats.boxes[2] / n,
             d.stats.submissions / n);
      printf("        %d faces, %d images (%.1f%%) with at least one; box width min %d, median %d, p90 %d, max %d "
             "px\n",
             nf, d.images_with_face, 100.0 * d.images_with_face / n, nf ? w[0] : 0, pct(w, nf, 0.5),
             pct(w, nf, 0.9), nf ? w[nf - 1] : 0);
      if (!cfg->detect_only) {
        printf("align:  %.2f images/s (%.1f ms CPU/image); %d aligned, %d fallbacks (plain resize), %d from the "
               "detector, %d from ONet on the centre\n",
               al_rate, 1000.0 * a.cpu / n, a.aligned, a.fallbacks, a.detected, s.n - a.detected);
        printf("warp:   %.1f images/s (the aligned images, batches of %d, upload and download included)\n",
               warp_rate, WARP_BATCH);
      }
    }
    printf("{\"command\":\"detect-bench\",\"images\":%d,\"min_face\":%d,\"max_face\":%d,\"detect_images_per_s\":%.3f,"
           "\"detect_cpu_ms_per_image\":%.2f,\"pnet_s\":%.3f,\"rnet_s\":%.3f,\"onet_s\":%.3f,\"levels\":%lld,"
           "\"rnet_boxes\":%lld,\"onet_boxes\":%lld,"
           "\"faces\":%d,\"images_with_face\":%d,\"face_width_min\":%d,\"face_width_median\":%d,"
           "\"face_width_p90\":%d,\"face_width_max\":%d",
           s.n, cfg->min_face, cfg->max_face, det_rate, 1000.0 * d.cpu / n, d.stats.seconds[0], d.stats.seconds[1],
           d.stats.seconds[2], d.stats.levels, d.stats.boxes[1], d.stats.boxes[2], nf, d.images_with_face,
           nf ? w[0] : 0, pct(w, nf, 0.5), pct(w, nf, 0.9), nf ? w[nf - 1] : 0);
    if (!cfg->detect_only)
      printf(",\"align_images_per_s\":%.3f,\"align_cpu_ms_per_image\":%.2f,\"aligned\":%d,\"fallbacks\":%d,"
             "\"detected\":%d,\"warp_images_per_s\":%.2f",
             al_rate, 1000.0 * a.cpu / n, a.aligned, a.fallbacks, a.detected, warp_rate);
    printf("}\n");
  }
  free(d.widths);
  images_free(&s);
  return rc;
}
