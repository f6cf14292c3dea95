/* test_views: tensor views, range-based hazards and the arena.
 *
 *   views     dispatches, recorder reads/updates and synchronous transfers through views at
 *             offsets that are multiples of minStorageBufferOffsetAlignment (but of nothing
 *             larger), of odd element counts, reach exactly their bytes of the parent: every
 *             other byte keeps its sentinel; expected values from plain C on the host
 *   hazards   the recorder's decision function on hand-made ranges (RAW/WAW/WAR on
 *             overlapping bytes of one buffer need a barrier; disjoint or touching ranges,
 *             or other buffers, do not), and the barriers the recorder places for
 *             dispatches on disjoint and overlapping views; the synchronization validation
 *             layer (tests/meson.build) independently reports any barrier that is missing
 *   arena     aligned, disjoint temporaries; reset gives the same ranges back, without
 *             clearing them; reuse inside one submission is ordered; a full arena is an
 *             error, not an overlap
 * Runs with the validation layer: any message fails. */
#include <stdlib.h>
#include <string.h>

#include "../../runtime/internal.h"
#include "vkd_ops.h"
#include "vkd_test.h"

#define SENTINEL (-77.25f)
static unsigned long long seed = 7;

static vkd_tensor *new_f32(vkd_ctx *ctx, uint64_t n, const char *name) {
    vkd_error err = {0};
    vkd_tensor *t;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, n, name, &t, &err), "%s", err.msg);
    return t;
}

static vkd_tensor *view_f32(vkd_tensor *base, uint64_t off, int64_t n, const char *name) {
    vkd_error err = {0};
    vkd_tensor *v;
    REQUIRE(!vkd_tensor_view(base, off, VKD_DTYPE_F32, 1, &n, name, &v, &err), "%s", err.msg);
    return v;
}

static void upload_random(vkd_tensor *t, float *host, uint64_t n) {
    vkd_error err = {0};
    for (uint64_t i = 0; i < n; i++) host[i] = (float)vkd_test_rand_normal(&seed);
    REQUIRE(!vkd_tensor_upload(t, 0, host, n * 4, &err), "%s", err.msg);
}

/* Two views written by dispatches, one read by a dispatch, one written by vkd_rec_update,
 * one read by vkd_rec_read; every byte of the parent checked. */
static void test_views(vkd_ctx *ctx) {
    vkd_error err = {0};
    uint64_t a = vkd_ctx_info(ctx)->min_storage_buffer_offset_alignment;
    if (a < 4) a = 4;
    const uint64_t N = 4099;                 /* parent: 4099 floats */
    const uint64_t nA = 37, nB = 53, nC = 37, nU = 11;
#define NEXT(off, n, gap) (((off) + (n) * 4 + a - 1) / a * a + (gap) * a)
    /* odd multiples of the alignment where possible, a gap of untouched bytes between */
    uint64_t offA = 3 * a, offB = NEXT(offA, nA, 1), offC = NEXT(offB, nB, 2), offU = NEXT(offC, nC, 1);
#undef NEXT
    REQUIRE(offU + nU * 4 <= N * 4, "alignment %llu too large for the test", (unsigned long long)a);
    vkd_tensor *P = new_f32(ctx, N, "parent");
    float *ph = malloc(N * 4), *want = malloc(N * 4), *got = malloc(N * 4);
    for (uint64_t i = 0; i < N; i++) ph[i] = SENTINEL - (float)i;
    REQUIRE(!vkd_tensor_upload(P, 0, ph, N * 4, &err), "%s", err.msg);
    memcpy(want, ph, N * 4);
    vkd_tensor *A = view_f32(P, offA, nA, "A"), *B = view_f32(P, offB, nB, "B");
    vkd_tensor *C = view_f32(P, offC, nC, "C"), *U = view_f32(P, offU, nU, "U");
    float x0[64], x1[64], upd[16], readC[38];
    vkd_tensor *X0 = new_f32(ctx, 64, "x0"), *X1 = new_f32(ctx, 64, "x1");
    upload_random(X0, x0, 64);
    upload_random(X1, x1, 64);
    for (uint64_t i = 0; i < nU; i++) upd[i] = 1000.0f + (float)i;

    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    vkd_op_axpby(rec, A, X0, X1, 2.0f, -1.0f, nA);   /* A = 2 x0 - x1 */
    vkd_op_axpby(rec, B, X1, X0, 0.5f, 3.0f, nB);    /* B = x1/2 + 3 x0: disjoint from A */
    uint32_t after_two = vkd_rec_barriers(rec);
    vkd_op_axpby(rec, C, A, X0, 1.0f, 1.0f, nC);     /* C = A + x0: reads A (RAW) */
    uint32_t after_raw = vkd_rec_barriers(rec);
    vkd_rec_update(rec, U, 0, upd, nU * 4);
    vkd_rec_read(rec, C, 0, readC, nC * 4);
    CHECK(vkd_rec_submit(rec) == VKD_OK, "submit: %s", vkd_rec_error(rec)->msg);
    CHECK(after_two == 0, "two dispatches writing disjoint views of one buffer: %u barrier(s)", after_two);
    CHECK(after_raw == 1, "a dispatch reading a view another wrote: %u barrier(s), expected 1", after_raw);

    for (uint64_t i = 0; i < nA; i++) want[offA / 4 + i] = (float)(2.0 * x0[i] - 1.0 * x1[i]);
    for (uint64_t i = 0; i < nB; i++) want[offB / 4 + i] = (float)(0.5 * x1[i] + 3.0 * x0[i]);
    for (uint64_t i = 0; i < nC; i++) want[offC / 4 + i] = (float)((double)want[offA / 4 + i] + x0[i]);
    for (uint64_t i = 0; i < nU; i++) want[offU / 4 + i] = upd[i];
    REQUIRE(!vkd_tensor_download(P, 0, got, N * 4, &err), "%s", err.msg);
    double worst = 0;
    uint64_t wrong = 0, first = N;
    for (uint64_t i = 0; i < N; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (e > worst) worst = e;
        if (e > 1e-5 * (1 + fabs(want[i]))) { wrong++; if (first == N) first = i; }
    }
    CHECK(wrong == 0, "%llu of %llu parent floats wrong, first at %llu: %g, want %g",
          (unsigned long long)wrong, (unsigned long long)N, (unsigned long long)first,
          first < N ? got[first] : 0.0, first < N ? want[first] : 0.0);
    double worstC = 0;
    for (uint64_t i = 0; i < nC; i++) worstC = fmax(worstC, fabs((double)readC[i] - want[offC / 4 + i]));
    CHECK(worstC <= 1e-5, "vkd_rec_read of view C: worst error %g", worstC);
    fprintf(stderr, "  views: alignment %llu, offsets %llu/%llu/%llu/%llu, worst error %g over %llu "
            "floats (sentinels outside the views intact: %s)\n", (unsigned long long)a,
            (unsigned long long)offA, (unsigned long long)offB, (unsigned long long)offC,
            (unsigned long long)offU, worst, (unsigned long long)N, wrong ? "no" : "yes");

    /* synchronous transfers through a view: download at an inner offset, upload */
    float tail[5], five[5] = {1, 2, 3, 4, 5};
    REQUIRE(!vkd_tensor_download(B, 4 * 48, tail, 20, &err), "%s", err.msg);
    double e = 0;
    for (int i = 0; i < 5; i++) e = fmax(e, fabs((double)tail[i] - got[offB / 4 + 48 + i]));
    CHECK(e == 0, "download through view B at +48 floats: error %g", e);
    REQUIRE(!vkd_tensor_upload(B, 4 * 10, five, 20, &err), "%s", err.msg);
    float seven[7];
    REQUIRE(!vkd_tensor_download(P, offB + 36, seven, 28, &err), "%s", err.msg);
    /* got[] holds the parent as downloaded before the upload */
    CHECK(seven[0] == got[offB / 4 + 9] && seven[1] == 1 && seven[5] == 5 &&
          seven[6] == got[offB / 4 + 15], "upload through view B landed at the wrong bytes");

    /* bad views: misaligned start, outside the parent, bad shape */
    vkd_tensor *bad = NULL;
    int64_t four = 4, zero = 0;
    CHECK(vkd_tensor_view(P, a / 2, VKD_DTYPE_F32, 1, &four, "mis", &bad, &err) == VKD_ERR_INVALID &&
          strstr(err.msg, "alignment"), "view at byte %llu accepted: %s", (unsigned long long)(a / 2), err.msg);
    fprintf(stderr, "  misaligned view: %s\n", err.msg);
    CHECK(vkd_tensor_view(P, N * 4 - 8, VKD_DTYPE_F32, 1, &four, "out", &bad, &err) == VKD_ERR_RANGE,
          "view past the end accepted");
    CHECK(vkd_tensor_view(P, 0, VKD_DTYPE_F32, 1, &zero, "empty", &bad, &err) == VKD_ERR_INVALID,
          "empty view accepted");
    CHECK(bad == NULL, "failed view returned a tensor");
    /* a view of a view: offsets add up */
    vkd_tensor *AA = view_f32(A, a, 5, "A[a..]");
    float five_back[5];
    REQUIRE(!vkd_tensor_download(AA, 0, five_back, 20, &err), "%s", err.msg);
    CHECK(memcmp(five_back, &want[(offA + a) / 4], 20) == 0 && AA->chunks[0].base == offA + a,
          "view of a view: wrong bytes (base %llu)", (unsigned long long)AA->chunks[0].base);
    vkd_tensor_destroy(AA);
    vkd_tensor_destroy(A); vkd_tensor_destroy(B); vkd_tensor_destroy(C); vkd_tensor_destroy(U);
    vkd_tensor_destroy(X0); vkd_tensor_destroy(X1); vkd_tensor_destroy(P);
    vkd_rec_destroy(rec);
    free(ph); free(want); free(got);
}

/* Views on a context that stages every transfer and splits tensors into 4 KiB buffers. */
static void test_views_staged(void) {
    vkd_error err = {0};
    vkd_ctx *ctx;
    vkd_ctx_options o = {.max_binding_bytes = 4096, .force_staging = true};
    REQUIRE(!vkd_ctx_create(&o, &ctx, &err), "%s", err.msg);
    uint64_t a = vkd_ctx_info(ctx)->min_storage_buffer_offset_alignment;
    if (a < 4) a = 4;
    vkd_tensor *P;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 3, 1000, "P", &P, &err), "%s", err.msg);
    CHECK(P->nchunks == 3, "expected 3 chunks, got %u", P->nchunks);
    /* a view inside the second chunk (row 1 starts chunk 1) */
    vkd_tensor *V = view_f32(P, 4000 + a, 9, "V");
    CHECK(V->chunks[0].buffer == P->chunks[1].buffer && V->chunks[0].base == a,
          "view in chunk 1: buffer or base wrong (base %llu)", (unsigned long long)V->chunks[0].base);
    float nine[9], back[3000];
    for (int i = 0; i < 9; i++) nine[i] = 0.5f * (float)(i + 1);
    REQUIRE(!vkd_tensor_upload(V, 0, nine, 36, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_download(P, 0, back, sizeof back, &err), "%s", err.msg);
    uint64_t wrong = 0;
    for (uint64_t i = 0; i < 3000; i++) {
        float w = (i >= (4000 + a) / 4 && i < (4000 + a) / 4 + 9) ? nine[i - (4000 + a) / 4] : 0.0f;
        wrong += back[i] != w;
    }
    CHECK(wrong == 0, "staged upload through a view: %llu floats wrong", (unsigned long long)wrong);
    vkd_tensor *X = NULL;
    int64_t n = 20;
    CHECK(vkd_tensor_view(P, 4000 - 4 * a, VKD_DTYPE_F32, 1, &n, "X", &X, &err) == VKD_ERR_UNSUPPORTED,
          "view across a chunk boundary accepted");
    fprintf(stderr, "  cross-chunk view: %s\n", err.msg);
    vkd_tensor_destroy(V);
    vkd_tensor_destroy(P);
    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));
    vkd_ctx_destroy(ctx);
}

static vkd_range R(uint64_t buf, uint64_t lo, uint64_t hi) {
    return (vkd_range){(VkBuffer)(uintptr_t)buf, lo, hi};
}

/* The decision function on its own. */
static void test_hazard_rule(void) {
    vkd_range w[2] = {R(1, 0, 100), R(2, 256, 512)};
    vkd_range r[1] = {R(3, 64, 128)};
    struct { const char *what; vkd_range rd, wr; bool has_rd, has_wr, want; } cases[] = {
        {"RAW overlapping by one byte", R(1, 99, 200), {0}, true, false, true},
        {"read touching the written range", R(1, 100, 200), {0}, true, false, false},
        {"read of another buffer's same bytes", R(4, 0, 100), {0}, true, false, false},
        {"read inside a written range", R(2, 300, 301), {0}, true, false, true},
        {"read of bytes below a written range", R(2, 0, 256), {0}, true, false, false},
        {"WAW overlapping", {0}, R(2, 500, 600), false, true, true},
        {"write disjoint from all", {0}, R(1, 100, 256), false, true, false},
        {"WAR overlapping a read", {0}, R(3, 127, 130), false, true, true},
        {"write touching a read", {0}, R(3, 128, 130), false, true, false},
        {"read after read", R(3, 0, 1000), {0}, true, false, false},
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        bool got = vkd_hazard(w, 2, r, 1, &cases[i].rd, cases[i].has_rd ? 1 : 0, &cases[i].wr,
                              cases[i].has_wr ? 1 : 0);
        CHECK(got == cases[i].want, "hazard rule, %s: got %s", cases[i].what, got ? "barrier" : "none");
    }
    fprintf(stderr, "  hazard rule: %d cases\n", n);
}

static void test_arena(vkd_ctx *ctx) {
    vkd_error err = {0};
    uint64_t a = vkd_ctx_info(ctx)->min_storage_buffer_offset_alignment;
    if (a < 16) a = 16;
    vkd_arena *ar;
    CHECK(vkd_arena_create(ctx, 0, "zero", &ar, &err) == VKD_ERR_INVALID, "empty arena accepted");
    REQUIRE(!vkd_arena_create(ctx, 8192, "step", &ar, &err), "%s", err.msg);
    int64_t s1 = 37, s2[2] = {3, 5}, s3 = 101;
    vkd_tensor *t1, *t2, *t3;
    REQUIRE(!vkd_arena_tensor(ar, VKD_DTYPE_F32, 1, &s1, "t1", &t1, &err), "%s", err.msg);
    REQUIRE(!vkd_arena_tensor(ar, VKD_DTYPE_F16, 2, s2, "t2", &t2, &err), "%s", err.msg);
    REQUIRE(!vkd_arena_tensor(ar, VKD_DTYPE_F32, 1, &s3, "t3", &t3, &err), "%s", err.msg);
    uint64_t b1 = t1->chunks[0].base, b2 = t2->chunks[0].base, b3 = t3->chunks[0].base;
    CHECK(b1 % a == 0 && b2 % a == 0 && b3 % a == 0, "arena offsets %llu %llu %llu not aligned to %llu",
          (unsigned long long)b1, (unsigned long long)b2, (unsigned long long)b3, (unsigned long long)a);
    CHECK(b1 + 37 * 4 <= b2 && b2 + 30 <= b3, "arena tensors overlap: %llu %llu %llu",
          (unsigned long long)b1, (unsigned long long)b2, (unsigned long long)b3);
    CHECK(t2->rows == 3 && t2->cols == 5 && t2->bytes == 30, "arena f16 3x5 tensor: shape wrong");
    CHECK(vkd_arena_used(ar) == b3 + 404, "used %llu, want %llu", (unsigned long long)vkd_arena_used(ar),
          (unsigned long long)(b3 + 404));

    /* step 1: t1 = 2 x + 0 (computed), read back; step 2 (after reset, same submission):
     * u1 takes t1's bytes and receives x + y; both results must come out right */
    float x[64], y[64], r1[37], r2[37];
    vkd_tensor *X = new_f32(ctx, 64, "x"), *Y = new_f32(ctx, 64, "y");
    upload_random(X, x, 64);
    upload_random(Y, y, 64);
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    vkd_op_axpby(rec, t1, X, Y, 2.0f, 0.0f, 37);
    vkd_rec_read(rec, t1, 0, r1, sizeof r1);
    vkd_arena_reset(ar);
    CHECK(vkd_arena_used(ar) == 0 && vkd_arena_peak(ar) == b3 + 404, "reset: used %llu peak %llu",
          (unsigned long long)vkd_arena_used(ar), (unsigned long long)vkd_arena_peak(ar));
    vkd_tensor *u1;
    REQUIRE(!vkd_arena_tensor(ar, VKD_DTYPE_F32, 1, &s1, "u1", &u1, &err), "%s", err.msg);
    CHECK(u1->chunks[0].base == b1, "after reset the first temporary is at %llu, not %llu",
          (unsigned long long)u1->chunks[0].base, (unsigned long long)b1);
    uint32_t before = vkd_rec_barriers(rec);
    vkd_op_axpby(rec, u1, X, Y, 1.0f, 1.0f, 37);
    CHECK(vkd_rec_barriers(rec) == before + 1, "reuse of a read range: no barrier placed (WAR)");
    vkd_rec_read(rec, u1, 0, r2, sizeof r2);
    CHECK(vkd_rec_submit(rec) == VKD_OK, "submit: %s", vkd_rec_error(rec)->msg);
    double e1 = 0, e2 = 0;
    for (int i = 0; i < 37; i++) {
        e1 = fmax(e1, fabs((double)r1[i] - 2.0 * x[i]));
        e2 = fmax(e2, fabs((double)r2[i] - ((double)x[i] + y[i])));
    }
    CHECK(e1 <= 1e-6 && e2 <= 1e-6, "arena reuse in one submission: errors %g %g", e1, e2);

    /* no clearing: after a reset the same range still holds what step 2 wrote */
    vkd_arena_reset(ar);
    vkd_tensor *w1;
    REQUIRE(!vkd_arena_tensor(ar, VKD_DTYPE_F32, 1, &s1, "w1", &w1, &err), "%s", err.msg);
    float r3[37];
    REQUIRE(!vkd_tensor_download(w1, 0, r3, sizeof r3, &err), "%s", err.msg);
    CHECK(memcmp(r3, r2, sizeof r3) == 0, "a reset arena cleared (or moved) its bytes");

    /* full: an error naming the arena, and the arena still works */
    int64_t big = 8192 / 4;
    vkd_tensor *full = NULL;
    CHECK(vkd_arena_tensor(ar, VKD_DTYPE_F32, 1, &big, "big", &full, &err) == VKD_ERR_DEVICE_MEMORY &&
          full == NULL && strstr(err.msg, "step"), "overfull arena: %s", err.msg);
    fprintf(stderr, "  arena full: %s\n", err.msg);
    int64_t fits = (8192 - 256) / 4;
    CHECK(vkd_arena_tensor(ar, VKD_DTYPE_F32, 1, &fits, "fits", &full, &err) == VKD_OK, "%s", err.msg);
    /* ops that refuse aliasing ask about bytes, not buffers: a copy between two
     * temporaries of one arena runs, a copy onto itself is still refused */
    vkd_arena_reset(ar);
    int64_t s35[2] = {3, 5};
    vkd_tensor *ca, *cb;
    REQUIRE(!vkd_arena_tensor(ar, VKD_DTYPE_F32, 2, s35, "copy src", &ca, &err), "%s", err.msg);
    REQUIRE(!vkd_arena_tensor(ar, VKD_DTYPE_F32, 2, s35, "copy dst", &cb, &err), "%s", err.msg);
    float src15[15], dst15[15];
    for (int i = 0; i < 15; i++) src15[i] = 0.25f * (float)i - 1.0f;
    REQUIRE(!vkd_tensor_upload(ca, 0, src15, sizeof src15, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    vkd_op_copy2d(rec, cb, 0, 0, ca, 0, 0, 3, 5);
    vkd_rec_read(rec, cb, 0, dst15, sizeof dst15);
    CHECK(vkd_rec_submit(rec) == VKD_OK, "copy2d between two views of one buffer: %s",
          vkd_rec_error(rec)->msg);
    CHECK(memcmp(src15, dst15, sizeof src15) == 0, "copy2d between views: wrong values");
    vkd_rec_begin(rec);
    CHECK(vkd_op_copy2d(rec, ca, 0, 0, ca, 0, 0, 3, 5) == VKD_ERR_INVALID, "copy2d onto itself accepted");
    vkd_rec_submit(rec);
    vkd_arena_destroy(ar);
    vkd_tensor_destroy(X);
    vkd_tensor_destroy(Y);
    vkd_rec_destroy(rec);
}

int main(void) {
    vkd_error err = {0};
    vkd_ctx *ctx;
    REQUIRE(!vkd_ctx_create(NULL, &ctx, &err), "%s", err.msg);
    fprintf(stderr, "device: %s, minStorageBufferOffsetAlignment %llu\n", vkd_ctx_info(ctx)->name,
            (unsigned long long)vkd_ctx_info(ctx)->min_storage_buffer_offset_alignment);
    test_hazard_rule();
    test_views(ctx);
    test_arena(ctx);
    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));
    vkd_ctx_destroy(ctx);
    test_views_staged();
    return vkd_test_result("test_views");
}
