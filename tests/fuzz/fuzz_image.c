/* libFuzzer target: any bytes through fr_image_decode, then the preprocessing
 * a worker applies (crop, resize to 112, normalise), so the decoders and the
 * resizers see whatever shapes the decoders let through.
 * Build with clang and -DFACERI_FUZZ=ON; run e.g.
 *   ./fuzz_image -max_total_time=60 -rss_limit_mb=4096 corpus/ */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  fr_image img, crop, small;
  fr_error err;
  int probably = fr_image_is_probably_image(data, size);
  if (fr_image_decode(data, size, "fuzz", &img, &err) != FR_OK) {
    if (img.pixels || err.message[0] == '\0')
      abort(); /* an error must leave no image and say why */
    return 0;
  }
  if (!probably || img.channels != 3 || img.width < 1 || img.height < 1)
    abort();
  /* Preprocessing is only exercised on small images: the fuzzer's time is
   * better spent in the decoders than in resizing 16k x 16k noise. */
  if ((long long)img.width * img.height <= 512 * 512) {
    int w = img.width > 1 ? img.width / 2 : 1, h = img.height > 1 ? img.height / 2 : 1;
    if (fr_image_crop(&img, img.width - w, img.height - h, w, h, &crop, &err) == FR_OK) {
      fr_resize_mode mode = (fr_resize_mode)(size % 3);
      if (fr_image_resize(&crop, 112, 112, mode, &small, &err) == FR_OK) {
        static float tensor[112 * 112 * 3];
        const float mean[3] = {127.5f, 127.5f, 127.5f}, std[3] = {128, 128, 128};
        fr_image_to_tensor(&small, mean, std, tensor);
        fr_image_free(&small);
      }
      fr_image_free(&crop);
    }
  }
  fr_image_free(&img);
  return 0;
}
