"""DARTS (first order) searching its recurrent cell on the tiny PTB-format text, a minute
or two on a 2-core CPU.

DARTS' PTB search (``jaxnas.search.darts_rnn``: softmax over ``none, tanh, relu,
sigmoid, identity`` on every edge, Adam on alpha, DARTS' SGD on the weights) shrunk as
``sparsenas_rnn_tiny.py``: the shipped ``tests/data/tiny_ptb`` (~1k training words,
137-word vocabulary), embedding = hidden = 16, batch 8, BPTT 12, lighter dropouts, and
a larger architecture learning rate than DARTS' 3e-3 so that alpha moves in ~100 steps:

    jaxnas search --config configs/darts_rnn_tiny.py --workdir runs/darts_rnn_demo
"""

import os

from jaxnas.config import default_config

TINY_PTB = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tiny_ptb")


def get_config():
    config = default_config("darts_rnn")
    config.seed = 0
    config.data.dataset = "ptb"
    config.data.data_dir = os.path.normpath(TINY_PTB)
    config.data.batch_size = 8

    config.model.size = 16
    config.model.dropout = 0.2
    config.model.dropouth = 0.1
    config.model.dropoutx = 0.2
    config.model.dropouti = 0.1

    config.optim.a_lr = 3e-2
    config.search.epochs = 10
    config.search.order = "first"

    config.text.bptt = 12
    config.text.max_seq_len_delta = 6
    config.text.eval_batch_size = 4

    config.run.log_every_steps = 0
    config.run.eval_test = False
    config.run.tensorboard = False
    return config
