"""Retraining a recurrent cell on PTB (SparseNAS Table 3 protocol; GPU).

DARTS' ``rnn/train.py`` settings (embedding = hidden = 850, SGD lr 20, clip 0.25,
weight decay 8e-7, dropouts 0.75 / 0.25 / 0.75 / 0.2 / 0.1, BPTT 35 with variable
length, NT-ASGD with n = 5), with SparseNAS' batch 64 and 4000 epochs (DARTS: 8000).
Put ``ptb.{train,valid,test}.txt`` in ``data.data_dir`` (default ``~/data/ptb``):

    jaxnas train --config configs/eval_ptb.py --workdir runs/ptb_eval \
        --genotype runs/sparsenas_ptb/genotype.json
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("train_rnn")
    config.seed = 0
    config.data.dataset = "ptb"
    config.data.data_dir = ""  # ~/data/ptb
    config.data.batch_size = 64
    config.model.genotype = "darts_v2"
    config.train.epochs = 4000
    config.run.tensorboard = False
    return config
