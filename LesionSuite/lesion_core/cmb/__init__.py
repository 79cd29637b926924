"""CMBDetector (issue 6, in progress): candidate clean-up rules and the distillation loss."""
