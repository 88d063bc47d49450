"""jaxnas: differentiable neural architecture search in JAX/Flax.

The package in layers, top to bottom (a module imports only from layers below its own;
the contract is ``[tool.importlinter]`` in pyproject.toml, checked by ``make lint``):

  cli                      the ``jaxnas`` command
  compress                 ``jaxnas compress``: picks a compression run
  run, run_rnn, train,     the runs, each an experiment of the one loop: image and
  train_rnn, asmnas_select,  recurrent search, retraining, ASM-NAS selection,
  bayes_compress,            BayesNAS and width compression
  width_compress
  search_workdir           what a search run writes beside the loop's files
  loop                     the one experiment loop (workdir, checkpoints, resume, signals)
  search, width, toys      the methods: one module per search method, width search
  search_spaces            the search spaces as objects (DARTS cell, NAS-Bench-201, RNN)
  models, rnn, latency,    discrete and prunable networks, the recurrent cell,
  bayes_groups               op latencies, BayesNAS groups
  supernet, bayes, gates   the supernet and its edge mixers' building blocks
  genotype, spaces         DARTS genotypes (old import path); the search spaces' data
  ops, common, data*,      the core: ops, losses and schedules, data, checkpoints,
  runtime, config, ...       configs, plots, logging, XLA setup
  optim, curvature,        jax/optax/numpy only, usable on their own
  bilevel, optional
"""

__version__ = "0.1.0"
