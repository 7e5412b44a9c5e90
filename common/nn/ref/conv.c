/* Reference convolutions of the SAM model (torch weight layouts, channels-last
 * activations except the channels-first input image of the patch embedding). */
#include "nn/ref/ref.h"

/* inp[B, Cin, Hi, Wi], w[C, Cin, P, P], b[C] -> out[B, Hi/P, Wi/P, C]
 * (Conv2d with kernel = stride = P, no padding). */
void fs_ref_patch_embed_forward(float *out, const float *inp, const float *w, const float *b, size_t B, size_t Cin,
                                size_t Hi, size_t Wi, size_t P, size_t C) {
    size_t Ho = Hi / P, Wo = Wi / P;
    for (size_t n = 0; n < B; n++)
        for (size_t oy = 0; oy < Ho; oy++)
            for (size_t ox = 0; ox < Wo; ox++)
                for (size_t co = 0; co < C; co++) {
                    double acc = b ? b[co] : 0.0;
                    for (size_t ci = 0; ci < Cin; ci++)
                        for (size_t ky = 0; ky < P; ky++)
                            for (size_t kx = 0; kx < P; kx++)
                                acc += (double)inp[((n * Cin + ci) * Hi + oy * P + ky) * Wi + ox * P + kx] *
                                       w[((co * Cin + ci) * P + ky) * P + kx];
                    out[((n * Ho + oy) * Wo + ox) * C + co] = (float)acc;
                }
}

/* inp[B, H, W, Cin], w[Cout, Cin, 3, 3] -> out[B, H, W, Cout]
 * (Conv2d 3x3, padding 1 with zeros, stride 1, no bias). */
void fs_ref_conv3x3_forward(float *out, const float *inp, const float *w, size_t B, size_t H, size_t W, size_t Cin,
                            size_t Cout) {
    for (size_t n = 0; n < B; n++)
        for (size_t y = 0; y < H; y++)
            for (size_t x = 0; x < W; x++)
                for (size_t co = 0; co < Cout; co++) {
                    double acc = 0;
                    for (int ky = 0; ky < 3; ky++) {
                        long iy = (long)y + ky - 1;
                        if (iy < 0 || iy >= (long)H) continue;
                        for (int kx = 0; kx < 3; kx++) {
                            long ix = (long)x + kx - 1;
                            if (ix < 0 || ix >= (long)W) continue;
                            const float *px = inp + ((n * H + (size_t)iy) * W + (size_t)ix) * Cin;
                            for (size_t ci = 0; ci < Cin; ci++)
                                acc += (double)px[ci] * w[((co * Cin + ci) * 3 + (size_t)ky) * 3 + (size_t)kx];
                        }
                    }
                    out[((n * H + y) * W + x) * Cout + co] = (float)acc;
                }
}

/* inp[B, H, W, Cin], w[Cin, Cout, 2, 2], b[Cout] -> out[B, 2H, 2W, Cout]
 * (ConvTranspose2d kernel 2 stride 2: each input pixel writes its own 2x2
 * output block, out[2y+ky, 2x+kx, co] = b[co] + sum_ci inp[y, x, ci] w[ci, co, ky, kx]). */
void fs_ref_conv_transpose2x2_forward(float *out, const float *inp, const float *w, const float *b, size_t B,
                                      size_t H, size_t W, size_t Cin, size_t Cout) {
    for (size_t n = 0; n < B; n++)
        for (size_t y = 0; y < H; y++)
            for (size_t x = 0; x < W; x++) {
                const float *px = inp + ((n * H + y) * W + x) * Cin;
                for (size_t ky = 0; ky < 2; ky++)
                    for (size_t kx = 0; kx < 2; kx++)
                        for (size_t co = 0; co < Cout; co++) {
                            double acc = b ? b[co] : 0.0;
                            for (size_t ci = 0; ci < Cin; ci++)
                                acc += (double)px[ci] * w[((ci * Cout + co) * 2 + ky) * 2 + kx];
                            out[((n * 2 * H + 2 * y + ky) * 2 * W + 2 * x + kx) * Cout + co] = (float)acc;
                        }
            }
}

/* ---- backward: each gradient optional (NULL = not wanted), all accumulate ---- */

/* Shapes as fs_ref_patch_embed_forward. The patches do not overlap, so each
 * input pixel (ci, oy*P+ky, ox*P+kx) feeds exactly the outputs at (oy, ox):
 *   dinp[n, ci, oy*P+ky, ox*P+kx] += sum_co dout[n, oy, ox, co] w[co, ci, ky, kx]
 *   dw[co, ci, ky, kx] += sum_{n, oy, ox} dout[n, oy, ox, co] inp[n, ci, oy*P+ky, ox*P+kx]
 *   db[co] += sum_{n, oy, ox} dout[n, oy, ox, co] */
void fs_ref_patch_embed_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                 const float *w, size_t B, size_t Cin, size_t Hi, size_t Wi, size_t P, size_t C) {
    size_t Ho = Hi / P, Wo = Wi / P;
    if (dinp)
        for (size_t n = 0; n < B; n++)
            for (size_t ci = 0; ci < Cin; ci++)
                for (size_t oy = 0; oy < Ho; oy++)
                    for (size_t ky = 0; ky < P; ky++)
                        for (size_t ox = 0; ox < Wo; ox++)
                            for (size_t kx = 0; kx < P; kx++) {
                                const float *g = dout + ((n * Ho + oy) * Wo + ox) * C;
                                double acc = 0;
                                for (size_t co = 0; co < C; co++)
                                    acc += (double)g[co] * w[((co * Cin + ci) * P + ky) * P + kx];
                                dinp[((n * Cin + ci) * Hi + oy * P + ky) * Wi + ox * P + kx] += (float)acc;
                            }
    if (dw)
        for (size_t co = 0; co < C; co++)
            for (size_t ci = 0; ci < Cin; ci++)
                for (size_t ky = 0; ky < P; ky++)
                    for (size_t kx = 0; kx < P; kx++) {
                        double acc = 0;
                        for (size_t n = 0; n < B; n++)
                            for (size_t oy = 0; oy < Ho; oy++)
                                for (size_t ox = 0; ox < Wo; ox++)
                                    acc += (double)dout[((n * Ho + oy) * Wo + ox) * C + co] *
                                           inp[((n * Cin + ci) * Hi + oy * P + ky) * Wi + ox * P + kx];
                        dw[((co * Cin + ci) * P + ky) * P + kx] += (float)acc;
                    }
    if (db)
        for (size_t co = 0; co < C; co++) {
            double acc = 0;
            for (size_t i = 0; i < B * Ho * Wo; i++) acc += dout[i * C + co];
            db[co] += (float)acc;
        }
}

/* Shapes as fs_ref_conv3x3_forward. Output (y, x) reads input (y+ky-1, x+kx-1),
 * so input (iy, ix) is read by output (iy-ky+1, ix-kx+1) where that exists:
 *   dinp[n, iy, ix, ci] += sum_{ky, kx, co} dout[n, iy-ky+1, ix-kx+1, co] w[co, ci, ky, kx]
 *   dw[co, ci, ky, kx]  += sum_{n, y, x} dout[n, y, x, co] inp[n, y+ky-1, x+kx-1, ci] */
void fs_ref_conv3x3_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, size_t B,
                             size_t H, size_t W, size_t Cin, size_t Cout) {
    if (dinp)
        for (size_t n = 0; n < B; n++)
            for (size_t iy = 0; iy < H; iy++)
                for (size_t ix = 0; ix < W; ix++)
                    for (size_t ci = 0; ci < Cin; ci++) {
                        double acc = 0;
                        for (int ky = 0; ky < 3; ky++) {
                            long y = (long)iy - ky + 1;
                            if (y < 0 || y >= (long)H) continue;
                            for (int kx = 0; kx < 3; kx++) {
                                long x = (long)ix - kx + 1;
                                if (x < 0 || x >= (long)W) continue;
                                const float *g = dout + ((n * H + (size_t)y) * W + (size_t)x) * Cout;
                                for (size_t co = 0; co < Cout; co++)
                                    acc += (double)g[co] * w[((co * Cin + ci) * 3 + (size_t)ky) * 3 + (size_t)kx];
                            }
                        }
                        dinp[((n * H + iy) * W + ix) * Cin + ci] += (float)acc;
                    }
    if (dw)
        for (size_t co = 0; co < Cout; co++)
            for (size_t ci = 0; ci < Cin; ci++)
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        double acc = 0;
                        for (size_t n = 0; n < B; n++)
                            for (size_t y = 0; y < H; y++) {
                                long iy = (long)y + ky - 1;
                                if (iy < 0 || iy >= (long)H) continue;
                                for (size_t x = 0; x < W; x++) {
                                    long ix = (long)x + kx - 1;
                                    if (ix < 0 || ix >= (long)W) continue;
                                    acc += (double)dout[((n * H + y) * W + x) * Cout + co] *
                                           inp[((n * H + (size_t)iy) * W + (size_t)ix) * Cin + ci];
                                }
                            }
                        dw[((co * Cin + ci) * 3 + (size_t)ky) * 3 + (size_t)kx] += (float)acc;
                    }
}

/* Shapes as fs_ref_conv_transpose2x2_forward. Input (y, x) alone writes the
 * output block (2y+ky, 2x+kx):
 *   dinp[n, y, x, ci]  += sum_{ky, kx, co} dout[n, 2y+ky, 2x+kx, co] w[ci, co, ky, kx]
 *   dw[ci, co, ky, kx] += sum_{n, y, x} inp[n, y, x, ci] dout[n, 2y+ky, 2x+kx, co]
 *   db[co]             += sum over every output pixel of dout[.., co] */
void fs_ref_conv_transpose2x2_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                       const float *w, size_t B, size_t H, size_t W, size_t Cin, size_t Cout) {
    size_t Ho = 2 * H, Wo = 2 * W;
    if (dinp)
        for (size_t n = 0; n < B; n++)
            for (size_t y = 0; y < H; y++)
                for (size_t x = 0; x < W; x++)
                    for (size_t ci = 0; ci < Cin; ci++) {
                        double acc = 0;
                        for (size_t ky = 0; ky < 2; ky++)
                            for (size_t kx = 0; kx < 2; kx++) {
                                const float *g = dout + ((n * Ho + 2 * y + ky) * Wo + 2 * x + kx) * Cout;
                                for (size_t co = 0; co < Cout; co++)
                                    acc += (double)g[co] * w[((ci * Cout + co) * 2 + ky) * 2 + kx];
                            }
                        dinp[((n * H + y) * W + x) * Cin + ci] += (float)acc;
                    }
    if (dw)
        for (size_t ci = 0; ci < Cin; ci++)
            for (size_t co = 0; co < Cout; co++)
                for (size_t ky = 0; ky < 2; ky++)
                    for (size_t kx = 0; kx < 2; kx++) {
                        double acc = 0;
                        for (size_t n = 0; n < B; n++)
                            for (size_t y = 0; y < H; y++)
                                for (size_t x = 0; x < W; x++)
                                    acc += (double)inp[((n * H + y) * W + x) * Cin + ci] *
                                           dout[((n * Ho + 2 * y + ky) * Wo + 2 * x + kx) * Cout + co];
                        dw[((ci * Cout + co) * 2 + ky) * 2 + kx] += (float)acc;
                    }
    if (db)
        for (size_t co = 0; co < Cout; co++) {
            double acc = 0;
            for (size_t i = 0; i < B * Ho * Wo; i++) acc += dout[i * Cout + co];
            db[co] += (float)acc;
        }
}
