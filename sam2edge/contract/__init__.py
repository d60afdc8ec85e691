"""The contract every artifact keeps: specs (names, dtypes, dims), the name constants, manifests and the store layout.

numpy only; every layer above reads names and shapes from here instead of writing them again.
"""
