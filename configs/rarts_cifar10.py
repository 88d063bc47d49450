"""RARTS search on CIFAR-10 as in the thesis (F. Xue, 2022, Sec. 3.2, L1042 and L1054).

8 cells (6 normal, 2 reduction), 16 initial channels, batch 64, 50 epochs; D_p and D_a
are the two halves of the 50k training set; both weight copies use momentum SGD
0.025 (cosine to 0.001, DARTS' schedule), momentum 0.9, weight decay 3e-4; alpha uses
Adam 3e-4 with weight decay 1e-3; latency penalty weight gamma = 0.002 (ms).  lam and
beta are not given in the thesis (see jaxnas.search.rarts.default_config).

The latency table is measured on the machine that will run the model (thesis Sec.
3.1.4), so make it first, then search (a GPU run):

    jaxnas latency --config configs/rarts_cifar10.py --out runs/latency_cifar10.json
    jaxnas search --config configs/rarts_cifar10.py --workdir runs/rarts_cifar10

Without a penalty: ``--set search.latency_table=""``.
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("rarts")
    config.seed = 2

    config.data.dataset = "cifar10"
    config.data.batch_size = 64
    config.data.portion = 0.5  # D_a ("train" half) and D_p ("valid" half)
    config.data.crop_padding = 4
    config.data.flip = True
    config.data.cutout = 0

    config.model.init_channels = 16
    config.model.layers = 8

    config.search.epochs = 50
    config.search.lam = 1.0
    config.search.beta = 1.0
    config.search.gamma = 0.002
    config.search.latency_table = "runs/latency_cifar10.json"

    config.run.log_every_steps = 50
    config.run.eval_test = True
    config.run.eval_limit = 0
    return config
