"""foodrisk agents."""
