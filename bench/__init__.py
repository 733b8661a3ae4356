"""lorry against its peers, side by side: the harness behind ``scripts/bench``.

``python -m bench --help`` (with lorry's venv) lists the options; ``scripts/bench`` sets up both venvs,
starts Ceph RGW on 127.0.0.1, runs this and stops the server. The clients run as subprocesses
(``bench/drivers/``), each measured as a whole process tree: wall time from spawn to exit, user and
system CPU seconds, peak resident memory.
"""
