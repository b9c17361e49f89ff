"""Synthetic training data: randomised looks of the simulated worlds, labelled by ray casting."""
