#ifndef FACERI_MODEL_FILE_INTERNAL_H
#define FACERI_MODEL_FILE_INTERNAL_H
/* Internal: shared by model_file.c (save, seal) and model_file_load.c. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "faceri/error.h"
#include "faceri/model.h"

/* The HDF5 part starts after a 512-byte user block that HDF5 itself ignores;
 * it holds MAGIC and the SHA-256 of everything after it. */
#define USERBLOCK 512
#define MAGIC "faceri-model\n"
/* Bound on a model file: all parameters as float32 plus generous metadata. */
#define MAX_FILE_BYTES ((long long)FR_MODEL_MAX_PARAMS * 4 + (64LL << 20))

int fr_mf_sha256_hex(const void *data, size_t size, char out[65]);
/* Reads a whole file (at most MAX_FILE_BYTES); errors name the path. */
int fr_mf_read_file(const char *path, uint8_t **data, size_t *size, fr_error *err);
/* FR_ERR_FORMAT unless data starts with our user block and its SHA-256 matches. */
int fr_mf_check_seal(const char *path, const uint8_t *data, size_t size, fr_error *err);

/* The optional /prototypes, /heads and /training groups (model_file_extra.c). */
#include <hdf5.h>
int fr_mf_write_extras(hid_t f, const fr_model *m, const char *path, fr_error *err);
int fr_mf_read_extras(hid_t f, fr_model *m, const char *path, fr_error *err);
/* `faceri model info`'s lines for the optional tensors, the RI heads and /training. */
/* model_info.c: `faceri model info`'s sections after the layer table: the UI centre
 * and its provenance, the named tensors and the RI heads, the training state. */
void fr_mf_print_ui(const fr_model *m, FILE *out);
void fr_mf_print_extras(const fr_model *m, FILE *out);

#endif
