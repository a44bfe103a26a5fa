"""State stores: the protocol, the record codec and the backends."""
