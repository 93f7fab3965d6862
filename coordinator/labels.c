/* Labels from a key,label CSV or a regex over the key (include/faceri/labels.h).
 * The CSV is read once into a hash table (a nightly audit's label file may
 * name millions of keys: one lookup per item must stay cheap). */
#include <errno.h>
#include <openssl/evp.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/labels.h"

typedef struct label_entry {
  char *key;   /* NULL: empty slot */
  char *label;
  long line;
} label_entry;

struct fr_labeler {
  label_entry *table;
  size_t cap, count; /* cap: a power of two, kept at most half full */
  int has_regex;
  regex_t re;
  char *match;       /* the last regex capture */
  size_t match_cap;
  char *csv_path, *regex; /* as given, for the results file */
  char csv_sha256[65];
};

static uint64_t hash_key(const char *s)
{
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    h = (h ^ *p) * 1099511628211ull;
  return h;
}

static label_entry *find_slot(label_entry *table, size_t cap, const char *key)
{
  size_t i = (size_t)hash_key(key) & (cap - 1);
  while (table[i].key && strcmp(table[i].key, key) != 0)
    i = (i + 1) & (cap - 1);
  return &table[i];
}

static int grow(fr_labeler *l)
{
  size_t cap = l->cap ? l->cap * 2 : 1024;
  label_entry *t = calloc(cap, sizeof(*t));
  if (!t)
    return -1;
  for (size_t i = 0; i < l->cap; i++)
    if (l->table[i].key)
      *find_slot(t, cap, l->table[i].key) = l->table[i];
  free(l->table);
  l->table = t;
  l->cap = cap;
  return 0;
}

/* ---- CSV reading ---- */

typedef struct text_buf {
  char *s;
  size_t len, cap;
} text_buf;

static int buf_put(text_buf *b, char c)
{
  if (b->len + 1 >= b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    char *s = realloc(b->s, cap);
    if (!s)
      return -1;
    b->s = s;
    b->cap = cap;
  }
  b->s[b->len++] = c;
  b->s[b->len] = '\0';
  return 0;
}

typedef struct csv_reader {
  FILE *f;
  const char *path;
  long line;        /* current line (1-based) */
  text_buf field[2];
  int n_fields;     /* fields in the record, counted past 2 */
  int chars;        /* bytes in the record: 0 means a blank line */
} csv_reader;

#define CSV_FAIL(r, err, fmt, ...) \
  fr_error_set(err, FR_ERR_FORMAT, "%s: line %ld: " fmt, (r)->path, (r)->line, __VA_ARGS__)

/* Adds a byte to the current field (only the first two are kept). */
static int field_put(csv_reader *r, char c, fr_error *err)
{
  r->chars++;
  if (c == '\0')
    return CSV_FAIL(r, err, "%s", "NUL byte in a field");
  if (r->n_fields <= 2 && buf_put(&r->field[r->n_fields - 1], c))
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory reading line %ld", r->path, r->line);
  return FR_OK;
}

static int next_field(csv_reader *r)
{
  r->n_fields++;
  if (r->n_fields <= 2)
    r->field[r->n_fields - 1].len = 0;
  if (r->n_fields <= 2 && r->field[r->n_fields - 1].s)
    r->field[r->n_fields - 1].s[0] = '\0';
  return FR_OK;
}

/* Reads one record. Returns 1 (record; *start_line is where it began), 0 at
 * the end of the file, or -1 with err set. */
static int csv_record(csv_reader *r, long *start_line, fr_error *err)
{
  int c = getc(r->f);
  if (c == EOF)
    return ferror(r->f) ? -!!fr_error_set(err, FR_ERR_IO, "%s: read error: %s", r->path, strerror(errno)) : 0;
  *start_line = r->line;
  r->n_fields = 0;
  r->chars = 0;
  next_field(r);
  int quoted = 0, after_quote = 0, field_started = 0;
  for (;; c = getc(r->f)) {
    if (c == EOF) {
      if (ferror(r->f))
        return -!!fr_error_set(err, FR_ERR_IO, "%s: read error: %s", r->path, strerror(errno));
      if (quoted)
        return -!!fr_error_set(err, FR_ERR_FORMAT, "%s: line %ld: quoted field never closed (it opens on line %ld)",
                            r->path, r->line, *start_line);
      return 1;
    }
    if (quoted) {
      if (c == '"') {
        int d = getc(r->f);
        if (d == '"') {
          if (field_put(r, '"', err))
            return -1;
          continue;
        }
        if (d != EOF)
          ungetc(d, r->f);
        quoted = 0;
        after_quote = 1;
        continue;
      }
      if (c == '\n')
        r->line++;
      if (field_put(r, (char)c, err))
        return -1;
      continue;
    }
    if (c == '\r') {
      int d = getc(r->f);
      if (d == '\n')
        c = '\n';
      else if (d != EOF)
        ungetc(d, r->f);
    }
    if (c == '\n') {
      r->line++;
      return 1;
    }
    if (c == ',') {
      r->chars++;
      next_field(r);
      after_quote = field_started = 0;
      continue;
    }
    if (after_quote)
      return -!!CSV_FAIL(r, err, "text after the closing quote of field %d", r->n_fields);
    if (c == '"') {
      if (field_started)
        return -!!CSV_FAIL(r, err, "a quote inside unquoted field %d (quote the whole field, double inner quotes)",
                        r->n_fields);
      quoted = 1;
      field_started = 1;
      r->chars++;
      continue;
    }
    field_started = 1;
    if (field_put(r, (char)c, err))
      return -1;
  }
}

static const char *field_text(const csv_reader *r, int i) { return r->field[i].s ? r->field[i].s : ""; }

static int add_entry(fr_labeler *l, const csv_reader *r, long line, fr_error *err)
{
  const char *key = field_text(r, 0), *label = field_text(r, 1);
  if ((l->count + 1) * 2 > l->cap && grow(l))
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory at line %ld", r->path, line);
  label_entry *e = find_slot(l->table, l->cap, key);
  if (e->key) {
    if (strcmp(e->label, label) != 0)
      return fr_error_set(err, FR_ERR_FORMAT, "%s: line %ld: key \"%.300s\" already has label \"%.100s\" (line %ld)",
                          r->path, line, key, e->label, e->line);
    return FR_OK;
  }
  e->key = strdup(key);
  e->label = strdup(label);
  e->line = line;
  if (!e->key || !e->label) {
    free(e->key);
    free(e->label);
    e->key = NULL;
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory at line %ld", r->path, line);
  }
  l->count++;
  return FR_OK;
}

/* SHA-256 of the bytes just parsed, so --resume can tell a changed label file. */
static int hash_file(FILE *f, const char *path, char hex[65], fr_error *err)
{
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(md);
    return fr_error_set(err, FR_ERR_INTERNAL, "--labels %s: SHA-256 unavailable", path);
  }
  unsigned char buf[1 << 14];
  size_t n;
  rewind(f);
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
    EVP_DigestUpdate(md, buf, n);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  int rc = FR_OK;
  if (ferror(f))
    rc = fr_error_set(err, FR_ERR_IO, "--labels %s: read error", path);
  else if (EVP_DigestFinal_ex(md, digest, &len) != 1 || len != 32)
    rc = fr_error_set(err, FR_ERR_INTERNAL, "--labels %s: SHA-256 failed", path);
  for (unsigned i = 0; i < 32 && !rc; i++)
    snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  EVP_MD_CTX_free(md);
  return rc;
}

static int read_csv(fr_labeler *l, const char *path, fr_error *err)
{
  csv_reader r = {.path = path, .line = 1};
  r.f = fopen(path, "rb");
  if (!r.f)
    return fr_error_set(err, errno == ENOENT ? FR_ERR_NOT_FOUND : FR_ERR_IO, "--labels %s: cannot open: %s", path,
                        strerror(errno));
  int rc = FR_OK, first = 1;
  long line = 0;
  for (;;) {
    int got = csv_record(&r, &line, err);
    if (got <= 0) {
      rc = got < 0 ? (int)err->code : FR_OK;
      break;
    }
    if (r.n_fields == 1 && r.chars == 0)
      continue; /* blank line */
    if (r.n_fields != 2) {
      rc = fr_error_set(err, FR_ERR_FORMAT, "%s: line %ld: %d field(s), expected 2 (key,label)", path, line,
                        r.n_fields);
      break;
    }
    if (first && !strcmp(field_text(&r, 0), "key") && !strcmp(field_text(&r, 1), "label")) {
      first = 0;
      continue; /* header */
    }
    first = 0;
    if (!*field_text(&r, 0)) {
      rc = fr_error_set(err, FR_ERR_FORMAT, "%s: line %ld: empty key", path, line);
      break;
    }
    if ((rc = add_entry(l, &r, line, err)))
      break;
  }
  if (!rc)
    rc = hash_file(r.f, path, l->csv_sha256, err);
  fclose(r.f);
  free(r.field[0].s);
  free(r.field[1].s);
  return rc;
}

/* ---- the labeler ---- */

int fr_labeler_create(const char *csv_path, const char *regex, fr_labeler **out, fr_error *err)
{
  *out = NULL;
  if (!csv_path && !regex)
    return FR_OK;
  fr_labeler *l = calloc(1, sizeof(*l));
  if (!l)
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory for labels");
  if (regex) {
    int rc = regcomp(&l->re, regex, REG_EXTENDED);
    if (rc) {
      char why[256];
      regerror(rc, &l->re, why, sizeof(why));
      free(l);
      return fr_error_set(err, FR_ERR_INVALID, "--label-regex \"%.300s\": %s", regex, why);
    }
    l->has_regex = 1;
    if (l->re.re_nsub < 1) {
      fr_labeler_destroy(l);
      return fr_error_set(err, FR_ERR_INVALID,
                          "--label-regex \"%.300s\": no capture group; put the label in parentheses, e.g. "
                          "\"/([^/]+)/[^/]+$\"",
                          regex);
    }
  }
  l->csv_path = strdup(csv_path ? csv_path : "");
  l->regex = strdup(regex ? regex : "");
  if (!l->csv_path || !l->regex) {
    fr_labeler_destroy(l);
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory for labels");
  }
  if (csv_path) {
    int rc = read_csv(l, csv_path, err);
    if (rc) {
      fr_labeler_destroy(l);
      return rc;
    }
  }
  *out = l;
  return FR_OK;
}

const char *fr_labeler_apply(fr_labeler *l, const char *key, const char *folder_label)
{
  const char *folder = folder_label ? folder_label : "";
  if (!l || !key)
    return folder;
  if (l->count) {
    const label_entry *e = find_slot(l->table, l->cap, key);
    if (e->key)
      return e->label;
  }
  if (l->has_regex) {
    regmatch_t m[2];
    if (regexec(&l->re, key, 2, m, 0) == 0 && m[1].rm_so >= 0 && m[1].rm_eo > m[1].rm_so) {
      size_t n = (size_t)(m[1].rm_eo - m[1].rm_so);
      if (n + 1 > l->match_cap) {
        char *grown = realloc(l->match, n + 1);
        if (!grown)
          return folder; /* out of memory: the folder label is still a label */
        l->match = grown;
        l->match_cap = n + 1;
      }
      memcpy(l->match, key + m[1].rm_so, n);
      l->match[n] = '\0';
      return l->match;
    }
  }
  return folder;
}

size_t fr_labeler_csv_keys(const fr_labeler *l) { return l ? l->count : 0; }

const char *fr_labeler_csv_path(const fr_labeler *l) { return l && l->csv_path ? l->csv_path : ""; }
const char *fr_labeler_csv_sha256(const fr_labeler *l) { return l ? l->csv_sha256 : ""; }
const char *fr_labeler_regex(const fr_labeler *l) { return l && l->regex ? l->regex : ""; }

void fr_labeler_destroy(fr_labeler *l)
{
  if (!l)
    return;
  for (size_t i = 0; i < l->cap; i++) {
    free(l->table[i].key);
    free(l->table[i].label);
  }
  free(l->table);
  if (l->has_regex)
    regfree(&l->re);
  free(l->match);
  free(l->csv_path);
  free(l->regex);
  free(l);
}
