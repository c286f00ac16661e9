"""The pooling strategies, one module each, all on the public tiers of ``Pool2d``."""
