"""How a solver agrees with the solvers training beside it, at the few points of its loop where
they must decide alike (`Solver.group`).

A solver alone uses `SolverGroup`: every answer is its own. `CommunicatorGroup` asks every rank
through a communicator, so that a signal received by one rank, a stop requested while the root
solver tests, or a non-finite loss on one rank makes every rank act at the same iteration (a rank
acting alone would leave the others waiting in their next all-reduce).
"""
from .. import device

# Requested actions in order of precedence (the solver's "none", "snapshot", "stop").
_ACTIONS = ("none", "snapshot", "stop")


class SolverGroup:
    """A solver training alone (or whose partners are set up by hand, as pycaffe scripts do):
    the root solver is rank 0 (`device.solver_rank()`), and every agreement is its own."""

    size = 1

    @property
    def rank(self):
        return device.solver_rank()

    @property
    def is_root(self):
        """Only the root solver tests, snapshots and closes training with a display and test."""
        return self.rank == 0

    def any(self, flag):
        """True on every rank when `flag` is true on any."""
        return bool(flag)

    def action(self, action):
        """The action every rank takes this iteration: the strongest any rank requested."""
        return action

    def losses(self, loss):
        """This iteration's loss of every rank, by rank."""
        return [float(loss)]


class CommunicatorGroup(SolverGroup):
    """The ranks of a communicator; each agreement is one small all-reduce."""

    def __init__(self, comm):
        self.comm = comm
        self.size = comm.size

    @property
    def rank(self):
        return self.comm.rank

    def any(self, flag):
        return any(self.comm.gather(1.0 if flag else 0.0))

    def action(self, action):
        return _ACTIONS[int(max(self.comm.gather(_ACTIONS.index(action))))]

    def losses(self, loss):
        return self.comm.gather(float(loss))
