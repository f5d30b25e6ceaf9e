"""LeadBridge sla-watcher service."""
