"""foodrisk pipeline."""
