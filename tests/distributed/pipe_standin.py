"""A stand-in communicator between processes (pipes to rank 0), to run `pcl train`'s worker
processes (the route `--gpu 0,1` takes, there with NCCL) on the CPU."""
import functools
import multiprocessing

import numpy as np

from pycaffelite import device
from pycaffelite.distributed.communicator import Communicator, Pending


class _Done(Pending):
    def test(self):
        return True

    def wait(self):
        pass


class PipeCommunicator(Communicator):
    """Rank 0 gathers, sums in rank order and sends back; every collective blocks."""

    name = "pipes"

    def __init__(self, rank, size, links):
        self.rank, self.size, self.links = rank, size, links

    def start_allreduce(self, buffer):
        if self.rank == 0:
            total = functools.reduce(np.add, [buffer] + [link.recv() for link in self.links])
            for link in self.links:
                link.send(total)
            buffer[...] = total
        else:
            self.links[0].send(np.array(buffer))
            buffer[...] = self.links[0].recv()
        return _Done()

    def broadcast(self, buffer, root=0):
        assert root == 0
        if self.rank == 0:
            for link in self.links:
                link.send(np.array(buffer))
        else:
            buffer[...] = self.links[0].recv()


class PipeConnector:
    """Made before the workers start; in worker r, `connector(r)` trains on the CPU and returns
    rank r's PipeCommunicator."""

    def __init__(self, size):
        self.size = size
        self.ends = [multiprocessing.Pipe() for _ in range(size - 1)]  # rank 0 <-> rank r

    def __call__(self, rank):
        device.set_mode_cpu()
        links = [end for end, _ in self.ends] if rank == 0 else [self.ends[rank - 1][1]]
        return PipeCommunicator(rank, self.size, links)
