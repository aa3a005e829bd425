"""numpy generator states as RandomState messages, for the run state a solver state keeps.

Every generator pycaffelite makes is a numpy PCG64 (`np.random.default_rng`); its state is two
128-bit integers and a buffered 32-bit half draw.
"""
from .errors import PclError
from .proto import caffe_pb2


def to_proto(state, message=None):
    """A RandomState message (filled into `message` if given) from `generator.bit_generator.state`."""
    if state["bit_generator"] != "PCG64":
        raise ValueError(f"cannot save a {state['bit_generator']} generator; pycaffelite's are PCG64")
    message = caffe_pb2.RandomState() if message is None else message
    message.state = state["state"]["state"].to_bytes(16, "little")
    message.increment = state["state"]["inc"].to_bytes(16, "little")
    message.has_uint32 = bool(state["has_uint32"])
    message.uinteger = state["uinteger"]
    return message


def from_proto(message):
    """The `bit_generator.state` dict a RandomState message holds; a PclError if it is malformed."""
    if len(message.state) != 16 or len(message.increment) != 16:
        raise PclError("a saved random generator state does not hold two 16-byte numbers; the "
                       "solver state is damaged")
    return {"bit_generator": "PCG64",
            "state": {"state": int.from_bytes(message.state, "little"),
                      "inc": int.from_bytes(message.increment, "little")},
            "has_uint32": int(message.has_uint32), "uinteger": int(message.uinteger)}
