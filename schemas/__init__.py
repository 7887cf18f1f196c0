"""foodrisk schemas."""
