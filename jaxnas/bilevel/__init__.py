"""Generic bi-level optimisation steps on pytrees, independent of any search space.

* :mod:`jaxnas.bilevel.hypergrad`: DARTS' hypergradient through one unrolled weight
  step (exact forward-over-reverse, unrolled, finite difference) for any
  ``loss_fn(w, alpha, batch)``.
* :mod:`jaxnas.bilevel.rarts_update`: RARTS' relaxed Lagrangian and its three-block
  Gauss-Seidel step for any pytrees ``u``, ``w``, ``alpha``.

Like :mod:`jaxnas.optim` and :mod:`jaxnas.curvature` they need jax, optax and numpy
only (the import contract in ``pyproject.toml`` keeps it so); the search methods
(:mod:`jaxnas.search`), width search (:mod:`jaxnas.width`) and the toys build on them.
"""
