/* faceri model set-ui: embed a set of unrecognisable faces, store the L2-normalised
 * mean of their L2-normalised embeddings as the model's UI centre, with provenance
 * (docs/UI_CENTRE.md for the choice of face region and what the centre looks like). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/cli_util.h"
#include "faceri/commands.h"
#include "faceri/engine.h"
#include "faceri/image.h"
#include "faceri/input_source.h"
#include "faceri/log.h"
#include "faceri/model.h"
#include "faceri/results_file.h"
#include "faceri/ri.h"
#include "faceri/ui_centre.h"

static const char usage[] =
    "usage: faceri model set-ui MODEL.h5 UI_INPUT... [OPTIONS]\n"
    "\n"
    "Embeds every image of the UI inputs (files, folders, archives) and stores the\n"
    "L2-normalised mean of their L2-normalised embeddings in MODEL.h5 as /ui_centre,\n"
    "with the count, the inputs' fingerprints, the date, the face region and the d_UI\n"
    "statistics of the UI faces themselves. Runs and commands with this model then\n"
    "report d_UI = 1 - cos(embedding, centre) per image (/quality/ers).\n"
    "\n"
    "options:\n"
    "  --face-region MODE   how the face is taken from each input (docs/UI_CENTRE.md):\n"
    "                       head     the head box of a 96x160 pedestrian crop\n"
    "                                (36,28,24,24, scaled to other sizes) (default)\n"
    "                       whole    the whole image\n"
    "                       degrade  the whole image down to --degrade-size pixels and back\n"
    "  --head-box X,Y,W,H   the head box in a 96x160 crop (default 36,28,24,24)\n"
    "  --degrade-size N     side in pixels for --face-region degrade (default 8)\n"
    "  --crop X,Y,W,H       crop every image first (whole and degrade; LFW: 55,47,140,140)\n"
    "  --distances FILE     write key,d_ui of every UI face as CSV\n"
    "  --dry-run            compute and report, leave MODEL.h5 unchanged\n"
    "  -d, --device SEL     Vulkan device index or name substring\n"
    "  -b, --batch N        images per device batch (default 32)\n"
    "  -h, --help           this text\n";

typedef struct ui_job {
  fr_model model;
  fr_engine *engine;
  fr_face_region region;
  long head[4], crop[4];
  int has_crop, degrade;
  int batch, in_batch;
  float *input, *emb, *norms;
  float *all;  /* n x D unit embeddings */
  char **keys; /* n */
  int n, cap;
  int n_failed, n_skipped;
} ui_job;

/* Decode -> region -> model input tensor. The error names the key. */
static int prepare(const ui_job *job, const fr_input_item *item, float *out, fr_error *err)
{
  fr_image img = {0}, region = {0}, small = {0}, resized = {0};
  int rc = fr_image_decode(item->bytes, item->size, item->key, &img, err);
  const fr_image *src = &img;
  if (!rc && job->region == FR_REGION_HEAD) {
    /* The box scales with the image: INRIA crops are 96x160, other pedestrian sets are not. */
    double sx = (double)img.width / FR_HEAD_BOX_REF_W, sy = (double)img.height / FR_HEAD_BOX_REF_H;
    int x = (int)lround(job->head[0] * sx), y = (int)lround(job->head[1] * sy);
    int w = (int)lround(job->head[2] * sx), h = (int)lround(job->head[3] * sy);
    rc = fr_image_crop(&img, x, y, w > 0 ? w : 1, h > 0 ? h : 1, &region, err);
    src = &region;
  } else if (!rc && job->has_crop) {
    rc = fr_image_crop(&img, (int)job->crop[0], (int)job->crop[1], (int)job->crop[2], (int)job->crop[3], &region,
                       err);
    src = &region;
  }
  if (!rc && job->region == FR_REGION_DEGRADE) {
    rc = fr_image_resize_bilinear(src, job->degrade, job->degrade, &small, err);
    src = &small;
  }
  if (!rc)
    rc = fr_image_resize_bilinear(src, job->model.input_w, job->model.input_h, &resized, err);
  if (!rc)
    fr_image_to_tensor(&resized, job->model.mean, job->model.std, out);
  else if (!strstr(err->message, item->key))
    fr_error_prefix(err, "%s", item->key);
  fr_image_free(&img);
  fr_image_free(&region);
  fr_image_free(&small);
  fr_image_free(&resized);
  return rc;
}

static int flush(ui_job *job, fr_error *err)
{
  if (job->in_batch == 0)
    return FR_OK;
  int rc = fr_engine_run(job->engine, job->input, job->in_batch, job->emb, job->norms, NULL, err);
  if (rc)
    return rc;
  size_t d = (size_t)job->model.embedding_size;
  memcpy(job->all + (size_t)(job->n - job->in_batch) * d, job->emb, (size_t)job->in_batch * d * sizeof(float));
  job->in_batch = 0;
  return FR_OK;
}

static int add(ui_job *job, const fr_input_item *item, fr_error *err)
{
  if (item->status != FR_OK || !item->is_image || item->size == 0) {
    if (item->status != FR_OK) {
      fr_warn("%s", item->error);
      job->n_failed++;
    } else {
      job->n_skipped++;
    }
    return FR_OK;
  }
  if (job->n == job->cap) {
    int cap = job->cap ? job->cap * 2 : 256;
    float *all = realloc(job->all, (size_t)cap * job->model.embedding_size * sizeof(float));
    if (all)
      job->all = all;
    char **keys = all ? realloc(job->keys, (size_t)cap * sizeof(char *)) : NULL;
    if (!all || !keys)
      return fr_error_set(err, FR_ERR_NOMEM, "out of memory for %d UI embeddings", cap);
    job->keys = keys;
    job->cap = cap;
  }
  size_t per = (size_t)job->model.input_h * job->model.input_w * job->model.input_c;
  fr_error item_err = {0};
  if (prepare(job, item, job->input + (size_t)job->in_batch * per, &item_err)) {
    fr_warn("%s (not used for the centre)", item_err.message);
    job->n_failed++;
    return FR_OK;
  }
  if (!(job->keys[job->n] = strdup(item->key)))
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory");
  job->n++;
  job->in_batch++;
  return job->in_batch == job->batch ? flush(job, err) : FR_OK;
}

static int embed_all(ui_job *job, char **paths, int n_paths, fr_error *err)
{
  fr_input_source *src;
  int rc = fr_input_source_open((const char *const *)paths, n_paths, &src, err);
  if (rc)
    return rc;
  fr_progress progress;
  fr_progress_start(&progress, "set-ui", 0);
  fr_input_item item;
  int64_t seen = 0;
  for (;;) {
    int got = fr_input_source_next(src, &item, err);
    if (got < 0) {
      rc = err->code ? (int)err->code : FR_ERR_IO;
      break;
    }
    if (got == 0 || (rc = add(job, &item, err)))
      break;
    fr_progress_update(&progress, ++seen);
  }
  if (!rc)
    rc = flush(job, err);
  fr_progress_finish(&progress);
  fr_input_source_close(src);
  return rc;
}

/* "path\tsize\tmtime\tsha256\n" per input, capped so the attribute stays loadable. */
static char *fingerprints(char **paths, int n, fr_error *err)
{
  size_t cap = 60000, used = 0;
  char *s = calloc(1, cap);
  if (!s) {
    fr_error_set(err, FR_ERR_NOMEM, "out of memory");
    return NULL;
  }
  for (int i = 0; i < n; i++) {
    fr_input_fingerprint fp;
    if (fr_fingerprint_input(paths[i], &fp, err)) {
      free(s);
      return NULL;
    }
    char line[1300];
    int len = snprintf(line, sizeof(line), "%s\t%lld\t%lld\t%s\n", fp.path, (long long)fp.size,
                       (long long)fp.mtime, fp.digest);
    if (used + (size_t)len + 64 >= cap) {
      snprintf(s + used, cap - used, "... and %d more inputs\n", n - i);
      break;
    }
    memcpy(s + used, line, (size_t)len + 1);
    used += (size_t)len;
  }
  return s;
}

static int write_distances(const char *path, const ui_job *job, const double *d, fr_error *err)
{
  FILE *f = fopen(path, "w");
  if (!f)
    return fr_error_set(err, FR_ERR_IO, "%s: cannot create", path);
  fprintf(f, "key,d_ui\n");
  for (int i = 0; i < job->n; i++)
    fprintf(f, "\"%s\",%.9g\n", job->keys[i], d[i]);
  if (fclose(f) != 0)
    return fr_error_set(err, FR_ERR_IO, "%s: write failed", path);
  return FR_OK;
}

int fr_cmd_model_set_ui(int argc, char **argv)
{
  const char *device = NULL, *distances = NULL, *region = "head";
  long batch = 32, degrade = 8;
  int dry_run = 0;
  ui_job job = {.head = {FR_HEAD_BOX_X, FR_HEAD_BOX_Y, FR_HEAD_BOX_W, FR_HEAD_BOX_H}};
  fr_error err = {0};
  static const struct option longopts[] = {
      {"face-region", required_argument, 0, 'r'}, {"head-box", required_argument, 0, 'H'},
      {"degrade-size", required_argument, 0, 's'}, {"crop", required_argument, 0, 'c'},
      {"distances", required_argument, 0, 'D'},    {"dry-run", no_argument, 0, 'n'},
      {"device", required_argument, 0, 'd'},       {"batch", required_argument, 0, 'b'},
      {"help", no_argument, 0, 'h'},               {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "d:b:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'r': region = optarg; break;
    case 'H':
      if (fr_parse_int_list("--head-box", optarg, 4, job.head, &err))
        goto usage_error;
      break;
    case 's':
      if (fr_parse_int("--degrade-size", optarg, 1, 4096, &degrade, &err))
        goto usage_error;
      break;
    case 'c':
      if (fr_parse_int_list("--crop", optarg, 4, job.crop, &err))
        goto usage_error;
      job.has_crop = 1;
      break;
    case 'D': distances = optarg; break;
    case 'n': dry_run = 1; break;
    case 'd': device = optarg; break;
    case 'b':
      if (fr_parse_int("--batch", optarg, 1, 4096, &batch, &err))
        goto usage_error;
      break;
    case 'h': fputs(usage, stdout); return FR_EXIT_OK;
    default: fputs(usage, stderr); return FR_EXIT_USAGE;
    }
  }
  if (!strcmp(region, "head"))
    job.region = FR_REGION_HEAD;
  else if (!strcmp(region, "whole"))
    job.region = FR_REGION_WHOLE;
  else if (!strcmp(region, "degrade"))
    job.region = FR_REGION_DEGRADE;
  else {
    fr_error_set(&err, FR_ERR_INVALID, "--face-region %s: expected head, whole or degrade", region);
    goto usage_error;
  }
  for (int i = 0; i < 4; i++)
    if ((job.head[i] < 0 || (i >= 2 && job.head[i] == 0)) || (job.has_crop && (job.crop[i] < 0 || (i >= 2 && !job.crop[i])))) {
      fr_error_set(&err, FR_ERR_INVALID, "--head-box and --crop need X,Y >= 0 and W,H > 0");
      goto usage_error;
    }
  if (job.region == FR_REGION_HEAD && job.has_crop) {
    fr_error_set(&err, FR_ERR_INVALID, "--crop applies to whole and degrade; head uses --head-box");
    goto usage_error;
  }
  if (argc - optind < 2) {
    fr_error_set(&err, FR_ERR_INVALID, "need MODEL.h5 and at least one UI_INPUT");
    goto usage_error;
  }
  const char *model_path = argv[optind];
  char **inputs = argv + optind + 1;
  int n_inputs = argc - optind - 1;
  job.batch = (int)batch;
  job.degrade = (int)degrade;

  fr_vk_context *ctx = NULL;
  double *d_ui = NULL;
  char *prints = NULL;
  int rc = fr_model_load(model_path, &job.model, &err);
  fr_vk_options vopts = {.device = device, .validation = -1};
  if (!rc)
    rc = fr_vk_context_create(&vopts, &ctx, &err);
  fr_engine_options eopts = {.max_batch = job.batch};
  if (!rc)
    rc = fr_engine_create(ctx, &job.model, &eopts, &job.engine, &err);
  if (!rc) {
    size_t per = (size_t)job.model.input_h * job.model.input_w * job.model.input_c;
    job.input = malloc((size_t)job.batch * per * sizeof(float));
    job.emb = malloc((size_t)job.batch * job.model.embedding_size * sizeof(float));
    job.norms = malloc((size_t)job.batch * sizeof(float));
    if (!job.input || !job.emb || !job.norms)
      rc = fr_error_set(&err, FR_ERR_NOMEM, "out of memory for a batch of %d images", job.batch);
  }
  if (!rc && !(prints = fingerprints(inputs, n_inputs, &err)))
    rc = err.code ? (int)err.code : FR_ERR_NOMEM;
  if (!rc)
    rc = embed_all(&job, inputs, n_inputs, &err);
  if (!rc && job.n == 0)
    rc = fr_error_set(&err, FR_ERR_INVALID, "no decodable image in the UI inputs (%d failed, %d skipped)",
                      job.n_failed, job.n_skipped);
  if (!rc && ctx && fr_vk_validation_messages(ctx) > 0)
    rc = fr_error_set(&err, FR_ERR_VULKAN, "%llu Vulkan validation messages (logged above): a faceri bug",
                      (unsigned long long)fr_vk_validation_messages(ctx));
  int dim = job.model.embedding_size;
  float *centre = rc ? NULL : malloc((size_t)dim * sizeof(float));
  fr_ui_provenance prov = {.count = job.n, .inputs = prints};
  fr_ri_stats st = {0};
  if (!rc && !centre)
    rc = fr_error_set(&err, FR_ERR_NOMEM, "out of memory");
  if (!rc)
    rc = fr_ri_ui_centre(job.all, job.n, dim, centre, &prov.resultant, &err);
  if (!rc && !(d_ui = malloc((size_t)job.n * sizeof(double))))
    rc = fr_error_set(&err, FR_ERR_NOMEM, "out of memory");
  if (!rc) {
    fr_ri_ui_distances(job.all, job.n, dim, centre, d_ui);
    rc = fr_ri_stats_of(d_ui, job.n, &st, &err);
  }
  if (!rc) {
    float s[7] = {(float)st.mean, (float)st.std, (float)st.min, (float)st.p5, (float)st.p50, (float)st.p95,
                  (float)st.max};
    memcpy(prov.d_ui_stats, s, sizeof(s));
    if (job.region == FR_REGION_HEAD)
      snprintf(prov.face_region, sizeof(prov.face_region), "head %ld,%ld,%ld,%ld of %dx%d", job.head[0],
               job.head[1], job.head[2], job.head[3], FR_HEAD_BOX_REF_W, FR_HEAD_BOX_REF_H);
    else if (job.region == FR_REGION_DEGRADE)
      snprintf(prov.face_region, sizeof(prov.face_region), "degrade %ldpx", degrade);
    else
      snprintf(prov.face_region, sizeof(prov.face_region), "whole");
    if (job.has_crop) {
      size_t l = strlen(prov.face_region);
      snprintf(prov.face_region + l, sizeof(prov.face_region) - l, " crop %ld,%ld,%ld,%ld", job.crop[0], job.crop[1],
               job.crop[2], job.crop[3]);
    }
  }
  if (!rc && distances)
    rc = write_distances(distances, &job, d_ui, &err);
  if (!rc && !dry_run)
    rc = fr_model_file_set_ui_centre(model_path, centre, dim, &prov, &err);
  if (rc)
    fprintf(stderr, "faceri model set-ui: %s\n", err.message);
  else
    printf("{\"command\":\"model set-ui\",\"model\":\"%s\",\"written\":%s,\"face_region\":\"%s\",\"count\":%d,"
           "\"failed\":%d,\"skipped\":%d,\"resultant\":%.6f,\"d_ui\":{\"mean\":%.6f,\"std\":%.6f,\"min\":%.6f,"
           "\"p5\":%.6f,\"p50\":%.6f,\"p95\":%.6f,\"max\":%.6f}}\n",
           model_path, dry_run ? "false" : "true", prov.face_region, job.n, job.n_failed, job.n_skipped,
           prov.resultant, st.mean, st.std, st.min, st.p5, st.p50, st.p95, st.max);
  for (int i = 0; i < job.n; i++)
    free(job.keys[i]);
  free(job.keys);
  free(job.all);
  free(job.input);
  free(job.emb);
  free(job.norms);
  free(centre);
  free(d_ui);
  free(prints);
  fr_engine_destroy(job.engine);
  fr_vk_context_destroy(ctx);
  fr_model_free(&job.model);
  return rc ? FR_EXIT_ERROR : FR_EXIT_OK;

usage_error:
  fprintf(stderr, "faceri model set-ui: %s\n\n%s", err.message, usage);
  return FR_EXIT_USAGE;
}
