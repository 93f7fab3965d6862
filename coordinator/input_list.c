/* INPUT arguments -> paths: @lists, WebDataset brace ranges, glob patterns
 * (rules in include/faceri/input_list.h). */
#include "faceri/input_list.h"

#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct list_cap {
  fr_input_list *l;
  int cap;
} list_cap;

static int push(list_cap *lc, const char *path, size_t len, fr_error *err)
{
  fr_input_list *l = lc->l;
  if (l->n >= FR_INPUT_LIST_MAX_PATHS)
    return fr_error_set(err, FR_ERR_INVALID, "inputs: more than %d paths after expansion", FR_INPUT_LIST_MAX_PATHS);
  if (l->n == lc->cap) {
    int cap = lc->cap ? lc->cap * 2 : 16;
    char **grown = realloc(l->paths, (size_t)cap * sizeof(char *));
    if (!grown)
      return fr_error_set(err, FR_ERR_NOMEM, "inputs: out of memory expanding the input list");
    l->paths = grown;
    lc->cap = cap;
  }
  char *copy = malloc(len + 1);
  if (!copy)
    return fr_error_set(err, FR_ERR_NOMEM, "inputs: out of memory expanding the input list");
  memcpy(copy, path, len);
  copy[len] = '\0';
  l->paths[l->n++] = copy;
  return FR_OK;
}

static int exists(const char *path)
{
  struct stat st;
  return lstat(path, &st) == 0;
}

static int has_glob_meta(const char *s) { return strpbrk(s, "*?[") != NULL; }

static int compare_paths(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int expand_glob(list_cap *lc, const char *pattern, fr_error *err)
{
  glob_t g;
  memset(&g, 0, sizeof(g));
  int r = glob(pattern, GLOB_NOSORT, NULL, &g);
  int rc = FR_OK;
  if (r == GLOB_NOMATCH)
    rc = fr_error_set(err, FR_ERR_NOT_FOUND, "%s: no file matches this pattern", pattern);
  else if (r == GLOB_NOSPACE)
    rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory expanding the pattern", pattern);
  else if (r != 0)
    rc = fr_error_set(err, FR_ERR_IO, "%s: cannot expand the pattern (a folder could not be read)", pattern);
  if (!rc) {
    /* glob sorts with strcoll; the item order must not depend on the locale. */
    qsort(g.gl_pathv, g.gl_pathc, sizeof(char *), compare_paths);
    for (size_t i = 0; i < g.gl_pathc && !rc; i++)
      rc = push(lc, g.gl_pathv[i], strlen(g.gl_pathv[i]), err);
  }
  if (r == 0)
    globfree(&g);
  return rc;
}

/* One brace-free word: itself when it exists or has no pattern, else its matches. */
static int expand_word(list_cap *lc, const char *word, fr_error *err)
{
  if (exists(word) || !has_glob_meta(word))
    return push(lc, word, strlen(word), err);
  return expand_glob(lc, word, err);
}

/* Parses "A..B" (decimal, optional sign) into bounds and the zero-padded width. */
static int parse_range(const char *s, size_t n, long long *a, long long *b, int *width)
{
  const char *dots = NULL;
  for (size_t i = 0; i + 1 < n; i++)
    if (s[i] == '.' && s[i + 1] == '.') {
      dots = s + i;
      break;
    }
  if (!dots)
    return 0;
  const char *parts[2] = {s, dots + 2};
  size_t lens[2] = {(size_t)(dots - s), n - (size_t)(dots + 2 - s)};
  long long v[2];
  int pad = 0, w = 0;
  for (int k = 0; k < 2; k++) {
    const char *p = parts[k];
    size_t len = lens[k], i = 0;
    if (len > 0 && (p[0] == '-' || p[0] == '+'))
      i = 1;
    if (i == len || len - i > 18)
      return 0;
    for (size_t j = i; j < len; j++)
      if (p[j] < '0' || p[j] > '9')
        return 0;
    if (len - i > 1 && p[i] == '0')
      pad = 1;
    if ((int)len > w)
      w = (int)len;
    char buf[24];
    memcpy(buf, p, len);
    buf[len] = '\0';
    v[k] = strtoll(buf, NULL, 10);
  }
  *a = v[0];
  *b = v[1];
  *width = pad ? w : 0;
  return 1;
}

static int expand_braces(list_cap *lc, const char *word, fr_error *err);

/* word with its brace group at [open, close] replaced by alternative [s, s + n). */
static int expand_alternative(list_cap *lc, const char *word, size_t open, size_t close, const char *s, size_t n,
                              fr_error *err)
{
  size_t pre = open, post = strlen(word) - close - 1;
  char *w = malloc(pre + n + post + 1);
  if (!w)
    return fr_error_set(err, FR_ERR_NOMEM, "inputs: out of memory expanding %s", word);
  memcpy(w, word, pre);
  memcpy(w + pre, s, n);
  memcpy(w + pre + n, word + close + 1, post + 1);
  int rc = expand_braces(lc, w, err);
  free(w);
  return rc;
}

/* Expands the leftmost brace group that is a range or a list, recursively. */
static int expand_braces(list_cap *lc, const char *word, fr_error *err)
{
  for (const char *open_p = strchr(word, '{'); open_p; open_p = strchr(open_p + 1, '{')) {
    size_t open = (size_t)(open_p - word), close = 0;
    int depth = 0;
    for (size_t i = open; word[i]; i++) {
      depth += word[i] == '{';
      depth -= word[i] == '}';
      if (depth == 0) {
        close = i;
        break;
      }
    }
    if (!close)
      break; /* unbalanced: the rest is literal */
    const char *body = word + open + 1;
    size_t len = close - open - 1;
    long long a, b;
    int width;
    if (parse_range(body, len, &a, &b, &width)) {
      long long step = a <= b ? 1 : -1, count = (a <= b ? b - a : a - b) + 1;
      if (count > FR_INPUT_LIST_MAX_PATHS)
        return fr_error_set(err, FR_ERR_INVALID, "%s: the range {%.*s} has %lld values, over the limit of %d", word,
                            (int)len, body, count, FR_INPUT_LIST_MAX_PATHS);
      for (long long v = a;; v += step) {
        char num[32];
        int k = v < 0 ? snprintf(num, sizeof(num), "-%0*lld", width > 0 ? width - 1 : 0, -v)
                      : snprintf(num, sizeof(num), "%0*lld", width, v);
        int rc = expand_alternative(lc, word, open, close, num, (size_t)k, err);
        if (rc)
          return rc;
        if (v == b)
          break;
      }
      return FR_OK;
    }
    /* A list: split on the commas outside nested groups. */
    int commas = 0;
    depth = 0;
    for (size_t i = 0; i < len; i++) {
      depth += body[i] == '{';
      depth -= body[i] == '}';
      commas += depth == 0 && body[i] == ',';
    }
    if (commas == 0)
      continue; /* "{x}" is literal, as in the shell */
    size_t start = 0;
    depth = 0;
    for (size_t i = 0; i <= len; i++) {
      if (i < len) {
        depth += body[i] == '{';
        depth -= body[i] == '}';
      }
      if (i == len || (depth == 0 && body[i] == ',')) {
        int rc = expand_alternative(lc, word, open, close, body + start, i - start, err);
        if (rc)
          return rc;
        start = i + 1;
      }
    }
    return FR_OK;
  }
  return expand_word(lc, word, err);
}

static int read_list(list_cap *lc, const char *list_path, fr_error *err)
{
  FILE *f = fopen(list_path, "r");
  if (!f)
    return fr_error_set(err, errno == ENOENT ? FR_ERR_NOT_FOUND : FR_ERR_IO, "@%s: cannot read the list of inputs: %s",
                        list_path, strerror(errno));
  const char *slash = strrchr(list_path, '/');
  size_t dir_len = slash ? (size_t)(slash - list_path) + 1 : 0; /* with the '/' */
  char *line = NULL, *joined = NULL;
  size_t line_cap = 0, joined_cap = 0;
  ssize_t got;
  int rc = FR_OK, lineno = 0, before = lc->l->n;
  while (!rc && (got = getline(&line, &line_cap, f)) >= 0) {
    lineno++;
    size_t end = (size_t)got, start = 0;
    while (end > 0 && (line[end - 1] == '\n' || line[end - 1] == '\r' || line[end - 1] == ' ' || line[end - 1] == '\t'))
      end--;
    while (start < end && (line[start] == ' ' || line[start] == '\t'))
      start++;
    if (start == end || line[start] == '#')
      continue;
    if (memchr(line + start, '\0', end - start)) {
      rc = fr_error_set(err, FR_ERR_FORMAT, "@%s:%d: a NUL byte in a path", list_path, lineno);
      break;
    }
    size_t n = end - start, need = (line[start] == '/' ? 0 : dir_len) + n + 1;
    if (need > joined_cap) {
      char *grown = realloc(joined, need);
      if (!grown) {
        rc = fr_error_set(err, FR_ERR_NOMEM, "@%s: out of memory", list_path);
        break;
      }
      joined = grown;
      joined_cap = need;
    }
    size_t at = 0;
    if (line[start] != '/') {
      memcpy(joined, list_path, dir_len);
      at = dir_len;
    }
    memcpy(joined + at, line + start, n);
    rc = push(lc, joined, at + n, err);
  }
  if (!rc && ferror(f))
    rc = fr_error_set(err, FR_ERR_IO, "@%s: read error after line %d", list_path, lineno);
  if (!rc && lc->l->n == before)
    rc = fr_error_set(err, FR_ERR_INVALID, "@%s: the list names no input (only blank lines and comments)", list_path);
  free(line);
  free(joined);
  fclose(f);
  return rc;
}

int fr_input_list_expand(const char *const *args, int n_args, fr_input_list *out, fr_error *err)
{
  memset(out, 0, sizeof(*out));
  list_cap lc = {.l = out};
  int rc = FR_OK;
  for (int i = 0; i < n_args && !rc; i++) {
    const char *a = args[i];
    if (!a || !*a)
      rc = fr_error_set(err, FR_ERR_INVALID, "input %d: empty path", i + 1);
    else if (a[0] == '@')
      rc = a[1] ? read_list(&lc, a + 1, err)
                : fr_error_set(err, FR_ERR_INVALID, "input %d: '@' without a list file name", i + 1);
    else if (exists(a))
      rc = push(&lc, a, strlen(a), err);
    else
      rc = expand_braces(&lc, a, err);
  }
  if (rc)
    fr_input_list_free(out);
  return rc;
}

void fr_input_list_free(fr_input_list *l)
{
  if (!l)
    return;
  for (int i = 0; i < l->n; i++)
    free(l->paths[i]);
  free(l->paths);
  l->paths = NULL;
  l->n = 0;
}
