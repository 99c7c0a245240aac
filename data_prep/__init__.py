"""Scripts that turn public liver CT datasets into the prepared layout the training bundle reads."""
