#version 450
/* One optimizer step over n f32 parameters, element by element (torch.optim semantics,
 * single-tensor path; the order of f32 operations follows torch's CPU kernels):
 *   clip:  g *= min(1, max_norm / (sqrt(sum parts) + 1e-6))   when nparts > 0
 *   ADAMW: p *= decay (= 1 - lr*wd); m += (1-b1)(g - m); v = v*b2 + (1-b2)*g*g;
 *          p -= step_size * m / (sqrt(v)/bc2_sqrt + eps)
 *   SGD:   g += wd*p; with momentum mu: buf = first ? g : mu*buf + (1-dampening)*g, g = buf;
 *          p -= lr * g
 * Workgroup w owns elements [w*per_wg, (w+1)*per_wg). Bindings: 0 p, 1 g (read), 2 m, 3 v,
 * 4 parts (read). */
//! variant OPTIM_ADAMW ADAMW
//! variant OPTIM_SGD SGD
#define PC_OPTIM
#include "vkd_push.h"
#include "vkd_push_train.h"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer Pm { float p[]; };
layout(std430, binding = 1) readonly buffer G { float g[]; };
layout(std430, binding = 2) buffer M { float m[]; };
layout(std430, binding = 3) buffer V { float v[]; };
layout(std430, binding = 4) readonly buffer Parts { float parts[]; };
void main() {
    precise float clip = 1.0;
    if (pc.nparts > 0u) {
        precise float s = 0.0;
        for (uint i = 0u; i < pc.nparts; i++) s += parts[i];
        precise float c = pc.max_norm / (sqrt(s) + 1e-6);
        clip = min(c, 1.0);
    }
    uint begin = gl_WorkGroupID.x * pc.per_wg;
    uint end = min(begin + pc.per_wg, pc.n);
    for (uint i = begin + gl_LocalInvocationID.x; i < end; i += gl_WorkGroupSize.x) {
        precise float gi = g[i];
        if (pc.nparts > 0u) gi = gi * clip;
        precise float pi = p[i];
#ifdef ADAMW
        pi = pi * pc.decay;
        precise float mi = m[i];
        if (pc.one_minus_b1 < 0.5) mi = mi + pc.one_minus_b1 * (gi - mi); /* torch lerp */
        else mi = gi - (gi - mi) * (1.0 - pc.one_minus_b1);
        precise float vi = v[i];
        vi = vi * pc.b2;
        vi = vi + (pc.one_minus_b2 * gi) * gi;
        precise float denom = sqrt(vi) / pc.bc2_sqrt + pc.eps;
        pi = pi + (-pc.step_size) * (mi / denom);
        m[i] = mi;
        v[i] = vi;
#else
        if (pc.decay != 0.0) gi = gi + pc.decay * pi;
        if (pc.one_minus_b1 != 0.0) {
            precise float bi = pc.first != 0u ? gi : m[i] * pc.one_minus_b1 + pc.b2 * gi;
            m[i] = bi;
            gi = bi;
        }
        pi = pi + (-pc.step_size) * gi;
#endif
        p[i] = pi;
    }
}
