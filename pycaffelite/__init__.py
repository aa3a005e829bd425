"""pycaffelite: Caffe's prototxt/caffemodel workflow in Python."""
