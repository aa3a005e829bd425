"""Fixtures shared by the solver tests."""
import pytest

import solver_ref_cases as ref


@pytest.fixture
def case_dir(tmp_path, monkeypatch):
    """Copy a reference case folder to tmp and run from inside it (Caffe resolves paths against
    the cwd)."""

    def enter(case):
        path = ref.copy_case(case, tmp_path)
        monkeypatch.chdir(path)
        return path

    return enter
