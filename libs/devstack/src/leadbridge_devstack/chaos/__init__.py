"""`make chaos`: crash every part of a running LeadBridge in turn under steady load, then count what was lost."""
