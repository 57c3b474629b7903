"""Training: from a folder of labelled images to a registered, evaluated model (in progress)."""
