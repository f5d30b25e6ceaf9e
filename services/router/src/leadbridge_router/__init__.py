"""LeadBridge router service."""
