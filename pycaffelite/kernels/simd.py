"""A 16-lane float32 vector type for numba kernels, and the few operations a GEMM needs.

numba's loop vectorizer cannot be made to keep a register tile of accumulators (it spills them or
gathers scalars), so the micro-kernel in `sgemm` spells its vectors out: `Vec16` is LLVM's
<16 x float>, and the functions below emit one vector load, store or fused multiply-add each.
LLVM lowers them to the widest registers the host has (one AVX-512 register, or two AVX2 ones).
Loads and stores address an array by element offset from its first element, whatever its shape
and strides (the caller computes offsets from the strides), so views need no flattening.

Only usable inside numba-compiled functions.
"""
import llvmlite.binding
from llvmlite import ir
from numba import types
from numba.core import config
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 16
_VECTOR = ir.VectorType(ir.FloatType(), LANES)


def wide_vectors():
    """Whether the code numba makes here runs on AVX-512 (a 16-lane vector in one register):
    the features numba compiles for (NUMBA_CPU_FEATURES, else the host's)."""
    features = config.CPU_FEATURES or llvmlite.binding.get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


class Vec16Type(types.Type):
    def __init__(self):
        super().__init__(name="Vec16f32")


vec16 = Vec16Type()


@register_model(Vec16Type)
class _Vec16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _element_pointer(context, builder, array_type, array, index, element=ir.FloatType()):
    """Pointer to the element `index` places past the first element of `array` (counted in
    elements along memory, whatever the array's shape and strides)."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), element.as_pointer())


def _check_float32(array):
    if not (isinstance(array, types.Array) and array.dtype == types.float32):
        raise TypeError(f"expected a float32 array, got {array}")


@intrinsic
def vzero(typingctx):
    """A vector of zeros."""
    def codegen(context, builder, signature, args):
        return ir.Constant(_VECTOR, [0.0] * LANES)
    return vec16(), codegen


@intrinsic
def load(typingctx, array, index):
    """The float32 `index` elements past the array's first (no bounds check)."""
    _check_float32(array)

    def codegen(context, builder, signature, args):
        return builder.load(_element_pointer(context, builder, signature.args[0], *args), align=4)
    return types.float32(array, index), codegen


@intrinsic
def store(typingctx, array, index, value):
    """Set the float32 `index` elements past the array's first (no bounds check)."""
    _check_float32(array)

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        value = context.cast(builder, args[2], signature.args[2], types.float32)
        builder.store(value, pointer, align=4)
        return context.get_dummy_value()
    return types.void(array, index, value), codegen


@intrinsic
def vload(typingctx, array, index):
    """The 16 floats from `index` elements past the array's first, as a vector (no alignment
    needed, no bounds check)."""
    _check_float32(array)

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], *args, element=_VECTOR)
        return builder.load(pointer, align=4)
    return vec16(array, index), codegen


@intrinsic
def vstore(typingctx, array, index, vector):
    """Store the vector at the 16 floats from `index` elements past the array's first (no
    alignment needed, no bounds check)."""
    _check_float32(array)

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1],
                                   element=_VECTOR)
        builder.store(args[2], pointer, align=4)
        return context.get_dummy_value()
    return types.void(array, index, vector), codegen


@intrinsic
def vadd(typingctx, left, right):
    """left + right, lane by lane."""
    def codegen(context, builder, signature, args):
        return builder.fadd(*args)
    return vec16(left, right), codegen


@intrinsic
def vfma(typingctx, scalar, vector, accumulator):
    """accumulator + scalar * vector, the scalar broadcast to all lanes, as one fused
    multiply-add (one rounding)."""
    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], types.float32)
        undefined = ir.Constant(_VECTOR, ir.Undefined)
        first = builder.insert_element(undefined, value, ir.Constant(ir.IntType(32), 0))
        broadcast = builder.shuffle_vector(
            first, undefined, ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VECTOR, [_VECTOR] * 3), f"llvm.fma.v{LANES}f32")
        return builder.call(fma, [broadcast, args[1], args[2]])
    return vec16(scalar, vector, accumulator), codegen
