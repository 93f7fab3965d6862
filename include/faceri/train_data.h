#ifndef FACERI_TRAIN_DATA_H
#define FACERI_TRAIN_DATA_H
/* Training data: labelled faces read once from any inputs the pipeline reads (files,
 * folders, archives), decoded, cropped and resized exactly as inference prepares them
 * (fr_preprocess), and kept as 8-bit RGB at the model's input size, so every epoch
 * after the first costs no decoding and the network sees the pixels `faceri run`
 * would give it. Identities are sorted by name and numbered from 0; a contiguous
 * range of them can be chosen (a split by identity: train on one range, hold out the
 * rest). Epoch order is a seeded permutation that depends only on (seed, epoch), so a
 * resumed run sees the same batches as an uninterrupted one.
 *
 * Memory: input_w * input_h * 3 bytes per image (37,632 for 112x112): 226 MiB for
 * 6,000 faces. `max_bytes` refuses data that would not fit rather than swapping. */
#include <stddef.h>
#include <stdint.h>

#include "faceri/align.h"
#include "faceri/error.h"
#include "faceri/preprocess.h"

typedef struct fr_train_data_options {
  fr_preprocess pp;          /* input size and crop (mean/std are applied per batch) */
  const char *labels_csv;    /* as faceri run --labels; NULL: none */
  const char *label_regex;   /* as faceri run --label-regex; NULL: none */
  int first_identity;        /* the range of identities kept, in sorted name order */
  int identity_count;        /* 0: all from first_identity on */
  int min_images;            /* identities with fewer images (before the range is taken) are dropped */
  size_t max_bytes;          /* 0: 8 GiB */
  /* An unlabelled set (the UI faces of `faceri train --ui`): every image is kept, labels
   * and identity options are ignored, n_classes is 0 and every label -1. */
  int unlabelled;
  /* Take the head box of a pedestrian crop (ui_centre.h FR_HEAD_BOX_*, scaled to each
   * image's size) before resizing, as `faceri model set-ui --face-region head` does. */
  int head_box;
  /* --align: each kept image aligned once, after the identities are chosen (the inputs
   * are read a second time for them): fr_aligner_align, then resized to the model size
   * when it is not 112x112, as fr_aligner_align_input does at inference; pp's crop,
   * when set, becomes the fallback crop. NULL: decode, crop, resize as above. */
  fr_aligner *aligner;
  fr_align_options align_opts;
  /* Called after every item read (may be NULL): for a progress display. */
  void (*progress)(void *user, int64_t items_read, int64_t images_kept);
  void *progress_user;
} fr_train_data_options;

typedef struct fr_train_data {
  int width, height;         /* the model input size */
  int n_images, n_classes;
  uint8_t *pixels;           /* n_images x height x width x 3, RGB */
  int32_t *labels;           /* [n_images], 0..n_classes-1 */
  char **class_names;        /* [n_classes], sorted */
  int64_t items_read;        /* every item the inputs held */
  int64_t skipped;           /* not images (README, .txt, ...) */
  int64_t failed;            /* images that did not decode or crop: logged, not fatal */
  int64_t unlabelled;        /* images with an empty label */
  int64_t outside_range;     /* images of identities outside the chosen range or below min_images */
  int input_errors;          /* inputs that failed as a whole part-way (a truncated archive) */
  int64_t aligned, fallbacks; /* --align: kept images aligned / given the fallback resize */
  char fingerprint[65];      /* SHA-256 over the kept keys, labels and pixels: what a resume checks */
} fr_train_data;

/* Reads every input. One bad image is counted and logged (with its key and the
 * reason), never fatal; an input that cannot be opened is an error naming it. No
 * image left after selection is FR_ERR_INVALID. */
int fr_train_data_load(const char *const *inputs, int n_inputs, const fr_train_data_options *opts,
                       fr_train_data *out, fr_error *err);
void fr_train_data_free(fr_train_data *d);

/* The image order of epoch `epoch` (a permutation of 0..n_images-1) for this seed. */
void fr_train_data_epoch_order(const fr_train_data *d, uint64_t seed, int64_t epoch, int32_t *order);

/* Images order[0..count-1] as the network's float input (x = (p - mean) / std) and
 * their labels. flip: per image 0/1 horizontal flip (NULL: none). */
/* One 8-bit image (width x height x 3) as the network's float input, mirrored or not. */
void fr_train_data_to_input(const uint8_t *px, int width, int height, const float mean[3], const float std[3],
                            int mirror, float *out);

void fr_train_data_batch(const fr_train_data *d, const int32_t *order, int count, const float mean[3],
                         const float std[3], const uint8_t *flip, float *images, int32_t *labels);

#endif
