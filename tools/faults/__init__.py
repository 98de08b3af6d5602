"""Fault tools that a person can run by hand and tests and the chaos campaign call.

    signals.py   kill -9 (the node alone, or the whole machine), pause and resume
    hooks.py     partitions through the transport's fault hooks (no root needed):
                 cut a link both ways, one way, isolate a machine, heal
    netns.py     the same with network namespaces and iptables (root only)
    clock.py     wall-clock jumps with libfaketime (monotonic clocks left alone)
    store.py     a slow or failing git lease store (a pre-receive hook on the remote)
    slow_disk.py every fsync of a process and its children slowed (an LD_PRELOAD shim,
                 slow_fsync.c, built with gcc): ``python -m tools.faults.slow_disk 60 -- CMD``

    mesh_options.py  how tools/mesh.py started a mesh, so faults and restarts fit it

``python -m tools.faults --help`` runs them by hand against machines started with
``python tools/mesh.py up N --dir DIR --lease --fault-hooks --faketime``.
"""
