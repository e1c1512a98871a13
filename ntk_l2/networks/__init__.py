"""Finite networks: architectures as neural-tangents stax triples with their homogeneity
degree (`arch`), batch-normalized convolutional networks (`batchnorm`) and the one quiet import
of neural-tangents (`nt`). May import `ntk_l2.common` only.
"""
