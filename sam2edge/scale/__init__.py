"""Scale-out on existing engines: a Triton model repository from an export set (``triton_repo``) and
Ray Data batch labelling (``ray_label``). An app-level package: it reads the contract, the store and the
runtime; only the CLI imports it. Ray and Triton's client are imported only when used."""
