/* faceri gallery build | search | bench (include/faceri/gallery.h). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/cli_util.h"
#include "faceri/commands.h"
#include "faceri/gallery.h"
#include "faceri/similarity.h"
#include "faceri/vk_context.h"

static const char usage[] =
    "usage: faceri gallery build RESULTS.h5 -o GALLERY.h5 [--min-quality Q] [--weighting mean|quality]\n"
    "                             [--quality COL]\n"
    "       faceri gallery search GALLERY.h5 PROBES.h5 --top-k K -o MATCHES.h5 [--csv FILE]\n"
    "                             [--device[=SEL] | --cpu]\n"
    "       faceri gallery bench [--templates N] [--probes M] [--dim D] [--top-k K]\n"
    "                            [--device[=SEL] | --cpu]\n"
    "\n"
    "build: one template per identity = normalised (quality-weighted) mean of its status-ok\n"
    "       items; items whose quality column (default quality/ers if present, else\n"
    "       quality/norm) is below Q or unknown are left out.\n"
    "search: the K best templates (cosine) for every status-ok item of PROBES.h5;\n"
    "       --csv writes key,rank,label,score lines.\n"
    "bench: comparisons per second of the search on random unit vectors\n"
    "       (default 100,000 templates x 10,000 probes, 192-d, top 10).\n"
    "Both run on the Vulkan device (fused score + top-k kernels) for jobs of at least\n"
    "1e8 comparisons when one is usable, else on the CPU in blocked score tiles; the two\n"
    "paths give identical results. --device forces the device (SEL: index or name\n"
    "substring), --cpu the CPU.\n";

static int parse_double(const char *opt, const char *text, double *out, fr_error *err)
{
  char *end;
  *out = strtod(text, &end);
  if (end == text || *end || !isfinite(*out))
    return fr_error_set(err, FR_ERR_INVALID, "%s: \"%s\" is not a number", opt, text);
  return FR_OK;
}

static int cmd_build(int argc, char **argv)
{
  static const struct option longopts[] = {{"output", required_argument, 0, 'o'}, {"min-quality", required_argument, 0, 'q'},
                                           {"weighting", required_argument, 0, 'w'}, {"quality", required_argument, 0, 'c'},
                                           {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  fr_gallery_build_options o = {.min_quality = NAN};
  const char *out = NULL;
  fr_error err = {0};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
    if (c == 'o')
      out = optarg;
    else if (c == 'q') {
      if (parse_double("--min-quality", optarg, &o.min_quality, &err))
        goto usage_error;
    } else if (c == 'w') {
      if (!strcmp(optarg, "mean") || !strcmp(optarg, "quality"))
        o.weighting = optarg[0] == 'q' ? FR_WEIGHT_QUALITY : FR_WEIGHT_MEAN;
      else {
        fr_error_set(&err, FR_ERR_INVALID, "--weighting: \"%s\" is not mean or quality", optarg);
        goto usage_error;
      }
    } else if (c == 'c')
      o.quality_column = optarg;
    else if (c == 'h') {
      fputs(usage, stdout);
      return FR_EXIT_OK;
    } else {
      fputs(usage, stderr);
      return FR_EXIT_USAGE;
    }
  }
  if (!out || optind != argc - 1) {
    fr_error_set(&err, FR_ERR_INVALID, "expected RESULTS.h5 and -o GALLERY.h5");
    goto usage_error;
  }
  fr_results_reader *r = NULL;
  fr_gallery g = {0};
  int64_t dropped = 0;
  int rc = fr_results_reader_open(argv[optind], 0, &r, &err);
  if (!rc)
    rc = fr_gallery_build(r, &o, &g, &dropped, &err);
  fr_results_reader_close(r);
  if (!rc)
    rc = fr_gallery_save(&g, out, argv[optind], &o, &err);
  if (rc) {
    fprintf(stderr, "faceri gallery build: %s\n", err.message);
    fr_gallery_free(&g);
    return rc == FR_ERR_INVALID ? FR_EXIT_USAGE : FR_EXIT_ERROR;
  }
  printf("{\"command\":\"gallery build\",\"templates\":%lld,\"dim\":%d,\"left_out\":%lld}\n", (long long)g.n, g.dim,
         (long long)dropped);
  fr_gallery_free(&g);
  return FR_EXIT_OK;
usage_error:
  fprintf(stderr, "faceri gallery build: %s\n\n%s", err.message, usage);
  return FR_EXIT_USAGE;
}

/* "path":"cpu" or "path":"device","device":"NAME" for the JSON line. */
static void json_path(char *buf, size_t size, const fr_vk_context *ctx)
{
  if (!ctx) {
    snprintf(buf, size, "\"path\":\"cpu\"");
    return;
  }
  char name[sizeof(fr_vk_context_device(ctx)->name)];
  const char *n = fr_vk_context_device(ctx)->name;
  size_t j = 0;
  for (size_t i = 0; n[i] && j + 1 < sizeof(name); i++)
    if (n[i] != '"' && n[i] != '\\' && (unsigned char)n[i] >= 0x20)
      name[j++] = n[i];
  name[j] = 0;
  snprintf(buf, size, "\"path\":\"device\",\"device\":\"%s\"", name);
}

static int cmd_search(int argc, char **argv)
{
  static const struct option longopts[] = {{"output", required_argument, 0, 'o'}, {"top-k", required_argument, 0, 'k'},
                                           {"csv", required_argument, 0, 'c'}, {"device", optional_argument, 0, 'D'},
                                           {"cpu", no_argument, 0, 'C'}, {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  const char *out = NULL, *csv_path = NULL, *device = NULL;
  fr_gallery_path path = FR_PATH_AUTO;
  long k = 10;
  fr_error err = {0};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:k:h", longopts, NULL)) != -1) {
    if (c == 'o')
      out = optarg;
    else if (c == 'k') {
      if (fr_parse_int("--top-k", optarg, 1, 10000, &k, &err))
        goto usage_error;
    } else if (c == 'c')
      csv_path = optarg;
    else if (c == 'D' || c == 'C') {
      path = c == 'D' ? FR_PATH_DEVICE : FR_PATH_CPU;
      device = c == 'D' ? optarg : NULL;
    } else if (c == 'h') {
      fputs(usage, stdout);
      return FR_EXIT_OK;
    } else {
      fputs(usage, stderr);
      return FR_EXIT_USAGE;
    }
  }
  if (!out || optind != argc - 2) {
    fr_error_set(&err, FR_ERR_INVALID, "expected GALLERY.h5 PROBES.h5 and -o MATCHES.h5");
    goto usage_error;
  }
  fr_gallery g = {0};
  fr_results_reader *r = NULL;
  FILE *csv = NULL;
  fr_gallery_search_stats st = {0};
  fr_vk_context *ctx = NULL;
  fr_similarity_device *dev = NULL;
  int rc = fr_gallery_load(argv[optind], &g, &err);
  if (!rc)
    rc = fr_results_reader_open(argv[optind + 1], 0, &r, &err);
  if (!rc)
    rc = fr_gallery_open_device(path, device, (double)g.n * (double)fr_results_reader_items(r), (int)k, &ctx,
                                &dev, &err);
  if (!rc && csv_path && !(csv = fopen(csv_path, "w")))
    rc = fr_error_set(&err, FR_ERR_IO, "%s: cannot create the CSV file", csv_path);
  if (csv)
    fputs("key,rank,label,score\n", csv);
  if (!rc)
    rc = fr_gallery_search(&g, r, (int)k, out, csv, dev, &st, &err);
  if (csv && fclose(csv) != 0 && !rc)
    rc = fr_error_set(&err, FR_ERR_IO, "%s: write failed", csv_path);
  fr_results_reader_close(r);
  fr_gallery_free(&g);
  char where[300];
  json_path(where, sizeof(where), ctx);
  fr_similarity_device_destroy(dev);
  fr_vk_context_destroy(ctx);
  if (rc) {
    fprintf(stderr, "faceri gallery search: %s\n", err.message);
    return rc == FR_ERR_INVALID ? FR_EXIT_USAGE : FR_EXIT_ERROR;
  }
  printf("{\"command\":\"gallery search\",%s,\"probes\":%lld,\"comparisons\":%lld,\"seconds\":%.3f,"
         "\"comparisons_per_s\":%.4g}\n",
         where, (long long)st.probes, (long long)st.comparisons, st.seconds,
         st.seconds > 0 ? st.comparisons / st.seconds : 0.0);
  return FR_EXIT_OK;
usage_error:
  fprintf(stderr, "faceri gallery search: %s\n\n%s", err.message, usage);
  return FR_EXIT_USAGE;
}

static void random_units(float *v, int64_t n, int dim, uint64_t *s)
{
  for (int64_t i = 0; i < n; i++) {
    double n2 = 0;
    for (int k = 0; k < dim; k++) {
      *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
      v[i * dim + k] = (float)((double)((*s * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0 - 0.5);
      n2 += (double)v[i * dim + k] * v[i * dim + k];
    }
    for (int k = 0; k < dim; k++)
      v[i * dim + k] = (float)(v[i * dim + k] / sqrt(n2));
  }
}

/* The search's inner loop (score tiles + top-k merge, or the device kernels) on
 * random data, without file I/O. The device figure leaves out the one-time setup
 * (context, kernel compilation, template upload), printed apart. */
static int cmd_bench(int argc, char **argv)
{
  static const struct option longopts[] = {{"templates", required_argument, 0, 't'}, {"probes", required_argument, 0, 'p'},
                                           {"dim", required_argument, 0, 'd'}, {"top-k", required_argument, 0, 'k'},
                                           {"device", optional_argument, 0, 'D'}, {"cpu", no_argument, 0, 'C'},
                                           {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  long nt = 100000, np = 10000, dim = 192, k = 10;
  fr_gallery_path path = FR_PATH_AUTO;
  const char *device = NULL;
  fr_error err = {0};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    if (c == 'D' || c == 'C') {
      path = c == 'D' ? FR_PATH_DEVICE : FR_PATH_CPU;
      device = c == 'D' ? optarg : NULL;
      continue;
    }
    long *dst = c == 't' ? &nt : c == 'p' ? &np : c == 'd' ? &dim : c == 'k' ? &k : NULL;
    if (c == 'h') {
      fputs(usage, stdout);
      return FR_EXIT_OK;
    }
    if (!dst || fr_parse_int("gallery bench", optarg, 1, c == 'd' ? 4096 : c == 'k' ? 10000 : 100000000L, dst, &err)) {
      fprintf(stderr, "faceri gallery bench: %s\n", dst ? err.message : "unknown option");
      return FR_EXIT_USAGE;
    }
  }
  const int64_t PB = 1024, TB = 8192;
  float *t = malloc((size_t)nt * dim * sizeof(float)), *p = malloc((size_t)np * dim * sizeof(float));
  fr_topk top = {0};
  if (!t || !p || fr_topk_init(&top, np, (int)k, &err)) {
    fprintf(stderr, "faceri gallery bench: out of memory for %ld x %ld\n", nt, dim);
    free(t);
    free(p);
    return FR_EXIT_ERROR;
  }
  uint64_t s = 12345;
  random_units(t, nt, (int)dim, &s);
  random_units(p, np, (int)dim, &s);
  fr_vk_context *ctx = NULL;
  fr_similarity_device *dev = NULL;
  float *tile = NULL;
  double t0 = fr_now_seconds(), setup = 0;
  int rc = fr_gallery_open_device(path, device, (double)nt * (double)np, (int)k, &ctx, &dev, &err);
  if (!rc && dev && !(rc = fr_similarity_device_set_b(dev, nt, (int)dim, &err)))
    rc = fr_similarity_device_upload_b(dev, 0, nt, t, &err);
  if (!rc && !dev && !(tile = malloc((size_t)PB * TB * sizeof(float))))
    rc = fr_error_set(&err, FR_ERR_NOMEM, "out of memory for a score tile");
  setup = fr_now_seconds() - t0;
  t0 = fr_now_seconds();
  if (!rc && dev)
    rc = fr_similarity_device_topk(dev, p, np, &top, 0, &err);
  for (int64_t p0 = 0; !rc && !dev && p0 < np; p0 += PB) {
    int64_t pn = np - p0 < PB ? np - p0 : PB;
    for (int64_t t0b = 0; t0b < nt; t0b += TB) {
      int64_t tn = nt - t0b < TB ? nt - t0b : TB;
      fr_similarity_cpu(p + (size_t)p0 * dim, pn, t + (size_t)t0b * dim, tn, (int)dim, tile, tn);
      fr_topk_merge(&top, p0, pn, t0b, tn, tile, tn);
    }
  }
  double sec = fr_now_seconds() - t0, cmp = (double)nt * (double)np;
  char where[300];
  json_path(where, sizeof(where), ctx);
  if (!rc) {
    /* A checksum of the lists, so two runs (paths) can be compared for equality. */
    uint64_t h = 1469598103934665603ull;
    for (int64_t i = 0; i < np * k; i++)
      h = (h ^ (uint64_t)top.index[i]) * 1099511628211ull;
    printf("{\"command\":\"gallery bench\",%s,\"templates\":%ld,\"probes\":%ld,\"dim\":%ld,\"top_k\":%ld,"
           "\"setup_seconds\":%.3f,\"seconds\":%.3f,\"comparisons_per_s\":%.4g,\"gflops\":%.3g,"
           "\"lists_fnv1a\":\"%016llx\"}\n",
           where, nt, np, dim, k, setup, sec, cmp / sec, 2.0 * cmp * dim / sec / 1e9, (unsigned long long)h);
  } else
    fprintf(stderr, "faceri gallery bench: %s\n", err.message);
  fr_similarity_device_destroy(dev);
  fr_vk_context_destroy(ctx);
  fr_topk_free(&top);
  free(t);
  free(p);
  free(tile);
  return rc ? FR_EXIT_ERROR : FR_EXIT_OK;
}

int fr_cmd_gallery(int argc, char **argv)
{
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? FR_EXIT_USAGE : FR_EXIT_OK;
  }
  if (!strcmp(argv[1], "build"))
    return cmd_build(argc - 1, argv + 1);
  if (!strcmp(argv[1], "search"))
    return cmd_search(argc - 1, argv + 1);
  if (!strcmp(argv[1], "bench"))
    return cmd_bench(argc - 1, argv + 1);
  fprintf(stderr, "faceri gallery: unknown subcommand \"%s\"\n\n%s", argv[1], usage);
  return FR_EXIT_USAGE;
}
