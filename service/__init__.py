"""The running service: the one place that wires the ledger, its store, the projection runner
and the HTTP application together (``bootstrap``), and the processes that use it: the
``ledger`` command (``cli``) and ``ledger serve`` (``serve``).
"""
