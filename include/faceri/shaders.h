#ifndef FACERI_SHADERS_H
#define FACERI_SHADERS_H
/* SPIR-V of every shader in shaders/, compiled by glslc at build time and embedded. */
#include <stddef.h>
#include <stdint.h>

typedef struct fr_shader_blob {
  const char *name;     /* file name without .comp */
  const uint32_t *words;
  size_t size_bytes;
} fr_shader_blob;

/* NULL when no shader of that name was built. */
const fr_shader_blob *fr_shader_find(const char *name);

#endif
