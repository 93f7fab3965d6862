#include "faceri/pairs_file.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 5   /* one more than the longest valid line, to report the excess */
#define MAX_HEADER 1000000000LL

typedef struct parser {
  const char *source;
  fr_pairs_lookup_fn lookup;
  void *ctx;
  fr_pairs *out;
  int64_t capacity;
  int64_t expected;  /* pair lines the header announces; -1 before the header */
  int64_t seen;      /* pair lines so far, skipped ones included */
} parser;

/* Splits in place on spaces and tabs; returns the field count (at most MAX_FIELDS). */
static int split_fields(char *line, char **fields)
{
  int n = 0;
  char *p = line;
  while (*p) {
    while (*p == ' ' || *p == '\t')
      p++;
    if (!*p)
      break;
    if (n == MAX_FIELDS)
      return n + 1;
    fields[n++] = p;
    while (*p && *p != ' ' && *p != '\t')
      p++;
    if (*p)
      *p++ = '\0';
  }
  return n;
}

static int parse_positive(const char *s, long long max, long long *v)
{
  if (*s < '0' || *s > '9')
    return 0;
  errno = 0;
  char *end;
  long long x = strtoll(s, &end, 10);
  if (errno || *end || x <= 0 || x > max)
    return 0;
  *v = x;
  return 1;
}

static int parse_header(parser *ps, char **f, int nf, int64_t line, fr_error *err)
{
  long long folds = 1, per = 0;
  if (nf == 2 ? !parse_positive(f[0], INT_MAX, &folds) || !parse_positive(f[1], MAX_HEADER, &per)
              : nf != 1 || !parse_positive(f[0], MAX_HEADER, &per))
    return fr_error_set(err, FR_ERR_FORMAT,
                        "%s:%lld: expected a header \"N_folds N\" or \"N\" with positive integers", ps->source,
                        (long long)line);
  if ((double)folds * (double)per * 2 > (double)MAX_HEADER)
    return fr_error_set(err, FR_ERR_FORMAT, "%s:%lld: header announces %lld folds of %lld pairs: too many",
                        ps->source, (long long)line, folds, 2 * per);
  ps->out->n_folds = (int)folds;
  ps->out->per_fold = per;
  ps->expected = 2 * folds * per;
  return FR_OK;
}

static int look_up(parser *ps, const char *name, const char *number, int64_t line, int64_t *index, fr_error *err)
{
  long long k;
  if (strlen(name) > 1000)
    return fr_error_set(err, FR_ERR_FORMAT, "%s:%lld: name of %zu characters is too long", ps->source,
                        (long long)line, strlen(name));
  if (!parse_positive(number, INT_MAX, &k))
    return fr_error_set(err, FR_ERR_FORMAT, "%s:%lld: image number \"%.40s\" for %.200s is not a positive integer",
                        ps->source, (long long)line, number, name);
  int rc = ps->lookup(ps->ctx, name, (int)k, index, err);
  if (rc != FR_OK && rc != FR_ERR_NOT_FOUND)
    fr_error_prefix(err, "%s:%lld", ps->source, (long long)line);
  return rc;
}

static int parse_pair(parser *ps, char **f, int nf, int64_t line, fr_error *err)
{
  if (nf != 3 && nf != 4)
    return fr_error_set(err, FR_ERR_FORMAT,
                        "%s:%lld: expected \"name i j\" or \"name1 i name2 j\", found %s%d fields", ps->source,
                        (long long)line, nf > MAX_FIELDS ? "more than " : "", nf > MAX_FIELDS ? MAX_FIELDS : nf);
  if (ps->seen == ps->expected)
    return fr_error_set(err, FR_ERR_FORMAT, "%s:%lld: more pairs than the %lld the header announces", ps->source,
                        (long long)line, (long long)ps->expected);
  fr_pair p = {.genuine = nf == 3, .fold = (int)(ps->seen / (2 * ps->out->per_fold)), .line = line};
  ps->seen++;
  int rc = look_up(ps, f[0], f[1], line, &p.a, err);
  if (rc == FR_OK)
    rc = nf == 3 ? look_up(ps, f[0], f[2], line, &p.b, err) : look_up(ps, f[2], f[3], line, &p.b, err);
  if (rc == FR_ERR_NOT_FOUND) {
    ps->out->n_skipped++;
    return FR_OK;
  }
  if (rc)
    return rc;
  fr_pairs *o = ps->out;
  if (o->n == ps->capacity) {
    int64_t cap = ps->capacity ? 2 * ps->capacity : 1024;
    fr_pair *grown = realloc(o->pairs, (size_t)cap * sizeof(fr_pair));
    if (!grown)
      return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory for %lld pairs", ps->source, (long long)cap);
    o->pairs = grown;
    ps->capacity = cap;
  }
  o->pairs[o->n++] = p;
  if (p.genuine)
    o->n_genuine++;
  else
    o->n_impostor++;
  return FR_OK;
}

static int parse_line(parser *ps, char *text, int64_t line, fr_error *err)
{
  size_t len = strlen(text);
  while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
    text[--len] = '\0';
  char *f[MAX_FIELDS];
  int nf = split_fields(text, f);
  if (nf == 0)
    return FR_OK;
  return ps->expected < 0 ? parse_header(ps, f, nf, line, err) : parse_pair(ps, f, nf, line, err);
}

static void parser_init(parser *ps, const char *source, fr_pairs_lookup_fn lookup, void *ctx, fr_pairs *out)
{
  memset(out, 0, sizeof(*out));
  *ps = (parser){.source = source, .lookup = lookup, .ctx = ctx, .out = out, .expected = -1};
}

static int parser_finish(parser *ps, int rc, fr_error *err)
{
  if (rc == FR_OK && ps->expected < 0)
    rc = fr_error_set(err, FR_ERR_FORMAT, "%s: no header line (empty pair list)", ps->source);
  else if (rc == FR_OK && ps->seen != ps->expected)
    rc = fr_error_set(err, FR_ERR_FORMAT, "%s: the header announces %lld pairs (%d folds of %lld + %lld), found %lld",
                      ps->source, (long long)ps->expected, ps->out->n_folds, (long long)ps->out->per_fold,
                      (long long)ps->out->per_fold, (long long)ps->seen);
  if (rc)
    fr_pairs_free(ps->out);
  return rc;
}

static int check_args(const char *what, fr_pairs_lookup_fn lookup, fr_pairs *out, fr_error *err)
{
  if (!lookup || !out)
    return fr_error_set(err, FR_ERR_INVALID, "%s: pair list parsing needs a lookup callback and an output",
                        what ? what : "(null)");
  return FR_OK;
}

int fr_pairs_parse(const char *text, size_t len, const char *source_name, fr_pairs_lookup_fn lookup, void *ctx,
                   fr_pairs *out, fr_error *err)
{
  const char *source = source_name ? source_name : "pair list";
  int rc = check_args(source, lookup, out, err);
  if (rc)
    return rc;
  parser ps;
  parser_init(&ps, source, lookup, ctx, out);
  char *buf = NULL;
  size_t cap = 0;
  int64_t line = 0;
  for (size_t pos = 0; pos < len && rc == FR_OK;) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
    line++;
    if (memchr(text + pos, '\0', n)) {
      rc = fr_error_set(err, FR_ERR_FORMAT, "%s:%lld: NUL byte in a text line", source, (long long)line);
      break;
    }
    if (n + 1 > cap) {
      char *grown = realloc(buf, n + 1);
      if (!grown) {
        rc = fr_error_set(err, FR_ERR_NOMEM, "%s:%lld: out of memory for a %zu-byte line", source, (long long)line, n);
        break;
      }
      buf = grown;
      cap = n + 1;
    }
    memcpy(buf, text + pos, n);
    buf[n] = '\0';
    rc = parse_line(&ps, buf, line, err);
    pos += n + 1;
  }
  free(buf);
  return parser_finish(&ps, rc, err);
}

int fr_pairs_read_file(const char *path, fr_pairs_lookup_fn lookup, void *ctx, fr_pairs *out, fr_error *err)
{
  int rc = check_args(path, lookup, out, err);
  if (rc)
    return rc;
  FILE *f = fopen(path, "rb");
  if (!f)
    return fr_error_set(err, errno == ENOENT ? FR_ERR_NOT_FOUND : FR_ERR_IO, "%s: cannot open: %s", path,
                        strerror(errno));
  parser ps;
  parser_init(&ps, path, lookup, ctx, out);
  char *buf = NULL;
  size_t cap = 0;
  int64_t line = 0;
  ssize_t n;
  errno = 0;
  while (rc == FR_OK && (n = getline(&buf, &cap, f)) >= 0) {
    line++;
    if ((size_t)n != strlen(buf))
      rc = fr_error_set(err, FR_ERR_FORMAT, "%s:%lld: NUL byte in a text line", path, (long long)line);
    else
      rc = parse_line(&ps, buf, line, err);
  }
  if (rc == FR_OK && ferror(f))
    rc = fr_error_set(err, FR_ERR_IO, "%s: read error after line %lld: %s", path, (long long)line, strerror(errno));
  free(buf);
  fclose(f);
  return parser_finish(&ps, rc, err);
}

void fr_pairs_free(fr_pairs *pairs)
{
  if (!pairs)
    return;
  free(pairs->pairs);
  memset(pairs, 0, sizeof(*pairs));
}

int fr_pairs_scores(const float *emb, int64_t n_items, int dim, const fr_pair *pairs, int64_t n_pairs,
                    double *scores, fr_error *err)
{
  if (dim <= 0)
    return fr_error_set(err, FR_ERR_INVALID, "pair scores: dimension %d is not positive", dim);
  for (int64_t i = 0; i < n_pairs; i++) {
    const fr_pair *p = &pairs[i];
    if (p->a < 0 || p->a >= n_items || p->b < 0 || p->b >= n_items)
      return fr_error_set(err, FR_ERR_INVALID, "pair %lld (line %lld): item index %lld or %lld is outside 0..%lld",
                          (long long)i, (long long)p->line, (long long)p->a, (long long)p->b,
                          (long long)n_items - 1);
    const float *x = emb + (size_t)p->a * (size_t)dim, *y = emb + (size_t)p->b * (size_t)dim;
    double s = 0;
    for (int k = 0; k < dim; k++)
      s += (double)x[k] * (double)y[k];
    if (isnan(s))
      return fr_error_set(err, FR_ERR_INVALID, "pair %lld (line %lld): score is NaN (embedding %lld or %lld)",
                          (long long)i, (long long)p->line, (long long)p->a, (long long)p->b);
    scores[i] = s;
  }
  return FR_OK;
}

int fr_pairs_verification(const float *emb, int64_t n_items, int dim, const fr_pairs *pairs, const double *fars,
                          int n_far, fr_verification *out, double *tpr, fr_error *err)
{
  /* Count from the pairs themselves: the caller may have filtered the list. */
  int64_t ng = 0;
  for (int64_t i = 0; i < pairs->n; i++)
    ng += pairs->pairs[i].genuine != 0;
  if (ng <= 0 || pairs->n - ng <= 0)
    return fr_error_set(err, FR_ERR_INVALID, "pair list has %lld matched and %lld mismatched usable pairs: need both",
                        (long long)ng, (long long)(pairs->n - ng));
  double *scores = malloc((size_t)pairs->n * sizeof(double));
  double *g = malloc((size_t)ng * sizeof(double));
  double *im = malloc((size_t)(pairs->n - ng) * sizeof(double));
  int rc;
  if (!scores || !g || !im) {
    rc = fr_error_set(err, FR_ERR_NOMEM, "pair verification: out of memory for %lld pairs", (long long)pairs->n);
    goto done;
  }
  if ((rc = fr_pairs_scores(emb, n_items, dim, pairs->pairs, pairs->n, scores, err)))
    goto done;
  int64_t a = 0, b = 0;
  for (int64_t i = 0; i < pairs->n; i++) {
    if (pairs->pairs[i].genuine)
      g[a++] = scores[i];
    else
      im[b++] = scores[i];
  }
  if ((rc = fr_verification_from_scores(g, a, im, b, out, err)))
    goto done;
  if (n_far > 0)
    rc = fr_verification_tpr_at_fars(g, a, im, b, fars, n_far, tpr, NULL, err);
done:
  free(scores);
  free(g);
  free(im);
  return rc;
}
