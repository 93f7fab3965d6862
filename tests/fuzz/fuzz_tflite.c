/* libFuzzer target: arbitrary bytes as a TFLite file. The importer must
 * either build a model that passes fr_model_validate or return an error;
 * ASan/UBSan turn any out-of-bounds read into a crash.
 * Seed with the real MobileFaceNet.tflite so mutations reach the graph walk. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "faceri/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  fr_model m;
  fr_error err;
  if (fr_model_import_tflite_buffer(data, size, "fuzz.tflite", &m, &err) == FR_OK) {
    if (fr_model_validate(&m, &err) != FR_OK)
      abort(); /* the importer returned a model it should have refused */
    fr_model_free(&m);
  } else if (!err.message[0]) {
    abort(); /* every error must say something */
  }
  return 0;
}
