"""A real SparseNAS RNN search on the tiny PTB-format text, a minute or two on a 2-core CPU.

The PTB search (``sparsenas_ptb.py``) shrunk: the shipped ``tests/data/tiny_ptb``
(~1k training words of real English, 137-word vocabulary), embedding = hidden = 16,
batch 8, BPTT 12, lighter dropouts, and a pathwise lambda that grows by LAM_STEP per
epoch so that the prox produces exact zeros within the demo (the paper: 0.01 over
50 epochs), and AdamHAPG without the APG extrapolation (see below). Architecture step
exact through one unrolled weight step (Eq. 12):

    jaxnas search --config configs/sparsenas_rnn_tiny.py --workdir runs/sparsenas_rnn_demo
"""

import os

from jaxnas.config import default_config

LAM_STEP = 0.5
TINY_PTB = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tiny_ptb")


def get_config():
    config = default_config("sparsenas_rnn")
    config.seed = 0
    config.data.dataset = "ptb"
    config.data.data_dir = os.path.normpath(TINY_PTB)
    config.data.batch_size = 8

    config.model.size = 16
    config.model.dropout = 0.2
    config.model.dropouth = 0.1
    config.model.dropoutx = 0.2
    config.model.dropouti = 0.1

    config.optim.a_lr = 3e-2  # 1e-4 (paper) barely moves A in ~100 steps
    # Without the APG extrapolation: with it (u_t = (t-2)/(t+1) -> 1, the paper's) theta
    # stayed dense in this 100-step demo (<= 9% zeros, no dead node after epoch 2);
    # with 0 about 20-35% of theta is exactly zero and nodes die (measured, seed 0).
    config.optim.a_momentum = "0.0"
    config.search.epochs = 10
    config.search.order = "second"
    config.search.lam_step = LAM_STEP

    config.text.bptt = 12
    config.text.max_seq_len_delta = 6
    config.text.eval_batch_size = 4

    config.run.log_every_steps = 0
    config.run.eval_test = False
    config.run.tensorboard = False
    return config
