#ifndef FACERI_INPUT_LIST_H
#define FACERI_INPUT_LIST_H
/* The INPUT... arguments of `faceri run`, `coordinate` and `embed`, expanded by
 * faceri itself (the same on every shell and in job scripts) into the paths
 * fr_input_source_open reads. Each argument, in the order given, becomes:
 *
 *   @LIST            the paths in the text file LIST, one per line, in file
 *                    order; blank lines and lines starting with '#' are
 *                    ignored, spaces around a path and a CR before the LF are
 *                    dropped; a relative path is relative to the folder of
 *                    LIST. The lines are taken literally (no patterns). A
 *                    missing LIST, or one that names no path, is an error.
 *                    (A file whose name starts with '@': write ./@name.)
 *   an existing path itself, whatever characters it holds;
 *   PRE{A..B}POST    WebDataset brace ranges: {000..009} gives 000 001 ... 009
 *                    (zero-padded to the wider bound when either bound starts
 *                    with 0), {9..7} counts down; {a,b,c} lists; several
 *                    groups multiply, leftmost slowest. Expanded in order;
 *                    each result is then taken as below;
 *   a glob pattern   (*, ? or [...]) expanded with glob(3), matches sorted by
 *                    strcmp (bytes, whatever the locale). A pattern matching
 *                    nothing is an error naming it;
 *   anything else    as given (fr_input_source_open reports it when missing).
 *
 * The expansion is deterministic for the same files, so the item order and
 * the --resume fingerprints (one per expanded path) cover the expanded list. */
#include "faceri/error.h"

#define FR_INPUT_LIST_MAX_PATHS 10000000 /* a runaway brace range is refused */

typedef struct fr_input_list {
  char **paths; /* n paths, malloc'd */
  int n;
} fr_input_list;

/* Fills *out (zeroed first). Errors name the argument or list file and line. */
int fr_input_list_expand(const char *const *args, int n_args, fr_input_list *out, fr_error *err);
void fr_input_list_free(fr_input_list *l);

#endif
