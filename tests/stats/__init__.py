"""Tests of ab_pipelines.stats: formulas against independent computations, and simulations."""
