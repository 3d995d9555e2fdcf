// Row loops of the CPU depthwise_conv2d kernels, compiled for several instruction sets.
//
// Every tensor is walked channels-last (NHWC): the C channels of one position are
// adjacent, so each tap is a multiply-add of two C-long rows and vectorises over the
// channels at any kernel size, stride or spatial size (the feature maps of a search
// on small images are 2x2 to 8x8, too small to vectorise along a spatial axis). The
// functions are plain overloads, cloned per instruction set (multiversion.h).
//
// Pointers to x, grad and grad_x are the first element of one sample; `w` is the
// filter bank transposed to [KH * KW, C] in the accumulation type; `acc` is scratch
// of C accumulators (one position's channels).
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

#include "../depthwise_conv2d_checks.h"

namespace hwnas {
namespace ops {
namespace cpu {

// out[oh, :, :] (OW x C) of one sample.
void depthwise_forward_row(const float* x, const float* w, const DepthwiseGeometry& g, int64_t oh, float* acc,
                           float* out);
void depthwise_forward_row(const double* x, const double* w, const DepthwiseGeometry& g, int64_t oh, double* acc,
                           double* out);
void depthwise_forward_row(const c10::BFloat16* x, const float* w, const DepthwiseGeometry& g, int64_t oh,
                           float* acc, c10::BFloat16* out);
void depthwise_forward_row(const c10::Half* x, const float* w, const DepthwiseGeometry& g, int64_t oh, float* acc,
                           c10::Half* out);

// grad_x[ih, :, :] (W x C) of one sample, gathered from every output that read it.
void depthwise_grad_input_row(const float* grad, const float* w, const DepthwiseGeometry& g, int64_t ih, float* acc,
                              float* grad_x);
void depthwise_grad_input_row(const double* grad, const double* w, const DepthwiseGeometry& g, int64_t ih,
                              double* acc, double* grad_x);
void depthwise_grad_input_row(const c10::BFloat16* grad, const float* w, const DepthwiseGeometry& g, int64_t ih,
                              float* acc, c10::BFloat16* grad_x);
void depthwise_grad_input_row(const c10::Half* grad, const float* w, const DepthwiseGeometry& g, int64_t ih,
                              float* acc, c10::Half* grad_x);

// grad_w[tap, c] (acc, [KH * KW, C]) += sum over output row oh of one sample of
// grad[oh, ow, c] * x[ih, iw, c].
void depthwise_grad_weight_row(const float* grad, const float* x, const DepthwiseGeometry& g, int64_t oh,
                               float* grad_w);
void depthwise_grad_weight_row(const double* grad, const double* x, const DepthwiseGeometry& g, int64_t oh,
                               double* grad_w);
void depthwise_grad_weight_row(const c10::BFloat16* grad, const c10::BFloat16* x, const DepthwiseGeometry& g,
                               int64_t oh, float* grad_w);
void depthwise_grad_weight_row(const c10::Half* grad, const c10::Half* x, const DepthwiseGeometry& g, int64_t oh,
                               float* grad_w);

}  // namespace cpu
}  // namespace ops
}  // namespace hwnas
