#ifndef FACERI_VK_KERNEL_INTERNAL_H
#define FACERI_VK_KERNEL_INTERNAL_H
#include "vk_internal.h"

struct fr_vk_kernel {
  char name[64];
  int n_bindings;
  fr_vk_binding_kind kinds[FR_VK_MAX_BINDINGS];
  uint32_t push_size;
  VkDescriptorSetLayout set_layout;
  VkPipelineLayout layout;
  VkPipeline pipeline;
};

#endif
