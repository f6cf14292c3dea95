/* vkdraft devices: the Vulkan devices and the limits vkdraft reads from them. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "vkd_runtime.h"

static const char *type_name(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete-gpu";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated-gpu";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual-gpu";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
    }
}

static cJSON *info_json(const vkd_device_info *d) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", d->index);
    cJSON_AddStringToObject(o, "name", d->name);
    cJSON_AddStringToObject(o, "driver", d->driver);
    cJSON_AddStringToObject(o, "type", type_name(d->type));
    char api[32];
    snprintf(api, sizeof api, "%u.%u.%u", VK_API_VERSION_MAJOR(d->api_version),
             VK_API_VERSION_MINOR(d->api_version), VK_API_VERSION_PATCH(d->api_version));
    cJSON_AddStringToObject(o, "api_version", api);
    cJSON_AddNumberToObject(o, "vendor_id", d->vendor_id);
    cJSON_AddNumberToObject(o, "subgroup_size", d->subgroup_size);
    cJSON_AddNumberToObject(o, "min_subgroup_size", d->min_subgroup_size);
    cJSON_AddNumberToObject(o, "max_subgroup_size", d->max_subgroup_size);
    cJSON_AddBoolToObject(o, "subgroup_arithmetic", (d->subgroup_ops & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) != 0);
    cJSON_AddBoolToObject(o, "subgroup_in_compute", d->subgroup_in_compute);
    cJSON_AddNumberToObject(o, "shared_memory_bytes", d->shared_memory_bytes);
    cJSON_AddNumberToObject(o, "max_storage_buffer_range", (double)d->max_storage_buffer_range);
    cJSON_AddNumberToObject(o, "max_memory_allocation", (double)d->max_memory_allocation);
    cJSON *ws = cJSON_AddArrayToObject(o, "max_workgroup_size");
    cJSON *wc = cJSON_AddArrayToObject(o, "max_workgroup_count");
    for (int i = 0; i < 3; i++) {
        cJSON_AddItemToArray(ws, cJSON_CreateNumber(d->max_workgroup_size[i]));
        cJSON_AddItemToArray(wc, cJSON_CreateNumber(d->max_workgroup_count[i]));
    }
    cJSON_AddNumberToObject(o, "max_workgroup_invocations", d->max_workgroup_invocations);
    cJSON_AddBoolToObject(o, "storage_16bit", d->storage_16bit);
    cJSON_AddBoolToObject(o, "shader_float16", d->shader_float16);
    cJSON_AddBoolToObject(o, "shader_int8", d->shader_int8);
    cJSON_AddBoolToObject(o, "timestamps", d->timestamps);
    cJSON_AddNumberToObject(o, "timestamp_period_ns", d->timestamp_period_ns);
    cJSON_AddBoolToObject(o, "uma", d->uma);
    cJSON_AddNumberToObject(o, "device_local_bytes", (double)d->device_local_bytes);
    return o;
}

int vkd_cmd_devices(int argc, char **argv) {
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is("--json", argv[i])) json = true;
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) {
            printf("usage: vkdraft devices [--json]\n\n"
                   "Lists the Vulkan devices with the limits vkdraft uses (subgroup size, shared\n"
                   "memory, maxStorageBufferRange, maxMemoryAllocationSize, workgroup limits,\n"
                   "16-bit storage, timestamps, memory). The device vkdraft picks by default is\n"
                   "marked '*': discrete GPU > integrated > virtual > CPU, unless VKDRAFT_DEVICE=N.\n");
            return 0;
        } else cli_usage_error("devices", "unknown flag '%s'", argv[i]);
    }
    vkd_error err = {0};
    vkd_device_info *devs;
    uint32_t n;
    cli_check(vkd_list_devices(&devs, &n, &err), &err);
    vkd_ctx *ctx;
    cli_check(vkd_ctx_create(NULL, &ctx, &err), &err);
    uint32_t chosen = vkd_ctx_info(ctx)->index;
    const vkd_profile *prof = vkd_ctx_profile(ctx);
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(root, "devices");
        for (uint32_t i = 0; i < n; i++) cJSON_AddItemToArray(arr, info_json(&devs[i]));
        cJSON_AddNumberToObject(root, "selected", chosen);
        cJSON_AddStringToObject(root, "profile", prof->name);
        char *s = cJSON_Print(root);
        puts(s);
        free(s);
        cJSON_Delete(root);
    } else {
        for (uint32_t i = 0; i < n; i++) {
            const vkd_device_info *d = &devs[i];
            printf("%c %u: %s [%s] Vulkan %u.%u, driver %s\n", i == chosen ? '*' : ' ', i, d->name,
                   type_name(d->type), VK_API_VERSION_MAJOR(d->api_version),
                   VK_API_VERSION_MINOR(d->api_version), d->driver);
            printf("    subgroup %u (%u..%u), arithmetic %s; shared memory %u KiB\n", d->subgroup_size,
                   d->min_subgroup_size, d->max_subgroup_size,
                   (d->subgroup_ops & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) ? "yes" : "no",
                   d->shared_memory_bytes / 1024);
            printf("    maxStorageBufferRange %.0f MiB, maxMemoryAllocationSize %.0f MiB, "
                   "device memory %.1f GiB%s\n", d->max_storage_buffer_range / 1048576.0,
                   d->max_memory_allocation / 1048576.0, d->device_local_bytes / 1073741824.0,
                   d->uma ? " (unified)" : "");
            printf("    workgroup size <= %u (%u x %u x %u), count <= %u x %u x %u\n",
                   d->max_workgroup_invocations, d->max_workgroup_size[0], d->max_workgroup_size[1],
                   d->max_workgroup_size[2], d->max_workgroup_count[0], d->max_workgroup_count[1],
                   d->max_workgroup_count[2]);
            printf("    16-bit storage %s, float16 %s, int8 %s, timestamps %s (%.3g ns/tick)\n",
                   d->storage_16bit ? "yes" : "no", d->shader_float16 ? "yes" : "no",
                   d->shader_int8 ? "yes" : "no", d->timestamps ? "yes" : "no", d->timestamp_period_ns);
        }
        printf("dispatch profile of the selected device: %s (streaming workgroups of %u x %u)\n",
               prof->name, prof->wg_stream, prof->stream_groups);
    }
    vkd_ctx_destroy(ctx);
    free(devs);
    return 0;
}
