"""jaxnas: differentiable neural architecture search in JAX/Flax.

Modules:
  ops        candidate operations (NHWC Flax modules) and their registry
  spaces     search-space topologies (the DARTS cell)
  supernet   the search network, parameterised by an edge mixer
  genotype   discrete architectures: derive, validate, JSON, draw
  data       datasets, the bi-level split, augmentation, batching
  search     one module per method (darts, ...)
"""

__version__ = "0.1.0"
