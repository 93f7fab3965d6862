/* libFuzzer target: arbitrary bytes as a model file, written to a temporary
 * file and loaded. Every input must give FR_OK or a clear error, never a crash.
 *
 * With FACERI_FUZZ_RESEAL=1 each input is treated as the HDF5 part instead: it
 * is written after an empty 512-byte user block and sealed with a valid
 * checksum, so the mutations reach HDF5 itself and the attribute and dataset
 * checks behind the seal (seed with the HDF5 part of a real model file:
 * `tail -c +513 model.h5`). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faceri/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_path[64];

static int write_input(const uint8_t *data, size_t size, int reseal)
{
  FILE *f = fopen(g_path, "wb");
  if (!f)
    return -1;
  static const uint8_t zeros[512];
  int ok = (!reseal || fwrite(zeros, 1, sizeof(zeros), f) == sizeof(zeros)) && fwrite(data, 1, size, f) == size;
  if (fclose(f) != 0 || !ok)
    return -1;
  return reseal ? fr_model_file_seal(g_path, NULL) : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static int reseal = -1;
  if (reseal < 0) {
    const char *e = getenv("FACERI_FUZZ_RESEAL");
    reseal = e && *e == '1';
    snprintf(g_path, sizeof(g_path), "/tmp/fuzz-model-%d.h5", (int)getpid());
  }
  if (write_input(data, size, reseal) != 0)
    return 0; /* not a valid HDF5 start for sealing: nothing to test */
  fr_model m;
  fr_error err;
  int rc = fr_model_load(g_path, &m, &err);
  if (rc == FR_OK) {
    if (fr_model_validate(&m, &err) != FR_OK)
      abort();
    fr_model_free(&m);
  } else if (!err.message[0] || !strstr(err.message, g_path)) {
    abort(); /* errors must name the file */
  }
  return 0;
}
