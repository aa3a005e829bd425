"""A Python script training data-parallel under mpiexec, as the distributed module documents it;
each rank saves its weights to script<rank>.caffemodel."""
from pycaffelite import distributed, get_solver

comm = distributed.init()
solver = get_solver("ranks.prototxt")
distributed.DataParallel(solver, comm)
solver.solve()
solver.net.save(f"script{distributed.rank()}.caffemodel")
