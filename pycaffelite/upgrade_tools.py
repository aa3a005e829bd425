"""Caffe's three upgrade tools (upgrade_net_proto_text, upgrade_net_proto_binary,
upgrade_solver_proto_text), shared by the `pcl` commands of those names.

Each reads one file, upgrades it as Caffe upgrades such a file when it loads it
(pycaffelite.io.upgrade: V0 and V1 nets, data-transform fields, net-level inputs, old BatchNorm
params; a solver's `solver_type` enum, and nothing else of a solver, inline nets included) and
writes the result as Caffe's tool does: text as C++'s TextFormat::Print writes it
(pycaffelite.io.cpp_text_format), binary as protobuf serialises the message. The log lines are
Caffe's, on stderr with glog's prefix: each upgrade step, then "Wrote upgraded NetParameter text
proto to OUT". A file that needs no upgrade is written all the same after the error-level line
"File already in latest proto format: IN", and the command succeeds, as Caffe's does.

Where Caffe's tools differ: a file that cannot be read or upgraded ends in one `pcl: error:` line
(file:line:col for a text file's syntax) with exit status 1 and no output file, where Caffe exits
with status 2 for an unreadable file and, after a lossy upgrade, writes its output and exits 1.
The output is written under a temporary name and renamed when complete.
"""
import dataclasses
import logging
import os
from typing import Callable

from . import training_log
from .errors import PclError
from .io import cpp_text_format, protoio, upgrade
from .io.atomic import write_bytes_atomically
from .proto import caffe_pb2

log = logging.getLogger(training_log.LOGGER_NAME)


@dataclasses.dataclass(frozen=True)
class Tool:
    """One upgrade tool: what it reads and writes, and how it upgrades."""

    message: type
    binary: bool
    needs_upgrade: Callable
    upgrade: Callable

    @property
    def description(self):
        """What the tool writes, as Caffe's log names it: NetParameter text proto, ..."""
        return f"{self.message.DESCRIPTOR.name} {'binary' if self.binary else 'text'} proto"


NET_TEXT = Tool(caffe_pb2.NetParameter, False, upgrade.net_needs_upgrade,
                upgrade.upgrade_net_param)
NET_BINARY = Tool(caffe_pb2.NetParameter, True, upgrade.net_needs_upgrade,
                  upgrade.upgrade_net_param)
SOLVER_TEXT = Tool(caffe_pb2.SolverParameter, False, upgrade.solver_needs_upgrade,
                   upgrade.upgrade_solver_type)


def run(tool, source, destination):
    """Read `source`, upgrade it if it needs it, write `destination`, logging as Caffe does."""
    training_log.configure_logging()
    source, destination = os.fspath(source), os.fspath(destination)
    message = _read(tool, source)
    if tool.needs_upgrade(message):
        message = tool.upgrade(message, source)
    else:
        log.error("File already in latest proto format: %s", source)
    write_bytes_atomically(destination, _encode(tool, message), what=tool.description)
    log.info("Wrote upgraded %s to %s", tool.description, destination)


def _encode(tool, message):
    """The bytes Caffe's tool writes for `message`."""
    if tool.binary:
        return message.SerializeToString()
    return cpp_text_format.message_to_text(message).encode("utf-8")


def _read(tool, source):
    if not tool.binary:
        return protoio.read_text_proto(source, tool.message())
    message = protoio.read_binary_proto(source, tool.message())
    # C++'s parser (unlike Python's) refuses a binary message missing a required field.
    missing = message.FindInitializationErrors()
    if missing:
        raise PclError(f"{source}: not a complete binary {tool.message.DESCRIPTOR.name}: "
                       f"required field(s) {', '.join(missing)} missing")
    return message
