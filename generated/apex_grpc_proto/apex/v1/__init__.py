"""Generated modules for the proto package `apex.v1`."""
