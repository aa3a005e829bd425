"""Run many `pcl` commands in one child process, so that a crash (a signal) or a hang cannot take
the test runner down, and the interpreter starts once for all of them.

    results = run_cases([("name", ["compute_image_mean", "db"]), ...], timeout=20)

Each result is a dict: name, code (the exit status), stderr (everything written to file
descriptor 2, by Python or by C libraries), and `traceback` when an exception escaped pcl. A case that kills the child (a signal) or runs past
`timeout` seconds ends the child; its result says so in `crash` (and the later cases do not run).
Run as a script, this module is the child: it reads the cases as JSON from a file and writes one
JSON line when a case starts and one when it ends.
"""
import faulthandler
import json
import os
import subprocess
import sys
import tempfile
import traceback


def run_cases(cases, timeout=20, cwd=None):
    """Run (name, argv) cases in one child process; a list of result dicts (see the module doc)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"cases": [[name, list(map(str, argv))] for name, argv in cases],
                   "timeout": timeout}, handle)
    try:
        child = subprocess.run([sys.executable, __file__, handle.name], capture_output=True,
                               text=True, cwd=cwd, timeout=timeout * len(cases) + 60)
    finally:
        os.remove(handle.name)
    results, started = [], None
    for line in child.stdout.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
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


def _child(path):
    from pycaffelite.cli import main  # noqa: PLC0415 - imported in the child only

    with open(path, encoding="utf-8") as handle:
        spec = json.load(handle)
    for name, argv in spec["cases"]:
        print(json.dumps({"start": name}), flush=True)
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
                faulthandler.cancel_dump_traceback_later()
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
            captured.seek(0)
            result["stderr"] = captured.read().decode("utf-8", errors="replace")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1])
