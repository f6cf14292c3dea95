/* device.c: Vulkan instance, physical device choice and limits, logical device, queue,
 * validation messenger. */
#include "internal.h"

#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *vkd_vk_result_name(VkResult vr) {
    switch (vr) {
#define C(x) case x: return #x;
    C(VK_SUCCESS) C(VK_NOT_READY) C(VK_TIMEOUT) C(VK_INCOMPLETE)
    C(VK_ERROR_OUT_OF_HOST_MEMORY) C(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    C(VK_ERROR_INITIALIZATION_FAILED) C(VK_ERROR_DEVICE_LOST) C(VK_ERROR_MEMORY_MAP_FAILED)
    C(VK_ERROR_LAYER_NOT_PRESENT) C(VK_ERROR_EXTENSION_NOT_PRESENT)
    C(VK_ERROR_FEATURE_NOT_PRESENT) C(VK_ERROR_INCOMPATIBLE_DRIVER) C(VK_ERROR_TOO_MANY_OBJECTS)
    C(VK_ERROR_FORMAT_NOT_SUPPORTED) C(VK_ERROR_FRAGMENTED_POOL) C(VK_ERROR_OUT_OF_POOL_MEMORY)
    C(VK_ERROR_INVALID_SHADER_NV) C(VK_ERROR_UNKNOWN)
#undef C
    default: return "VkResult(unknown)";
    }
}

vkd_result vkd_vk_fail(vkd_error *err, VkResult vr, const char *what) {
    vkd_result code = VKD_ERR_DEVICE;
    if (vr == VK_ERROR_OUT_OF_DEVICE_MEMORY) code = VKD_ERR_DEVICE_MEMORY;
    if (vr == VK_ERROR_OUT_OF_HOST_MEMORY) code = VKD_ERR_NOMEM;
    if (vr == VK_ERROR_FEATURE_NOT_PRESENT || vr == VK_ERROR_EXTENSION_NOT_PRESENT)
        code = VKD_ERR_UNSUPPORTED;
    return vkd_fail(err, code, "vulkan: %s failed: %s", what, vkd_vk_result_name(vr));
}

static VKAPI_ATTR VkBool32 VKAPI_CALL on_validation(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
                                                    VkDebugUtilsMessageTypeFlagsEXT type,
                                                    const VkDebugUtilsMessengerCallbackDataEXT *d,
                                                    void *user) {
    vkd_ctx *ctx = user;
    (void)type;
    if (sev < VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) return VK_FALSE;
    if (ctx->validation_count++ == 0)
        snprintf(ctx->validation_first, sizeof ctx->validation_first, "%s",
                 d && d->pMessage ? d->pMessage : "(no text)");
    if (getenv("VKDRAFT_VALIDATION_PRINT"))
        fprintf(stderr, "validation: %s\n", d && d->pMessage ? d->pMessage : "");
    return VK_FALSE;
}

/* Vulkan's loader needs XDG_RUNTIME_DIR on some systems; give it a private one if unset. */
static void ensure_runtime_dir(void) {
    const char *d = getenv("XDG_RUNTIME_DIR");
    if (d && *d) return;
    char tmpl[] = "/tmp/vkdraft-xdg-XXXXXX";
    if (mkdtemp(tmpl)) setenv("XDG_RUNTIME_DIR", tmpl, 0);
}

static bool layer_available(const char *name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return false;
    VkLayerProperties *p = calloc(n, sizeof *p);
    bool found = false;
    if (p && vkEnumerateInstanceLayerProperties(&n, p) == VK_SUCCESS)
        for (uint32_t i = 0; i < n; i++) found |= strcmp(p[i].layerName, name) == 0;
    free(p);
    return found;
}

static vkd_result create_instance(bool validation, VkInstance *out, vkd_error *err) {
    ensure_runtime_dir();
    uint32_t api = VK_API_VERSION_1_0;
    PFN_vkEnumerateInstanceVersion ev =
        (PFN_vkEnumerateInstanceVersion)vkGetInstanceProcAddr(NULL, "vkEnumerateInstanceVersion");
    if (ev) ev(&api);
    if (api < VK_API_VERSION_1_2)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED,
                        "vulkan: the Vulkan loader supports only %u.%u; vkdraft needs 1.2",
                        VK_API_VERSION_MAJOR(api), VK_API_VERSION_MINOR(api));
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "vkdraft",
        .apiVersion = api >= VK_API_VERSION_1_3 ? VK_API_VERSION_1_3 : VK_API_VERSION_1_2,
    };
    const char *layers[] = {"VK_LAYER_KHRONOS_validation"};
    const char *exts[] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME};
    if (validation && !layer_available(layers[0]))
        return vkd_fail(err, VKD_ERR_UNSUPPORTED,
                        "vulkan: validation requested but VK_LAYER_KHRONOS_validation is not "
                        "installed (Debian: apt-get install vulkan-validationlayers)");
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pApplicationInfo = &app,
        .enabledLayerCount = validation ? 1 : 0,
        .ppEnabledLayerNames = layers,
        .enabledExtensionCount = validation ? 1 : 0,
        .ppEnabledExtensionNames = exts,
    };
    VkResult vr = vkCreateInstance(&ci, NULL, out);
    if (vr == VK_ERROR_INCOMPATIBLE_DRIVER)
        return vkd_fail(err, VKD_ERR_DEVICE,
                        "vulkan: no Vulkan driver found (Debian: apt-get install "
                        "mesa-vulkan-drivers for the lavapipe CPU driver)");
    if (vr != VK_SUCCESS) return vkd_vk_fail(err, vr, "vkCreateInstance");
    return VKD_OK;
}

static void query_info(VkPhysicalDevice pd, uint32_t index, vkd_device_info *info) {
    memset(info, 0, sizeof *info);
    VkPhysicalDeviceVulkan13Properties p13 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_PROPERTIES};
    VkPhysicalDeviceVulkan11Properties p11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_PROPERTIES};
    VkPhysicalDeviceDriverProperties drv = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    VkPhysicalDeviceProperties base;
    vkGetPhysicalDeviceProperties(pd, &base);
    p2.pNext = &p11;
    p11.pNext = &drv;
    if (base.apiVersion >= VK_API_VERSION_1_3) drv.pNext = &p13;
    vkGetPhysicalDeviceProperties2(pd, &p2);
    const VkPhysicalDeviceLimits *l = &p2.properties.limits;

    info->index = index;
    snprintf(info->name, sizeof info->name, "%s", p2.properties.deviceName);
    snprintf(info->driver, sizeof info->driver, "%s %s", drv.driverName, drv.driverInfo);
    info->type = p2.properties.deviceType;
    info->vendor_id = p2.properties.vendorID;
    info->device_id = p2.properties.deviceID;
    info->api_version = p2.properties.apiVersion;
    info->driver_id = drv.driverID;
    memcpy(info->uuid, p11.deviceUUID, VK_UUID_SIZE);
    info->subgroup_size = p11.subgroupSize;
    info->subgroup_ops = p11.subgroupSupportedOperations;
    info->subgroup_in_compute = (p11.subgroupSupportedStages & VK_SHADER_STAGE_COMPUTE_BIT) != 0;
    if (base.apiVersion >= VK_API_VERSION_1_3) {
        info->min_subgroup_size = p13.minSubgroupSize;
        info->max_subgroup_size = p13.maxSubgroupSize;
    }
    info->shared_memory_bytes = l->maxComputeSharedMemorySize;
    info->max_storage_buffer_range = l->maxStorageBufferRange;
    info->max_memory_allocation = p11.maxMemoryAllocationSize;
    for (int i = 0; i < 3; i++) {
        info->max_workgroup_size[i] = l->maxComputeWorkGroupSize[i];
        info->max_workgroup_count[i] = l->maxComputeWorkGroupCount[i];
    }
    info->max_workgroup_invocations = l->maxComputeWorkGroupInvocations;
    info->max_push_constants = l->maxPushConstantsSize;
    info->min_storage_buffer_offset_alignment = l->minStorageBufferOffsetAlignment;
    info->max_texel_elements = l->maxTexelBufferElements;
    info->min_texel_offset_alignment = l->minTexelBufferOffsetAlignment;
    info->timestamps = l->timestampComputeAndGraphics && l->timestampPeriod > 0;
    info->timestamp_period_ns = l->timestampPeriod;

    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    VkPhysicalDeviceVulkan11Features f11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, .pNext = &f12};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f11};
    vkGetPhysicalDeviceFeatures2(pd, &f2);
    info->storage_16bit = f11.storageBuffer16BitAccess;
    info->shader_float16 = f12.shaderFloat16;
    info->shader_int8 = f12.shaderInt8;
    info->shader_int16 = f2.features.shaderInt16;
    info->shader_int64 = f2.features.shaderInt64;

    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    for (uint32_t i = 0; i < mp.memoryHeapCount; i++) {
        if (mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
            info->device_local_bytes += mp.memoryHeaps[i].size;
    }
    const VkMemoryPropertyFlags uma = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT |
                                      VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                      VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    for (uint32_t i = 0; i < mp.memoryTypeCount; i++) {
        VkMemoryPropertyFlags f = mp.memoryTypes[i].propertyFlags;
        if ((f & uma) == uma) info->uma = true;
        if (f & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) {
            uint64_t s = mp.memoryHeaps[mp.memoryTypes[i].heapIndex].size;
            if (s > info->host_visible_bytes) info->host_visible_bytes = s;
        }
    }
}

static vkd_result enumerate(VkInstance inst, VkPhysicalDevice **pds, uint32_t *n, vkd_error *err) {
    *n = 0;
    VKD_CHECK_VK(err, vkEnumeratePhysicalDevices(inst, n, NULL), "vkEnumeratePhysicalDevices");
    if (*n == 0)
        return vkd_fail(err, VKD_ERR_DEVICE,
                        "vulkan: no physical device found (Debian: apt-get install "
                        "mesa-vulkan-drivers for the lavapipe CPU driver)");
    *pds = calloc(*n, sizeof **pds);
    if (!*pds) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    VkResult vr = vkEnumeratePhysicalDevices(inst, n, *pds);
    if (vr != VK_SUCCESS && vr != VK_INCOMPLETE) {
        free(*pds);
        return vkd_vk_fail(err, vr, "vkEnumeratePhysicalDevices");
    }
    return VKD_OK;
}

vkd_result vkd_list_devices(vkd_device_info **out, uint32_t *count, vkd_error *err) {
    *out = NULL;
    *count = 0;
    VkInstance inst;
    vkd_result r = create_instance(false, &inst, err);
    if (r) return r;
    VkPhysicalDevice *pds = NULL;
    uint32_t n = 0;
    r = enumerate(inst, &pds, &n, err);
    if (!r) {
        *out = calloc(n, sizeof **out);
        if (!*out) {
            r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
        } else {
            for (uint32_t i = 0; i < n; i++) query_info(pds[i], i, &(*out)[i]);
            *count = n;
        }
    }
    free(pds);
    vkDestroyInstance(inst, NULL);
    return r;
}

static int type_rank(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 4;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 3;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 1;
    default: return 0;
    }
}

static vkd_result pick_device(vkd_ctx *ctx, const vkd_ctx_options *opt, vkd_error *err) {
    VkPhysicalDevice *pds = NULL;
    uint32_t n = 0;
    vkd_result r = enumerate(ctx->instance, &pds, &n, err);
    if (r) return r;
    long want = -1;
    const char *env = getenv("VKDRAFT_DEVICE");
    if (opt && opt->pick_device) {
        want = opt->device_index;
    } else if (env && *env) {
        char *end;
        errno = 0;
        want = strtol(env, &end, 10);
        if (*end || end == env || errno == ERANGE || want < 0) {
            free(pds);
            return vkd_fail(err, VKD_ERR_INVALID,
                            "VKDRAFT_DEVICE: expected a device index (0..%u), got '%s'", n - 1, env);
        }
    }
    uint32_t chosen = 0;
    if (want >= 0) {
        if ((uint64_t)want >= n) {
            free(pds);
            return vkd_fail(err, VKD_ERR_INVALID,
                            "device %ld does not exist: %u Vulkan device%s found (0..%u); see "
                            "'vkdraft devices'", want, n, n == 1 ? "" : "s", n - 1);
        }
        chosen = (uint32_t)want;
    } else {
        int best = -1;
        for (uint32_t i = 0; i < n; i++) {
            VkPhysicalDeviceProperties p;
            vkGetPhysicalDeviceProperties(pds[i], &p);
            if (type_rank(p.deviceType) > best) {
                best = type_rank(p.deviceType);
                chosen = i;
            }
        }
    }
    ctx->phys = pds[chosen];
    free(pds);
    query_info(ctx->phys, chosen, &ctx->info);
    if (ctx->info.api_version < VK_API_VERSION_1_2)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "device %u (%s) supports Vulkan %u.%u; vkdraft needs 1.2",
                        chosen, ctx->info.name, VK_API_VERSION_MAJOR(ctx->info.api_version),
                        VK_API_VERSION_MINOR(ctx->info.api_version));
    return VKD_OK;
}

static vkd_result create_device(vkd_ctx *ctx, vkd_error *err) {
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(ctx->phys, &nq, NULL);
    VkQueueFamilyProperties qf[16];
    if (nq > 16) nq = 16;
    vkGetPhysicalDeviceQueueFamilyProperties(ctx->phys, &nq, qf);
    int fam = -1;
    for (uint32_t i = 0; i < nq && fam < 0; i++) /* prefer a compute queue without graphics */
        if ((qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && !(qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT))
            fam = (int)i;
    for (uint32_t i = 0; i < nq && fam < 0; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) fam = (int)i;
    if (fam < 0)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "device %s has no compute queue", ctx->info.name);
    ctx->queue_family = (uint32_t)fam;
    if (!ctx->info.timestamps || qf[fam].timestampValidBits == 0) ctx->info.timestamps = false;

    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = ctx->queue_family,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    VkPhysicalDeviceVulkan12Features f12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
        .shaderFloat16 = ctx->info.shader_float16,
        .shaderInt8 = ctx->info.shader_int8,
    };
    VkPhysicalDeviceVulkan11Features f11 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
        .pNext = &f12,
        .storageBuffer16BitAccess = ctx->info.storage_16bit,
    };
    VkPhysicalDeviceFeatures2 f2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
        .pNext = &f11,
        .features = {.shaderInt16 = ctx->info.shader_int16, .shaderInt64 = ctx->info.shader_int64},
    };
    VkDeviceCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = &f2,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qci,
    };
    VKD_CHECK_VK(err, vkCreateDevice(ctx->phys, &dci, NULL, &ctx->device), "vkCreateDevice");
    vkGetDeviceQueue(ctx->device, ctx->queue_family, 0, &ctx->queue);
    VkCommandPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT |
                 VK_COMMAND_POOL_CREATE_TRANSIENT_BIT,
        .queueFamilyIndex = ctx->queue_family,
    };
    VKD_CHECK_VK(err, vkCreateCommandPool(ctx->device, &pci, NULL, &ctx->xfer_pool),
                 "vkCreateCommandPool");
    return VKD_OK;
}

static void choose_memory(vkd_ctx *ctx) {
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(ctx->phys, &mp);
    const VkMemoryPropertyFlags dl = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    const VkMemoryPropertyFlags hv = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                     VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    int uma = -1, local = -1, staging = -1, staging_cached = -1;
    for (uint32_t i = 0; i < mp.memoryTypeCount; i++) {
        VkMemoryPropertyFlags f = mp.memoryTypes[i].propertyFlags;
        if ((f & (dl | hv)) == (dl | hv) && uma < 0) uma = (int)i;
        if ((f & dl) && local < 0) local = (int)i;
        if ((f & hv) == hv && staging < 0) staging = (int)i;
        if ((f & hv) == hv && (f & VK_MEMORY_PROPERTY_HOST_CACHED_BIT) && staging_cached < 0)
            staging_cached = (int)i;
    }
    /* Map device memory directly only on UMA devices (CPU drivers, integrated GPUs):
     * on a discrete GPU the host-visible device-local window (BAR) is small and slow. */
    bool integrated = ctx->info.type == VK_PHYSICAL_DEVICE_TYPE_CPU ||
                      ctx->info.type == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU;
    if (uma >= 0 && integrated && !ctx->force_staging) {
        ctx->mem_type = (uint32_t)uma;
        ctx->mapped = true;
    } else {
        ctx->mem_type = (uint32_t)(local >= 0 ? local : 0);
        ctx->mapped = false;
    }
    ctx->staging_type = (uint32_t)(staging_cached >= 0 ? staging_cached : staging);
}

vkd_result vkd_ctx_create(const vkd_ctx_options *opt, vkd_ctx **out, vkd_error *err) {
    *out = NULL;
    vkd_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    const char *v = getenv("VKDRAFT_VALIDATION");
    const char *p = getenv("VKDRAFT_PROFILE");
    bool validation = (opt && opt->validation) || (v && *v && strcmp(v, "0") != 0);
    ctx->profiling = (opt && opt->profile) || (p && *p && strcmp(p, "0") != 0);
    ctx->force_staging = (opt && opt->force_staging) || getenv("VKDRAFT_FORCE_STAGING");

    vkd_result r = create_instance(validation, &ctx->instance, err);
    if (r) goto fail;
    if (validation) {
        PFN_vkCreateDebugUtilsMessengerEXT create = (PFN_vkCreateDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(ctx->instance, "vkCreateDebugUtilsMessengerEXT");
        VkDebugUtilsMessengerCreateInfoEXT mci = {
            .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
            .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                               VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
            .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT,
            .pfnUserCallback = on_validation,
            .pUserData = ctx,
        };
        if (!create || create(ctx->instance, &mci, NULL, &ctx->messenger) != VK_SUCCESS) {
            r = vkd_fail(err, VKD_ERR_DEVICE, "vulkan: cannot create the validation messenger");
            goto fail;
        }
    }
    r = pick_device(ctx, opt, err);
    if (r) goto fail;
    r = create_device(ctx, err);
    if (r) goto fail;
    ctx->max_binding = ctx->info.max_storage_buffer_range;
    if (opt && opt->max_binding_bytes && opt->max_binding_bytes < ctx->max_binding)
        ctx->max_binding = opt->max_binding_bytes;
    const char *mb = getenv("VKDRAFT_MAX_BINDING");
    if (mb && *mb) {
        unsigned long long x = strtoull(mb, NULL, 10);
        if (x >= 256 && x < ctx->max_binding) ctx->max_binding = x;
    }
    ctx->max_binding &= ~(uint64_t)15;
    choose_memory(ctx);
    ctx->block_size = 256ull << 20;
    if (ctx->info.max_memory_allocation && ctx->block_size > ctx->info.max_memory_allocation)
        ctx->block_size = ctx->info.max_memory_allocation;
    vkd_profile_choose(ctx);
    ctx->profile.frozen_layout = ctx->profile.weight_layout;
    if (opt && opt->row_major_weights) ctx->profile.weight_layout = VKD_LAYOUT_ROWS;
    if (opt && opt->max_texel_elements && opt->max_texel_elements < ctx->profile.max_texel_elements)
        ctx->profile.max_texel_elements = opt->max_texel_elements;
    r = vkd_pipelines_init(ctx, err);
    if (r) goto fail;
    *out = ctx;
    return VKD_OK;
fail:
    vkd_ctx_destroy(ctx);
    return r;
}

void vkd_ctx_destroy(vkd_ctx *ctx) {
    if (!ctx) return;
    if (ctx->device) {
        vkDeviceWaitIdle(ctx->device);
        vkd_pipelines_destroy(ctx);
        vkd_mem_destroy_all(ctx);
        if (ctx->xfer_pool) vkDestroyCommandPool(ctx->device, ctx->xfer_pool, NULL);
        vkDestroyDevice(ctx->device, NULL);
    }
    if (ctx->messenger) {
        PFN_vkDestroyDebugUtilsMessengerEXT destroy = (PFN_vkDestroyDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(ctx->instance, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy) destroy(ctx->instance, ctx->messenger, NULL);
    }
    if (ctx->instance) vkDestroyInstance(ctx->instance, NULL);
    free(ctx);
}

const vkd_device_info *vkd_ctx_info(const vkd_ctx *ctx) { return &ctx->info; }
const vkd_profile *vkd_ctx_profile(const vkd_ctx *ctx) { return &ctx->profile; }
uint64_t vkd_ctx_max_binding(const vkd_ctx *ctx) { return ctx->max_binding; }
uint32_t vkd_ctx_validation_count(const vkd_ctx *ctx) { return ctx->validation_count; }
const char *vkd_ctx_validation_first(const vkd_ctx *ctx) { return ctx->validation_first; }

vkd_result vkd_oneshot_begin(vkd_ctx *ctx, VkCommandBuffer *cb, vkd_error *err) {
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = ctx->xfer_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    VKD_CHECK_VK(err, vkAllocateCommandBuffers(ctx->device, &ai, cb), "vkAllocateCommandBuffers");
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    VkResult vr = vkBeginCommandBuffer(*cb, &bi);
    if (vr != VK_SUCCESS) {
        vkFreeCommandBuffers(ctx->device, ctx->xfer_pool, 1, cb);
        return vkd_vk_fail(err, vr, "vkBeginCommandBuffer");
    }
    return VKD_OK;
}

vkd_result vkd_oneshot_submit(vkd_ctx *ctx, VkCommandBuffer cb, vkd_error *err) {
    VkResult vr = vkEndCommandBuffer(cb);
    if (vr == VK_SUCCESS) {
        VkSubmitInfo si = {
            .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
            .commandBufferCount = 1,
            .pCommandBuffers = &cb,
        };
        vr = vkQueueSubmit(ctx->queue, 1, &si, VK_NULL_HANDLE);
        if (vr == VK_SUCCESS) vr = vkQueueWaitIdle(ctx->queue);
    }
    vkFreeCommandBuffers(ctx->device, ctx->xfer_pool, 1, &cb);
    if (vr != VK_SUCCESS) return vkd_vk_fail(err, vr, "one-shot transfer submission");
    return VKD_OK;
}
