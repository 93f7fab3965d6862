#ifndef FACERI_LABELS_H
#define FACERI_LABELS_H
/* Where an item's label comes from. By default it is the name of the folder
 * holding the file or member (fr_input_item.label). A labeler can override it:
 *
 *   --labels FILE.csv   rows of `key,label`, keys exactly as stored in
 *                       /items/key ("ARCHIVE:MEMBER" or the file path). CSV
 *                       as RFC 4180 writes it: fields may be quoted ("a,b",
 *                       "say ""hi"""), quoted fields may span lines, CRLF or
 *                       LF line ends, blank lines ignored, and a first row
 *                       that reads exactly `key,label` is a header. A key the
 *                       file does not name keeps its folder label.
 *   --label-regex RE    a POSIX extended regular expression with a capture
 *                       group, matched against the key: the first group is
 *                       the label. No match (or an empty group): folder label.
 *
 * With both, the CSV wins for the keys it names, then the regex, then the
 * folder. Keys and labels are bytes: non-UTF-8 keys match byte for byte. */
#include <stddef.h>

#include "faceri/error.h"

typedef struct fr_labeler fr_labeler;

/* Either argument may be NULL; with both NULL *out is NULL (folder labels).
 * A CSV line that is not two fields (bad quoting, one field, three fields),
 * an empty key, or one key given two different labels is FR_ERR_FORMAT
 * naming the file and the line; an unreadable file FR_ERR_IO/NOT_FOUND. A
 * regex that does not compile or has no capture group is FR_ERR_INVALID. */
int fr_labeler_create(const char *csv_path, const char *regex, fr_labeler **out, fr_error *err);

/* The label of the item with this key. folder_label is returned when nothing
 * overrides it (NULL is taken as ""). The result is valid until the next call
 * on this labeler or its destruction; not thread-safe. l may be NULL. */
const char *fr_labeler_apply(fr_labeler *l, const char *key, const char *folder_label);

/* Number of keys read from the CSV (0 without one). */
size_t fr_labeler_csv_keys(const fr_labeler *l);

/* What the labeler was made from, recorded in results files and checked by
 * --resume: the CSV path as given, the SHA-256 (hex) of the CSV's bytes, the
 * regex; each "" when not given (and for l == NULL). */
const char *fr_labeler_csv_path(const fr_labeler *l);
const char *fr_labeler_csv_sha256(const fr_labeler *l);
const char *fr_labeler_regex(const fr_labeler *l);

void fr_labeler_destroy(fr_labeler *l);

#endif
