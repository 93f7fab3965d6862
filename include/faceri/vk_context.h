#ifndef FACERI_VK_CONTEXT_H
#define FACERI_VK_CONTEXT_H
/* The Vulkan compute context: device choice, memory, compute kernels, and
 * recorded sequences of dispatches that can be submitted many times.
 *
 * Everything a network or a test needs from Vulkan goes through here, so the
 * ops never touch instance, queue or descriptor bookkeeping. */
#include <stdint.h>
#include <vulkan/vulkan.h>

#include "faceri/error.h"

typedef struct fr_vk_device_info {
  int index;                 /* position in vkEnumeratePhysicalDevices */
  char name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
  VkPhysicalDeviceType type;
  uint32_t vendor_id, device_id;
  uint32_t api_version, driver_version;
  char driver_name[VK_MAX_DRIVER_NAME_SIZE];
  char driver_info[VK_MAX_DRIVER_INFO_SIZE];
  uint64_t device_local_bytes;     /* sum of device-local heaps */
  uint64_t max_storage_buffer_range;
  uint64_t max_texel_buffer_elements;
  uint32_t max_workgroup_invocations;
  uint32_t max_workgroup_size[3];
  uint32_t max_workgroup_count[3];
  uint32_t max_shared_memory;
  uint32_t max_push_constants;
  uint32_t subgroup_size;
  uint32_t subgroup_ops;     /* VkSubgroupFeatureFlags available in compute shaders */
  uint64_t min_texel_offset_alignment;
  uint64_t min_storage_offset_alignment;
  int has_texel_rgba32f;     /* RGBA32F uniform texel buffers usable */
  int has_int64;             /* shaderInt64: enabled on the device when present */
  int has_timestamps;        /* compute queue writes timestamps */
  float timestamp_period_ns;
  int unified_memory;        /* a memory type is device-local and host-visible */
} fr_vk_device_info;

const char *fr_vk_device_type_name(VkPhysicalDeviceType type);

/* Lists every Vulkan device (no logical device is made). *out is malloc'd. */
int fr_vk_list_devices(fr_vk_device_info **out, int *count, fr_error *err);

typedef struct fr_vk_options {
  const char *device;   /* index or case-insensitive name substring; NULL: $FACERI_DEVICE, else best */
  int validation;       /* 1 on, 0 off, -1: on when $FACERI_VALIDATION=1 */
  uint64_t fence_timeout_ms; /* 0: $FACERI_FENCE_TIMEOUT_MS or 60000 */
} fr_vk_options;

typedef struct fr_vk_context fr_vk_context;

/* Ranks devices discrete > integrated > virtual > CPU, then by device-local memory. */
int fr_vk_context_create(const fr_vk_options *opts, fr_vk_context **out, fr_error *err);
void fr_vk_context_destroy(fr_vk_context *ctx);
const fr_vk_device_info *fr_vk_context_device(const fr_vk_context *ctx);
/* Warnings and errors reported by the validation layer so far (tests require 0). */
uint64_t fr_vk_validation_messages(const fr_vk_context *ctx);
int fr_vk_validation_enabled(const fr_vk_context *ctx);
/* Device memory held by live buffers, now and at its peak. */
uint64_t fr_vk_memory_in_use(const fr_vk_context *ctx);
uint64_t fr_vk_memory_peak(const fr_vk_context *ctx);
void fr_vk_memory_reset_peak(fr_vk_context *ctx);

/* ---- buffers ---- */
typedef struct fr_vk_buffer {
  VkBuffer buffer;
  VkDeviceMemory memory;
  uint64_t size;
  void *mapped; /* non-NULL when the memory is host-visible (mapped for its lifetime) */
} fr_vk_buffer;

/* Device-local storage buffer (host-visible too where such memory exists). */
int fr_vk_buffer_create(fr_vk_context *ctx, uint64_t size, fr_vk_buffer *out, fr_error *err);
void fr_vk_buffer_destroy(fr_vk_context *ctx, fr_vk_buffer *buf);
/* Copies through the mapping or through a staging buffer; blocks until done. */
int fr_vk_buffer_upload(fr_vk_context *ctx, fr_vk_buffer *buf, uint64_t offset, const void *data, uint64_t size,
                        fr_error *err);
int fr_vk_buffer_download(fr_vk_context *ctx, const fr_vk_buffer *buf, uint64_t offset, void *data, uint64_t size,
                          fr_error *err);

/* ---- kernels: one compute pipeline per shader + specialisation ---- */
typedef enum fr_vk_binding_kind {
  FR_BIND_STORAGE = 0, /* std430 storage buffer */
  FR_BIND_TEXEL = 1,   /* uniform texel buffer, RGBA32F view (samplerBuffer) */
} fr_vk_binding_kind;

#define FR_VK_MAX_BINDINGS 8
#define FR_VK_MAX_SPEC 8

typedef struct fr_vk_kernel fr_vk_kernel;

/* shader: name of shaders/<name>.comp. Bindings are set 0, binding i. Specialisation
 * constant i gets spec[i]; by convention ids 0,1,2 are the workgroup size. */
int fr_vk_kernel_create(fr_vk_context *ctx, const char *shader, int n_bindings, const fr_vk_binding_kind *kinds,
                        uint32_t push_size, const uint32_t *spec, int n_spec, fr_vk_kernel **out, fr_error *err);
void fr_vk_kernel_destroy(fr_vk_context *ctx, fr_vk_kernel *kernel);
const char *fr_vk_kernel_name(const fr_vk_kernel *kernel);

/* ---- sequences: a recorded command buffer of dispatches ---- */
typedef struct fr_vk_arg {
  const fr_vk_buffer *buffer;
  uint64_t offset;
  uint64_t range; /* 0: to the end of the buffer */
} fr_vk_arg;

typedef struct fr_vk_sequence fr_vk_sequence;

/* max_timed: how many dispatches may carry a timestamp label (0: none). */
int fr_vk_sequence_create(fr_vk_context *ctx, int max_timed, fr_vk_sequence **out, fr_error *err);
void fr_vk_sequence_destroy(fr_vk_sequence *seq);
/* Starts recording (discarding anything recorded before). */
int fr_vk_sequence_begin(fr_vk_sequence *seq, fr_error *err);
/* label != NULL: the dispatch is timed under that label (if the device has timestamps). */
int fr_vk_sequence_dispatch(fr_vk_sequence *seq, const fr_vk_kernel *kernel, const fr_vk_arg *args,
                            const void *push, uint32_t gx, uint32_t gy, uint32_t gz, const char *label,
                            fr_error *err);
/* Orders every earlier shader write before every later shader read or write. */
void fr_vk_sequence_barrier(fr_vk_sequence *seq);
int fr_vk_sequence_end(fr_vk_sequence *seq, fr_error *err);
/* Submits and waits (bounded by the context's fence timeout). */
int fr_vk_sequence_run(fr_vk_sequence *seq, fr_error *err);
/* After a run: the number of timed dispatches and each one's label and milliseconds. */
int fr_vk_sequence_timed_count(const fr_vk_sequence *seq);
int fr_vk_sequence_timing(const fr_vk_sequence *seq, int i, const char **label, double *ms);

/* Rounds n up to a multiple of m. */
static inline uint32_t fr_div_up(uint32_t n, uint32_t m) { return (n + m - 1) / m; }

#endif
