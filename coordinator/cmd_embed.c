/* faceri embed: images, folders or archives in; one HDF5 row per item out. */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/align.h"
#include "faceri/cli_util.h"
#include "faceri/commands.h"
#include "faceri/engine.h"
#include "faceri/preprocess.h"
#include "faceri/input_list.h"
#include "faceri/input_source.h"
#include "faceri/labels.h"
#include "faceri/log.h"
#include "faceri/model.h"
#include "faceri/results_file.h"
#include "faceri/ri.h"
#include "faceri/test_embedding.h"

static const char usage[] =
    "usage: faceri embed [OPTIONS] -o OUT.h5 INPUT...\n"
    "       faceri embed [OPTIONS] -o OUT.h5 --input-raw FILE.f32 --shape N,H,W,C\n"
    "\n"
    "Embeds every image in the inputs (image files, folders, tar/tar.gz/zip archives;\n"
    "JPEG, PNG, PGM/PPM) and writes /embedding [N,D] (L2-normalised), /norm, /key,\n"
    "/label, /status, /error, /width, /height to OUT.h5 (docs/FORMAT.md).\n"
    "A bad image is recorded as failed and the run goes on; non-images are skipped.\n"
    "INPUT: a file, folder or archive; @LIST (a text file of paths, one per line);\n"
    "a glob (\"shards/*.tar\") or a brace range (\"shard-{000..099}.tar\"), expanded by\n"
    "faceri in a fixed order.\n"
    "\n"
    "options:\n"
    "  -o, --output FILE      results file (required)\n"
    "  -m, --model FILE       model file (default: $FACERI_MODEL or models/mobilefacenet.h5)\n"
    "  -d, --device SEL       Vulkan device index or name substring (default: best)\n"
    "  -b, --batch N          images per device batch (default 32)\n"
    "      --crop X,Y,W,H     crop every image to this box before resizing\n"
    "                         (deep-funneled LFW: 55,47,140,140); with --align, only the\n"
    "                         images whose face is not found are cropped\n"
    FR_ALIGN_USAGE
    "      --input-raw FILE   raw float32 NHWC tensors, already normalised\n"
    "      --shape N,H,W,C    shape of --input-raw (H,W,C must match the model)\n"
    "      --embedding-attn   also write /embedding_attn [N,D]: the attention head's\n"
    "                         embedding v_attn, L2-normalised (model trained with --ri)\n"
    "      --test-embedding K what /embedding holds: v (default, the backbone's), attn\n"
    "                         (v_attn) or concat ([v, v_attn], 2D); docs/RI_HEADS.md\n"
    "      --resume           continue an interrupted run into the same OUT.h5: rows of\n"
    "                         committed shards are kept, the rest computed (same inputs)\n"
    "      --json             print only the JSON summary on stdout (no progress)\n"
    "  -h, --help             this text\n"
    "\n"
    "Exit codes: 0 all items embedded, 3 some items failed, 1 error, 2 usage.\n";

typedef struct pending_row {
  char *key, *label, *error;
  fr_item_status status;
  int width, height;
  int batch_slot; /* index into the image batch, or -1 */
  int aligned;    /* 1, 0, -1 (not attempted) */
  float align_score;
} pending_row;

typedef struct embed_job {
  fr_model model;
  fr_engine *engine;
  fr_results_file *results;
  int batch;
  fr_preprocess pp;
  float *input;       /* batch x H x W x C */
  float *embeddings;  /* batch x D */
  float *norms;
  float *ri; /* learned RI per batch slot (NaN without RI heads) */
  int images_in_batch;
  pending_row *rows;
  int n_rows, cap_rows;
  int64_t next_index;   /* global index of the next item read */
  int64_t first_pending; /* global index of rows[0] */
  int64_t next_shard;
  const char *device;
  fr_labeler *labeler;  /* NULL: folder labels */
  double batch_start;
  int64_t n_ok, n_failed, n_skipped;
  fr_aligner *aligner; /* --align; NULL without */
  fr_align_options align_opts;
  int64_t n_aligned, n_fallbacks;
  /* --test-embedding / --embedding-attn: with either, the engine gives v_attn and
   * test [batch x out_dim] / attn [batch x D] hold the rows written (else NULL). */
  fr_test_embedding test_embedding;
  int want_attn, out_dim;
  float *vattn, *test, *attn;
} embed_job;

/* Fault injection for the crash-and-resume tests: FACERI_FAULT_KILL_AFTER_SHARDS=N
 * kills the process (SIGKILL, no clean-up at all) right after the N-th commit. */
static void fault_after_commit(int64_t committed)
{
  const char *v = getenv("FACERI_FAULT_KILL_AFTER_SHARDS");
  if (v && *v && committed == strtoll(v, NULL, 10))
    raise(SIGKILL);
}

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

static int push_row(embed_job *job, const char *key, const char *label, fr_item_status status, const char *error,
                    int w, int h, int slot, fr_error *err)
{
  if (job->n_rows == job->cap_rows) {
    int cap = job->cap_rows ? job->cap_rows * 2 : 64;
    pending_row *grown = realloc(job->rows, (size_t)cap * sizeof(*grown));
    if (!grown)
      return fr_error_set(err, FR_ERR_NOMEM, "out of memory queueing results");
    job->rows = grown;
    job->cap_rows = cap;
  }
  pending_row *r = &job->rows[job->n_rows++];
  r->key = dup_or_empty(key);
  r->label = dup_or_empty(label);
  r->error = dup_or_empty(error);
  r->status = status;
  r->width = w;
  r->height = h;
  r->batch_slot = slot;
  r->aligned = -1;
  r->align_score = NAN;
  if (!r->key || !r->label || !r->error)
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory queueing results");
  if (status == FR_ITEM_FAILED)
    fr_warn("%s", error);
  return FR_OK;
}

/* The engine's v, v_attn and RI in one call, then the rows --test-embedding and
 * --embedding-attn ask for (the same function as the workers'). */
static int run_with_attention(embed_job *job, fr_error *err)
{
  int n = job->images_in_batch, d = job->model.embedding_size;
  fr_engine_outputs o = {.embeddings = job->embeddings, .norms = job->norms, .ri = job->ri, .v_attn = job->vattn};
  int rc = fr_engine_run_outputs(job->engine, job->input, n, &o, err);
  for (int i = 0; !rc && i < n; i++)
    fr_test_embedding_rows(job->test_embedding, job->embeddings + (size_t)i * d, job->vattn + (size_t)i * d, d,
                           job->test + (size_t)i * job->out_dim, job->attn ? job->attn + (size_t)i * d : NULL);
  return rc;
}

/* Runs the device on the images gathered so far and writes every queued row in input order. */
static int flush_rows(embed_job *job, fr_error *err)
{
  int rc = FR_OK;
  if (job->images_in_batch > 0 && job->vattn)
    rc = run_with_attention(job, err);
  else if (job->images_in_batch > 0)
    rc = fr_engine_run_ri(job->engine, job->input, job->images_in_batch, job->embeddings, job->norms, NULL, job->ri,
                          err);
  if (rc)
    return rc;
  if (job->n_rows == 0) {
    job->images_in_batch = 0;
    return FR_OK;
  }
  int d = job->model.embedding_size;
  fr_result_row *out = calloc((size_t)job->n_rows, sizeof(*out));
  if (!out)
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory writing results");
  for (int i = 0; i < job->n_rows; i++) {
    pending_row *r = &job->rows[i];
    int slot = r->batch_slot;
    out[i] = (fr_result_row){.key = r->key, .label = r->label, .status = r->status, .error = r->error,
                             .width = r->width, .height = r->height,
                             .embedding = slot >= 0 ? job->embeddings + (size_t)slot * d : NULL,
                             .norm = slot >= 0 ? job->norms[slot] : NAN, .ers = NAN,
                             .ri = slot >= 0 ? job->ri[slot] : NAN,
                             .aligned = slot >= 0 ? r->aligned : -1,
                             .align_score = slot >= 0 ? r->align_score : NAN};
    if (slot >= 0 && job->test)
      out[i].embedding = job->test + (size_t)slot * job->out_dim;
    if (slot >= 0 && job->attn)
      out[i].embedding_attn = job->attn + (size_t)slot * d;
    if (slot >= 0 && job->model.ui_centre) /* d_UI (ERS-style quality) whenever the model has a UI centre */
      out[i].ers = (float)(1.0 - fr_ri_cosine(job->embeddings + (size_t)slot * d, job->model.ui_centre, d));
    job->n_ok += r->status == FR_ITEM_OK;
    job->n_failed += r->status == FR_ITEM_FAILED;
    job->n_skipped += r->status == FR_ITEM_SKIPPED;
    job->n_aligned += out[i].aligned == 1;
    job->n_fallbacks += out[i].aligned == 0;
  }
  /* Each flush is one shard of the results file: rows first, then the commit. */
  fr_shard_record shard = {.id = job->next_shard, .first = job->first_pending, .count = job->n_rows, .attempts = 1,
                           .worker = "embed", .device = job->device,
                           .seconds = (float)(fr_now_seconds() - job->batch_start)};
  rc = fr_results_write_items(job->results, job->first_pending, out, job->n_rows, job->next_shard, err);
  if (!rc)
    rc = fr_results_commit_shard(job->results, &shard, err);
  free(out);
  job->next_shard++;
  fault_after_commit(job->next_shard);
  job->first_pending += job->n_rows;
  job->batch_start = fr_now_seconds();
  for (int i = 0; i < job->n_rows; i++) {
    free(job->rows[i].key);
    free(job->rows[i].label);
    free(job->rows[i].error);
  }
  job->n_rows = 0;
  job->images_in_batch = 0;
  return rc;
}

/* Decode, crop, resize, normalise one item into the batch; failures become rows. */
static int add_item(embed_job *job, const fr_input_item *in, fr_error *err)
{
  fr_input_item relabelled = *in;
  relabelled.label = fr_labeler_apply(job->labeler, in->key, in->label);
  const fr_input_item *item = &relabelled;
  int64_t index = job->next_index++;
  if (fr_results_is_committed(job->results, index)) {
    /* Done by the interrupted run: flush what is pending so shards stay contiguous, then skip. */
    int rc = flush_rows(job, err);
    job->first_pending = index + 1;
    return rc;
  }
  if (item->status != FR_OK)
    return push_row(job, item->key, item->label, FR_ITEM_FAILED, item->error, 0, 0, -1, err);
  if (item->size == 0) {
    /* An empty file is a broken image more often than a stray note: a failure, as the worker says. */
    char why[256];
    snprintf(why, sizeof(why), "%s: empty file (0 bytes)", item->key);
    return push_row(job, item->key, item->label, FR_ITEM_FAILED, why, 0, 0, -1, err);
  }
  if (!item->is_image) {
    char why[256];
    snprintf(why, sizeof(why), "%s: not an image (JPEG, PNG, PGM/PPM), skipped", item->key);
    return push_row(job, item->key, item->label, FR_ITEM_SKIPPED, why, 0, 0, -1, err);
  }
  const fr_model *m = &job->model;
  fr_error item_err = {0};
  int slot = job->images_in_batch, w = 0, h = 0;
  float *dst = job->input + (size_t)slot * m->input_h * m->input_w * m->input_c;
  fr_align_result ar = {.aligned = -1, .score = NAN};
  int failed;
  if (job->aligner) {
    fr_image img;
    failed = fr_image_decode(item->bytes, item->size, item->key, &img, &item_err) != FR_OK;
    if (!failed) {
      w = img.width;
      h = img.height;
      int arc = fr_aligner_align_input(job->aligner, &img, &job->align_opts, m->input_w, m->input_h, m->mean, m->std,
                                       dst, &ar, &item_err);
      fr_image_free(&img);
      if (arc == FR_ERR_DEVICE_LOST) {
        *err = item_err;
        return arc;
      }
      if (arc) {
        fr_error_prefix(&item_err, "%s: align", item->key);
        failed = 1;
      }
    }
  } else {
    failed = fr_preprocess_image(&job->pp, item->bytes, item->size, item->key, dst, &w, &h, &item_err) != FR_OK;
  }
  if (!failed)
    job->images_in_batch++;
  int rc = push_row(job, item->key, item->label, failed ? FR_ITEM_FAILED : FR_ITEM_OK, failed ? item_err.message : "",
                    w, h, failed ? -1 : slot, err);
  if (!rc && !failed) {
    job->rows[job->n_rows - 1].aligned = job->aligner ? ar.aligned : -1;
    job->rows[job->n_rows - 1].align_score = job->aligner ? ar.score : NAN;
  }
  if (!rc && job->images_in_batch == job->batch)
    rc = flush_rows(job, err);
  return rc;
}

static int embed_inputs(embed_job *job, char **paths, int n_paths, int show_progress, fr_error *err)
{
  fr_input_source *src;
  int rc = fr_input_source_open((const char *const *)paths, n_paths, &src, err);
  if (rc)
    return rc;
  fr_progress progress;
  if (show_progress)
    fr_progress_start(&progress, "embed", 0);
  int64_t seen = 0;
  fr_input_item item;
  for (;;) {
    int got = fr_input_source_next(src, &item, err);
    if (got < 0) {
      rc = err && err->code ? (int)err->code : FR_ERR_IO;
      break;
    }
    if (got == 0)
      break;
    rc = add_item(job, &item, err);
    if (rc)
      break;
    if (show_progress)
      fr_progress_update(&progress, ++seen);
  }
  /* Whatever was gathered before a fatal source error is still written. */
  fr_error flush_err = {0};
  int frc = flush_rows(job, &flush_err);
  if (!rc && frc) {
    rc = frc;
    *err = flush_err;
  }
  if (show_progress)
    fr_progress_finish(&progress);
  fr_input_source_close(src);
  return rc;
}

static int embed_raw(embed_job *job, const char *path, const long shape[4], fr_error *err)
{
  const fr_model *m = &job->model;
  if (shape[1] != m->input_h || shape[2] != m->input_w || shape[3] != m->input_c)
    return fr_error_set(err, FR_ERR_INVALID, "--shape %ld,%ld,%ld,%ld does not match the model input %dx%dx%d",
                        shape[0], shape[1], shape[2], shape[3], m->input_h, m->input_w, m->input_c);
  FILE *f = fopen(path, "rb");
  if (!f)
    return fr_error_set(err, FR_ERR_IO, "%s: cannot open", path);
  size_t per = (size_t)m->input_h * m->input_w * m->input_c;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  if (size < 0 || (uint64_t)size != (uint64_t)shape[0] * per * sizeof(float)) {
    fclose(f);
    return fr_error_set(err, FR_ERR_FORMAT, "%s: %ld bytes, but --shape says %ld images of %zu floats (%llu bytes)",
                        path, size, shape[0], per, (unsigned long long)shape[0] * per * sizeof(float));
  }
  int rc = FR_OK;
  for (long i = 0; i < shape[0] && !rc; i++) {
    float *dst = job->input + (size_t)job->images_in_batch * per;
    if (fread(dst, sizeof(float), per, f) != per) {
      rc = fr_error_set(err, FR_ERR_IO, "%s: short read at image %ld", path, i);
      break;
    }
    int64_t index = job->next_index++;
    if (fr_results_is_committed(job->results, index)) {
      rc = flush_rows(job, err);
      job->first_pending = index + 1;
      continue;
    }
    char key[1100];
    snprintf(key, sizeof(key), "%s#%ld", path, i);
    int slot = job->images_in_batch++;
    rc = push_row(job, key, "", FR_ITEM_OK, "", m->input_w, m->input_h, slot, err);
    if (!rc && job->images_in_batch == job->batch)
      rc = flush_rows(job, err);
  }
  fclose(f);
  if (!rc)
    rc = flush_rows(job, err);
  return rc;
}

int fr_cmd_embed(int argc, char **argv)
{
  const char *output = NULL, *model_path = NULL, *device = NULL, *raw = NULL, *shape_text = NULL;
  const char *labels_csv = NULL, *label_regex = NULL;
  long batch = 32, shape[4] = {0};
  int json = 0, resume = 0;
  embed_job job = {0};
  fr_error err = {0};
  static const struct option longopts[] = {
      {"output", required_argument, 0, 'o'}, {"model", required_argument, 0, 'm'},
      {"device", required_argument, 0, 'd'}, {"batch", required_argument, 0, 'b'},
      {"crop", required_argument, 0, 'c'},   {"input-raw", required_argument, 0, 'r'},
      {"shape", required_argument, 0, 's'},  {"json", no_argument, 0, 'j'},
      {"resume", no_argument, 0, 'R'},       {"labels", required_argument, 0, 'L'},
      {"label-regex", required_argument, 0, 'X'}, FR_ALIGN_LONGOPTS,
      {"embedding-attn", no_argument, 0, 'A'}, {"test-embedding", required_argument, 0, 'T'},
      {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
  int c;
  optind = 1;
  fr_align_cli al;
  fr_align_cli_init(&al);
  while ((c = getopt_long(argc, argv, "o:m:d:b:h", longopts, NULL)) != -1) {
    long crop[4];
    int taken = fr_align_cli_option(&al, c, optarg, &err);
    if (taken < 0)
      goto usage_error;
    if (taken)
      continue;
    switch (c) {
    case 'o': output = optarg; break;
    case 'm': model_path = optarg; break;
    case 'd': device = optarg; break;
    case 'b':
      if (fr_parse_int("--batch", optarg, 1, 4096, &batch, &err))
        goto usage_error;
      break;
    case 'c':
      if (fr_parse_int_list("--crop", optarg, 4, crop, &err))
        goto usage_error;
      if (crop[0] < 0 || crop[1] < 0 || crop[2] <= 0 || crop[3] <= 0 || crop[2] > 65536 || crop[3] > 65536) {
        fr_error_set(&err, FR_ERR_INVALID, "--crop %s: need X,Y >= 0 and W,H > 0", optarg);
        goto usage_error;
      }
      job.pp.crop_x = (int)crop[0];
      job.pp.crop_y = (int)crop[1];
      job.pp.crop_w = (int)crop[2];
      job.pp.crop_h = (int)crop[3];
      job.pp.has_crop = 1;
      break;
    case 'r': raw = optarg; break;
    case 's': shape_text = optarg; break;
    case 'j': json = 1; break;
    case 'R': resume = 1; break;
    case 'L': labels_csv = optarg; break;
    case 'X': label_regex = optarg; break;
    case 'A': job.want_attn = 1; break;
    case 'T':
      if (fr_test_embedding_parse(optarg, &job.test_embedding, &err))
        goto usage_error;
      break;
    case 'h': fputs(usage, stdout); return FR_EXIT_OK;
    default: fputs(usage, stderr); return FR_EXIT_USAGE;
    }
  }
  if (fr_align_cli_check(&al, &err))
    goto usage_error;
  if (!output) {
    fr_error_set(&err, FR_ERR_INVALID, "-o OUT.h5 is required");
    goto usage_error;
  }
  if (al.align && raw) {
    fr_error_set(&err, FR_ERR_INVALID, "--align needs images; --input-raw tensors are already preprocessed");
    goto usage_error;
  }
  if (raw) {
    if (!shape_text || fr_parse_int_list("--shape", shape_text, 4, shape, &err) || shape[0] <= 0) {
      if (!err.code)
        fr_error_set(&err, FR_ERR_INVALID, "--input-raw needs --shape N,H,W,C with N > 0");
      goto usage_error;
    }
    if (optind != argc) {
      fr_error_set(&err, FR_ERR_INVALID, "give either INPUT... or --input-raw, not both");
      goto usage_error;
    }
  } else if (optind >= argc) {
    fr_error_set(&err, FR_ERR_INVALID, "no INPUT given");
    goto usage_error;
  }

  if (fr_labeler_create(labels_csv, label_regex, &job.labeler, &err)) {
    if (err.code == FR_ERR_INVALID)
      goto usage_error;
    fprintf(stderr, "faceri embed: %s\n", err.message);
    return FR_EXIT_ERROR;
  }
  job.batch = (int)batch;
  if (!model_path)
    model_path = fr_model_default_path();
  double t0 = fr_now_seconds();
  fr_vk_context *ctx = NULL;
  int rc = fr_model_load(model_path, &job.model, &err);
  if (!rc && fr_test_embedding_check(&job.model, model_path, job.test_embedding, job.want_attn, &err)) {
    fr_model_free(&job.model);
    fr_labeler_destroy(job.labeler);
    fprintf(stderr, "faceri embed: %s\n", err.message);
    return FR_EXIT_USAGE;
  }
  job.out_dim = fr_test_embedding_dim(job.test_embedding, job.model.embedding_size);
  fr_vk_options vopts = {.device = device, .validation = -1};
  if (!rc)
    rc = fr_vk_context_create(&vopts, &ctx, &err);
  fr_engine_options eopts = {.max_batch = job.batch};
  if (!rc)
    rc = fr_engine_create(ctx, &job.model, &eopts, &job.engine, &err);
  if (!rc && al.align) {
    rc = fr_aligner_create(ctx, al.mtcnn_dir && *al.mtcnn_dir ? al.mtcnn_dir : fr_mtcnn_default_dir(), &job.aligner,
                           &err);
    if (rc)
      fr_error_prefix(&err, "--align");
    job.align_opts = fr_align_defaults();
    job.align_opts.min_score = al.min_score;
    job.align_opts.min_face = al.min_face;
    job.align_opts.max_face = al.max_face;
    if (job.pp.has_crop) { /* --crop frames the fallback; detection sees the whole image */
      job.align_opts.has_fallback_crop = 1;
      job.align_opts.fallback_crop[0] = job.pp.crop_x;
      job.align_opts.fallback_crop[1] = job.pp.crop_y;
      job.align_opts.fallback_crop[2] = job.pp.crop_w;
      job.align_opts.fallback_crop[3] = job.pp.crop_h;
    }
  }
  if (!rc) {
    job.pp.input_w = job.model.input_w;
    job.pp.input_h = job.model.input_h;
    for (int i = 0; i < 3; i++) {
      job.pp.mean[i] = job.model.mean[i];
      job.pp.std[i] = job.model.std[i];
    }
    size_t per = (size_t)job.model.input_h * job.model.input_w * job.model.input_c;
    job.input = malloc((size_t)job.batch * per * sizeof(float));
    job.embeddings = malloc((size_t)job.batch * job.model.embedding_size * sizeof(float));
    job.norms = malloc((size_t)job.batch * sizeof(float));
    job.ri = malloc((size_t)job.batch * sizeof(float));
    if (fr_test_embedding_needs_attention(job.test_embedding, job.want_attn)) {
      size_t rows = (size_t)job.batch * job.model.embedding_size;
      job.vattn = malloc(rows * sizeof(float));
      job.test = malloc((size_t)job.batch * job.out_dim * sizeof(float));
      job.attn = job.want_attn ? malloc(rows * sizeof(float)) : NULL;
      if (!job.vattn || !job.test || (job.want_attn && !job.attn))
        rc = fr_error_set(&err, FR_ERR_NOMEM, "out of memory for v_attn of %d images", job.batch);
    }
    if (!job.input || !job.embeddings || !job.norms || !job.ri)
      rc = fr_error_set(&err, FR_ERR_NOMEM, "out of memory for a batch of %d images", job.batch);
  }
  fr_input_list expanded = {0};
  if (!rc && !raw)
    rc = fr_input_list_expand((const char *const *)(argv + optind), argc - optind, &expanded, &err);
  char **inputs = raw ? (char **)&raw : expanded.paths;
  int n_inputs = raw ? 1 : expanded.n;
  fr_input_fingerprint *prints = calloc((size_t)n_inputs, sizeof(*prints));
  if (!rc && !prints)
    rc = fr_error_set(&err, FR_ERR_NOMEM, "out of memory");
  for (int i = 0; i < n_inputs && !rc; i++)
    rc = fr_fingerprint_input(inputs[i], &prints[i], &err);
  if (!rc) {
    job.device = fr_vk_context_device(ctx)->name;
    fr_results_meta meta = {.command_line = fr_command_line(), .model_path = model_path,
                            .model_sha256 = job.model.file_sha256, .architecture = job.model.architecture,
                            .device = job.device, .embedding_size = job.out_dim,
                            .test_embedding = fr_test_embedding_name(job.test_embedding),
                            .attn_size = job.want_attn ? job.model.embedding_size : 0,
                            .n_inputs = n_inputs, .inputs = prints,
                            .labels_csv = fr_labeler_csv_path(job.labeler),
                            .labels_csv_sha256 = fr_labeler_csv_sha256(job.labeler),
                            .label_regex = fr_labeler_regex(job.labeler),
                            .align = al.align, .align_min_score = al.align ? al.min_score : 0.0f,
                            .align_min_face = al.align ? al.min_face : 0,
                            .align_max_face = al.align ? al.max_face : 0};
    rc = resume ? fr_results_open_resume(output, &meta, &job.results, &err)
                : fr_results_create(output, &meta, &job.results, &err);
    job.batch_start = fr_now_seconds();
  }
  free(prints);
  if (!rc)
    rc = raw ? embed_raw(&job, raw, shape, &err) : embed_inputs(&job, inputs, n_inputs, !json, &err);
  int close_rc = FR_OK;
  fr_error close_err = {0};
  if (job.results)
    close_rc = fr_results_close(job.results, rc == FR_OK, &close_err);
  double seconds = fr_now_seconds() - t0;
  if (!rc && ctx && fr_vk_validation_messages(ctx) > 0)
    rc = fr_error_set(&err, FR_ERR_VULKAN, "%llu Vulkan validation messages (logged above): a faceri bug",
                      (unsigned long long)fr_vk_validation_messages(ctx));
  if (rc)
    fprintf(stderr, "faceri embed: %s\n", err.message);
  else if (close_rc)
    fprintf(stderr, "faceri embed: %s\n", close_err.message);
  printf("{\"command\":\"embed\",\"output\":\"%s\",\"status\":\"%s\",\"items\":%lld,\"ok\":%lld,\"failed\":%lld,"
         "\"skipped\":%lld,\"aligned\":%lld,\"fallbacks\":%lld,\"seconds\":%.3f,\"images_per_s\":%.2f,"
         "\"device\":\"%s\",\"test_embedding\":\"%s\",\"embedding_attn\":%d}\n",
         output, rc || close_rc ? "error" : "complete", (long long)(job.n_ok + job.n_failed + job.n_skipped),
         (long long)job.n_ok, (long long)job.n_failed, (long long)job.n_skipped, (long long)job.n_aligned,
         (long long)job.n_fallbacks, seconds,
         seconds > 0 ? (double)job.n_ok / seconds : 0.0, ctx ? fr_vk_context_device(ctx)->name : "",
         fr_test_embedding_name(job.test_embedding), job.want_attn ? job.model.embedding_size : 0);
  for (int i = 0; i < job.n_rows; i++) {
    free(job.rows[i].key);
    free(job.rows[i].label);
    free(job.rows[i].error);
  }
  free(job.rows);
  free(job.input);
  free(job.embeddings);
  free(job.norms);
  free(job.ri);
  fr_aligner_destroy(job.aligner);
  free(job.vattn), free(job.test), free(job.attn);
  fr_engine_destroy(job.engine);
  fr_vk_context_destroy(ctx);
  fr_model_free(&job.model);
  fr_labeler_destroy(job.labeler);
  fr_input_list_free(&expanded);
  if (rc || close_rc)
    return FR_EXIT_ERROR;
  return job.n_failed ? FR_EXIT_PARTIAL : FR_EXIT_OK;

usage_error:
  fprintf(stderr, "faceri embed: %s\n\n%s", err.message, usage);
  return FR_EXIT_USAGE;
}
