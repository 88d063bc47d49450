"""BayesNAS cell search on CIFAR-10, as in the paper (Zhou et al., ICML 2019, Sec. 5.1,
App. D.1; Table 1 rows "BayesNAS + cutout").

8 cells (6 normal, reductions at cells 3 and 6), 16 initial channels, batch 18 (the
paper's Sec. 5.1; App. D.1 says 16), 7 DARTS ops with BN-ReLU-Conv convolutions plus a
zero-op gate per edge; weights and gates by SGD (lr 0.1 fixed, momentum 0.9, weight decay
1e-4 on the weights only).  The schedule of the authors' code ("one epoch", 0.2
GPU-days): a warm-up on 10 % of the training set (weights only), one epoch of joint
training on the other 90 %, one Hessian / gamma update (App. C.3 gate curvature), then
the entropy rule gives the cells.  A GPU run:

    jaxnas search --config configs/bayesnas_cifar10.py --workdir runs/bayesnas_c10

lambda_w = 0.01 here; Table 1's other two rows:

    jaxnas search --config configs/bayesnas_cifar10.py --workdir runs/bayesnas_c10_007 \\
        --set search.lam_w=0.007
    jaxnas search --config configs/bayesnas_cifar10.py --workdir runs/bayesnas_c10_005 \\
        --set search.lam_w=0.005

The general T_max loop of Algorithm 1 (an update every k epochs, pruned gates held at 0
in between): ``--set search.epochs=10 search.update_every=2``.  The authors' op details
(full dilated convs, BN + 1x1 strided skip): ``--set model.primitives=bayesnas_code``.
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("bayesnas")
    config.seed = 0

    config.data.dataset = "cifar10"
    config.data.batch_size = 18
    config.data.portion = 0.5  # both halves train (search.train_on="both")
    config.data.crop_padding = 4
    config.data.flip = True
    config.data.cutout = 0

    config.model.init_channels = 16
    config.model.layers = 8
    config.model.primitives = "bayesnas"
    config.model.edge_gate = "input"

    config.optim.w_lr = 0.1  # fixed (w_lr_min = w_lr)
    config.optim.w_lr_min = 0.1
    config.optim.w_momentum = 0.9
    config.optim.w_weight_decay = 1e-4
    config.optim.g_lr = 0.1
    config.optim.g_momentum = 0.9

    config.search.epochs = 1
    config.search.warmup_epochs = 0.1
    config.search.update_every = 1
    config.search.update_unit = "epoch"
    config.search.lam_w = 0.01
    config.search.hessian = "paper"
    config.search.hessian_samples = 16
    config.search.probe_batch = 4  # 4 probes' backward passes at a time (memory)
    config.search.dependency = "code"

    config.run.log_every_steps = 100
    config.run.eval_test = True
    config.run.eval_limit = 0
    return config
