"""File I/O: protobuf text/binary files and legacy-format upgrades."""
