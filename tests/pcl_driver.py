"""Run many `pcl` commands in one child process, so that a crash (a signal) or a hang cannot take
the test runner down, and the interpreter starts once for all of them.

    results = run_cases([("name", ["compute_image_mean", "db"]), ...], timeout=20)

A case may carry a third item, a dict of options: `cwd` (the folder it runs in), `interrupt_after`
(seconds after which the child sends itself SIGINT, again every quarter second, which `pcl train`
answers by stopping after the current iteration: a time budget for training runs; the signals
that come while pcl has no handler for them are ignored). `memory_bytes` caps what pcl believes the
machine holds (its memory guard) and the child's address space at twice that, so a huge shape
from a mutated file cannot swamp the machine.

Each result is a dict: name, code (the exit status), stderr (everything written to file
descriptor 2, by Python or by C libraries), and `traceback` when an exception escaped pcl. A case that kills the child (a signal) or runs past
`timeout` seconds ends the child; its result says so in `crash` (and the later cases do not run).
Run as a script, this module is the child: it reads the cases as JSON from a file and writes one
marked JSON line when a case starts and one when it ends.
"""
import faulthandler
import json
import os
import signal
import subprocess
import sys
import tempfile
import traceback

_MARK = "@pcl-driver@ "  # starts the child's own lines on its stdout


def run_cases(cases, timeout=20, cwd=None, memory_bytes=None):
    """Run (name, argv[, options]) cases in one child process; a list of result dicts (see the
    module doc)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"cases": [[case[0], list(map(str, case[1])), case[2] if len(case) > 2 else {}]
                             for case in cases],
                   "timeout": timeout, "memory_bytes": memory_bytes}, handle)
    try:
        child = subprocess.run([sys.executable, __file__, handle.name], capture_output=True,
                               text=True, cwd=cwd, timeout=timeout * len(cases) + 60)
    finally:
        os.remove(handle.name)
    results, started = [], None
    for line in child.stdout.splitlines():
        if not line.startswith(_MARK):
            continue
        record = json.loads(line[len(_MARK):])
        if "start" in record:
            started = record["start"]
        else:
            results.append(record)
            started = None
    if started is not None or child.returncode:
        how = (f"signal {-child.returncode}" if child.returncode < 0 else
               f"exit status {child.returncode}")
        results.append({"name": started or "?", "code": child.returncode,
                        "crash": f"the child process ended ({how}) while running it; its stderr "
                                 f"ends: {child.stderr[-2000:]}", "stderr": ""})
    return results


def _limit_memory(nbytes):
    import resource  # noqa: PLC0415 - POSIX only

    from pycaffelite import memory  # noqa: PLC0415

    memory.machine_bytes = lambda: nbytes
    resource.setrlimit(resource.RLIMIT_AS, (2 * nbytes, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _interrupt(signum, frame):
    signal.raise_signal(signal.SIGINT)


def _ignore(signum, frame):
    pass


def _child(path):
    from pycaffelite.cli import main  # noqa: PLC0415 - imported in the child only

    with open(path, encoding="utf-8") as handle:
        spec = json.load(handle)
    if spec["memory_bytes"]:
        _limit_memory(spec["memory_bytes"])
    signal.signal(signal.SIGALRM, _interrupt)
    home = os.getcwd()
    for name, argv, options in spec["cases"]:
        print(_MARK + json.dumps({"start": name}), flush=True)
        os.chdir(options.get("cwd", home))
        if "interrupt_after" in options:
            signal.signal(signal.SIGINT, _ignore)
            signal.setitimer(signal.ITIMER_REAL, options["interrupt_after"], 0.25)
        result = {"name": name}
        with tempfile.TemporaryFile() as captured:
            saved = os.dup(2)
            os.dup2(captured.fileno(), 2)
            faulthandler.dump_traceback_later(spec["timeout"], exit=True, file=saved)
            try:
                main(argv)
                result["code"] = 0
            except SystemExit as exc:
                result["code"] = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - reported to the parent
                result["code"] = None
                result["traceback"] = traceback.format_exc()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                faulthandler.cancel_dump_traceback_later()
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
            captured.seek(0)
            result["stderr"] = captured.read().decode("utf-8", errors="replace")
        print(_MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1])
