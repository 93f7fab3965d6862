#ifndef FACERI_VK_INTERNAL_H
#define FACERI_VK_INTERNAL_H
/* Shared between the files of worker/vk/ only. */
#include <pthread.h>

#include "faceri/vk_context.h"

struct fr_vk_context {
  VkInstance instance;
  VkDebugUtilsMessengerEXT messenger;
  VkPhysicalDevice physical;
  VkDevice device;
  VkQueue queue;
  uint32_t queue_family;
  VkCommandPool command_pool;
  fr_vk_device_info info;
  VkPhysicalDeviceMemoryProperties memory_props;
  int validation;
  uint64_t fence_timeout_ns;
  /* Counters written from the validation callback and from buffer code. */
  pthread_mutex_t lock;
  uint64_t validation_messages;
  uint64_t memory_in_use, memory_peak;
  /* One transfer command buffer and fence for blocking uploads and downloads. */
  VkCommandBuffer transfer_cmd;
  VkFence transfer_fence;
};

/* Maps a VkResult to an fr_error naming the call. Returns FR_OK on VK_SUCCESS. */
int fr_vk_check(VkResult r, const char *what, fr_error *err);
const char *fr_vk_result_name(VkResult r);
/* Waits for a fence within the context's timeout; device loss and timeout are errors. */
int fr_vk_wait_fence(fr_vk_context *ctx, VkFence fence, const char *what, fr_error *err);

#endif
