"""The ``weir`` command: operating weir and the objects it reconciles (``weir.cli``), and the
install bundle it applies (``weir.bundle``)."""
