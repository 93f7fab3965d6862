/* faceri bench: images/s, ms per batch, per-layer device time, device memory. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/cli_util.h"
#include "faceri/commands.h"
#include "faceri/engine.h"
#include "faceri/model.h"
#include "faceri/train_ops_bench.h"
#include "faceri/trainer.h"

static const char usage[] =
    "usage: faceri bench [--batch B[,B...]] [--iters N] [--seconds S] [--layers] [--json]\n"
    "                    [--train] [--model FILE] [--device SEL]\n"
    "Runs the network on synthetic input on the chosen Vulkan device and prints\n"
    "images/s, ms per batch, peak device memory and (with --layers, default on in\n"
    "text mode) per-layer device times from timestamp queries. With --train it times\n"
    "whole training steps instead (forward, softmax cross-entropy over 1000 classes,\n"
    "backward, SGD update): training images/s and peak device memory.\n"
    "  -b, --batch LIST   batch sizes, comma-separated (default 32)\n"
    "  -n, --iters N      timed batches per size (default: enough for --seconds)\n"
    "      --seconds S    target timed seconds per size when --iters is not given (default 5)\n"
    "      --layers       per-layer table (timestamp queries; a separate pass)\n"
    "      --train        time training steps (-n: steps per size, default 3)\n"
    "      --ops          with --train: per-layer-shape times of the backward kernels instead\n"
    "      --json         one JSON object on stdout\n";

typedef struct bench_result {
  int batch;
  int iters;
  double ms_per_batch, images_per_s;
  uint64_t peak_bytes;
} bench_result;

static void fill_input(float *x, size_t n)
{
  /* Deterministic face-like range values: the golden set's formula without the rounding. */
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(sin(0.05 * (double)(i % 4099) + 0.7 * (double)(i / 37632)) * 0.99);
}

static int bench_one(fr_vk_context *ctx, const fr_model *model, int batch, int iters, double seconds, int layers,
                     bench_result *res, FILE *table, fr_error *err)
{
  memset(res, 0, sizeof(*res));
  res->batch = batch;
  fr_vk_memory_reset_peak(ctx);
  uint64_t base = fr_vk_memory_in_use(ctx);
  fr_engine *engine = NULL;
  fr_engine_options o = {.max_batch = batch, .timing = 0};
  int rc = fr_engine_create(ctx, model, &o, &engine, err);
  if (rc)
    return rc;
  size_t per = (size_t)model->input_h * model->input_w * model->input_c;
  float *x = malloc((size_t)batch * per * sizeof(float));
  float *emb = malloc((size_t)batch * model->embedding_size * sizeof(float));
  float *norms = malloc((size_t)batch * sizeof(float));
  if (!x || !emb || !norms)
    rc = fr_error_set(err, FR_ERR_NOMEM, "bench: out of memory");
  if (!rc) {
    fill_input(x, (size_t)batch * per);
    rc = fr_engine_run(engine, x, batch, emb, norms, NULL, err); /* warm-up: records, touches memory */
  }
  if (!rc && iters <= 0) {
    double t = fr_now_seconds();
    rc = fr_engine_run(engine, x, batch, emb, norms, NULL, err);
    double one = fr_now_seconds() - t;
    iters = one > 0 ? (int)ceil(seconds / one) : 10;
    if (iters < 2)
      iters = 2;
    if (iters > 10000)
      iters = 10000;
  }
  double t0 = fr_now_seconds();
  for (int i = 0; i < iters && !rc; i++)
    rc = fr_engine_run(engine, x, batch, emb, norms, NULL, err);
  double elapsed = fr_now_seconds() - t0;
  if (!rc) {
    res->iters = iters;
    res->ms_per_batch = elapsed * 1000.0 / iters;
    res->images_per_s = (double)batch * iters / elapsed;
    res->peak_bytes = fr_vk_memory_peak(ctx) - base;
    for (int i = 0; i < batch && !rc; i++)
      if (!isfinite(norms[i]) || norms[i] <= 0)
        rc = fr_error_set(err, FR_ERR_INTERNAL, "bench: image %d produced a non-finite embedding", i);
  }
  fr_engine_destroy(engine);
  engine = NULL;
  if (!rc && layers && table) {
    fr_engine_options t = {.max_batch = batch, .timing = 1};
    rc = fr_engine_create(ctx, model, &t, &engine, err);
    int reps = 3;
    for (int i = 0; i < reps + 1 && !rc; i++) {
      if (i == 1)
        fr_engine_reset_timings(engine);
      rc = fr_engine_run(engine, x, batch, emb, norms, NULL, err);
    }
    if (!rc) {
      int n = fr_engine_timing_count(engine);
      double total = 0;
      for (int i = 0; i < n; i++) {
        const char *label, *kernel;
        double ms;
        fr_engine_timing(engine, i, &label, &kernel, &ms);
        total += ms / reps;
      }
      fprintf(table, "per-layer device time, batch %d (mean of %d runs, timestamp queries):\n", batch, reps);
      for (int i = 0; i < n; i++) {
        const char *label, *kernel;
        double ms;
        fr_engine_timing(engine, i, &label, &kernel, &ms);
        const fr_layer *l = &model->layers[i];
        double gflop = 2.0 * (double)batch * l->out_h * l->out_w * l->out_c * l->kernel_h * l->kernel_w *
                       (l->kind == FR_LAYER_DEPTHWISE ? 1 : l->in_c) / 1e9;
        fprintf(table, "  %2d %-14s %3dx%-3d %4d->%-4d k%dx%d s%d %8.3f ms %5.1f%% %6.1f GFLOP/s  %s\n", i, kernel,
                l->in_h, l->in_w, l->in_c, l->out_c, l->kernel_h, l->kernel_w, l->stride_h, ms / reps,
                total > 0 ? 100.0 * ms / reps / total : 0.0, ms > 0 ? gflop / (ms / reps / 1000.0) : 0.0, label);
      }
      fprintf(table, "  total %.3f ms per batch on the device\n", total);
    }
    fr_engine_destroy(engine);
  }
  free(x);
  free(emb);
  free(norms);
  return rc;
}

static int bench_train(fr_vk_context *ctx, const fr_model *model, const long *batches, int n_batches, int steps,
                       int json, fr_error *err)
{
  const fr_vk_device_info *d = fr_vk_context_device(ctx);
  if (!json)
    printf("faceri bench --train: %s (%s), model %s, %.3f GMAC/image forward\n", d->name,
           fr_vk_device_type_name(d->type), model->architecture, (double)fr_model_macs(model) / 1e9);
  else
    printf("{\"command\":\"bench\",\"mode\":\"train\",\"device\":\"%s\",\"model\":\"%s\",\"results\":[", d->name,
           model->architecture);
  int rc = 0;
  fr_trainer_bench_result r = {0};
  for (int i = 0; i < n_batches && !rc; i++) {
    rc = fr_trainer_bench(ctx, model, (int)batches[i], steps, &r, err);
    if (rc)
      break;
    if (json)
      printf("%s{\"batch\":%d,\"chunk\":%d,\"steps\":%d,\"images_per_s\":%.3f,\"ms_per_step\":%.3f,"
             "\"peak_device_bytes\":%llu}",
             i ? "," : "", r.batch, r.chunk, r.steps, r.images_per_s, r.ms_per_step,
             (unsigned long long)r.peak_device_bytes);
    else
      printf("batch %4d: %8.2f training images/s  %9.1f ms/step  peak device memory %.1f MiB  (chunk %d, %d steps)\n",
             r.batch, r.images_per_s, r.ms_per_step, (double)r.peak_device_bytes / 1048576.0, r.chunk, r.steps);
    fflush(stdout);
  }
  if (!rc && fr_vk_validation_messages(ctx) > 0)
    rc = fr_error_set(err, FR_ERR_VULKAN, "%llu Vulkan validation messages (logged above): a faceri bug",
                      (unsigned long long)fr_vk_validation_messages(ctx));
  if (json)
    printf("],\"status\":\"%s\"}\n", rc ? "error" : "complete");
  return rc;
}

static int bench_train_ops(fr_vk_context *ctx, const long *batches, int n_batches, int runs, int json, fr_error *err)
{
  if (json)
    printf("{\"command\":\"bench\",\"mode\":\"train-ops\",\"device\":\"%s\",\"results\":[",
           fr_vk_context_device(ctx)->name);
  int rc = 0;
  for (int i = 0; i < n_batches && !rc; i++) {
    fr_train_ops_bench_summary s;
    rc = fr_train_ops_bench(ctx, (int)batches[i], runs, NULL, json ? NULL : stdout, &s, err);
    if (!rc && json)
      printf("%s{\"batch\":%ld,\"data_ms\":%.3f,\"filter_ms\":%.3f,\"epilogue_ms\":%.3f,\"data_gflops\":%.3f,"
             "\"filter_gflops\":%.3f}",
             i ? "," : "", batches[i], s.data_ms, s.filter_ms, s.epilogue_ms, s.data_gflops, s.filter_gflops);
  }
  if (!rc && fr_vk_validation_messages(ctx) > 0)
    rc = fr_error_set(err, FR_ERR_VULKAN, "%llu Vulkan validation messages (logged above): a faceri bug",
                      (unsigned long long)fr_vk_validation_messages(ctx));
  if (json)
    printf("],\"status\":\"%s\"}\n", rc ? "error" : "complete");
  return rc;
}

int fr_cmd_bench(int argc, char **argv)
{
  const char *model_path = NULL, *device = NULL, *batches_text = "32";
  long iters = 0, secs = 5;
  int json = 0, layers = -1, train = 0, ops = 0;
  fr_error err = {0};
  static const struct option longopts[] = {
      {"batch", required_argument, 0, 'b'}, {"iters", required_argument, 0, 'n'},
      {"seconds", required_argument, 0, 's'}, {"layers", no_argument, 0, 'l'},
      {"json", no_argument, 0, 'j'},        {"model", required_argument, 0, 'm'},
      {"train", no_argument, 0, 't'},       {"ops", no_argument, 0, 'o'},
      {"device", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "b:n:m:d:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'b': batches_text = optarg; break;
    case 'n':
      if (fr_parse_int("--iters", optarg, 1, 1000000, &iters, &err))
        goto usage_error;
      break;
    case 's':
      if (fr_parse_int("--seconds", optarg, 1, 3600, &secs, &err))
        goto usage_error;
      break;
    case 'l': layers = 1; break;
    case 't': train = 1; break;
    case 'o': ops = 1; break;
    case 'j': json = 1; break;
    case 'm': model_path = optarg; break;
    case 'd': device = optarg; break;
    case 'h': fputs(usage, stdout); return FR_EXIT_OK;
    default: fputs(usage, stderr); return FR_EXIT_USAGE;
    }
  }
  if (optind != argc) {
    fr_error_set(&err, FR_ERR_INVALID, "unexpected argument \"%s\"", argv[optind]);
    goto usage_error;
  }
  long batches[16];
  int n_batches = 0;
  for (const char *p = batches_text; *p && n_batches < 16;) {
    char tok[32];
    size_t len = strcspn(p, ",");
    if (len == 0 || len >= sizeof(tok)) {
      fr_error_set(&err, FR_ERR_INVALID, "--batch \"%s\": expected numbers separated by commas", batches_text);
      goto usage_error;
    }
    memcpy(tok, p, len);
    tok[len] = '\0';
    if (fr_parse_int("--batch", tok, 1, 4096, &batches[n_batches++], &err))
      goto usage_error;
    p += len + (p[len] == ',');
  }
  if (layers < 0)
    layers = !json;

  if (!model_path)
    model_path = fr_model_default_path();
  fr_model model = {0};
  fr_vk_context *ctx = NULL;
  int rc = fr_model_load(model_path, &model, &err);
  fr_vk_options vo = {.device = device, .validation = -1};
  if (!rc)
    rc = fr_vk_context_create(&vo, &ctx, &err);
  if (!rc && train && ops) {
    rc = bench_train_ops(ctx, batches, n_batches, iters > 0 ? (int)iters : 3, json, &err);
    goto done;
  }
  if (!rc && train) {
    rc = bench_train(ctx, &model, batches, n_batches, iters > 0 ? (int)iters : 3, json, &err);
    goto done;
  }
  bench_result results[16];
  int done = 0;
  if (!rc && !json) {
    const fr_vk_device_info *d = fr_vk_context_device(ctx);
    printf("faceri bench: %s (%s), model %s, %.3f GMAC/image\n", d->name, fr_vk_device_type_name(d->type),
           model.architecture, (double)fr_model_macs(&model) / 1e9);
  }
  for (int i = 0; i < n_batches && !rc; i++) {
    rc = bench_one(ctx, &model, (int)batches[i], (int)iters, (double)secs, layers, &results[i], json ? NULL : stdout,
                   &err);
    if (!rc) {
      done++;
      if (!json)
        printf("batch %4d: %8.2f images/s  %9.2f ms/batch  peak device memory %.1f MiB  (%d batches)\n",
               results[i].batch, results[i].images_per_s, results[i].ms_per_batch,
               (double)results[i].peak_bytes / 1048576.0, results[i].iters);
      fflush(stdout);
    }
  }
  if (!rc && ctx && fr_vk_validation_messages(ctx) > 0)
    rc = fr_error_set(&err, FR_ERR_VULKAN, "%llu Vulkan validation messages (logged above): a faceri bug",
                      (unsigned long long)fr_vk_validation_messages(ctx));
  if (json) {
    const fr_vk_device_info *d = ctx ? fr_vk_context_device(ctx) : NULL;
    printf("{\"command\":\"bench\",\"device\":\"%s\",\"model\":\"%s\",\"gmac_per_image\":%.4f,\"results\":[",
           d ? d->name : "", model.architecture, (double)fr_model_macs(&model) / 1e9);
    for (int i = 0; i < done; i++)
      printf("%s{\"batch\":%d,\"iters\":%d,\"images_per_s\":%.3f,\"ms_per_batch\":%.3f,\"peak_device_bytes\":%llu}",
             i ? "," : "", results[i].batch, results[i].iters, results[i].images_per_s, results[i].ms_per_batch,
             (unsigned long long)results[i].peak_bytes);
    printf("]");
    if (done > 0)
      printf(",\"images_per_s\":%.3f", results[done - 1].images_per_s);
    printf(",\"status\":\"%s\"}\n", rc ? "error" : "complete");
  }
done:
  if (rc)
    fprintf(stderr, "faceri bench: %s\n", err.message);
  fr_vk_context_destroy(ctx);
  fr_model_free(&model);
  return rc ? FR_EXIT_ERROR : FR_EXIT_OK;

usage_error:
  fprintf(stderr, "faceri bench: %s\n\n%s", err.message, usage);
  return FR_EXIT_USAGE;
}
