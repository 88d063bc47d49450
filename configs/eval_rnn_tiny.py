"""AWD-style retraining of a recurrent cell on the tiny PTB-format text, ~1 minute on CPU.

DARTS' PTB evaluation (``eval_ptb.py``) shrunk to the shipped ``tests/data/tiny_ptb``:
embedding = hidden = 32, batch 8, BPTT 12, light dropouts, 30 epochs, the ASGD
trigger window 3. Trains DARTS' V2 cell unless given another genotype, e.g. the one
``configs/sparsenas_rnn_tiny.py`` found:

    jaxnas train --config configs/eval_rnn_tiny.py --workdir runs/rnn_eval_demo \
        --genotype runs/sparsenas_rnn_demo/genotype.json
"""

import os

from jaxnas.config import default_config

TINY_PTB = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tiny_ptb")


def get_config():
    config = default_config("train_rnn")
    config.seed = 0
    config.data.dataset = "ptb"
    config.data.data_dir = os.path.normpath(TINY_PTB)
    config.data.batch_size = 8

    config.model.genotype = "darts_v2"
    config.model.size = 32
    config.model.dropout = 0.2
    config.model.dropouth = 0.1
    config.model.dropoutx = 0.2
    config.model.dropouti = 0.1
    config.model.dropoute = 0.0

    config.optim.nonmono = 3
    config.train.epochs = 30
    config.train.eval_batch_size = 4
    config.train.test_batch_size = 1

    config.text.bptt = 12
    config.text.max_seq_len_delta = 6

    config.run.tensorboard = False
    return config
