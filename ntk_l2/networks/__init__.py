"""Finite networks: architectures as neural-tangents stax triples with their homogeneity
degree (`arch`), batch-normalized convolutional networks (`batchnorm`), a layer-normalized
fully connected network and the masks of scale-invariant weights (`scale_invariant`), a
network of degree 0 with its kernel (`degree_zero`) and the one quiet import of
neural-tangents (`nt`). May import `ntk_l2.common` only.
"""
