"""SparseNAS' recurrent cell search on PTB (paper Sec. 4, Table 3; GPU).

DARTS' RNN search setup (embedding = hidden = 300, SGD lr 20, clip 0.25, weight decay
5e-7, dropouts 0.75 / 0.25 / 0.75 / 0.2, BPTT 35, 50 epochs, batch 256) with the
architecture by AdamHAPG (lr 1e-4, betas (0.5, 0.999)) on the exact hypergradient
through one unrolled weight step, pathwise lambda +0.01 per epoch, alpha 0.5 (the
paper gives neither alpha nor lambda for the RNN: the CNN values). Put
``ptb.{train,valid,test}.txt`` in ``data.data_dir`` (default ``~/data/ptb``):

    jaxnas search --config configs/sparsenas_ptb.py --workdir runs/sparsenas_ptb
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("sparsenas_rnn")
    config.seed = 0
    config.data.dataset = "ptb"
    config.data.data_dir = ""  # ~/data/ptb
    config.data.batch_size = 256
    config.search.epochs = 50
    config.search.order = "second"
    config.run.eval_test = False
    config.run.tensorboard = False
    return config
