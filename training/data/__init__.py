"""Datasets: ChestX-ray14 and CheXpert from their real on-disk layouts, and the synthetic phantom set."""
