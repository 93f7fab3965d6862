/* Cheap, stable identities of input files and folders, so --resume can refuse
 * inputs that changed since the interrupted run. */
#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "faceri/results_file.h"

#define EDGE_BYTES (1u << 20)

static void hex(const unsigned char *d, unsigned n, char *out)
{
  for (unsigned i = 0; i < n; i++)
    sprintf(out + 2 * i, "%02x", d[i]);
  out[2 * n] = '\0';
}

static int hash_file_edges(const char *path, int64_t size, EVP_MD_CTX *md, fr_error *err)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return fr_error_set(err, FR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  unsigned char *buf = malloc(EDGE_BYTES);
  int rc = buf ? FR_OK : fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", path);
  for (int part = 0; part < 2 && !rc; part++) {
    if (part == 1 && size <= (int64_t)EDGE_BYTES)
      break;
    if (part == 1 && fseeko(f, (off_t)(size - EDGE_BYTES), SEEK_SET) != 0) {
      rc = fr_error_set(err, FR_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
      break;
    }
    size_t n = fread(buf, 1, EDGE_BYTES, f);
    if (ferror(f))
      rc = fr_error_set(err, FR_ERR_IO, "%s: read error", path);
    else
      EVP_DigestUpdate(md, buf, n);
  }
  free(buf);
  fclose(f);
  return rc;
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Hashes "relative-path size mtime\n" for every entry, sorted, recursively. */
static int hash_folder(const char *root, const char *rel, EVP_MD_CTX *md, int64_t *entries, int depth, fr_error *err)
{
  if (depth > 64)
    return fr_error_set(err, FR_ERR_INVALID, "%s/%s: folders nested too deep", root, rel);
  char dir_path[4096];
  snprintf(dir_path, sizeof(dir_path), "%s%s%s", root, *rel ? "/" : "", rel);
  DIR *d = opendir(dir_path);
  if (!d)
    return fr_error_set(err, FR_ERR_IO, "%s: cannot list: %s", dir_path, strerror(errno));
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  int rc = FR_OK;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **grown = realloc(names, cap * sizeof(char *));
      if (!grown) {
        rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", dir_path);
        break;
      }
      names = grown;
    }
    names[n] = strdup(e->d_name);
    if (!names[n++]) {
      rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", dir_path);
      break;
    }
  }
  closedir(d);
  if (!rc && n)
    qsort(names, n, sizeof(char *), compare_names);
  for (size_t i = 0; i < n && !rc; i++) {
    char child_rel[4096], child[8192];
    snprintf(child_rel, sizeof(child_rel), "%s%s%s", rel, *rel ? "/" : "", names[i]);
    snprintf(child, sizeof(child), "%s/%s", root, child_rel);
    struct stat st;
    if (lstat(child, &st) != 0)
      continue; /* vanished: the listing itself records the change */
    char line[4200];
    int len = snprintf(line, sizeof(line), "%s %lld %lld\n", child_rel, (long long)st.st_size, (long long)st.st_mtime);
    EVP_DigestUpdate(md, line, (size_t)(len < (int)sizeof(line) ? len : (int)sizeof(line) - 1));
    (*entries)++;
    if (S_ISDIR(st.st_mode))
      rc = hash_folder(root, child_rel, md, entries, depth + 1, err);
  }
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return rc;
}

int fr_fingerprint_input(const char *path, fr_input_fingerprint *out, fr_error *err)
{
  memset(out, 0, sizeof(*out));
  snprintf(out->path, sizeof(out->path), "%s", path);
  struct stat st;
  if (stat(path, &st) != 0)
    return fr_error_set(err, FR_ERR_NOT_FOUND, "%s: %s", path, strerror(errno));
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(md);
    return fr_error_set(err, FR_ERR_INTERNAL, "%s: SHA-256 unavailable", path);
  }
  int rc;
  out->mtime = (int64_t)st.st_mtime;
  if (S_ISDIR(st.st_mode)) {
    rc = hash_folder(path, "", md, &out->size, 0, err);
  } else {
    out->size = (int64_t)st.st_size;
    rc = hash_file_edges(path, out->size, md, err);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (!rc && EVP_DigestFinal_ex(md, digest, &len) == 1)
    hex(digest, len, out->digest);
  EVP_MD_CTX_free(md);
  return rc;
}
