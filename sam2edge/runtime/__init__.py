"""Runtime: runners per backend, backend selection, image predictor, video tracker, caches."""
