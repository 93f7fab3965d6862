#include "faceri/json_writer.h"

#include <math.h>

void fr_json_string(FILE *out, const char *s)
{
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(out, "\\%c", *p);
    else if (*p == '\n')
      fputs("\\n", out);
    else if (*p < 0x20 || *p >= 0x7f)
      fprintf(out, "\\u%04x", *p); /* bytes, not code points: keys need not be UTF-8 */
    else
      fputc(*p, out);
  }
  fputc('"', out);
}

void fr_json_number(FILE *out, double v)
{
  if (!isfinite(v))
    fputs("null", out);
  else if (v == (double)(long long)v && fabs(v) < 1e15)
    fprintf(out, "%lld", (long long)v);
  else
    fprintf(out, "%.9g", v);
}

void fr_json_key(FILE *out, const char *name, int first)
{
  if (!first)
    fputc(',', out);
  fr_json_string(out, name);
  fputc(':', out);
}
