"""The Fashion-MNIST head-to-head of every search method (``experiments/fmnist_head_to_head.py``).

Every method searches with its own tiny config (``configs/<method>_fmnist_tiny.py``:
5 cells, 4 initial channels, batch 32, crop 2 + flip) under the same ``search``
overrides below (same images, same split, same epochs, same supernet size), then every
derived cell is retrained with ``retrain.config`` under the same ``retrain`` overrides
and tested on the Fashion-MNIST test split.  ``quick`` replaces some of these for
``--quick`` (one seed, smaller budget).

    python experiments/fmnist_head_to_head.py --config configs/head_to_head_fmnist.py \
        --workdir runs/h2h                    # 3 seeds, the full budget
    python experiments/fmnist_head_to_head.py --config configs/head_to_head_fmnist.py \
        --workdir runs/h2h_quick --quick      # 1 seed: 37 min on 2 CPU cores (README)
"""

import ml_collections

#: SparseNAS' lambda path: a per-step ramp to lambda 1.5 at the end of the full budget's
#: 3 epochs; each cell type's path ends at its first theta with at most 10 (edge, op)
#: pairs (DARTS' cells have 8; the paper's SparseNAS cells are 1.15-1.3x DARTS' size).
#: At these budgets lambda otherwise leaves the cell dense or empties it a few steps
#: later (README, "SparseNAS and BayesNAS at small budgets").
SPARSE = (
    "search.lam_every=step",
    "search.lam_step=0.5",
    "search.max_ops=10",
    "optim.a_grad_clip=5",
)

#: (row name, search config, ``KEY=VALUE`` overrides of that config applied after the
#: shared ones), in the order of the table.
METHODS = (
    ("darts_1st", "configs/darts_fmnist_tiny.py", ("search.order=first",)),
    ("darts_2nd", "configs/darts_fmnist_tiny.py", ("search.order=second",)),
    ("rarts", "configs/rarts_fmnist_tiny.py", ()),
    ("sparsenas_hapg", "configs/sparsenas_fmnist_tiny.py", ("search.optimizer=hapg", *SPARSE)),
    (
        "sparsenas_adamhapg",
        "configs/sparsenas_fmnist_tiny.py",
        ("search.optimizer=adam_hapg", *SPARSE),
    ),
    # H of the summed CE of a batch (the authors' code sums over its batch of 18), and a
    # lambda_w that gives cells of DARTS' size at this budget (README, "SparseNAS and
    # BayesNAS at small budgets": with the mean-CE H no lambda_w did).
    (
        "bayesnas",
        "configs/bayesnas_fmnist_tiny.py",
        ("search.hessian_scale=sum", "search.lam_w=0.03"),
    ),
    ("asmnas", "configs/asmnas_fmnist_tiny.py", ()),
    ("prdarts", "configs/prdarts_fmnist_tiny.py", ()),
    # tau 10 -> 0.1 over the search's epochs (the authors' range), one sampled op per edge
    ("gdas", "configs/gdas_fmnist_tiny.py", ()),
)


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.methods = METHODS
    c.seeds = (0, 1, 2)
    # Applied to every method's search config: the common budget and supernet size.
    c.search = [
        "data.limit=3200",  # 1600 images train w, 1600 train the architecture
        "data.batch_size=32",
        "model.init_channels=4",
        "model.layers=5",
        "search.epochs=3",
        "run.eval_test=False",  # the retrained network is what is tested
        "run.log_every_steps=0",
    ]
    c.retrain = ml_collections.ConfigDict()
    c.retrain.config = "configs/eval_fmnist_small.py"
    c.retrain.overrides = [
        "data.limit=9600",
        "train.epochs=5",
        "model.init_channels=8",
        "model.layers=5",
        "run.eval_limit=0",  # the whole 10,000-image test split
        "run.log_every_steps=0",
    ]
    c.quick = ml_collections.ConfigDict()
    c.quick.seeds = (0,)
    c.quick.search = ["data.limit=1600", "search.epochs=2"]
    c.quick.retrain = ["data.limit=3200", "train.epochs=2", "run.eval_limit=2000"]
    # The same lambda (1.5) at the end of the quick search's 2 epochs.
    c.quick.methods = {
        "sparsenas_hapg": ["search.lam_step=0.75"],
        "sparsenas_adamhapg": ["search.lam_step=0.75"],
    }
    return c
