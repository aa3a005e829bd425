"""A 16-lane float32 vector type for numba kernels, and the few operations a GEMM needs.

numba's loop vectorizer cannot be made to keep a register tile of accumulators (it spills them or
gathers scalars), so the micro-kernel in `sgemm` spells its vectors out: `Vec16` is LLVM's
<16 x float>, and the functions below emit one vector load, store or fused multiply-add each.
LLVM lowers them to the widest registers the host has (one AVX-512 register, or two AVX2 ones).

Only usable inside numba-compiled functions.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 16
_VECTOR = ir.VectorType(ir.FloatType(), LANES)


class Vec16Type(types.Type):
    def __init__(self):
        super().__init__(name="Vec16f32")


vec16 = Vec16Type()


@register_model(Vec16Type)
class _Vec16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _vector_pointer(context, builder, array_type, array, index):
    """Pointer to the 16 floats starting at flat element `index` of a contiguous 1-d array."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), _VECTOR.as_pointer())


def _check_flat_float32(array):
    if not (isinstance(array, types.Array) and array.dtype == types.float32
            and array.ndim == 1 and array.layout == "C"):
        raise TypeError(f"expected a contiguous 1-d float32 array, got {array}")


@intrinsic
def vzero(typingctx):
    """A vector of zeros."""
    def codegen(context, builder, signature, args):
        return ir.Constant(_VECTOR, [0.0] * LANES)
    return vec16(), codegen


@intrinsic
def vload(typingctx, array, index):
    """array[index:index + 16] as a vector (no alignment needed, no bounds check)."""
    _check_flat_float32(array)

    def codegen(context, builder, signature, args):
        return builder.load(_vector_pointer(context, builder, signature.args[0], *args), align=4)
    return vec16(array, index), codegen


@intrinsic
def vstore(typingctx, array, index, vector):
    """array[index:index + 16] = vector (no alignment needed, no bounds check)."""
    _check_flat_float32(array)

    def codegen(context, builder, signature, args):
        pointer = _vector_pointer(context, builder, signature.args[0], args[0], args[1])
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
