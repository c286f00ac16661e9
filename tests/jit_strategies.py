"""JIT strategies shared by the tests (module level, so Numba's disk cache serves
every test run after the first: the kernels compile once per machine)."""

from __future__ import annotations

import math

import numpy as np

import cnnpool as cp


class L2Pool2d(cp.JitPool2d):
    """The Euclidean norm of each window (Lp, p = 2), as a user would write it."""

    @staticmethod
    def window(values, params):
        s = 0.0
        for v in values:
            s += v * v
        return math.sqrt(s)

    @staticmethod
    def window_grad(values, pooled, params, grad):
        if pooled > 0:
            inv = 1.0 / pooled
            for i in range(len(values)):
                grad[i] = values[i] * inv


class FirstMaxPool2d(cp.JitPool2d):
    """Max pooling with PyTorch's rules: the first maximum wins, a NaN always wins."""

    @staticmethod
    def window(values, params):
        best = -math.inf
        for v in values:
            if v > best or v != v:  # NaN always replaces
                best = v
        return best

    @staticmethod
    def window_grad(values, pooled, params, grad):
        best, at = -math.inf, 0
        for i in range(len(values)):
            v = values[i]
            if v > best or v != v:
                best, at = v, i
        grad[at] = 1.0


class MeanPool2dJit(cp.JitPool2d):
    """Mean over the taps inside the input (``count_include_pad=False``)."""

    @staticmethod
    def window(values, params):
        s = 0.0
        for v in values:
            s += v
        return s / len(values)

    @staticmethod
    def window_grad(values, pooled, params, grad):
        for i in range(len(values)):
            grad[i] = 1.0 / len(values)


class PaddedMeanPool2dJit(MeanPool2dJit):
    """The same functions seeing padded taps as zeros (``count_include_pad=True``)."""

    include_pad = True
    pad_value = 0.0


class LearnedSoftmaxPool2d(cp.JitPool2d):
    """Softmax pooling whose ``beta`` is learned (a Parameter): window_param_grad."""

    window_params = ("beta",)

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, beta=1.0):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self.beta = cp.Parameter(np.array([beta]), "beta")

    def get_config(self):
        config = cp.Pool2d.get_config(self)
        config["beta"] = float(self.beta.data[0])
        return config

    @staticmethod
    def window(values, params):
        beta = params[0]
        top = beta * values[0]  # stable softmax: subtract the largest logit
        for v in values:
            top = max(top, beta * v)
        num = den = 0.0
        for v in values:
            e = math.exp(beta * v - top)
            num += e * v
            den += e
        return num / den

    @staticmethod
    def window_grad(values, pooled, params, grad):
        beta = params[0]
        top = beta * values[0]
        for v in values:
            top = max(top, beta * v)
        den = 0.0
        for v in values:
            den += math.exp(beta * v - top)
        for i in range(len(values)):
            w = math.exp(beta * values[i] - top) / den
            grad[i] = w * (1.0 + beta * (values[i] - pooled))

    @staticmethod
    def window_param_grad(values, pooled, params, grad):
        # d/d beta of sum_i w_i x_i = sum_i w_i (x_i - pooled)^2
        beta = params[0]
        top = beta * values[0]
        for v in values:
            top = max(top, beta * v)
        num = den = 0.0
        for v in values:
            e = math.exp(beta * v - top)
            num += e * (v - pooled) ** 2
            den += e
        grad[0] = num / den
