"""Regenerate pycaffelite/proto/caffe_pb2.py from proto/caffe.proto.

Usage: python tools/gen_proto.py [OUT_DIR]

Runs the protoc bundled with grpcio-tools (pip install grpcio-tools). The
generated module requires a protobuf runtime at least as new as that protoc;
keep the `protobuf` bound in pyproject.toml in step with it.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
DEFAULT_OUT = ROOT / "pycaffelite" / "proto"


def generate(out_dir=DEFAULT_OUT):
    """Write caffe_pb2.py into `out_dir` and return its path."""
    from grpc_tools import protoc

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    status = protoc.main(
        ["protoc", f"-I{PROTO_DIR}", f"--python_out={out_dir}", str(PROTO_DIR / "caffe.proto")]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed on {PROTO_DIR / 'caffe.proto'} (exit {status})")
    return out_dir / "caffe_pb2.py"


if __name__ == "__main__":
    print(generate(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT))
