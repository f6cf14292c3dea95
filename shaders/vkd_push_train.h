/* vkd_push_train.h: push-constant structs of the training ops (optimizer, fused LM-head
 * loss), declared once for C and GLSL in the manner of vkd_push.h (include that first). */
#ifndef VKD_PUSH_TRAIN_H
#define VKD_PUSH_TRAIN_H

#include "vkd_push.h"

/* sum of squares: workgroup g writes sum(x[g*per_wg .. min(n, (g+1)*per_wg))^2) to
 * parts[part0 + g] */
#if !defined(VULKAN) || defined(PC_SUMSQ)
PUSH_BEGIN(vkd_pc_sumsq)
    uint n;
    uint per_wg;
    uint part0;
    uint nparts;  /* norm op: partials summed (in index order) */
PUSH_END(vkd_pc_sumsq)
#endif

/* optimizer update over n f32 elements, per_wg per workgroup. Scalars are computed on the
 * host in double and rounded once, as torch does with Python scalars. */
#if !defined(VULKAN) || defined(PC_OPTIM)
PUSH_BEGIN(vkd_pc_optim)
    uint n;
    uint per_wg;
    uint nparts;        /* > 0: clip by the global norm from parts[0..nparts) */
    float max_norm;
    float decay;        /* AdamW: 1 - lr*wd; SGD: wd (L2 added to the gradient) */
    float one_minus_b1; /* AdamW; SGD: momentum */
    float b2;           /* AdamW; SGD: 1 - dampening */
    float one_minus_b2; /* AdamW */
    float step_size;    /* AdamW: lr / (1 - b1^t); SGD: lr */
    float bc2_sqrt;     /* AdamW: sqrt(1 - b2^t) */
    float eps;
    uint first;         /* SGD with momentum: first step (buffer = gradient) */
PUSH_END(vkd_pc_optim)
#endif

/* fused LM head + loss (ops_loss.c, shaders/loss_*.comp). Scratch S (student logits, then
 * their gradient) and T (teacher logits from a teacher head) are rows x ncols at row stride
 * s_stride; state holds 8 f32 per row (running log-sum-exp pieces, then the final ones). */
#if !defined(VULKAN) || defined(PC_LOSS)
PUSH_BEGIN(vkd_pc_loss)
    uint rows;       /* rows of H */
    uint hidden;     /* columns of H and W */
    uint ncols;      /* vocabulary entries of this chunk */
    uint s_stride;   /* row stride of S and T */
    uint w_off;      /* element offset of the chunk's first row inside W's (or dW's) binding */
    uint j0;         /* vocabulary index of the chunk's first entry */
    uint vocab;      /* vocabulary size (labels outside [0, vocab) get no CE) */
    uint t_off;      /* teacher logits tensor: element offset of (row 0, column j0) */
    uint t_stride;   /* its row stride (0: teacher logits are in T) */
    uint mode;       /* LOSS_* bits of shaders/loss_common.glsl (CE, KL, first chunk, ...) */
    float inv_t;     /* 1 / temperature */
    float ce_w;      /* weight of CE */
    float kl_loss_w; /* kl_w * T^2 (loss); L1 mode: l1_w */
    float kl_grad_w; /* kl_w * T (gradient of T^2 KL with respect to the student logits); L1: l1_w */
PUSH_END(vkd_pc_loss)
#endif

#endif
