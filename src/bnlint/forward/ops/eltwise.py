"""Eltwise: SUM (with per-bottom coeff), PROD and MAX over bottoms of one shape."""

from __future__ import annotations

import numpy as np

from bnlint.errors import ForwardError
from bnlint.forward.ops.base import FreshTops, layer_error, may_overwrite
from bnlint.forward.registry import Op, register_op


@register_op("Eltwise")
class Eltwise(FreshTops, Op):
    """Caffe's EltwiseLayer forward, in its order of operations.

    SUM adds coeff[i] * bottom[i] one bottom at a time (coeff defaults to all 1 and,
    when given, needs one per bottom); PROD multiplies left to right; MAX takes
    bottom[0] only where it is strictly greater than bottom[1] (a tie or a NaN there
    gives bottom[1]), then a later bottom replaces the running max only where it is
    strictly greater (a tie keeps the earlier value, a NaN is skipped). The choice is
    visible only with signed zeros and NaN.
    """

    bottoms = (2, None)

    def setup(self, layer) -> None:
        param = layer.eltwise_param
        kinds = type(param)
        self.operation = param.operation
        self.coeffs = [np.float32(c) for c in param.coeff]
        if self.coeffs and self.operation != kinds.SUM:
            raise layer_error(self, "Eltwise only takes coefficients for summation (SUM)")
        bottom_count = len(layer.bottom)
        if self.coeffs and bottom_count and len(self.coeffs) != bottom_count:
            raise layer_error(self, f"Eltwise takes one coefficient per bottom blob: "
                                    f"{len(self.coeffs)} coeff for {bottom_count} bottoms")
        if self.operation == kinds.SUM:
            self._combine = self._sum
        elif self.operation == kinds.PROD:
            self._combine = self._prod
        else:
            self._combine = self._max

    def _forward(self, bottoms):
        shape = bottoms[0].shape
        for index, other in enumerate(bottoms[1:], start=1):
            if other.shape != shape:
                raise ForwardError(f"bottom {index} has shape {list(other.shape)}, "
                                   f"bottom 0 has {list(shape)}; Eltwise needs equal shapes")
        return [self._combine(bottoms)]

    def _sum(self, bottoms):
        coeffs = self.coeffs or [np.float32(1)] * len(bottoms)
        if len(coeffs) != len(bottoms):
            raise ForwardError(f"Eltwise takes one coefficient per bottom blob: "
                               f"{len(coeffs)} coeff for {len(bottoms)} bottoms")
        if len(bottoms) == 2 and not may_overwrite(bottoms[0]) and may_overwrite(bottoms[1]):
            # a + b == b + a bit for bit, so the sum can go into a handed-over bottom 1.
            bottoms, coeffs = bottoms[::-1], coeffs[::-1]
        first = bottoms[0]
        if may_overwrite(first):
            total = first if coeffs[0] == 1 else np.multiply(first, coeffs[0], out=first)
        else:
            total = np.multiply(first, coeffs[0])
        term = None
        for bottom, coeff in zip(bottoms[1:], coeffs[1:]):
            if coeff == 1:
                total += bottom
            else:
                if term is None:
                    term = np.empty_like(total)
                np.multiply(bottom, coeff, out=term)
                total += term
        return total

    @staticmethod
    def _prod(bottoms):
        if len(bottoms) == 2 and not may_overwrite(bottoms[0]) and may_overwrite(bottoms[1]):
            bottoms = bottoms[::-1]                     # a * b == b * a bit for bit
        first = bottoms[0]
        product = np.multiply(first, bottoms[1], out=first if may_overwrite(first) else None)
        for bottom in bottoms[2:]:
            product *= bottom
        return product

    @staticmethod
    def _max(bottoms):
        first, second = bottoms[0], bottoms[1]
        running = np.where(first > second, first, second)
        for bottom in bottoms[2:]:
            np.copyto(running, bottom, where=bottom > running)
        return running
