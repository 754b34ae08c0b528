"""Which process a connection pool was opened in, known without a system call.

A forked child cannot use its parent's channels, so a transport opens new
ones there. Asking ``os.getpid()`` on every call would tell, but it is a
system call, and right after a call's blocking wait it costs a sequential
call several microseconds. Python runs `os.register_at_fork` hooks in every
child that `os.fork` makes (multiprocessing's fork start method included), so
counting forks there tells the same thing with an attribute read.
"""

from __future__ import annotations

import os

generation = 0
"""Forks between this module's import and the running process: 0 in the process that
imported it, one more in each forked child. A pool remembers the generation it was
opened in; a different one means the pool belongs to an ancestor process."""


def _count_fork() -> None:
    global generation  # the one counter every transport reads
    generation += 1


os.register_at_fork(after_in_child=_count_fork)
