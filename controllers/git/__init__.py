"""Git for every controller: the worker process that runs libgit2 (``controllers.git.worker``),
the loopback HTTPS bridge for what libgit2 cannot do (``bridge``), reaching a remote and the
credential checks (``remote``), a GitRepository's credentials (``credentials``), ref
resolution (``refs``), commit signing (``signing``) and the errors (``errors``).

The source controller reads with it (GitRepository), the image automation controller clones,
commits and pushes with it (ImageUpdateAutomation).
"""
