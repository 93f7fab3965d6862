/* Helpers of the pipeline tests (tests/test_pipeline_*.c): real `faceri`
 * processes, their outputs, results files, archive and image fixtures. */
#include "support/pipeline.h"

#include <archive.h>
#include <archive_entry.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <png.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "faceri/model.h"

char pl_dir[256], pl_subset_tar[320];
int pl_have_data;
blob pl_jpegs[N_JPEGS];
results pl_reference;
static char pl_bin[512];

/* Starts faceri with args (NULL-terminated), stdout and stderr to files; env_kv is put in its environment. */
pid_t spawn(const char *const *args, const char *out_path, const char *err_path, const char *env_kv)
{
  const char *argv[40] = {pl_bin};
  for (int i = 0; args[i] && i < 38; i++)
    argv[i + 1] = args[i];
  pid_t pid = fork();
  if (pid == 0) {
    if (env_kv)
      putenv((char *)env_kv);
    int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
      _exit(126);
    execv(pl_bin, (char *const *)argv);
    _exit(127);
  }
  return pid;
}

void sleep_s(double s)
{
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

/* The exit code; 128 + signal when killed; -1 after a timeout (the process is then killed). */
int wait_exit(pid_t pid, double timeout_s)
{
  for (double waited = 0; waited < timeout_s; waited += 0.02) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    sleep_s(0.02);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return -1;
}

/* A worker after its coordinator ended: STOP 0 makes it exit 0; one that
 * connected after the end never got STOP, and SIGTERM ends it cleanly (0). */
int wait_stopped(pid_t pid)
{
  for (double waited = 0; waited < 10; waited += 0.05) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    sleep_s(0.05);
  }
  kill(pid, SIGTERM);
  return wait_exit(pid, 30);
}

int exited(pid_t pid, int *code)
{
  int st;
  if (waitpid(pid, &st, WNOHANG) != pid)
    return 0;
  *code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return 1;
}

char *slurp(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return strdup("");
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return strdup(buf);
}

long long json_int(const char *json, const char *name)
{
  char pat[64];
  snprintf(pat, sizeof(pat), "\"%s\":", name);
  const char *p = strstr(json, pat);
  return p ? strtoll(p + strlen(pat), NULL, 10) : -999;
}

/* Runs faceri with args to completion; returns the exit code, *out its stdout (free it). */
int run_faceri(const char *const *args, char **out, const char *tag)
{
  char o[400], e[400];
  snprintf(o, sizeof(o), "%s/%s.out", pl_dir, tag);
  snprintf(e, sizeof(e), "%s/%s.err", pl_dir, tag);
  int code = wait_exit(spawn(args, o, e, NULL), 600);
  *out = slurp(o);
  if (code != 0 && code != 3) {
    char *err = slurp(e);
    printf("\n    %s exited %d: %.2000s", tag, code, err);
    free(err);
  }
  return code;
}

int free_port(void)
{
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  int port = -1;
  if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 && getsockname(s, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (s >= 0)
    close(s);
  return port;
}

static char **read_strings(hid_t f, const char *name, int n)
{
  char **out = calloc((size_t)n + 1, sizeof(char *));
  hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
  hid_t dt = H5Dget_type(ds);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5Tget_cset(dt));
  if (n > 0 && H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
    CU_FAIL("reading a string dataset");
  for (int i = 0; i < n; i++)
    if (!out[i])
      out[i] = strdup("");
  H5Tclose(t);
  H5Tclose(dt);
  H5Dclose(ds);
  return out;
}

int read_results(const char *path, results *r)
{
  memset(r, 0, sizeof(*r));
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    return -1;
  hid_t ds = H5Dopen2(f, "embedding", H5P_DEFAULT), sp = H5Dget_space(ds);
  hsize_t dims[2] = {0, 0};
  H5Sget_simple_extent_dims(sp, dims, NULL);
  r->n = (int)dims[0];
  r->d = (int)dims[1];
  r->emb = malloc((size_t)r->n * r->d * sizeof(float) + 4);
  if (r->n)
    H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->emb);
  H5Sclose(sp);
  H5Dclose(ds);
  r->status = calloc((size_t)r->n + 1, 1);
  r->width = calloc((size_t)r->n + 1, sizeof(int32_t));
  if (r->n) {
    ds = H5Dopen2(f, "items/status", H5P_DEFAULT);
    H5Dread(ds, H5T_NATIVE_INT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->status);
    H5Dclose(ds);
    ds = H5Dopen2(f, "items/width", H5P_DEFAULT);
    H5Dread(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->width);
    H5Dclose(ds);
  }
  r->keys = read_strings(f, "items/key", r->n);
  r->errors = read_strings(f, "items/error", r->n);
  hid_t a = H5Aopen(f, "state", H5P_DEFAULT);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  char *state = NULL;
  if (a >= 0 && H5Aread(a, t, &state) >= 0 && state) {
    snprintf(r->state, sizeof(r->state), "%s", state);
    H5free_memory(state);
  }
  if (a >= 0)
    H5Aclose(a);
  H5Tclose(t);
  H5Fclose(f);
  return r->n;
}

void free_results(results *r)
{
  for (int i = 0; i < r->n; i++) {
    free(r->keys[i]);
    free(r->errors[i]);
  }
  free(r->keys);
  free(r->errors);
  free(r->status);
  free(r->width);
  free(r->emb);
  memset(r, 0, sizeof(*r));
}

int find_key(const results *r, const char *key)
{
  for (int i = 0; i < r->n; i++)
    if (!strcmp(r->keys[i], key))
      return i;
  return -1;
}

/* Same rows, keys, statuses; embeddings of ok rows within cosine 0.99999. */
void expect_same(const results *a, const results *b, const char *what)
{
  CU_ASSERT_EQUAL_FATAL(a->n, b->n);
  CU_ASSERT_EQUAL_FATAL(a->d, b->d);
  int key_diff = 0, status_diff = 0, far = 0;
  double worst = 1.0;
  for (int i = 0; i < a->n; i++) {
    key_diff += strcmp(a->keys[i], b->keys[i]) != 0;
    status_diff += a->status[i] != b->status[i];
    if (a->status[i] != 0 || b->status[i] != 0)
      continue;
    double dot = 0, na = 0, nb = 0;
    for (int j = 0; j < a->d; j++) {
      double x = a->emb[(size_t)i * a->d + j], y = b->emb[(size_t)i * b->d + j];
      dot += x * y;
      na += x * x;
      nb += y * y;
    }
    double cosv = dot / sqrt(na * nb + 1e-30);
    if (!(cosv >= 0.99999))
      far++;
    if (cosv < worst)
      worst = cosv;
  }
  printf("\n    %s: %d rows, lowest cosine %.7f", what, a->n, worst);
  CU_ASSERT_EQUAL(key_diff, 0);
  CU_ASSERT_EQUAL(status_diff, 0);
  CU_ASSERT_EQUAL(far, 0);
}

/* Every key once (the input has no duplicate member names). */
void expect_unique_keys(const results *r)
{
  int dup = 0;
  for (int i = 1; i < r->n; i++)
    dup += !strcmp(r->keys[i], r->keys[i - 1]);
  CU_ASSERT_EQUAL(dup, 0);
}

static int read_member(struct archive *a, blob *b, size_t size)
{
  b->data = malloc(size ? size : 1);
  b->size = size;
  size_t got = 0;
  while (b->data && got < size) {
    la_ssize_t n = archive_read_data(a, b->data + got, size - got);
    if (n <= 0)
      return -1;
    got += (size_t)n;
  }
  return b->data ? 0 : -1;
}

/* The first n JPEG members of src into dst (a plain tar), keeping a few in pl_jpegs[]. */
int make_subset(const char *src, const char *dst, int n)
{
  struct archive *in = archive_read_new(), *out = archive_write_new();
  archive_read_support_format_all(in);
  archive_read_support_filter_all(in);
  archive_write_set_format_ustar(out);
  int rc = archive_read_open_filename(in, src, 1 << 16) == ARCHIVE_OK && archive_write_open_filename(out, dst) == ARCHIVE_OK
               ? 0
               : -1;
  struct archive_entry *e;
  for (int k = 0; !rc && k < n && archive_read_next_header(in, &e) == ARCHIVE_OK;) {
    if (archive_entry_filetype(e) != AE_IFREG || !strstr(archive_entry_pathname(e), ".jpg"))
      continue;
    blob b;
    rc = read_member(in, &b, (size_t)archive_entry_size(e));
    if (!rc && (archive_write_header(out, e) != ARCHIVE_OK || archive_write_data(out, b.data, b.size) != (la_ssize_t)b.size))
      rc = -1;
    if (k < N_JPEGS)
      pl_jpegs[k] = b;
    else
      free(b.data);
    k++;
  }
  archive_read_free(in);
  if (archive_write_close(out) != ARCHIVE_OK)
    rc = -1;
  archive_write_free(out);
  return rc;
}

void write_file(const char *path, const void *data, size_t n)
{
  FILE *f = fopen(path, "wb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  CU_ASSERT(fwrite(data, 1, n, f) == n);
  fclose(f);
}

void tar_add(struct archive *a, const char *name, const void *data, size_t n)
{
  struct archive_entry *e = archive_entry_new();
  archive_entry_copy_pathname(e, name);
  archive_entry_set_size(e, (la_int64_t)n);
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  CU_ASSERT(archive_write_header(a, e) == ARCHIVE_OK);
  CU_ASSERT(archive_write_data(a, data, n) == (la_ssize_t)n);
  archive_entry_free(e);
}

struct archive *tar_open(const char *path, int gzip)
{
  struct archive *a = archive_write_new();
  archive_write_set_format_ustar(a); /* ustar stores name bytes as given: no charset conversion */
  if (gzip == 2) {
    CU_ASSERT(archive_write_add_filter_zstd(a) == ARCHIVE_OK);
  } else if (gzip) {
    CU_ASSERT(archive_write_add_filter_gzip(a) == ARCHIVE_OK);
  }
  CU_ASSERT(archive_write_open_filename(a, path) == ARCHIVE_OK);
  return a;
}

void tar_close(struct archive *a)
{
  CU_ASSERT(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
}

blob png_bytes(int w, int h)
{
  png_image img;
  memset(&img, 0, sizeof(img));
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32)w;
  img.height = (png_uint_32)h;
  img.format = PNG_FORMAT_RGB;
  uint8_t *px = malloc((size_t)w * h * 3);
  for (int i = 0; i < w * h * 3; i++)
    px[i] = (uint8_t)(i * 37 % 251);
  png_alloc_size_t n = 0;
  png_image_write_to_memory(&img, NULL, &n, 0, px, 0, NULL);
  blob b = {malloc(n), n};
  CU_ASSERT(png_image_write_to_memory(&img, b.data, &n, 0, px, 0, NULL) != 0);
  free(px);
  return b;
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0xEDB88320u & -(c & 1u));
  }
  return c ^ 0xFFFFFFFFu;
}

static void put_be32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* A valid-looking PNG whose IHDR claims 100000 x 100000 RGB pixels (30 GB). */
blob huge_png(void)
{
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  blob b = {calloc(1, 8 + 25 + 12 + 12 + 2), 0};
  uint8_t *p = b.data;
  memcpy(p, sig, 8);
  p += 8;
  put_be32(p, 13);
  memcpy(p + 4, "IHDR", 4);
  put_be32(p + 8, 100000);
  put_be32(p + 12, 100000);
  p[16] = 8; /* bit depth */
  p[17] = 2; /* RGB */
  put_be32(p + 21, crc32_of(p + 4, 17));
  p += 25;
  const uint8_t idat[2] = {0x78, 0x9C};
  put_be32(p, 2);
  memcpy(p + 4, "IDAT", 4);
  memcpy(p + 8, idat, 2);
  put_be32(p + 10, crc32_of(p + 4, 6));
  p += 14;
  put_be32(p, 0);
  memcpy(p + 4, "IEND", 4);
  put_be32(p + 8, crc32_of(p + 4, 4));
  p += 12;
  b.size = (size_t)(p - b.data);
  return b;
}

/* `faceri embed` of the subset: the reference every run is compared with. */
int reference_ready(void)
{
  if (pl_reference.n > 0)
    return 1;
  char out_h5[400], *out;
  snprintf(out_h5, sizeof(out_h5), "%s/embed.h5", pl_dir);
  const char *args[] = {"embed", "--json", "-b", "16", "-o", out_h5, pl_subset_tar, NULL};
  int code = run_faceri(args, &out, "embed");
  free(out);
  return code == 0 && read_results(out_h5, &pl_reference) == SUBSET;
}

void check_against_reference(const char *h5, const char *what)
{
  results r;
  CU_ASSERT_EQUAL_FATAL(read_results(h5, &r), SUBSET);
  CU_ASSERT_STRING_EQUAL(r.state, "complete");
  expect_unique_keys(&r);
  int not_ok = 0;
  for (int i = 0; i < r.n; i++)
    not_ok += r.status[i] != 0;
  CU_ASSERT_EQUAL(not_ok, 0);
  expect_same(&pl_reference, &r, what);
  free_results(&r);
}

/* Under the sanitizers on a loaded machine a process can stall for over a second (shader
 * compilation competing for the cores): heartbeats there are 5x slower, so the tests still
 * see only the deaths they cause. The order of events the tests check is unchanged. */
static const char *scaled_heartbeat(const char *hb, char *buf, size_t cap)
{
  if (!getenv("FACERI_SANITIZER_RUN"))
    return hb;
  snprintf(buf, cap, "%ld", 5 * strtol(hb, NULL, 10));
  return buf;
}

pid_t start_worker(const char *endpoint, int i, const char *hb, const char *liveness, const char *tag)
{
  char name[32], o[400], e[400], hbuf[32];
  hb = scaled_heartbeat(hb, hbuf, sizeof(hbuf));
  snprintf(name, sizeof(name), "%s-%d", tag, i);
  snprintf(o, sizeof(o), "%s/%s.out", pl_dir, name);
  snprintf(e, sizeof(e), "%s/%s.err", pl_dir, name);
  const char *args[] = {"worker", "--connect", (char *)endpoint, "-b", "8", "--decode-threads", "1",
                        "--heartbeat-ms", hb, "--liveness", liveness, "--max-reconnect-s", "30", "--name", name, NULL};
  return spawn(args, o, e, NULL);
}

pid_t start_coordinator(const char *endpoint, const char *h5, const char *hb, const char *liveness, int resume,
                               const char *env_kv, const char *tag)
{
  char o[400], e[400], hbuf[32];
  hb = scaled_heartbeat(hb, hbuf, sizeof(hbuf));
  snprintf(o, sizeof(o), "%s/%s.out", pl_dir, tag);
  snprintf(e, sizeof(e), "%s/%s.err", pl_dir, tag);
  /* Re-queued shards go first, so the next victim often holds them again: the
   * default 3 attempts would fail a shard that only ever met killed workers. */
  const char *args[] = {"coordinate", "--bind", endpoint, "--json", "--shard-size", "8", "--heartbeat-ms", hb,
                        "--liveness", liveness, "--max-attempts", "10", "-o", h5, pl_subset_tar,
                        resume ? "--resume" : NULL, NULL};
  return spawn(args, o, e, env_kv);
}

char *tag_output(const char *tag, const char *ext)
{
  char p[400];
  snprintf(p, sizeof(p), "%s/%s.%s", pl_dir, tag, ext);
  return slurp(p);
}

/* Fixtures for the bad-input run; returns the inputs to give `faceri run`. */
int make_bad_inputs(char paths[][400], int *pid_out)
{
  int n = 0, pid = (int)getpid();
  *pid_out = pid;
  char p[4096];
  snprintf(paths[n], 400, "%s/bad", pl_dir); /* a folder of bad images */
  mkdir(paths[n], 0755);
  snprintf(p, sizeof(p), "%s/trunc.jpg", paths[n]);
  write_file(p, pl_jpegs[0].data, pl_jpegs[0].size / 2);
  blob png = png_bytes(16, 16);
  for (size_t i = 12; i + 8 < png.size; i++)
    if (!memcmp(png.data + i, "IDAT", 4)) {
      size_t len = (size_t)png.data[i - 4] << 24 | (size_t)png.data[i - 3] << 16 | png.data[i - 2] << 8 | png.data[i - 1];
      png.data[i + 4 + len + 3] ^= 0x55; /* the stored CRC: the data no longer matches it */
      break;
    }
  snprintf(p, sizeof(p), "%s/badcrc.png", paths[n]);
  write_file(p, png.data, png.size);
  free(png.data);
  snprintf(p, sizeof(p), "%s/zero.jpg", paths[n]);
  write_file(p, "", 0);
  snprintf(p, sizeof(p), "%s/text.jpg", paths[n]);
  write_file(p, "these are not the pixels you are looking for\n", 45);
  blob one = png_bytes(1, 1);
  snprintf(p, sizeof(p), "%s/one.png", paths[n]);
  write_file(p, one.data, one.size);
  free(one.data);
  blob huge = huge_png();
  snprintf(p, sizeof(p), "%s/huge.png", paths[n]);
  write_file(p, huge.data, huge.size);
  free(huge.data);
  n++;
  /* A tar.gz cut at 60%. Not smaller: libarchive's format bidders read the
   * first ~48 KiB before the first member, and a cut in there fails the
   * archive before any item (also reported, but with nothing to keep). */
  snprintf(paths[n], 400, "%s/cut.tar.gz", pl_dir);
  struct archive *a = tar_open(paths[n], 1);
  for (int i = 0; i < N_JPEGS; i++) {
    snprintf(p, sizeof(p), "cut/img%02d.jpg", i);
    tar_add(a, p, pl_jpegs[i].data, pl_jpegs[i].size);
  }
  tar_close(a);
  struct stat st;
  CU_ASSERT(stat(paths[n], &st) == 0);
  CU_ASSERT(truncate(paths[n], st.st_size * 6 / 10) == 0);
  n++;
  /* Hostile member names: only ever keys, never paths. */
  snprintf(paths[n], 400, "%s/names.tar", pl_dir);
  a = tar_open(paths[n], 0);
  snprintf(p, sizeof(p), "../../pipe-escape-%d.jpg", pid);
  tar_add(a, p, pl_jpegs[1].data, pl_jpegs[1].size);
  snprintf(p, sizeof(p), "/tmp/pipe-abs-escape-%d.jpg", pid);
  tar_add(a, p, pl_jpegs[2].data, pl_jpegs[2].size);
  snprintf(p, sizeof(p), "a/../../../pipe-up-%d.jpg", pid);
  tar_add(a, p, pl_jpegs[3].data, pl_jpegs[3].size);
  tar_add(a, "raw/\xff\xfe\x80-bytes.jpg", pl_jpegs[4].data, pl_jpegs[4].size);
  tar_close(a);
  n++;
  snprintf(paths[n], 400, "%s/empty.tar", pl_dir);
  tar_close(tar_open(paths[n], 0));
  n++;
  snprintf(paths[n], 400, "%s/emptydir", pl_dir);
  mkdir(paths[n], 0755);
  n++;
  snprintf(paths[n], 400, "%s/notes", pl_dir); /* a folder with no image */
  mkdir(paths[n], 0755);
  snprintf(p, sizeof(p), "%s/readme.txt", paths[n]);
  write_file(p, "no faces here\n", 14);
  n++;
  return n;
}

void expect_row(const results *r, const char *key_end, int status, const char *cause)
{
  int found = -1;
  size_t ke = strlen(key_end);
  for (int i = 0; i < r->n; i++) {
    size_t kl = strlen(r->keys[i]);
    if (kl >= ke && !memcmp(r->keys[i] + kl - ke, key_end, ke)) {
      CU_ASSERT_EQUAL(found, -1); /* one row only */
      found = i;
    }
  }
  CU_ASSERT_FATAL(found >= 0);
  printf("\n    %-24.24s status %d: %s", key_end, r->status[found], r->errors[found]);
  CU_ASSERT_EQUAL(r->status[found], status);
  if (!cause)
    return;
  const char *base = strrchr(key_end, '/') ? strrchr(key_end, '/') + 1 : key_end;
  CU_ASSERT_PTR_NOT_NULL(strstr(r->errors[found], base));
  CU_ASSERT_PTR_NOT_NULL(strstr(r->errors[found], cause));
}


int have_model(void)
{
  struct stat st;
  return stat(fr_model_default_path(), &st) == 0;
}

int pl_suite_init(const char *faceri_bin, const char *data_dir, const char *tag)
{
  snprintf(pl_bin, sizeof(pl_bin), "%s", faceri_bin);
  snprintf(pl_dir, sizeof(pl_dir), "/tmp/faceri-%s-XXXXXX", tag);
  if (!mkdtemp(pl_dir))
    return 1;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  char src[512];
  snprintf(src, sizeof(src), "%s/lfw-min5.tar", data_dir);
  snprintf(pl_subset_tar, sizeof(pl_subset_tar), "%s/lfw-subset.tar", pl_dir);
  struct stat st;
  pl_have_data = stat(src, &st) == 0 && make_subset(src, pl_subset_tar, SUBSET) == 0;
  return 0;
}

int pl_suite_clean(void)
{
  free_results(&pl_reference);
  for (int i = 0; i < N_JPEGS; i++)
    free(pl_jpegs[i].data);
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", pl_dir);
  return system(cmd) == 0 ? 0 : 1;
}
