"""Training stage: fit forecasters, write versioned artifacts, choose the champion."""
