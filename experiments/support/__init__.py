"""Support code of the experiment scripts in ``experiments/`` (not part of the library).

* :mod:`support.prdarts_theory`: the analysis model of PR-DARTS Sec. 3.2 and the rates
  of Theorems 1 and 4 (``experiments/prdarts_theory.py analysis`` / ``thm4``).
* :mod:`support.prdarts_cnn`: the fixed-cell CNNs of PR-DARTS Fig. 2 and Theorem 4,
  trained with :class:`jaxnas.train.Trainer` (``experiments/prdarts_theory.py fig2`` /
  ``thm4``).

The scripts put ``experiments/`` on ``sys.path`` and import ``from support import ...``;
so do the tests of these modules.
"""
