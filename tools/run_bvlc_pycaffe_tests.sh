#!/usr/bin/env bash
# Run BVLC Caffe's own pycaffe test files (python/caffe/test/test_*.py) against this project's
# `caffe` package, unmodified. Give the root of a BVLC Caffe source checkout; nothing of it is
# copied into the project:
#
#   tools/run_bvlc_pycaffe_tests.sh ~/src/caffe [pytest options]
#
# The test files are run from a temporary tree that holds only them, beside links to the
# checkout's models/ and examples/ (test_draw.py draws every net found there), so that
# `import caffe` finds this project's package and not the checkout's python/caffe.
set -euo pipefail
caffe_root=$(cd "${1:?give the root of a BVLC Caffe checkout}" && pwd)
shift
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/python/caffe/test"
cp "$caffe_root"/python/caffe/test/test_*.py "$tree/python/caffe/test/"
ln -s "$caffe_root/models" "$tree/models"
ln -s "$caffe_root/examples" "$tree/examples"
cd "$tree/python/caffe/test"
python -c 'import caffe, sys; print("caffe is", caffe.__file__, file=sys.stderr)'
python -m pytest -q -p no:cacheprovider "$@" .
