"""Metrics: FID/KID features and statistics, sliced Wasserstein distance, face detection rate."""
