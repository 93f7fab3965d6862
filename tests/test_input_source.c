/* The input source: folders, archives (written here with libarchive's own
 * writer), their order, keys, labels and bytes, and how it fails: missing
 * paths, truncated archives, oversized members, symlink loops. Ends with the
 * real ORL archive when ../shared/data is there. */
#include "faceri/image.h"
#include "faceri/input_list.h"
#include "faceri/input_source.h"
#include "test_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[256];

static int setup(void)
{
  snprintf(tmp, sizeof(tmp), "/tmp/faceri_input_XXXXXX");
  return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void)
{
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
  return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *rel, const void *data, size_t n)
{
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", tmp, rel);
  FILE *f = fopen(path, "wb");
  CU_ASSERT_FATAL(f != NULL);
  CU_ASSERT_FATAL(fwrite(data, 1, n, f) == n);
  fclose(f);
}

static void make_dir(const char *rel)
{
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", tmp, rel);
  CU_ASSERT_FATAL(mkdir(path, 0755) == 0);
}

/* A tiny valid PGM whose single pixel is `v`, so every file's bytes differ. */
static size_t pgm(uint8_t v, char *out)
{
  int n = sprintf(out, "P5 1 1 255\n");
  out[n] = (char)v;
  return (size_t)n + 1;
}

typedef struct expect {
  const char *key, *label;
  int is_image;
  uint8_t pixel; /* last byte of an image */
} expect;

/* Iterates the whole source and checks it against `want` (n items). */
static void check_items(fr_input_source *src, const expect *want, int n)
{
  fr_input_item it;
  fr_error err = {0};
  int i = 0, r;
  while ((r = fr_input_source_next(src, &it, &err)) == 1) {
    if (i < n) {
      if (strcmp(it.key, want[i].key) != 0)
        printf("\n  item %d: key '%s', expected '%s'", i, it.key, want[i].key);
      CU_ASSERT_STRING_EQUAL(it.key, want[i].key);
      CU_ASSERT_STRING_EQUAL(it.label, want[i].label);
      CU_ASSERT_EQUAL(it.status, FR_OK);
      CU_ASSERT_EQUAL(it.is_image, want[i].is_image);
      if (want[i].is_image && it.size > 0)
        CU_ASSERT_EQUAL(it.bytes[it.size - 1], want[i].pixel);
    }
    i++;
  }
  if (r < 0)
    printf("\n  unexpected error: %s", err.message);
  CU_ASSERT_EQUAL(r, 0);
  CU_ASSERT_EQUAL(i, n);
}

static void test_folder_walk(void)
{
  char b[64];
  make_dir("faces");
  make_dir("faces/a");
  make_dir("faces/a/sub");
  make_dir("faces/b");
  write_file("faces/b/2.pgm", b, pgm(2, b));
  write_file("faces/a/sub/3.pgm", b, pgm(3, b));
  write_file("faces/a/1.pgm", b, pgm(1, b));
  write_file("faces/a/0.pgm", b, pgm(0, b));
  write_file("faces/README.txt", "not a face\n", 11);
  write_file("faces/c.txt", "", 0);
  char root[512], slash[512];
  snprintf(root, sizeof(root), "%s/faces", tmp);
  snprintf(slash, sizeof(slash), "%s/faces//", tmp);
  char k[6][600];
  const char *rel[6] = {"README.txt", "a/0.pgm", "a/1.pgm", "a/sub/3.pgm", "b/2.pgm", "c.txt"};
  for (int i = 0; i < 6; i++)
    snprintf(k[i], sizeof(k[i]), "%s/%s", root, rel[i]);
  expect want[6] = {{k[0], "faces", 0, 0}, {k[1], "a", 1, 0},   {k[2], "a", 1, 1},
                    {k[3], "sub", 1, 3},   {k[4], "b", 1, 2},   {k[5], "faces", 0, 0}};
  for (int pass = 0; pass < 2; pass++) {
    const char *paths[1] = {pass ? slash : root};
    fr_input_source *src;
    fr_error err = {0};
    CU_ASSERT_EQUAL_FATAL(fr_input_source_open(paths, 1, &src, &err), 0);
    check_items(src, want, 6);
    fr_input_source_close(src);
  }
}

/* Writes an archive with libarchive: members "set/id1/a.pgm", "set/id2/b.pgm",
 * "set/README", a folder entry and a symlink entry (both must be skipped). */
static int write_archive(const char *rel, int format, int filter)
{
  char path[512], data[64];
  snprintf(path, sizeof(path), "%s/%s", tmp, rel);
  struct archive *a = archive_write_new();
  archive_write_set_format(a, format);
  if (filter >= 0 && archive_write_add_filter(a, filter) != ARCHIVE_OK) {
    archive_write_free(a);
    return -1;
  }
  CU_ASSERT_FATAL(archive_write_open_filename(a, path) == ARCHIVE_OK);
  const char *names[5] = {"set/", "set/id1/a.pgm", "set/id2/b.pgm", "set/README", "set/link"};
  for (int i = 0; i < 5; i++) {
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, names[i]);
    archive_entry_set_perm(e, 0644);
    size_t n = 0;
    if (i == 0) {
      archive_entry_set_filetype(e, AE_IFDIR);
    } else if (i == 4) {
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_symlink(e, "id1/a.pgm");
    } else {
      archive_entry_set_filetype(e, AE_IFREG);
      n = i == 3 ? (size_t)sprintf(data, "Read me.\n") : pgm((uint8_t)(10 * i), data);
      archive_entry_set_size(e, (la_int64_t)n);
    }
    CU_ASSERT_FATAL(archive_write_header(a, e) == ARCHIVE_OK);
    if (n)
      CU_ASSERT_FATAL(archive_write_data(a, data, n) == (la_ssize_t)n);
    archive_entry_free(e);
  }
  CU_ASSERT_FATAL(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
  return 0;
}

static void test_archives(void)
{
  struct {
    const char *name;
    int format, filter;
  } kinds[] = {{"x.tar", ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, -1},
               {"x.tar.gz", ARCHIVE_FORMAT_TAR_USTAR, ARCHIVE_FILTER_GZIP},
               {"x.zip", ARCHIVE_FORMAT_ZIP, -1},
               {"x.tar.zst", ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FILTER_ZSTD},
               {"x.tar.xz", ARCHIVE_FORMAT_TAR_GNUTAR, ARCHIVE_FILTER_XZ}};
  for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
    if (write_archive(kinds[k].name, kinds[k].format, kinds[k].filter)) {
      printf("\n  (this libarchive cannot write %s; skipped)", kinds[k].name);
      continue;
    }
    char path[512], k1[600], k2[600], k3[600];
    snprintf(path, sizeof(path), "%s/%s", tmp, kinds[k].name);
    snprintf(k1, sizeof(k1), "%s:set/id1/a.pgm", path);
    snprintf(k2, sizeof(k2), "%s:set/id2/b.pgm", path);
    snprintf(k3, sizeof(k3), "%s:set/README", path);
    expect want[3] = {{k1, "id1", 1, 10}, {k2, "id2", 1, 20}, {k3, "set", 0, 0}};
    const char *paths[1] = {path};
    fr_input_source *src;
    fr_error err = {0};
    CU_ASSERT_EQUAL_FATAL(fr_input_source_open(paths, 1, &src, &err), 0);
    check_items(src, want, 3);
    fr_input_source_close(src);
  }
}

/* Several inputs in one source: a loose image, a text file, an archive inside
 * a folder; input_index says where each came from. */
static void test_mixed_inputs(void)
{
  char b[64], img[512], txt[512], dir[512];
  make_dir("mixed");
  make_dir("mixed/shards");
  write_file("mixed/one.pgm", b, pgm(7, b));
  write_file("mixed/notes.txt", "hello\n", 6);
  CU_ASSERT_FATAL(write_archive("mixed/shards/s0.tar", ARCHIVE_FORMAT_TAR_USTAR, -1) == 0);
  snprintf(img, sizeof(img), "%s/mixed/one.pgm", tmp);
  snprintf(txt, sizeof(txt), "%s/mixed/notes.txt", tmp);
  snprintf(dir, sizeof(dir), "%s/mixed/shards", tmp);
  const char *paths[3] = {img, txt, dir};
  fr_input_source *src;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_input_source_open(paths, 3, &src, &err), 0);
  fr_input_item it;
  int idx[5], n = 0;
  while (fr_input_source_next(src, &it, &err) == 1 && n < 5) {
    idx[n] = it.input_index;
    if (n == 0) {
      CU_ASSERT_STRING_EQUAL(it.key, img);
      CU_ASSERT_STRING_EQUAL(it.label, "mixed");
      CU_ASSERT(it.is_image && it.size == 12 && it.bytes[11] == 7);
    }
    if (n == 1)
      CU_ASSERT(!it.is_image && it.size == 6 && memcmp(it.bytes, "hello\n", 6) == 0);
    if (n == 2) {
      char want[700];
      snprintf(want, sizeof(want), "%s/s0.tar:set/id1/a.pgm", dir);
      CU_ASSERT_STRING_EQUAL(it.key, want);
    }
    n++;
  }
  CU_ASSERT_EQUAL(n, 5);
  CU_ASSERT(idx[0] == 0 && idx[1] == 1 && idx[2] == 2 && idx[4] == 2);
  fr_input_source_close(src);
}

/* An mtree manifest names files on the local disk: it must come out as one
 * plain non-image item, never as the files it lists. */
static void test_mtree_not_followed(void)
{
  const char *manifest = "#mtree\n./passwd type=file contents=/etc/passwd\n";
  write_file("manifest.mtree", manifest, strlen(manifest));
  char path[512];
  snprintf(path, sizeof(path), "%s/manifest.mtree", tmp);
  const char *paths[1] = {path};
  fr_input_source *src;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_input_source_open(paths, 1, &src, &err), 0);
  fr_input_item it;
  CU_ASSERT_EQUAL_FATAL(fr_input_source_next(src, &it, &err), 1);
  CU_ASSERT_STRING_EQUAL(it.key, path);
  CU_ASSERT(!it.is_image && it.size == strlen(manifest));
  CU_ASSERT_EQUAL(fr_input_source_next(src, &it, &err), 0);
  fr_input_source_close(src);
}

static void test_missing_path(void)
{
  char missing[512];
  snprintf(missing, sizeof(missing), "%s/no/such/faces.tar", tmp);
  const char *paths[2] = {tmp, missing};
  fr_input_source *src = (fr_input_source *)1;
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_input_source_open(paths, 2, &src, &err), FR_ERR_NOT_FOUND);
  CU_ASSERT_PTR_NULL(src);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, missing));
}

/* A tar.gz cut in the middle: the members before the cut are delivered, then
 * one failed item naming the archive and the member; the next input still runs. */
static void test_truncated_archive(void)
{
  char path[512], after[512], data[20000];
  snprintf(path, sizeof(path), "%s/cut.tar.gz", tmp);
  struct archive *a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_add_filter_gzip(a);
  CU_ASSERT_FATAL(archive_write_open_filename(a, path) == ARCHIVE_OK);
  uint32_t s = 1;
  for (int m = 0; m < 8; m++) {
    for (size_t i = 0; i < sizeof(data); i++) /* incompressible, so the cut lands mid-archive */
      data[i] = (char)((s = s * 1103515245u + 12345u) >> 16);
    char name[64];
    snprintf(name, sizeof(name), "p/id%d/%d.bin", m, m);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, sizeof(data));
    CU_ASSERT_FATAL(archive_write_header(a, e) == ARCHIVE_OK);
    CU_ASSERT_FATAL(archive_write_data(a, data, sizeof(data)) == (la_ssize_t)sizeof(data));
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  struct stat st;
  CU_ASSERT_FATAL(stat(path, &st) == 0);
  CU_ASSERT_FATAL(truncate(path, st.st_size / 2) == 0);
  char b[64];
  write_file("after.pgm", b, pgm(9, b));
  snprintf(after, sizeof(after), "%s/after.pgm", tmp);

  const char *paths[2] = {path, after};
  fr_input_source *src;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_input_source_open(paths, 2, &src, &err), 0);
  fr_input_item it;
  int delivered = 0, r;
  while ((r = fr_input_source_next(src, &it, &err)) == 1 && !it.input_failed) {
    CU_ASSERT_EQUAL(it.status, FR_OK);
    CU_ASSERT_EQUAL(it.size, sizeof(data));
    delivered++;
  }
  /* The damage is one failed item naming the archive, the member and the cause. */
  CU_ASSERT_EQUAL_FATAL(r, 1);
  CU_ASSERT(delivered >= 1 && delivered < 8);
  CU_ASSERT_EQUAL(it.status, FR_ERR_FORMAT);
  CU_ASSERT_PTR_NULL(it.bytes);
  CU_ASSERT_EQUAL(it.input_index, 0);
  char member[64], key[600];
  snprintf(member, sizeof(member), "member 'p/id%d/%d.bin'", delivered, delivered);
  snprintf(key, sizeof(key), "%s:p/id%d/%d.bin", path, delivered, delivered);
  if (!strstr(it.error, member))
    printf("\n  error was: %s", it.error);
  CU_ASSERT_PTR_NOT_NULL(strstr(it.error, path));
  CU_ASSERT_PTR_NOT_NULL(strstr(it.error, member));
  CU_ASSERT_STRING_EQUAL(it.key, key);
  CU_ASSERT_EQUAL(fr_input_source_next(src, &it, &err), 1);
  CU_ASSERT_STRING_EQUAL(it.key, after);
  CU_ASSERT_EQUAL(it.input_index, 1);
  CU_ASSERT_EQUAL(fr_input_source_next(src, &it, &err), 0);
  fr_input_source_close(src);
}

static void test_member_cap(void)
{
  CU_ASSERT_FATAL(write_archive("cap.zip", ARCHIVE_FORMAT_ZIP, -1) == 0);
  char path[512];
  snprintf(path, sizeof(path), "%s/cap.zip", tmp);
  const char *paths[1] = {path};
  fr_input_source *src;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_input_source_open(paths, 1, &src, &err), 0);
  fr_input_source_set_max_member_bytes(src, 11); /* the PGMs are 12 bytes, the README 9 */
  fr_input_item it;
  for (int i = 0; i < 3; i++) {
    CU_ASSERT_EQUAL_FATAL(fr_input_source_next(src, &it, &err), 1);
    if (i < 2) {
      CU_ASSERT_EQUAL(it.status, FR_ERR_UNSUPPORTED);
      CU_ASSERT_PTR_NULL(it.bytes);
      CU_ASSERT_PTR_NOT_NULL(strstr(it.error, it.key));
      CU_ASSERT_PTR_NOT_NULL(strstr(it.error, "size cap"));
    } else {
      CU_ASSERT_EQUAL(it.status, FR_OK);
      CU_ASSERT_EQUAL(it.size, 9);
    }
  }
  CU_ASSERT_EQUAL(fr_input_source_next(src, &it, &err), 0);
  fr_input_source_close(src);
}

/* A link back up the tree, a link to itself and a dangling one each become
 * one failed item naming the path; the walk terminates. */
static void test_symlinks(void)
{
  char b[64], root[512], p[600];
  make_dir("links");
  make_dir("links/d");
  write_file("links/d/f.pgm", b, pgm(5, b));
  snprintf(root, sizeof(root), "%s/links", tmp);
  snprintf(p, sizeof(p), "%s/d/up", root);
  CU_ASSERT_FATAL(symlink("..", p) == 0);
  snprintf(p, sizeof(p), "%s/self", root);
  CU_ASSERT_FATAL(symlink("self", p) == 0);
  snprintf(p, sizeof(p), "%s/dangling", root);
  CU_ASSERT_FATAL(symlink("nowhere", p) == 0);
  const char *paths[1] = {root};
  fr_input_source *src;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_input_source_open(paths, 1, &src, &err), 0);
  fr_input_item it;
  int ok = 0, failed = 0, r;
  while ((r = fr_input_source_next(src, &it, &err)) == 1) {
    if (it.status == FR_OK) {
      ok++;
      CU_ASSERT(it.is_image);
    } else {
      failed++;
      CU_ASSERT_PTR_NOT_NULL(strstr(it.error, it.key));
    }
  }
  CU_ASSERT_EQUAL(r, 0);
  CU_ASSERT_EQUAL(ok, 1);
  CU_ASSERT_EQUAL(failed, 3);
  fr_input_source_close(src);
}

static void test_unreadable_file(void)
{
  if (geteuid() == 0)
    TEST_SKIP("running as root: file permissions do not stop reads");
  char b[64], root[512];
  make_dir("locked");
  write_file("locked/a.pgm", b, pgm(1, b));
  write_file("locked/b.pgm", b, pgm(2, b));
  snprintf(root, sizeof(root), "%s/locked/a.pgm", tmp);
  CU_ASSERT_FATAL(chmod(root, 0) == 0);
  snprintf(root, sizeof(root), "%s/locked", tmp);
  const char *paths[1] = {root};
  fr_input_source *src;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_input_source_open(paths, 1, &src, &err), 0);
  fr_input_item it;
  CU_ASSERT_EQUAL_FATAL(fr_input_source_next(src, &it, &err), 1);
  CU_ASSERT_EQUAL(it.status, FR_ERR_IO);
  CU_ASSERT_PTR_NOT_NULL(strstr(it.error, "a.pgm"));
  CU_ASSERT_EQUAL_FATAL(fr_input_source_next(src, &it, &err), 1);
  CU_ASSERT_EQUAL(it.status, FR_OK);
  CU_ASSERT_EQUAL(fr_input_source_next(src, &it, &err), 0);
  fr_input_source_close(src);
}

static void test_orl_archive(void)
{
  char path[1024];
  snprintf(path, sizeof(path), "%s/orl.tar", test_data_dir());
  if (access(path, R_OK) != 0)
    TEST_SKIP("%s not found", path);
  const char *paths[1] = {path};
  fr_input_source *src;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_input_source_open(paths, 1, &src, &err), 0);
  fr_input_item it;
  int images = 0, others = 0, decoded = 0, r;
  char labels[64][16];
  int nlabels = 0;
  while ((r = fr_input_source_next(src, &it, &err)) == 1) {
    CU_ASSERT_EQUAL(it.status, FR_OK);
    if (!it.is_image) {
      others++;
      CU_ASSERT_PTR_NOT_NULL(strstr(it.key, "orl.tar:orl/README"));
      continue;
    }
    images++;
    int seen = 0;
    for (int i = 0; i < nlabels; i++)
      seen |= strcmp(labels[i], it.label) == 0;
    if (!seen && nlabels < 64)
      snprintf(labels[nlabels++], sizeof(labels[0]), "%s", it.label);
    fr_image img;
    if (fr_image_decode(it.bytes, it.size, it.key, &img, &err) == 0 && img.width == 92 && img.height == 112)
      decoded++;
    fr_image_free(&img);
  }
  CU_ASSERT_EQUAL(r, 0);
  CU_ASSERT_EQUAL(images, 400);
  CU_ASSERT_EQUAL(decoded, 400);
  CU_ASSERT_EQUAL(others, 1);
  CU_ASSERT_EQUAL(nlabels, 40);
  fr_input_source_close(src);
}

/* ---- INPUT expansion (fr_input_list_expand) ---- */

static void expect_list(const char *const *args, int n, const char *const *want, int n_want)
{
  fr_input_list l;
  fr_error err = {0};
  int rc = fr_input_list_expand(args, n, &l, &err);
  if (rc)
    printf("\n  %s", err.message);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(l.n, n_want);
  for (int i = 0; i < l.n && i < n_want; i++) {
    if (strcmp(l.paths[i], want[i]) != 0)
      printf("\n  path %d: '%s', expected '%s'", i, l.paths[i], want[i]);
    CU_ASSERT_STRING_EQUAL(l.paths[i], want[i]);
  }
  fr_input_list_free(&l);
}

static void expect_list_error(const char *arg, int code, const char *names)
{
  fr_input_list l;
  fr_error err = {0};
  const char *args[1] = {arg};
  CU_ASSERT_EQUAL(fr_input_list_expand(args, 1, &l, &err), code);
  CU_ASSERT_EQUAL(l.n, 0);
  if (!strstr(err.message, names))
    printf("\n  error was: %s", err.message);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, names));
}

static void test_list_file(void)
{
  char b[64];
  make_dir("lists");
  make_dir("lists/sub");
  write_file("lists/a.pgm", b, pgm(1, b));
  write_file("lists/sub/b.pgm", b, pgm(2, b));
  const char *text = "# shards for tonight\n\n  a.pgm  \r\nsub/b.pgm\n   # indented comment\n/abs/elsewhere.tar";
  write_file("lists/in.txt", text, strlen(text));
  char arg[600], a[600], sb[600], lit[600];
  snprintf(arg, sizeof(arg), "@%s/lists/in.txt", tmp);
  snprintf(a, sizeof(a), "%s/lists/a.pgm", tmp);
  snprintf(sb, sizeof(sb), "%s/lists/sub/b.pgm", tmp);
  snprintf(lit, sizeof(lit), "%s/lists/sub", tmp);
  /* List lines are literal and keep their place among the other arguments. */
  const char *args[3] = {lit, arg, lit};
  const char *want[5] = {lit, a, sb, "/abs/elsewhere.tar", lit};
  expect_list(args, 3, want, 5);
  /* The list's paths feed the source: the items are the listed files. */
  fr_input_list l;
  fr_error err = {0};
  const char *one[1] = {arg};
  CU_ASSERT_EQUAL_FATAL(fr_input_list_expand(one, 1, &l, &err), 0);
  fr_input_source *src;
  CU_ASSERT_EQUAL(fr_input_source_open((const char *const *)l.paths, 2, &src, &err), 0);
  expect items[2] = {{a, "lists", 1, 1}, {sb, "sub", 1, 2}};
  check_items(src, items, 2);
  fr_input_source_close(src);
  fr_input_list_free(&l);

  char missing[600];
  snprintf(missing, sizeof(missing), "@%s/lists/nope.txt", tmp);
  expect_list_error(missing, FR_ERR_NOT_FOUND, "nope.txt");
  write_file("lists/empty.txt", "# nothing\n\n", 11);
  snprintf(missing, sizeof(missing), "@%s/lists/empty.txt", tmp);
  expect_list_error(missing, FR_ERR_INVALID, "empty.txt");
  expect_list_error("@", FR_ERR_INVALID, "'@'");
}

static void test_globs(void)
{
  make_dir("g");
  const char *names[] = {"g/s2.tar", "g/s10.tar", "g/s1.tar", "g/star*.tar", "g/other.zip"};
  for (int i = 0; i < 5; i++)
    write_file(names[i], "x", 1);
  char pat[600], w[5][600];
  snprintf(pat, sizeof(pat), "%s/g/s*.tar", tmp);
  const char *order[] = {"s1.tar", "s10.tar", "s2.tar", "star*.tar"}; /* strcmp order */
  for (int i = 0; i < 4; i++)
    snprintf(w[i], sizeof(w[i]), "%s/g/%s", tmp, order[i]);
  const char *args[1] = {pat};
  const char *want[4] = {w[0], w[1], w[2], w[3]};
  expect_list(args, 1, want, 4);
  /* A path that exists is itself, even with pattern characters in its name. */
  const char *lit[1] = {w[3]};
  expect_list(lit, 1, want + 3, 1);
  snprintf(pat, sizeof(pat), "%s/g/*.tgz", tmp);
  expect_list_error(pat, FR_ERR_NOT_FOUND, pat);
  /* Brace alternatives, each then globbed. */
  snprintf(pat, sizeof(pat), "%s/g/{s1,o}*", tmp);
  snprintf(w[4], sizeof(w[4]), "%s/g/other.zip", tmp);
  const char *want2[3] = {w[0], w[1], w[4]};
  expect_list(args, 1, want2, 3);
}

static void test_brace_ranges(void)
{
  const char *a1[1] = {"d/shard-{000..003}.tar"};
  const char *w1[4] = {"d/shard-000.tar", "d/shard-001.tar", "d/shard-002.tar", "d/shard-003.tar"};
  expect_list(a1, 1, w1, 4);
  const char *a2[1] = {"s{9..11}"};
  const char *w2[3] = {"s9", "s10", "s11"};
  expect_list(a2, 1, w2, 3);
  const char *a3[1] = {"s{03..1}"};
  const char *w3[3] = {"s03", "s02", "s01"};
  expect_list(a3, 1, w3, 3);
  const char *a4[2] = {"{a,b}-{1..2}", "x{y}z"};
  const char *w4[5] = {"a-1", "a-2", "b-1", "b-2", "x{y}z"};
  expect_list(a4, 2, w4, 5);
  const char *a5[1] = {"p/{train,val/{0..1}}.tar"};
  const char *w5[3] = {"p/train.tar", "p/val/0.tar", "p/val/1.tar"};
  expect_list(a5, 1, w5, 3);
  expect_list_error("big-{0..99999999999}.tar", FR_ERR_INVALID, "big-{0..99999999999}.tar");
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("input_source", setup, teardown);
  CU_add_test(s, "folder walk: sorted, recursive, keys, labels", test_folder_walk);
  CU_add_test(s, "tar, tar.gz, zip, tar.zst, tar.xz archives", test_archives);
  CU_add_test(s, "several inputs: image, text file, folder of archives", test_mixed_inputs);
  CU_add_test(s, "mtree manifests are not followed", test_mtree_not_followed);
  CU_add_test(s, "missing path is an error naming it", test_missing_path);
  CU_add_test(s, "truncated tar.gz: a failed item names archive and member", test_truncated_archive);
  CU_add_test(s, "member over the size cap", test_member_cap);
  CU_add_test(s, "symlink loops and dangling links", test_symlinks);
  CU_add_test(s, "unreadable file", test_unreadable_file);
  CU_add_test(s, "@list files: comments, blank lines, paths relative to the list", test_list_file);
  CU_add_test(s, "globs: sorted by bytes, no match is an error, existing names literal", test_globs);
  CU_add_test(s, "WebDataset brace ranges and lists", test_brace_ranges);
  CU_add_test(s, "real ORL archive: 400 images, README, 40 labels", test_orl_archive);
  return test_run_all();
}
