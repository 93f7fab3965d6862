/* The input source of `faceri embed`: image files, folders and archives,
 * flattened into one deterministic stream of items.
 *
 * State is a stack: the input paths, then the folders being walked (each with
 * its sorted entry names), then at most one open archive. next() always works
 * on the innermost level and pops it when it is exhausted. */
#include "faceri/input_source.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faceri/image.h"
#include "faceri/log.h"

#define ARCHIVE_BLOCK_BYTES (64 * 1024)

/* libarchive's "not an archive" errno; its header leaves the macro private. */
#ifdef EFTYPE
#define INPUT_ERRNO_NOT_ARCHIVE EFTYPE
#else
#define INPUT_ERRNO_NOT_ARCHIVE EILSEQ
#endif

typedef struct dir_frame {
  char *path; /* as it appears in keys: the folder argument, then "/name" per level */
  char **names;
  size_t count, next;
  dev_t dev; /* identity of the folder, to notice a symlink leading back up */
  ino_t ino;
} dir_frame;

struct fr_input_source {
  char **paths;
  int npaths, next_path, current_input;
  size_t max_member;

  dir_frame *frames;
  size_t nframes, frames_cap;

  struct archive *archive;
  char *archive_path;
  char *last_member; /* for errors that happen between two members */

  uint8_t *buf; /* the current item's bytes */
  size_t buf_cap;
  char *key;
  char label[256];
  char error[sizeof(((fr_error *)0)->message)];
};

/* ---------------------------------------------------------------- helpers */

static char *dup_string(const char *s)
{
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

static char *join_path(const char *dir, const char *name, char sep)
{
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 2);
  if (!p)
    return NULL;
  memcpy(p, dir, a);
  size_t at = a;
  if (!(sep == '/' && a > 0 && dir[a - 1] == '/'))
    p[at++] = sep;
  memcpy(p + at, name, b + 1);
  return p;
}

/* The name of the folder that holds `path`: "s1" for "orl/s1/1.pgm". */
static void label_of(const char *path, char *label, size_t cap)
{
  label[0] = '\0';
  size_t end = strlen(path);
  while (end > 0 && path[end - 1] == '/')
    end--;
  while (end > 0 && path[end - 1] != '/') /* drop the file name */
    end--;
  while (end > 0 && path[end - 1] == '/')
    end--;
  size_t start = end;
  while (start > 0 && path[start - 1] != '/')
    start--;
  size_t n = end - start;
  if (n == 0 || (n == 1 && path[start] == '.') || (n == 2 && path[start] == '.' && path[start + 1] == '.'))
    return;
  if (n >= cap)
    n = cap - 1;
  memcpy(label, path + start, n);
  label[n] = '\0';
}

static int ensure_buf(fr_input_source *src, size_t need, const char *what, fr_error *err)
{
  if (need <= src->buf_cap)
    return FR_OK;
  size_t cap = src->buf_cap ? src->buf_cap : 1 << 16;
  while (cap < need)
    cap *= 2;
  uint8_t *p = realloc(src->buf, cap);
  if (!p)
    return fr_error_set(err, FR_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, cap);
  src->buf = p;
  src->buf_cap = cap;
  return FR_OK;
}

/* Fills *item; `key` is taken over. An item with status != FR_OK has no bytes. */
static int emit(fr_input_source *src, fr_input_item *item, char *key, const char *label_path, size_t size,
                fr_status status)
{
  free(src->key);
  src->key = key;
  label_of(label_path, src->label, sizeof(src->label));
  memset(item, 0, sizeof(*item));
  item->key = key;
  item->label = src->label;
  item->input_index = src->current_input;
  item->status = status;
  if (status == FR_OK) {
    src->error[0] = '\0';
    item->bytes = src->buf ? src->buf : (const uint8_t *)"";
    item->size = size;
    item->is_image = fr_image_is_probably_image(item->bytes, size);
  }
  item->error = src->error;
  return 1;
}

static int emit_error(fr_input_source *src, fr_input_item *item, char *key, const char *label_path,
                      fr_status status, const char *fmt, const char *detail)
{
  snprintf(src->error, sizeof(src->error), fmt, key, detail);
  return emit(src, item, key, label_path, 0, status);
}

/* ---------------------------------------------------------------- archives */

static void close_archive(fr_input_source *src)
{
  if (src->archive)
    archive_read_free(src->archive);
  src->archive = NULL;
  free(src->archive_path);
  src->archive_path = NULL;
  free(src->last_member);
  src->last_member = NULL;
}

/* Opens `path` as an archive. Returns 1 if it is one (now current), 0 if
 * libarchive does not recognise the format, -1 on an I/O error. */
static int open_archive(fr_input_source *src, const char *path, fr_error *err)
{
  struct archive *a = archive_read_new();
  if (!a)
    return fr_error_set(err, FR_ERR_NOMEM, "%s: cannot allocate an archive reader", path), -1;
  archive_read_support_filter_all(a);
  /* archive_read_support_format_all minus mtree: its bidder takes short text
   * files ("hello") for manifests, and an mtree manifest names files on the
   * local disk, which an input archive must never make us read. */
  archive_read_support_format_7zip(a);
  archive_read_support_format_ar(a);
  archive_read_support_format_cab(a);
  archive_read_support_format_cpio(a);
  archive_read_support_format_iso9660(a);
  archive_read_support_format_lha(a);
  archive_read_support_format_rar(a);
  archive_read_support_format_rar5(a);
  archive_read_support_format_tar(a);
  archive_read_support_format_warc(a);
  archive_read_support_format_xar(a);
  archive_read_support_format_zip(a);
  if (archive_read_open_filename(a, path, ARCHIVE_BLOCK_BYTES) != ARCHIVE_OK) {
    int format_error = archive_errno(a) == INPUT_ERRNO_NOT_ARCHIVE;
    if (!format_error)
      fr_error_set(err, FR_ERR_IO, "%s: %s", path, archive_error_string(a));
    archive_read_free(a);
    return format_error ? 0 : -1;
  }
  src->archive = a;
  src->archive_path = dup_string(path);
  if (!src->archive_path) {
    close_archive(src);
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", path), -1;
  }
  return 1;
}

/* The archive failed part-way: the damage becomes one failed item (the member
 * being read, or the archive itself when it broke between members) and the
 * rest of the archive is skipped. Takes over `key`. */
static int archive_damaged(fr_input_source *src, fr_input_item *item, char *key, const char *member)
{
  char what[600];
  if (member)
    snprintf(what, sizeof(what), "member '%s'", member);
  else if (src->last_member)
    snprintf(what, sizeof(what), "after member '%s'", src->last_member);
  else
    snprintf(what, sizeof(what), "first member");
  const char *why = archive_error_string(src->archive);
  snprintf(src->error, sizeof(src->error), "%s: %s: %s; the rest of the archive is skipped", src->archive_path,
           what, why ? why : "read error");
  char *label_path = member ? dup_string(member) : NULL;
  close_archive(src);
  emit(src, item, key, label_path ? label_path : "", 0, FR_ERR_FORMAT);
  free(label_path);
  item->input_failed = 1;
  return 1;
}

/* The key of a damage item outside any member: the archive path itself. */
static int archive_damaged_between(fr_input_source *src, fr_input_item *item, fr_error *err)
{
  char *key = dup_string(src->archive_path);
  if (!key) {
    close_archive(src);
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory reporting a damaged archive"), -1;
  }
  return archive_damaged(src, item, key, NULL);
}

/* Reads the current member's data into buf: FR_OK, or FR_ERR_UNSUPPORTED
 * when it is over the cap (data skipped), FR_ERR_NOMEM with err set, or -1
 * when the archive failed (the caller reports the damage). */
static int read_member(fr_input_source *src, const char *member, la_int64_t declared, size_t *size, fr_error *err)
{
  *size = 0;
  if (declared >= 0 && (uint64_t)declared > src->max_member) {
    if (archive_read_data_skip(src->archive) != ARCHIVE_OK)
      return -1;
    return FR_ERR_UNSUPPORTED;
  }
  size_t want = declared >= 0 ? (size_t)declared + 1 : 1 << 16;
  for (;;) {
    if (ensure_buf(src, want, member, err))
      return FR_ERR_NOMEM;
    size_t room = src->buf_cap - *size;
    la_ssize_t got = archive_read_data(src->archive, src->buf + *size, room);
    if (got < 0)
      return -1;
    if (got == 0)
      return FR_OK;
    *size += (size_t)got;
    if (*size > src->max_member) {
      if (archive_read_data_skip(src->archive) != ARCHIVE_OK)
        return -1;
      return FR_ERR_UNSUPPORTED;
    }
    if (*size == src->buf_cap)
      want = src->buf_cap * 2;
  }
}

static int next_member(fr_input_source *src, fr_input_item *item, fr_error *err)
{
  for (;;) {
    struct archive_entry *e;
    int r = archive_read_next_header(src->archive, &e);
    if (r == ARCHIVE_EOF) {
      close_archive(src);
      return 0;
    }
    if (r == ARCHIVE_WARN)
      fr_debug("%s: %s", src->archive_path, archive_error_string(src->archive));
    else if (r != ARCHIVE_OK)
      return archive_damaged_between(src, item, err);
    const char *name = archive_entry_pathname(e);
    if (!name)
      name = archive_entry_pathname_utf8(e);
    if (!name)
      name = "(unnamed)";
    /* Folders, links and devices carry no image; hard links repeat an earlier member. */
    if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e))
      continue;
    char *member = dup_string(name);
    char *key = member ? join_path(src->archive_path, member, ':') : NULL;
    if (!key) {
      free(member);
      return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", src->archive_path), -1;
    }
    free(src->last_member);
    src->last_member = member;
    size_t size;
    la_int64_t declared = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1;
    r = read_member(src, member, declared, &size, err);
    if (r < 0)
      return archive_damaged(src, item, key, member);
    if (r == FR_ERR_NOMEM) {
      free(key);
      return -1;
    }
    if (r == FR_ERR_UNSUPPORTED) {
      char cap[64];
      snprintf(cap, sizeof(cap), "%zu", src->max_member);
      return emit_error(src, item, key, member, FR_ERR_UNSUPPORTED, "%s: member over the size cap of %s bytes", cap);
    }
    return emit(src, item, key, member, size, FR_OK);
  }
}

/* ---------------------------------------------------------------- files */

/* Reads a whole regular file into buf. FR_OK, or an error code with the
 * reason in src->error (the caller decides whether that is fatal). */
static int read_whole_file(fr_input_source *src, const char *path, size_t *size, fr_error *err)
{
  *size = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fr_error_set(err, errno == ENOENT ? FR_ERR_NOT_FOUND : FR_ERR_IO, "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return fr_error_set(err, FR_ERR_IO, "%s: %s", path, strerror(e));
  }
  if ((uint64_t)st.st_size > src->max_member) {
    close(fd);
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "%s: %lld bytes, over the size cap of %zu bytes", path,
                        (long long)st.st_size, src->max_member);
  }
  if (ensure_buf(src, (size_t)st.st_size + 1, path, err)) {
    close(fd);
    return err ? (int)err->code : FR_ERR_NOMEM;
  }
  /* The file may grow or shrink while we read it: stop at the cap or at EOF. */
  for (;;) {
    ssize_t got = read(fd, src->buf + *size, src->buf_cap - *size);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      int e = errno;
      close(fd);
      return fr_error_set(err, FR_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (got == 0)
      break;
    *size += (size_t)got;
    if (*size > src->max_member) {
      close(fd);
      return fr_error_set(err, FR_ERR_UNSUPPORTED, "%s: over the size cap of %zu bytes", path, src->max_member);
    }
    if (*size == src->buf_cap && ensure_buf(src, src->buf_cap * 2, path, err)) {
      close(fd);
      return FR_ERR_NOMEM;
    }
  }
  close(fd);
  return FR_OK;
}

/* A regular file: an image (or other single file) becomes one item; an
 * archive becomes the current archive. `fatal`: errors end this input
 * (a path given by the user) rather than becoming an item (one found in a
 * folder). Takes over `path`. */
static int handle_file(fr_input_source *src, char *path, off_t size, int fatal, fr_input_item *item, fr_error *err)
{
  uint8_t head[16] = {0};
  size_t nhead = 0;
  if (size > 0) {
    FILE *f = fopen(path, "rb");
    if (f) {
      nhead = fread(head, 1, sizeof(head), f);
      fclose(f);
    }
  }
  /* Empty files are not archives (libarchive would call them empty ones). */
  if (size > 0 && !fr_image_is_probably_image(head, nhead)) {
    fr_error local = {0};
    int r = open_archive(src, path, &local);
    if (r == 1) {
      free(path);
      return 0;
    }
    if (r < 0 && fatal) {
      if (err)
        *err = local;
      free(path);
      return -1;
    }
  }
  fr_error local = {0};
  size_t got;
  int rc = read_whole_file(src, path, &got, &local);
  if (rc && fatal) {
    if (err)
      *err = local;
    free(path);
    return -1;
  }
  if (rc) {
    memcpy(src->error, local.message, sizeof(src->error));
    return emit(src, item, path, path, 0, (fr_status)rc);
  }
  return emit(src, item, path, path, got, FR_OK);
}

/* ---------------------------------------------------------------- folders */

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void frame_free(dir_frame *f)
{
  for (size_t i = 0; i < f->count; i++)
    free(f->names[i]);
  free(f->names);
  free(f->path);
}

/* Lists a folder, sorted. Takes over `path`. Returns FR_OK or an error code
 * with err naming the folder. */
static int push_frame(fr_input_source *src, char *path, const struct stat *st, fr_error *err)
{
  for (size_t i = 0; i < src->nframes; i++)
    if (src->frames[i].dev == st->st_dev && src->frames[i].ino == st->st_ino) {
      int rc = fr_error_set(err, FR_ERR_INVALID, "%s: symlink loop: it is the folder %s again", path,
                            src->frames[i].path);
      free(path);
      return rc;
    }
  if (src->nframes == src->frames_cap) {
    size_t cap = src->frames_cap ? src->frames_cap * 2 : 8;
    dir_frame *f = realloc(src->frames, cap * sizeof(*f));
    if (!f) {
      free(path);
      return fr_error_set(err, FR_ERR_NOMEM, "out of memory walking folders");
    }
    src->frames = f;
    src->frames_cap = cap;
  }
  dir_frame fr = {.path = path, .dev = st->st_dev, .ino = st->st_ino};
  DIR *d = opendir(path);
  if (!d) {
    int rc = fr_error_set(err, FR_ERR_IO, "%s: %s", path, strerror(errno));
    free(path);
    return rc;
  }
  size_t cap = 0;
  struct dirent *de;
  int rc = FR_OK;
  errno = 0;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (fr.count == cap) {
      cap = cap ? cap * 2 : 64;
      char **n = realloc(fr.names, cap * sizeof(char *));
      if (!n) {
        rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory listing the folder", path);
        break;
      }
      fr.names = n;
    }
    if (!(fr.names[fr.count] = dup_string(de->d_name))) {
      rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory listing the folder", path);
      break;
    }
    fr.count++;
    errno = 0;
  }
  if (!rc && errno != 0)
    rc = fr_error_set(err, FR_ERR_IO, "%s: %s", path, strerror(errno));
  closedir(d);
  if (rc) {
    frame_free(&fr);
    return rc;
  }
  if (fr.count > 0) /* an empty folder has no list at all: qsort(NULL, 0) is undefined */
    qsort(fr.names, fr.count, sizeof(char *), compare_names);
  src->frames[src->nframes++] = fr;
  return FR_OK;
}

static int next_dir_entry(fr_input_source *src, fr_input_item *item, fr_error *err)
{
  dir_frame *top = &src->frames[src->nframes - 1];
  if (top->next == top->count) {
    frame_free(top);
    src->nframes--;
    return 0;
  }
  char *child = join_path(top->path, top->names[top->next++], '/');
  if (!child)
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", top->path), -1;
  struct stat st;
  if (stat(child, &st) != 0) /* follows symlinks; ELOOP and dangling links land here */
    return emit_error(src, item, child, child, FR_ERR_IO, "%s: %s", strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    fr_error local = {0};
    char *label_path = dup_string(child);
    if (push_frame(src, child, &st, &local) == FR_OK) {
      free(label_path);
      return 0;
    }
    if (!label_path)
      return fr_error_set(err, FR_ERR_NOMEM, "out of memory"), -1;
    memcpy(src->error, local.message, sizeof(src->error));
    return emit(src, item, label_path, label_path, 0, local.code);
  }
  if (!S_ISREG(st.st_mode)) { /* a FIFO would block us, a device is not a face */
    fr_debug("%s: skipped, not a regular file", child);
    free(child);
    return 0;
  }
  return handle_file(src, child, st.st_size, 0, item, err);
}

/* ---------------------------------------------------------------- inputs */

static int copy_error(fr_error *err, const fr_error *why)
{
  if (err)
    *err = *why;
  return -1;
}

/* An input given by the caller failed as a whole (vanished since open, not
 * readable, a broken archive header): one failed item keyed by its path, so
 * the run records it and goes on with the next input. */
static int input_damaged(fr_input_source *src, fr_input_item *item, const char *path, const fr_error *why,
                         fr_error *err)
{
  char *key = dup_string(path);
  if (!key)
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", path), -1;
  snprintf(src->error, sizeof(src->error), "%s", why->message);
  emit(src, item, key, "", 0, why->code ? why->code : FR_ERR_IO);
  item->input_failed = 1;
  return 1;
}

static int start_input(fr_input_source *src, fr_input_item *item, fr_error *err)
{
  src->current_input = src->next_path++;
  const char *path = src->paths[src->current_input];
  fr_error why = {0};
  struct stat st;
  if (stat(path, &st) != 0) {
    fr_error_set(&why, errno == ENOENT ? FR_ERR_NOT_FOUND : FR_ERR_IO, "%s: %s", path, strerror(errno));
    return input_damaged(src, item, path, &why, err);
  }
  char *copy = dup_string(path);
  if (!copy)
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", path), -1;
  if (S_ISDIR(st.st_mode)) {
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/') /* "faces/" and "faces" give the same keys */
      copy[--n] = '\0';
    int rc = push_frame(src, copy, &st, &why);
    if (rc == FR_ERR_NOMEM)
      return copy_error(err, &why);
    return rc ? input_damaged(src, item, path, &why, err) : 0;
  }
  if (!S_ISREG(st.st_mode)) {
    free(copy);
    fr_error_set(&why, FR_ERR_UNSUPPORTED, "%s: not a file, folder or archive", path);
    return input_damaged(src, item, path, &why, err);
  }
  int rc = handle_file(src, copy, st.st_size, 1, item, &why);
  if (rc < 0 && why.code == FR_ERR_NOMEM)
    return copy_error(err, &why);
  return rc < 0 ? input_damaged(src, item, path, &why, err) : rc;
}

int fr_input_source_open(const char *const *paths, int n, fr_input_source **out, fr_error *err)
{
  *out = NULL;
  if (n < 0 || (n > 0 && !paths))
    return fr_error_set(err, FR_ERR_INVALID, "input source: invalid path list");
  for (int i = 0; i < n; i++) {
    struct stat st;
    if (!paths[i] || !*paths[i])
      return fr_error_set(err, FR_ERR_INVALID, "input %d: empty path", i + 1);
    if (stat(paths[i], &st) != 0)
      return fr_error_set(err, errno == ENOENT ? FR_ERR_NOT_FOUND : FR_ERR_IO, "%s: %s", paths[i], strerror(errno));
  }
  fr_input_source *src = calloc(1, sizeof(*src));
  if (!src || (n > 0 && !(src->paths = calloc((size_t)n, sizeof(char *))))) {
    free(src);
    return fr_error_set(err, FR_ERR_NOMEM, "input source: out of memory");
  }
  src->npaths = n;
  src->max_member = FR_INPUT_DEFAULT_MAX_MEMBER_BYTES;
  for (int i = 0; i < n; i++)
    if (!(src->paths[i] = dup_string(paths[i]))) {
      fr_input_source_close(src);
      return fr_error_set(err, FR_ERR_NOMEM, "input source: out of memory");
    }
  *out = src;
  return FR_OK;
}

void fr_input_source_set_max_member_bytes(fr_input_source *src, size_t max_bytes) { src->max_member = max_bytes; }

int fr_input_source_next(fr_input_source *src, fr_input_item *item, fr_error *err)
{
  memset(item, 0, sizeof(*item));
  for (;;) {
    int r;
    if (src->archive)
      r = next_member(src, item, err);
    else if (src->nframes)
      r = next_dir_entry(src, item, err);
    else if (src->next_path < src->npaths)
      r = start_input(src, item, err);
    else
      return 0;
    if (r != 0)
      return r;
  }
}

void fr_input_source_close(fr_input_source *src)
{
  if (!src)
    return;
  close_archive(src);
  while (src->nframes)
    frame_free(&src->frames[--src->nframes]);
  free(src->frames);
  for (int i = 0; i < src->npaths; i++)
    free(src->paths[i]);
  free(src->paths);
  free(src->buf);
  free(src->key);
  free(src);
}
