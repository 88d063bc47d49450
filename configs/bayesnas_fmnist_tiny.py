"""A real BayesNAS search on Fashion-MNIST that finishes in minutes on a 2-core CPU.

The algorithm of ``bayesnas_cifar10.py`` shrunk like ``darts_fmnist_tiny.py``: 5 cells
(reductions at cells 1 and 3), 4 initial channels, batch 32, the first 1600 training
images (both halves train: 25 steps of 2 SGD steps per epoch).  Two iterations of the
T_max loop (Algorithm 1): epoch 1 starts with the 10 % warm-up (weights only), every
epoch ends with a Hessian / gamma update, and the gates pruned by the first update stay
at 0 during the second epoch:

    jaxnas search --config configs/bayesnas_fmnist_tiny.py --workdir runs/bayesnas_demo

lambda_w is 0.1, not the paper's 0.01: the penalty shrinks the gates by about lr *
lambda_w per SGD step, and the demo has 50 steps where the paper has one epoch of 2,500
(CIFAR-10, batch 18).  Measured with this config: at the first update lambda_w = 0.01
pruned no gate; after both updates 0.03 kept 96 % of the op gates and 0.1 75 % (epoch-2
training accuracy 0.46 and 0.27); 0.3 and 1.0 (at lr 0.05) pruned most of the supernet
and its training accuracy fell to 0.22 and chance.
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("bayesnas")
    config.seed = 0

    config.data.dataset = "fashion_mnist"
    config.data.batch_size = 32
    config.data.portion = 0.5
    config.data.limit = 1600
    config.data.pad_to = 0
    config.data.crop_padding = 2
    config.data.flip = True

    config.model.init_channels = 4
    config.model.layers = 5

    config.optim.grad_clip = 5.0  # lr 0.1 on a 4-channel supernet

    config.search.epochs = 2
    config.search.warmup_epochs = 0.1
    config.search.update_every = 1
    config.search.lam_w = 0.1
    config.search.hessian_samples = 8

    config.run.log_every_steps = 5
    config.run.eval_test = True
    config.run.eval_limit = 512
    return config
