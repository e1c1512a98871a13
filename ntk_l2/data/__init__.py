"""Datasets: the embedded digits, MNIST and CIFAR-10 as `Dataset` (`container`, loaded by `datasets`), their file
formats (`formats`) and verified downloads (`download`). May import `ntk_l2.common` and
`ntk_l2.theory` only.
"""

from ntk_l2.data.datasets import Dataset, load_cifar10, load_dataset, load_digits, load_mnist

__all__ = ["Dataset", "load_cifar10", "load_dataset", "load_digits", "load_mnist"]
