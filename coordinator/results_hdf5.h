#ifndef FACERI_RESULTS_HDF5_H
#define FACERI_RESULTS_HDF5_H
/* Small HDF5 helpers for the results writer (coordinator/ only). All return < 0 (or
 * non-zero) on failure; callers turn that into a message naming the file. */
#include <hdf5.h>
#include <stdint.h>

hid_t fr_h5_string_type(H5T_cset_t cset); /* variable-length string */
int fr_h5_group(hid_t file, const char *name);
/* Extensible dataset of rows: rank 1 when cols == 0, else [rows, cols]. fill may be NULL. */
hid_t fr_h5_create_rows(hid_t file, const char *name, hid_t type, hsize_t cols, hsize_t chunk, const void *fill,
                        const char *description);
int64_t fr_h5_rows(hid_t ds);
/* Writes rows start .. start + n - 1, growing the dataset when needed. */
int fr_h5_write_rows(hid_t ds, hid_t mem_type, int64_t start, int n, hsize_t cols, const void *data);
int fr_h5_read_rows(hid_t ds, hid_t mem_type, int64_t start, int n, hsize_t cols, void *data);
int fr_h5_write_vector(hid_t file, const char *name, hid_t file_type, hid_t mem_type, int n, const void *data);
/* Reads a whole 1-D dataset into a malloc'd array (strings: char*, free with fr_h5_free_strings). */
int fr_h5_read_vector(hid_t file, const char *name, hid_t mem_type, int64_t *n, void **data, size_t elem_size);
void fr_h5_free_strings(char **strings, int64_t n);
int fr_h5_set_string_attr(hid_t obj, const char *name, const char *value);
int fr_h5_set_int_attr(hid_t obj, const char *name, int64_t value);
int fr_h5_get_string_attr(hid_t obj, const char *name, char *out, size_t size);
int fr_h5_get_int_attr(hid_t obj, const char *name, int64_t *out);
int fr_h5_set_float_attr(hid_t obj, const char *name, float value); /* float32 */
int fr_h5_get_double_attr(hid_t obj, const char *name, double *out);

/* String -> dense id, in insertion order. */
typedef struct fr_label_map {
  char **names;
  int n, cap;
  int *slots; /* open addressing: index + 1, 0 empty */
  int n_slots;
} fr_label_map;
int fr_label_map_init(fr_label_map *m);
/* Id of name; inserts it when insert is set (else -1 when absent); -1 on allocation failure. */
int fr_label_map_get(fr_label_map *m, const char *name, int insert);
int fr_label_map_size(const fr_label_map *m);
void fr_label_map_free(fr_label_map *m);

#endif
