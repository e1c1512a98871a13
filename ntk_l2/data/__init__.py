"""Datasets: the embedded digits, MNIST and CIFAR-10 as `Dataset` (`container`, loaded by `datasets`), their file
formats (`formats`), verified downloads (`download`), shifted copies of images (`augment`) and the on-disk
kernel store (`kernel_store`, written by `kernel_writer`). May import `ntk_l2.common` and
`ntk_l2.theory` only.
"""

from ntk_l2.data.datasets import Dataset, load_cifar10, load_dataset, load_digits, load_mnist

__all__ = ["Dataset", "load_cifar10", "load_dataset", "load_digits", "load_mnist"]
