/* HDF5 results writer, schema 3: rows at global item indices, a shard table
 * that says which rows are durable, input fingerprints for --resume. */
#include "faceri/results_file.h"

#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "results_hdf5.h"

#define CHUNK_ROWS 4096

typedef struct range {
  int64_t first, count;
} range;

struct fr_results_file {
  char path[1024];
  hid_t file, bytes_type, utf8_type;
  hid_t key, label, status, error, width, height, shard, embedding, norm, ers, ri, aligned, align_score;
  hid_t shard_id, shard_first, shard_count, shard_attempts, shard_state, shard_worker, shard_device, shard_seconds,
      shard_reason;
  hid_t label_names;
  hid_t attn; /* /embedding_attn, or -1 when the run has none */
  int dim, attn_dim;
  int64_t rows, n_shards, n_labels;
  fr_label_map labels;
  range *committed;
  int n_committed, cap_committed;
};

static int fail(const fr_results_file *rf, const char *what, fr_error *err)
{
  return fr_error_set(err, FR_ERR_HDF5, "%s: HDF5 failed to %s", rf->path, what);
}

static void iso_time_now(char *buf, size_t n)
{
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- committed ranges ---- */

static int add_committed(fr_results_file *rf, int64_t first, int64_t count)
{
  if (rf->n_committed == rf->cap_committed) {
    int cap = rf->cap_committed ? rf->cap_committed * 2 : 64;
    range *grown = realloc(rf->committed, (size_t)cap * sizeof(range));
    if (!grown)
      return -1;
    rf->committed = grown;
    rf->cap_committed = cap;
  }
  /* Keep sorted by first: shards mostly commit in order, so insert from the end. */
  int i = rf->n_committed;
  while (i > 0 && rf->committed[i - 1].first > first) {
    rf->committed[i] = rf->committed[i - 1];
    i--;
  }
  rf->committed[i] = (range){first, count};
  rf->n_committed++;
  return 0;
}

int fr_results_committed_count(const fr_results_file *rf) { return rf->n_committed; }

void fr_results_committed_range(const fr_results_file *rf, int i, int64_t *first, int64_t *count)
{
  *first = rf->committed[i].first;
  *count = rf->committed[i].count;
}

int fr_results_is_committed(const fr_results_file *rf, int64_t index)
{
  int lo = 0, hi = rf->n_committed;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (rf->committed[mid].first + rf->committed[mid].count <= index)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < rf->n_committed && rf->committed[lo].first <= index;
}

/* ---- layout ---- */

static int create_layout(fr_results_file *rf, const fr_results_meta *meta)
{
  hid_t f = rf->file;
  int8_t pending = FR_ITEM_PENDING, not_attempted = -1;
  int32_t no_label = -1, zero = 0;
  int64_t no_shard = -1;
  float nan = NAN;
  if (fr_h5_group(f, "items") < 0 || fr_h5_group(f, "quality") < 0 || fr_h5_group(f, "shards") < 0 ||
      fr_h5_group(f, "labels") < 0 || fr_h5_group(f, "inputs") < 0)
    return -1;
  rf->key = fr_h5_create_rows(f, "items/key", rf->bytes_type, 0, CHUNK_ROWS, NULL,
                              "item key: input path, or ARCHIVE:MEMBER; bytes as found (may be non-UTF-8)");
  rf->label = fr_h5_create_rows(f, "items/label", H5T_STD_I32LE, 0, CHUNK_ROWS, &no_label,
                                "index into /labels/name, -1 when the item has none");
  rf->status = fr_h5_create_rows(f, "items/status", H5T_STD_I8LE, 0, CHUNK_ROWS, &pending,
                                 "-1 pending, 0 ok, 1 failed (see /items/error), 2 skipped (not an image)");
  rf->error = fr_h5_create_rows(f, "items/error", rf->utf8_type, 0, CHUNK_ROWS, NULL,
                                "why the item failed or was skipped; empty when ok");
  rf->width = fr_h5_create_rows(f, "items/width", H5T_STD_I32LE, 0, CHUNK_ROWS, &zero,
                                "decoded image width before crop/resize, 0 when unknown");
  rf->height = fr_h5_create_rows(f, "items/height", H5T_STD_I32LE, 0, CHUNK_ROWS, &zero,
                                 "decoded image height before crop/resize, 0 when unknown");
  rf->shard = fr_h5_create_rows(f, "items/shard", H5T_STD_I64LE, 0, CHUNK_ROWS, &no_shard,
                                "id of the shard that wrote the row (-1: pending)");
  rf->embedding = fr_h5_create_rows(f, "embedding", H5T_IEEE_F32LE, rf->dim, 256, &nan,
                                    "L2-normalised embedding; NaN where status != 0");
  rf->norm = fr_h5_create_rows(f, "quality/norm", H5T_IEEE_F32LE, 0, CHUNK_ROWS, &nan,
                               "L2 norm of the raw embedding; NaN where not computed");
  rf->ers = fr_h5_create_rows(f, "quality/ers", H5T_IEEE_F32LE, 0, CHUNK_ROWS, &nan,
                              "d_UI = 1 - cos(embedding, UI centre); NaN when the model has no UI centre");
  rf->ri = fr_h5_create_rows(f, "quality/ri", H5T_IEEE_F32LE, 0, CHUNK_ROWS, &nan,
                             "learned recognizability index; NaN when the model has no RI head");
  rf->aligned = fr_h5_create_rows(f, "items/aligned", H5T_STD_I8LE, 0, CHUNK_ROWS, &not_attempted,
                                  "1 aligned onto the ArcFace template, 0 fallback resize (no face found), -1 not "
                                  "attempted (item not embedded, or a run without --align)");
  rf->align_score = fr_h5_create_rows(f, "items/align_score", H5T_IEEE_F32LE, 0, CHUNK_ROWS, &nan,
                                      "MTCNN ONet face probability of the face used; NaN when not attempted");
  rf->shard_id = fr_h5_create_rows(f, "shards/id", H5T_STD_I64LE, 0, 256, NULL, "shard id");
  rf->shard_first = fr_h5_create_rows(f, "shards/first", H5T_STD_I64LE, 0, 256, NULL, "first global item index");
  rf->shard_count = fr_h5_create_rows(f, "shards/count", H5T_STD_I64LE, 0, 256, NULL, "number of items");
  rf->shard_attempts = fr_h5_create_rows(f, "shards/attempts", H5T_STD_I32LE, 0, 256, NULL, "attempts made");
  rf->shard_state = fr_h5_create_rows(f, "shards/state", H5T_STD_I8LE, 0, 256, NULL,
                                      "1 committed, 2 failed after too many attempts (its items are status 1)");
  rf->shard_worker = fr_h5_create_rows(f, "shards/worker", rf->utf8_type, 0, 256, NULL, "worker that computed it");
  rf->shard_device = fr_h5_create_rows(f, "shards/device", rf->utf8_type, 0, 256, NULL, "Vulkan device used");
  rf->shard_seconds = fr_h5_create_rows(f, "shards/seconds", H5T_IEEE_F32LE, 0, 256, NULL,
                                        "seconds from lease to commit");
  rf->shard_reason = fr_h5_create_rows(f, "shards/reason", rf->utf8_type, 0, 256, NULL,
                                       "why the shard failed; empty when committed");
  rf->label_names = fr_h5_create_rows(f, "labels/name", rf->utf8_type, 0, 256, NULL, "label names");
  hid_t ids[] = {rf->key, rf->label, rf->status, rf->error, rf->width, rf->height, rf->shard, rf->embedding,
                 rf->norm, rf->ers, rf->ri, rf->shard_id, rf->shard_first, rf->shard_count, rf->shard_attempts,
                 rf->shard_state, rf->shard_worker, rf->shard_device, rf->shard_seconds, rf->shard_reason,
                 rf->label_names, rf->aligned, rf->align_score};
  for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
    if (ids[i] < 0)
      return -1;
  if (rf->attn_dim > 0 &&
      (rf->attn = fr_h5_create_rows(f, "embedding_attn", H5T_IEEE_F32LE, (hsize_t)rf->attn_dim, 256, &nan,
                                    "L2-normalised attention-head embedding v_attn; NaN where status != 0")) < 0)
    return -1;
  /* Inputs and their fingerprints, written once. */
  int n = meta->n_inputs;
  const char **paths = malloc((size_t)(n ? n : 1) * sizeof(char *));
  const char **digests = malloc((size_t)(n ? n : 1) * sizeof(char *));
  int64_t *sizes = malloc((size_t)(n ? n : 1) * sizeof(int64_t)), *mtimes = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
  int rc = paths && digests && sizes && mtimes ? 0 : -1;
  for (int i = 0; i < n && !rc; i++) {
    paths[i] = meta->inputs[i].path;
    digests[i] = meta->inputs[i].digest;
    sizes[i] = meta->inputs[i].size;
    mtimes[i] = meta->inputs[i].mtime;
  }
  if (!rc)
    rc = fr_h5_write_vector(f, "inputs/path", rf->bytes_type, rf->bytes_type, n, paths) ||
         fr_h5_write_vector(f, "inputs/size", H5T_STD_I64LE, H5T_NATIVE_INT64, n, sizes) ||
         fr_h5_write_vector(f, "inputs/mtime", H5T_STD_I64LE, H5T_NATIVE_INT64, n, mtimes) ||
         fr_h5_write_vector(f, "inputs/digest", rf->utf8_type, rf->utf8_type, n, digests);
  free(paths), free(digests), free(sizes), free(mtimes);
  return rc;
}

static int open_layout(fr_results_file *rf)
{
  hid_t f = rf->file;
  struct {
    hid_t *id;
    const char *name;
  } sets[] = {{&rf->key, "items/key"},           {&rf->label, "items/label"},
              {&rf->status, "items/status"},     {&rf->error, "items/error"},
              {&rf->width, "items/width"},       {&rf->height, "items/height"},
              {&rf->shard, "items/shard"},       {&rf->embedding, "embedding"},
              {&rf->norm, "quality/norm"},       {&rf->ers, "quality/ers"},
              {&rf->ri, "quality/ri"},           {&rf->shard_id, "shards/id"},
              {&rf->shard_first, "shards/first"}, {&rf->shard_count, "shards/count"},
              {&rf->shard_attempts, "shards/attempts"}, {&rf->shard_state, "shards/state"},
              {&rf->shard_worker, "shards/worker"}, {&rf->shard_device, "shards/device"},
              {&rf->shard_seconds, "shards/seconds"}, {&rf->shard_reason, "shards/reason"},
              {&rf->label_names, "labels/name"}, {&rf->aligned, "items/aligned"},
              {&rf->align_score, "items/align_score"}};
  for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
    *sets[i].id = H5Dopen2(f, sets[i].name, H5P_DEFAULT);
    if (*sets[i].id < 0)
      return -1;
  }
  return 0;
}

/* Small, fixed HDF5 caches: the writer only appends, so big caches buy nothing and
 * would make the coordinator's memory grow with the run (about 1 MiB of chunk cache
 * per dataset and a metadata cache that grows to 32 MiB by default). */
static hid_t writer_access_plist(void)
{
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0)
    return H5P_DEFAULT;
  H5AC_cache_config_t mdc;
  memset(&mdc, 0, sizeof(mdc));
  mdc.version = H5AC__CURR_CACHE_CONFIG_VERSION;
  if (H5Pget_mdc_config(fapl, &mdc) >= 0) {
    mdc.set_initial_size = 1;
    mdc.initial_size = 1 << 20;
    mdc.min_size = 1 << 20;
    mdc.max_size = 2 << 20;
    H5Pset_mdc_config(fapl, &mdc);
  }
  H5Pset_cache(fapl, 0, 521, 256 << 10, 1.0);
  return fapl;
}

static int init(fr_results_file *rf, const char *path, int dim)
{
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  snprintf(rf->path, sizeof(rf->path), "%s", path);
  rf->dim = dim;
  rf->attn = -1;
  rf->bytes_type = fr_h5_string_type(H5T_CSET_ASCII);
  rf->utf8_type = fr_h5_string_type(H5T_CSET_UTF8);
  rf->file = -1;
  return rf->bytes_type < 0 || rf->utf8_type < 0 || fr_label_map_init(&rf->labels) ? -1 : 0;
}

static const char *or_empty(const char *s) { return s ? s : ""; }

static void face_size_text(const fr_results_meta *meta, char *buf, size_t n)
{
  if (meta->align)
    snprintf(buf, n, "%d:%d", meta->align_min_face, meta->align_max_face);
  else
    snprintf(buf, n, "%s", "");
}

static int write_root_attrs(hid_t f, const fr_results_meta *meta)
{
  char now[32], face[48];
  face_size_text(meta, face, sizeof(face));
  iso_time_now(now, sizeof(now));
  return fr_h5_set_string_attr(f, "format", "faceri-results") ||
         fr_h5_set_int_attr(f, "schema_version", FR_RESULTS_SCHEMA_VERSION) ||
         fr_h5_set_string_attr(f, "faceri_version", FACERI_VERSION) ||
         fr_h5_set_string_attr(f, "command_line", meta->command_line) ||
         fr_h5_set_string_attr(f, "model_path", meta->model_path) ||
         fr_h5_set_string_attr(f, "model_sha256", meta->model_sha256) ||
         fr_h5_set_string_attr(f, "model_architecture", meta->architecture) ||
         fr_h5_set_string_attr(f, "device", meta->device) ||
         fr_h5_set_int_attr(f, "embedding_size", meta->embedding_size) ||
         fr_h5_set_string_attr(f, "labels_csv", or_empty(meta->labels_csv)) ||
         fr_h5_set_string_attr(f, "labels_csv_sha256", or_empty(meta->labels_csv_sha256)) ||
         fr_h5_set_string_attr(f, "label_regex", or_empty(meta->label_regex)) ||
         fr_h5_set_int_attr(f, "align", meta->align != 0) ||
         fr_h5_set_float_attr(f, "align_min_score", meta->align ? meta->align_min_score : NAN) ||
         fr_h5_set_string_attr(f, "face_size", face) ||
         fr_h5_set_string_attr(f, "test_embedding", meta->test_embedding ? meta->test_embedding : "v") ||
         fr_h5_set_string_attr(f, "start_time", now) || fr_h5_set_string_attr(f, "state", "running");
}

int fr_results_create(const char *path, const fr_results_meta *meta, fr_results_file **out, fr_error *err)
{
  *out = NULL;
  fr_results_file *rf = calloc(1, sizeof(*rf));
  if (!rf || init(rf, path, meta->embedding_size)) {
    free(rf);
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", path);
  }
  rf->attn_dim = meta->attn_size > 0 ? meta->attn_size : 0;
  hid_t fapl = writer_access_plist();
  rf->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (fapl != H5P_DEFAULT)
    H5Pclose(fapl);
  if (rf->file < 0) {
    fr_results_close(rf, 0, NULL);
    return fr_error_set(err, FR_ERR_IO, "%s: cannot create the results file (does the folder exist and is it writable?)",
                        path);
  }
  if (write_root_attrs(rf->file, meta) || create_layout(rf, meta) || H5Fflush(rf->file, H5F_SCOPE_GLOBAL) < 0) {
    int rc = fail(rf, "lay out the results file", err);
    fr_results_close(rf, 0, NULL);
    return rc;
  }
  *out = rf;
  return FR_OK;
}

/* Compares the file's inputs with this run's, naming the first difference. */
static int check_inputs(fr_results_file *rf, const fr_results_meta *meta, fr_error *err)
{
  int64_t n = 0;
  char **paths = NULL, **digests = NULL;
  int64_t *sizes = NULL, *mtimes = NULL;
  int rc = FR_OK;
  if (fr_h5_read_vector(rf->file, "inputs/path", rf->bytes_type, &n, (void **)&paths, sizeof(char *)) ||
      fr_h5_read_vector(rf->file, "inputs/digest", rf->utf8_type, &n, (void **)&digests, sizeof(char *)) ||
      fr_h5_read_vector(rf->file, "inputs/size", H5T_NATIVE_INT64, &n, (void **)&sizes, sizeof(int64_t)) ||
      fr_h5_read_vector(rf->file, "inputs/mtime", H5T_NATIVE_INT64, &n, (void **)&mtimes, sizeof(int64_t)))
    rc = fail(rf, "read /inputs", err);
  else if (n != meta->n_inputs)
    rc = fr_error_set(err, FR_ERR_INVALID, "%s: the interrupted run had %lld inputs, this one has %d: not resumable",
                      rf->path, (long long)n, meta->n_inputs);
  for (int64_t i = 0; i < n && !rc; i++) {
    const fr_input_fingerprint *in = &meta->inputs[i];
    if (strcmp(paths[i], in->path) != 0)
      rc = fr_error_set(err, FR_ERR_INVALID, "%s: input %lld was %s, now %s: not resumable", rf->path, (long long)i,
                        paths[i], in->path);
    else if (sizes[i] != in->size || mtimes[i] != in->mtime || strcmp(digests[i], in->digest) != 0)
      rc = fr_error_set(err, FR_ERR_INVALID, "%s: input %s changed since the interrupted run (size, time or content)",
                        rf->path, in->path);
  }
  fr_h5_free_strings(paths, n);
  fr_h5_free_strings(digests, n);
  free(sizes);
  free(mtimes);
  return rc;
}

/* Labels decide /items/label: rows from the interrupted run and from this one
 * must come from the same CSV content and regex. A file without the attributes
 * (written before they existed) counts as "no label options". */
static int check_labels(fr_results_file *rf, const fr_results_meta *meta, fr_error *err)
{
  char was_sha[80] = "", was_re[4096] = "", was_csv[1100] = "";
  fr_h5_get_string_attr(rf->file, "labels_csv_sha256", was_sha, sizeof(was_sha));
  fr_h5_get_string_attr(rf->file, "label_regex", was_re, sizeof(was_re));
  fr_h5_get_string_attr(rf->file, "labels_csv", was_csv, sizeof(was_csv));
  const char *sha = or_empty(meta->labels_csv_sha256), *re = or_empty(meta->label_regex);
  if (strcmp(was_sha, sha) != 0) {
    if (!*was_sha)
      return fr_error_set(err, FR_ERR_INVALID, "%s: the interrupted run had no --labels, this one has --labels %s: "
                          "not resumable", rf->path, or_empty(meta->labels_csv));
    if (!*sha)
      return fr_error_set(err, FR_ERR_INVALID, "%s: the interrupted run used --labels %s, this one has none: "
                          "not resumable", rf->path, was_csv);
    return fr_error_set(err, FR_ERR_INVALID, "%s: --labels %s differs from the interrupted run's %s (SHA-256 %.12s... "
                        "vs %.12s...): not resumable", rf->path, or_empty(meta->labels_csv), was_csv, sha, was_sha);
  }
  if (strcmp(was_re, re) != 0)
    return fr_error_set(err, FR_ERR_INVALID, "%s: --label-regex \"%.200s\" differs from the interrupted run's \"%.200s\": "
                        "not resumable", rf->path, re, was_re);
  return FR_OK;
}

/* Rows of both runs must come from the same preprocessing. */
static int check_align(fr_results_file *rf, const fr_results_meta *meta, fr_error *err)
{
  int64_t was_align = 0;
  double was_score = NAN;
  char was_face[48] = "", face[48];
  fr_h5_get_int_attr(rf->file, "align", &was_align);
  fr_h5_get_double_attr(rf->file, "align_min_score", &was_score);
  fr_h5_get_string_attr(rf->file, "face_size", was_face, sizeof(was_face));
  face_size_text(meta, face, sizeof(face));
  if ((was_align != 0) != (meta->align != 0))
    return fr_error_set(err, FR_ERR_INVALID, "%s: the interrupted run was %s --align, this one %s: not resumable",
                        rf->path, was_align ? "with" : "without", meta->align ? "has it" : "has none");
  if (meta->align && ((float)was_score != meta->align_min_score || strcmp(was_face, face) != 0))
    return fr_error_set(err, FR_ERR_INVALID, "%s: --align-min-score %g --face-size %s differ from the interrupted "
                        "run's %g and %s: not resumable", rf->path, (double)meta->align_min_score, face, was_score,
                        was_face);
  return FR_OK;
}

/* /embedding and /embedding_attn must mean what they meant in the interrupted run. A
 * file without the attribute predates --test-embedding: its /embedding is v. */
static int open_attn(fr_results_file *rf, const fr_results_meta *meta, fr_error *err)
{
  char was[32] = "v";
  const char *now = meta->test_embedding ? meta->test_embedding : "v";
  if (H5Aexists(rf->file, "test_embedding") > 0)
    fr_h5_get_string_attr(rf->file, "test_embedding", was, sizeof(was));
  if (strcmp(was, now) != 0)
    return fr_error_set(err, FR_ERR_INVALID, "%s: the interrupted run used --test-embedding %s, this one %s: "
                        "not resumable", rf->path, was, now);
  int had = H5Lexists(rf->file, "embedding_attn", H5P_DEFAULT) > 0;
  if (had != (meta->attn_size > 0))
    return fr_error_set(err, FR_ERR_INVALID, "%s: the interrupted run was %s --embedding-attn, this one %s: "
                        "not resumable", rf->path, had ? "with" : "without", had ? "without" : "with");
  if (!had)
    return FR_OK;
  rf->attn_dim = meta->attn_size;
  rf->attn = H5Dopen2(rf->file, "embedding_attn", H5P_DEFAULT);
  hid_t space = rf->attn >= 0 ? H5Dget_space(rf->attn) : -1;
  hsize_t dims[2] = {0, 0};
  int ok = space >= 0 && H5Sget_simple_extent_ndims(space) == 2 && H5Sget_simple_extent_dims(space, dims, NULL) >= 0 &&
           dims[1] == (hsize_t)meta->attn_size;
  if (space >= 0)
    H5Sclose(space);
  return ok ? FR_OK : fail(rf, "open /embedding_attn with this model's attention size", err);
}

static int load_state(fr_results_file *rf, fr_error *err)
{
  int64_t n = 0, m = 0;
  int64_t *firsts = NULL, *counts = NULL;
  int8_t *states = NULL;
  char **names = NULL;
  int rc = FR_OK;
  if (fr_h5_read_vector(rf->file, "shards/first", H5T_NATIVE_INT64, &n, (void **)&firsts, sizeof(int64_t)) ||
      fr_h5_read_vector(rf->file, "shards/count", H5T_NATIVE_INT64, &n, (void **)&counts, sizeof(int64_t)) ||
      fr_h5_read_vector(rf->file, "shards/state", H5T_NATIVE_INT8, &n, (void **)&states, sizeof(int8_t)) ||
      fr_h5_read_vector(rf->file, "labels/name", rf->utf8_type, &m, (void **)&names, sizeof(char *)))
    rc = fail(rf, "read /shards and /labels", err);
  for (int64_t i = 0; i < n && !rc; i++)
    if (add_committed(rf, firsts[i], counts[i]))
      rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", rf->path);
  for (int64_t i = 0; i < m && !rc; i++)
    if (fr_label_map_get(&rf->labels, names[i], 1) < 0)
      rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", rf->path);
  rf->n_shards = n;
  rf->n_labels = m;
  rf->rows = fr_h5_rows(rf->status);
  free(firsts), free(counts), free(states);
  fr_h5_free_strings(names, m);
  return rc;
}

int fr_results_open_resume(const char *path, const fr_results_meta *meta, fr_results_file **out, fr_error *err)
{
  *out = NULL;
  fr_results_file *rf = calloc(1, sizeof(*rf));
  if (!rf || init(rf, path, meta->embedding_size)) {
    free(rf);
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", path);
  }
  int rc = FR_OK;
  hid_t fapl = writer_access_plist();
  rf->file = H5Fopen(path, H5F_ACC_RDWR, fapl);
  if (fapl != H5P_DEFAULT)
    H5Pclose(fapl);
  if (rf->file < 0) {
    rc = fr_error_set(err, FR_ERR_IO, "%s: cannot open for --resume (missing, not HDF5, or not writable)", path);
    goto fail;
  }
  char format[64] = "", model[80] = "", state[32] = "";
  int64_t schema = 0, dim = 0;
  fr_h5_get_string_attr(rf->file, "format", format, sizeof(format));
  fr_h5_get_int_attr(rf->file, "schema_version", &schema);
  fr_h5_get_string_attr(rf->file, "model_sha256", model, sizeof(model));
  fr_h5_get_int_attr(rf->file, "embedding_size", &dim);
  fr_h5_get_string_attr(rf->file, "state", state, sizeof(state));
  if (strcmp(format, "faceri-results") != 0 || schema != FR_RESULTS_SCHEMA_VERSION) {
    rc = fr_error_set(err, FR_ERR_INVALID, "%s: not a faceri results file of schema %d", path, FR_RESULTS_SCHEMA_VERSION);
    goto fail;
  }
  if (strcmp(model, meta->model_sha256) != 0 || dim != meta->embedding_size) {
    rc = fr_error_set(err, FR_ERR_INVALID, "%s: made with model %.12s…, this run uses %.12s…: not resumable", path,
                      model, meta->model_sha256);
    goto fail;
  }
  if (open_layout(rf)) {
    rc = fail(rf, "open the datasets", err);
    goto fail;
  }
  rc = check_inputs(rf, meta, err);
  if (!rc)
    rc = check_labels(rf, meta, err);
  if (!rc)
    rc = check_align(rf, meta, err);
  if (!rc)
    rc = open_attn(rf, meta, err);
  if (!rc)
    rc = load_state(rf, err);
  if (!rc && (fr_h5_set_string_attr(rf->file, "state", "running") ||
              fr_h5_set_string_attr(rf->file, "resumed_command_line", meta->command_line)))
    rc = fail(rf, "mark the file as running", err);
  if (rc)
    goto fail;
  *out = rf;
  return FR_OK;
fail:
  fr_results_close(rf, 0, NULL);
  return rc;
}

int fr_results_register_label(fr_results_file *rf, const char *label, int *id, fr_error *err)
{
  int before = fr_label_map_size(&rf->labels);
  *id = fr_label_map_get(&rf->labels, label, 1);
  if (*id < 0)
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory for labels", rf->path);
  if (fr_label_map_size(&rf->labels) > before) {
    if (fr_h5_write_rows(rf->label_names, rf->utf8_type, rf->n_labels, 1, 0, &label) < 0)
      return fail(rf, "append to /labels/name", err);
    rf->n_labels++;
  }
  return FR_OK;
}

/* /embedding_attn rows, like /embedding's (0 when the run has none, < 0 on failure). */
static int write_attn_rows(fr_results_file *rf, int64_t first, const fr_result_row *rows, int n)
{
  if (rf->attn < 0)
    return 0;
  size_t d = (size_t)rf->attn_dim;
  float *a = malloc((size_t)n * d * sizeof(float));
  if (!a)
    return -1;
  for (int i = 0; i < n; i++)
    for (size_t j = 0; j < d; j++)
      a[(size_t)i * d + j] = rows[i].embedding_attn ? rows[i].embedding_attn[j] : NAN;
  int rc = fr_h5_write_rows(rf->attn, H5T_NATIVE_FLOAT, first, n, d, a);
  free(a);
  return rc;
}

int fr_results_write_items(fr_results_file *rf, int64_t first, const fr_result_row *rows, int n, int64_t shard_id,
                           fr_error *err)
{
  if (n <= 0)
    return FR_OK;
  size_t d = (size_t)rf->dim;
  float *emb = malloc((size_t)n * d * sizeof(float));
  float *norm = malloc((size_t)n * sizeof(float) * 4), *ers = norm + n, *ri = norm + 2 * n, *ascore = norm + 3 * n;
  const char **key = malloc((size_t)n * sizeof(char *) * 2), **error = key + n;
  int8_t *status = malloc((size_t)n * 2), *aligned = status + n;
  int32_t *ints = malloc((size_t)n * sizeof(int32_t) * 3), *label = ints, *width = ints + n, *height = ints + 2 * n;
  int64_t *shard = malloc((size_t)n * sizeof(int64_t));
  int rc = FR_OK;
  if (!emb || !norm || !key || !status || !ints || !shard) {
    rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory writing %d rows", rf->path, n);
    goto done;
  }
  for (int i = 0; i < n; i++) {
    const fr_result_row *r = &rows[i];
    if (r->embedding)
      memcpy(emb + (size_t)i * d, r->embedding, d * sizeof(float));
    else
      for (size_t j = 0; j < d; j++)
        emb[(size_t)i * d + j] = NAN;
    norm[i] = r->norm;
    ers[i] = r->ers;
    ri[i] = r->ri;
    aligned[i] = (int8_t)(r->aligned < 0 ? -1 : r->aligned > 0);
    ascore[i] = r->align_score;
    key[i] = r->key ? r->key : "";
    error[i] = r->error ? r->error : "";
    status[i] = (int8_t)r->status;
    width[i] = r->width;
    height[i] = r->height;
    shard[i] = shard_id;
    label[i] = -1;
    if (r->label && *r->label && (rc = fr_results_register_label(rf, r->label, &label[i], err)))
      goto done;
  }
  if (fr_h5_write_rows(rf->embedding, H5T_NATIVE_FLOAT, first, n, d, emb) < 0 || write_attn_rows(rf, first, rows, n) < 0 ||
      fr_h5_write_rows(rf->norm, H5T_NATIVE_FLOAT, first, n, 0, norm) < 0 ||
      fr_h5_write_rows(rf->ers, H5T_NATIVE_FLOAT, first, n, 0, ers) < 0 ||
      fr_h5_write_rows(rf->ri, H5T_NATIVE_FLOAT, first, n, 0, ri) < 0 ||
      fr_h5_write_rows(rf->key, rf->bytes_type, first, n, 0, key) < 0 ||
      fr_h5_write_rows(rf->error, rf->utf8_type, first, n, 0, error) < 0 ||
      fr_h5_write_rows(rf->label, H5T_NATIVE_INT32, first, n, 0, label) < 0 ||
      fr_h5_write_rows(rf->width, H5T_NATIVE_INT32, first, n, 0, width) < 0 ||
      fr_h5_write_rows(rf->height, H5T_NATIVE_INT32, first, n, 0, height) < 0 ||
      fr_h5_write_rows(rf->shard, H5T_NATIVE_INT64, first, n, 0, shard) < 0 ||
      fr_h5_write_rows(rf->aligned, H5T_NATIVE_INT8, first, n, 0, aligned) < 0 ||
      fr_h5_write_rows(rf->align_score, H5T_NATIVE_FLOAT, first, n, 0, ascore) < 0 ||
      /* status last: a row whose status is set has every other field written */
      fr_h5_write_rows(rf->status, H5T_NATIVE_INT8, first, n, 0, status) < 0) {
    rc = fail(rf, "write rows", err);
    goto done;
  }
  if (first + n > rf->rows)
    rf->rows = first + n;
done:
  free(emb), free(norm), free(key), free(status), free(ints), free(shard);
  return rc;
}

int fr_results_commit_shard(fr_results_file *rf, const fr_shard_record *s, fr_error *err)
{
  int8_t state = s->failed ? 2 : 1;
  int32_t attempts = s->attempts;
  const char *worker = s->worker ? s->worker : "", *device = s->device ? s->device : "",
             *reason = s->reason ? s->reason : "";
  int64_t i = rf->n_shards;
  if (fr_h5_write_rows(rf->shard_id, H5T_NATIVE_INT64, i, 1, 0, &s->id) < 0 ||
      fr_h5_write_rows(rf->shard_first, H5T_NATIVE_INT64, i, 1, 0, &s->first) < 0 ||
      fr_h5_write_rows(rf->shard_count, H5T_NATIVE_INT64, i, 1, 0, &s->count) < 0 ||
      fr_h5_write_rows(rf->shard_attempts, H5T_NATIVE_INT32, i, 1, 0, &attempts) < 0 ||
      fr_h5_write_rows(rf->shard_worker, rf->utf8_type, i, 1, 0, &worker) < 0 ||
      fr_h5_write_rows(rf->shard_device, rf->utf8_type, i, 1, 0, &device) < 0 ||
      fr_h5_write_rows(rf->shard_seconds, H5T_NATIVE_FLOAT, i, 1, 0, &s->seconds) < 0 ||
      fr_h5_write_rows(rf->shard_reason, rf->utf8_type, i, 1, 0, &reason) < 0 ||
      /* state last, then flush: the commit point */
      fr_h5_write_rows(rf->shard_state, H5T_NATIVE_INT8, i, 1, 0, &state) < 0 ||
      fr_h5_set_int_attr(rf->file, "items", rf->rows) || H5Fflush(rf->file, H5F_SCOPE_GLOBAL) < 0)
    return fail(rf, "commit a shard", err);
  rf->n_shards++;
  if (add_committed(rf, s->first, s->count))
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", rf->path);
  return FR_OK;
}

int64_t fr_results_count(const fr_results_file *rf) { return rf->rows; }

/* Counts statuses by reading /items/status in slices (bounded memory at any size). */
static int count_statuses(fr_results_file *rf, int64_t counts[4])
{
  memset(counts, 0, 4 * sizeof(int64_t));
  const int64_t slice = 1 << 20;
  int8_t *buf = malloc((size_t)slice);
  if (!buf)
    return -1;
  for (int64_t start = 0; start < rf->rows; start += slice) {
    int n = (int)(rf->rows - start < slice ? rf->rows - start : slice);
    if (fr_h5_read_rows(rf->status, H5T_NATIVE_INT8, start, n, 0, buf) < 0) {
      free(buf);
      return -1;
    }
    for (int i = 0; i < n; i++)
      counts[buf[i] >= 0 && buf[i] <= 2 ? buf[i] + 1 : 0]++;
  }
  free(buf);
  return 0;
}

int fr_results_close(fr_results_file *rf, int complete, fr_error *err)
{
  if (!rf)
    return FR_OK;
  int rc = FR_OK;
  if (rf->file >= 0 && rf->status > 0) {
    char now[32];
    iso_time_now(now, sizeof(now));
    int64_t counts[4];
    int bad = count_statuses(rf, counts) || fr_h5_set_string_attr(rf->file, "end_time", now) ||
              fr_h5_set_int_attr(rf->file, "items", rf->rows) ||
              fr_h5_set_int_attr(rf->file, "items_pending", counts[0]) ||
              fr_h5_set_int_attr(rf->file, "items_ok", counts[1]) ||
              fr_h5_set_int_attr(rf->file, "items_failed", counts[2]) ||
              fr_h5_set_int_attr(rf->file, "items_skipped", counts[3]) ||
              fr_h5_set_string_attr(rf->file, "state", complete && counts[0] == 0 ? "complete" : "running");
    if (bad)
      rc = fail(rf, "write the closing attributes", err);
  }
  hid_t ids[] = {rf->key, rf->label, rf->status, rf->error, rf->width, rf->height, rf->shard, rf->embedding,
                 rf->norm, rf->ers, rf->ri, rf->shard_id, rf->shard_first, rf->shard_count, rf->shard_attempts,
                 rf->shard_state, rf->shard_worker, rf->shard_device, rf->shard_seconds, rf->shard_reason,
                 rf->label_names, rf->aligned, rf->align_score};
  for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
    if (ids[i] > 0)
      H5Dclose(ids[i]);
  if (rf->attn > 0)
    H5Dclose(rf->attn);
  if (rf->bytes_type > 0)
    H5Tclose(rf->bytes_type);
  if (rf->utf8_type > 0)
    H5Tclose(rf->utf8_type);
  if (rf->file >= 0 && H5Fclose(rf->file) < 0 && !rc)
    rc = fail(rf, "close the file", err);
  fr_label_map_free(&rf->labels);
  free(rf->committed);
  free(rf);
  return rc;
}
