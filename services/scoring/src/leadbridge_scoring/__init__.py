"""LeadBridge scoring service."""
