"""RARTS on the NAS-Bench-201 / NATS-Bench topology space, CIFAR-10 (thesis Sec. 3.5, Table 3.3).

The thesis (L1048-1050) searches NATS-Bench's topology space with settings "similar to
DARTS, except weight decay 0.0005", following the NATS-Bench paper, and reads the
retrained accuracy from the benchmark (its Table 3.3: 11.48 % CIFAR-10 error, no
skip-connections).  So: the NAS-Bench-201 supernet of ``darts_nb201_cifar10.py`` (C=16,
N=5, one shared cell), batch 64, 50 epochs, the two halves of the 50k training set as
D_a ("train") and D_p ("valid"); both weight copies by momentum SGD 0.025 cosine to 0.001,
momentum 0.9, weight decay 5e-4, clipping 5; alpha by Adam 3e-4 with weight decay 1e-3;
lam = beta = 1 (not given in the thesis, see ``jaxnas.search.rarts.default_config``); no
latency penalty (the thesis uses it only on the DARTS space).  A GPU run:

    jaxnas search --config configs/rarts_nb201_cifar10.py --workdir runs/rarts_nb201 \
        --set search.nats_bench=$TORCH_HOME/NATS-tss-v1_0-3ffb9-simple
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("rarts")
    config.seed = 0

    config.data.dataset = "cifar10"
    config.data.batch_size = 64
    config.data.portion = 0.5  # D_a ("train" half) and D_p ("valid" half)
    config.data.crop_padding = 4
    config.data.flip = True
    config.data.cutout = 0

    config.model.space = "nb201"
    config.model.primitives = "nb201"
    config.model.init_channels = 16
    config.model.layers = 5  # N: cells per stage

    config.optim.u_weight_decay = 5e-4
    config.optim.w_weight_decay = 5e-4

    config.search.epochs = 50
    config.search.lam = 1.0
    config.search.beta = 1.0
    config.search.latency_table = ""
    config.search.nats_bench = ""  # path of the NATS-Bench topology archive, if you have it

    config.run.log_every_steps = 50
    config.run.eval_test = True
    config.run.eval_limit = 0
    return config
