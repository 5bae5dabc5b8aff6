"""One ConfigurableResource (and its plain client) per outside system, configured by fields; definitions.py builds them."""
