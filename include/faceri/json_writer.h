#ifndef FACERI_JSON_WRITER_H
#define FACERI_JSON_WRITER_H
/* The few JSON pieces the --json outputs need: strings escaped byte-exactly
 * (keys may be non-UTF-8: such bytes become \u00XX of the byte, so the output is
 * always valid JSON) and numbers where NaN and infinities become null. */
#include <stdio.h>

void fr_json_string(FILE *out, const char *s);
void fr_json_number(FILE *out, double v);
/* "name": before a value, with a leading comma unless first. */
void fr_json_key(FILE *out, const char *name, int first);

#endif
