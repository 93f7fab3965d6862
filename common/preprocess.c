#include "faceri/preprocess.h"

#include "faceri/image.h"

int fr_preprocess_image(const fr_preprocess *pp, const uint8_t *bytes, size_t n, const char *name, float *out,
                        int *width, int *height, fr_error *err)
{
  fr_image img = {0}, cropped = {0}, resized = {0};
  int rc = fr_image_decode(bytes, n, name, &img, err);
  if (width)
    *width = rc ? 0 : img.width;
  if (height)
    *height = rc ? 0 : img.height;
  const fr_image *src = &img;
  if (!rc && pp->has_crop) {
    rc = fr_image_crop(&img, pp->crop_x, pp->crop_y, pp->crop_w, pp->crop_h, &cropped, err);
    if (rc)
      fr_error_prefix(err, "%s", name);
    src = &cropped;
  }
  if (!rc) {
    rc = fr_image_resize_bilinear(src, pp->input_w, pp->input_h, &resized, err);
    if (rc)
      fr_error_prefix(err, "%s", name);
  }
  if (!rc)
    fr_image_to_tensor(&resized, pp->mean, pp->std, out);
  fr_image_free(&img);
  fr_image_free(&cropped);
  fr_image_free(&resized);
  return rc;
}
