"""The SageMaker retraining pipeline (`retrain.py`, built at synth time) and the entrypoints of
the game's image (`container.py` and one module per command), thin adapters over the core."""
