"""LeadBridge insights: the lead timeline and the closed-loop funnel."""
