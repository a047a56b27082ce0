"""Diffusion models (Ho et al. 2020): noise schedules, prediction targets and samplers."""
