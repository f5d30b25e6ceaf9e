"""LeadBridge intake service."""
