"""Point-in-time-correct customer lifecycle features from CRM tables."""
