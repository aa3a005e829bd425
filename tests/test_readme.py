"""The README's Python section runs as written, in a copy of the repository's LeNet material,
after a stand-in for the training command's snapshot (a LeNet with its fillers' weights)."""
import os
import re
import shutil
import subprocess
import sys

import pycaffelite as pcl

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_python_blocks():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_the_readme_python_section_runs_as_written(tmp_path):
    blocks = readme_python_blocks()
    assert blocks, "the README has no python block"
    shutil.copytree(os.path.join(REPO, "models", "lenet"), tmp_path / "models" / "lenet",
                    ignore=shutil.ignore_patterns("*_iter_*"))
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    for name in os.listdir(os.path.join(REPO, "data", "mnist")):
        if not name.endswith("_lmdb"):
            shutil.copy(os.path.join(REPO, "data", "mnist", name), tmp_path / "data" / "mnist")
    net = pcl.Net(os.path.join(REPO, "models", "lenet", "lenet_time.prototxt"), pcl.TEST)
    net.save(str(tmp_path / "models" / "lenet" / "lenet_iter_5000.caffemodel"))
    env = dict(os.environ, PYTHONPATH=REPO)
    for block in blocks:
        result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"\[( ?\d){10}\]", lines[0]), lines
    assert lines[1].startswith("100 ")
