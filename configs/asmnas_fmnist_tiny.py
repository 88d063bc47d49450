"""A real ASM-NAS search on Fashion-MNIST that finishes in minutes on a 2-core CPU.

Same algorithm as ``asmnas_fmnist.py``, shrunk: 5 cells with their own attention
modules and architectures (reductions at DARTS' positions 1 and 3, which the
retraining network also uses: 28x28 -> 14x14 -> 7x7), 4 initial channels, batch 32,
the first 1600 training images (800 train (w, Theta); 800 are held out for
selection only), 5 epochs. Debian's ``dataset-fashion-mnist`` files, no network:

    jaxnas search --config configs/asmnas_fmnist_tiny.py --workdir runs/asm_demo
    python -m jaxnas.asmnas_select --workdir runs/asm_demo
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("asmnas")
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
    config.model.reductions = ()  # () = DARTS' layers // 3, 2 * layers // 3 = (1, 3)

    config.search.epochs = 5
    config.search.selection = "cell_by_cell"

    config.run.log_every_steps = 10
    config.run.eval_test = True
    config.run.eval_limit = 512
    return config
