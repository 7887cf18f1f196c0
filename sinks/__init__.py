"""foodrisk sinks."""
